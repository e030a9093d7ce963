"""Authentication failures and bad requests answer like ACS and never take the emulator down."""

from __future__ import annotations

import asyncio
import base64
import os
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx
import pytest
from azure.communication.callautomation import CallAutomationClient, PhoneNumberIdentifier
from azure.communication.callautomation.aio import CallAutomationClient as AioClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from emu_support import FakePhone, Webhook

from callwright.emulator.contracts import OutboundBehaviour
from callwright.emulator.hmac_auth import content_hash, sign
from callwright.emulator.service import Emulator

API = "api-version=2026-03-12"


def signed_headers(emu: Emulator, method: str, path_and_query: str, body: bytes, *, key: bytes | None = None) -> dict:
    date = formatdate(usegmt=True)
    host = urlsplit(emu.endpoint).netloc
    digest = content_hash(body)
    sig = sign(key or emu.access_key_bytes, method, path_and_query, date, host, digest)
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": digest,
        "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}",
        "Content-Type": "application/json",
    }


async def raw(emu: Emulator, method: str, path: str, body: bytes = b"", **kw: object) -> httpx.Response:
    pq = f"{path}?{API}"
    async with httpx.AsyncClient(base_url=emu.endpoint) as http:
        return await http.request(method, pq, content=body, headers=signed_headers(emu, method, pq, body, **kw))


async def test_wrong_access_key_is_401_for_both_clients(emulator: Emulator) -> None:
    wrong = base64.b64encode(os.urandom(32)).decode()
    sync = CallAutomationClient(emulator.endpoint, AzureKeyCredential(wrong))
    with pytest.raises(ClientAuthenticationError) as err:
        await asyncio.to_thread(sync.get_call_connection("nope").get_call_properties)
    assert err.value.status_code == 401
    async with AioClient(emulator.endpoint, AzureKeyCredential(wrong)) as aio:
        with pytest.raises(ClientAuthenticationError):
            await aio.create_call(PhoneNumberIdentifier("+15551230001"), "http://127.0.0.1:9/cb")


async def test_unsigned_tampered_and_stale_requests_are_401(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.endpoint) as http:
        r = await http.get(f"/calling/callConnections/abc?{API}")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "Unauthorized"
        # Body altered after signing: the content hash no longer matches.
        pq = f"/calling/callConnections?{API}"
        h = signed_headers(emulator, "POST", pq, b"{}")
        r = await http.post(pq, content=b'{"targets": []}', headers=h)
        assert r.status_code == 401
        # A date far in the past.
        h = signed_headers(emulator, "GET", f"/calling/callConnections/abc?{API}", b"")
        h["x-ms-date"] = "Tue, 24 Nov 2020 19:29:28 GMT"
        r = await http.get(f"/calling/callConnections/abc?{API}", headers=h)
        assert r.status_code == 401


async def test_unknown_call_is_404_through_the_sdk(emulator: Emulator) -> None:
    client = CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key))
    conn = client.get_call_connection("00000000-0000-0000-0000-000000000000")
    with pytest.raises(ResourceNotFoundError) as err:
        await asyncio.to_thread(conn.get_call_properties)
    assert err.value.error.code == "8523"
    with pytest.raises(ResourceNotFoundError):
        await asyncio.to_thread(conn.hang_up, False)
    with pytest.raises(HttpResponseError) as err2:
        await asyncio.to_thread(client.answer_call, "not-a-real-context", "http://127.0.0.1:9/cb")
    assert err2.value.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/calling/callConnections", b"{not json", 400),
        ("POST", "/calling/callConnections", b"[1, 2]", 400),
        ("POST", "/calling/callConnections", b'{"callbackUri": "http://x/cb"}', 400),
        ("POST", "/calling/callConnections", b'{"targets": [{"rawId": "4:+15551230001"}]}', 400),
        ("POST", "/calling/callConnections", b'{"targets": [{}], "callbackUri": "http://x/cb"}', 400),
        ("POST", "/calling/callConnections:answer", b'{"callbackUri": "http://x/cb"}', 400),
        ("POST", "/calling/callConnections:answer", b"", 400),
        ("POST", "/calling/callConnections/nope:play", b'{"playSources": []}', 404),
        ("POST", "/calling/callConnections:frobnicate", b'{"incomingCallContext": "x"}', 400),
        ("GET", "/calling/nothing/here", b"", 404),
    ],
)
async def test_bad_requests_get_acs_error_bodies(
    emulator: Emulator, method: str, path: str, body: bytes, status: int
) -> None:
    r = await raw(emulator, method, path, body)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) >= {"code", "message"}


async def test_bad_bodies_on_a_live_call_then_a_good_request_still_works(emulator: Emulator, webhook: Webhook) -> None:
    emulator.register_phone("+15551230001", FakePhone(), OutboundBehaviour(answer_after_s=0.0))
    body = b'{"targets": [{"rawId": "4:+15551230001"}], "callbackUri": "' + webhook.callback_url.encode() + b'"}'
    r = await raw(emulator, "POST", "/calling/callConnections", body)
    assert r.status_code == 201
    ccid = r.json()["callConnectionId"]
    assert r.json()["targets"][0] == {
        "kind": "phoneNumber",
        "rawId": "4:+15551230001",
        "phoneNumber": {"value": "+15551230001"},
    }
    await webhook.wait_callback("CallConnected")
    for action, bad in [
        ("play", b'{"playSources": "nope"}'),
        ("play", b"{oops"),
        ("recognize", b'{"recognizeInputType": "dtmf"}'),
        (
            "recognize",
            b'{"recognizeInputType": "dtmf", "recognizeOptions": {"targetParticipant": {"rawId": "4:+1"},'
            b' "dtmfOptions": {"maxTonesToCollect": "many"}}}',
        ),
        ("transferToParticipant", b"{}"),
        ("startContinuousDtmfRecognition", b'{"targetParticipant": 5}'),
        ("startMediaStreaming", b"{}"),  # the call has no mediaStreamingOptions
    ]:
        r = await raw(emulator, "POST", f"/calling/callConnections/{ccid}:{action}", bad)
        assert r.status_code == 400, (action, bad, r.text)
        assert r.json()["error"]["message"]
    r = await raw(emulator, "GET", f"/calling/callConnections/{ccid}")
    assert r.status_code == 200
    assert r.json()["callConnectionState"] == "connected"
