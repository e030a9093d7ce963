"""ACS JWTs on the webhook and the media WebSocket, verified against a JWKS served over a real socket."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())

BAD_TOKENS = {
    "wrong audience": {"audience": "00000000-0000-0000-0000-000000000000"},
    "wrong issuer": {"issuer": "https://evil.example.com"},
    "expired": {"lifetime": -600},
    "bad signature": {"wrong_key": True},
    "unknown kid": {"kid": "not-a-known-key"},
}


def _event(i: str) -> list[dict]:
    ev = copy.deepcopy(RECORDED["CallConnected"][0])
    ev["id"] = i
    return [ev]


async def test_valid_token_is_accepted_on_the_webhook(edge):
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(secret=False), json=_event("ok-1"), headers=edge.auth())
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1


@pytest.mark.parametrize("case", [*BAD_TOKENS, "missing header", "not bearer"])
async def test_bad_tokens_are_refused_on_the_webhook(edge, case, caplog):
    if case == "missing header":
        headers: dict[str, str] = {}
    elif case == "not bearer":
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    else:
        headers = edge.auth(**BAD_TOKENS[case])
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(secret=False), json=_event(f"bad-{case}"), headers=headers)
    assert resp.status_code == 401, case
    assert resp.json()["error"] == "unauthorized"
    assert "webhook delivery refused" in caplog.text
    assert edge.state.calls.get(RECORDED["CallConnected"][0]["data"]["callConnectionId"]) is None


async def test_event_grid_secret_is_checked(edge):
    incoming = RECORDED["IncomingCall"]
    async with httpx.AsyncClient() as http:
        wrong = await http.post(f"{edge.url}/api/v1/call-events?secret=nope", json=incoming)
        missing = await http.post(f"{edge.url}/api/v1/call-events", json=incoming)
    assert wrong.status_code == 401 and "secret" in wrong.json()["detail"]
    assert missing.status_code == 401
    assert not edge.acs.requests


def _media_url(edge) -> str:
    return edge.url.replace("http://", "ws://") + "/api/v1/media/stream"


async def test_valid_token_opens_the_media_socket(edge):
    headers = {**edge.auth(lifetime=86400), "x-ms-call-connection-id": "call-1"}
    async with connect(_media_url(edge), additional_headers=headers) as ws:
        await ws.send(
            json.dumps(
                {
                    "kind": "AudioMetadata",
                    "audioMetadata": {
                        "subscriptionId": "s",
                        "encoding": "PCM",
                        "sampleRate": 16000,
                        "channels": 1,
                        "length": 640,
                    },
                }
            )
        )
        reply = json.loads(await ws.recv())  # the placeholder handler greets with a tone
        assert reply["Kind"] == "AudioData"


@pytest.mark.parametrize("case", [*BAD_TOKENS, "missing header"])
async def test_bad_tokens_close_the_media_socket_with_1008(edge, case):
    headers = {"x-ms-call-connection-id": "call-1"}
    if case != "missing header":
        headers.update(edge.auth(**BAD_TOKENS[case]))
    async with connect(_media_url(edge), additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert edge.state.calls.get("call-1") is None


def _raw_token(header: dict) -> str:
    import base64

    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return f"{b64(json.dumps(header).encode())}.{b64(b'{}')}.{b64(b'sig')}"


@pytest.mark.parametrize(
    "header",
    [{"alg": "RS256", "kid": 5}, {"alg": "RS256", "kid": "test-key-1", "crit": ["exp"]}, {"alg": "RS256"}],
    ids=["non-string kid", "crit", "no kid"],
)
async def test_malformed_token_headers_close_the_media_socket_with_1008_not_500(edge, header):
    headers = {"x-ms-call-connection-id": "call-1", "Authorization": f"Bearer {_raw_token(header)}"}
    async with connect(_media_url(edge), additional_headers=headers) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
