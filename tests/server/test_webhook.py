"""The webhook over real sockets: handshakes, IncomingCall → the SDK's answer request, dedup, bad input."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import httpx

from callwright.acs.events import ACSEventTypes

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())


def incoming_call(event_id: str = "e80026e7-e298-46ba-bc42-dab0eda92581") -> list[dict]:
    body = copy.deepcopy(RECORDED["IncomingCall"])
    body[0]["id"] = event_id
    return body


async def test_subscription_validation_handshake(edge):
    body = [{
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": "/subscriptions/x", "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://example/validate"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "eventTime": "2018-01-25T22:12:19.4556811Z",
        "metadataVersion": "1", "dataVersion": "1",
    }]  # fmt: skip
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(), json=body, headers={"aeg-event-type": "SubscriptionValidation"})
    assert resp.status_code == 200
    assert resp.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


async def test_options_abuse_protection_handshake(edge):
    async with httpx.AsyncClient() as http:
        resp = await http.options(
            edge.webhook(), headers={"WebHook-Request-Origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"}
        )
    assert resp.status_code == 200
    assert resp.headers["webhook-allowed-origin"] == "eventgrid.azure.net"
    assert resp.headers["webhook-allowed-rate"] == "*"


async def test_incoming_call_is_answered_through_the_sdk(edge):
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(), json=incoming_call(), headers={"aeg-event-type": "Notification"})
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 1
    await asyncio.wait_for(edge.acs.answered.wait(), 10)
    answer = next(r for r in edge.acs.requests if r.path.endswith(":answer"))
    assert answer.method == "POST"
    assert "api-version=" in answer.query
    assert answer.headers["authorization"].startswith("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256")
    body = answer.body
    assert body["incomingCallContext"] == RECORDED["IncomingCall"][0]["data"]["incomingCallContext"]
    assert body["callbackUri"] == f"{edge.settings.acs_callback_url}/api/v1/call-events"
    streaming = body["mediaStreamingOptions"]
    assert streaming["transportType"] == "websocket"
    assert (
        streaming["transportUrl"] == edge.settings.acs_callback_url.replace("http://", "ws://") + "/api/v1/media/stream"
    )
    assert streaming["contentType"] == "audio"
    assert streaming["startMediaStreaming"] is True
    assert streaming["enableBidirectional"] is True
    assert streaming["audioFormat"] == "pcm16KMono"
    await edge.state.processor.drain()
    [call] = edge.state.calls.active()
    assert call.direction == "inbound"
    assert call.caller == "4:+18447649276"
    assert call.mode == "media"


async def test_redelivered_incoming_call_is_answered_once(edge):
    async with httpx.AsyncClient() as http:
        first = await http.post(edge.webhook(), json=incoming_call())
        again = await http.post(edge.webhook(), json=incoming_call())
        # Same call announced under a new event id (a second subscription): still one answer.
        other_id = await http.post(edge.webhook(), json=incoming_call("another-event-id"))
    assert first.json()["accepted"] == 1
    assert again.json() == {"accepted": 0, "duplicates": 1, "ignored": 0}
    assert other_id.json()["duplicates"] == 1
    await edge.state.processor.drain()
    assert sum(r.path.endswith(":answer") for r in edge.acs.requests) == 1


async def test_malformed_bodies_get_400_naming_the_problem(edge):
    cases = {
        b"not json": "not JSON",
        b"": "empty body",
        b"[]": "empty event array",
        b"[42]": "expected an object",
        b'[{"foo": 1}]': "neither an Event Grid event",
        json.dumps([{"id": "1", "type": "Microsoft.Communication.CallConnected", "data": {}}]).encode(): "callConnectionId",
        json.dumps([{"id": "1", "eventType": ACSEventTypes.INCOMING_CALL, "data": {"serverCallId": "x"}}]).encode():
            "incomingCallContext",
        json.dumps([{"type": "Microsoft.Communication.CallConnected", "data": {"callConnectionId": "c"}}]).encode(): "'id'",
        json.dumps([{"id": "1", "type": "X", "data": 5}]).encode(): "'data' must be an object",
    }  # fmt: skip
    async with httpx.AsyncClient() as http:
        for body, needle in cases.items():
            resp = await http.post(
                edge.webhook(), content=body, headers={"content-type": "application/cloudevents-batch+json"}
            )
            assert resp.status_code == 400, body
            assert needle in resp.json()["detail"], (body, resp.json())
        # The server is still fine afterwards.
        assert (await http.get(f"{edge.url}/health")).status_code == 200


async def test_cloudevents_single_and_batch_content_types(edge):
    event = copy.deepcopy(RECORDED["CallConnected"][0])
    async with httpx.AsyncClient() as http:
        single = await http.post(
            edge.webhook(),
            content=json.dumps(event),
            headers={"content-type": "application/cloudevents+json", **edge.auth()},
        )
        event2 = {**event, "id": "second-id"}
        batch = await http.post(
            edge.webhook(), content=json.dumps([event2]),
            headers={"content-type": "application/cloudevents-batch+json", **edge.auth()},
        )  # fmt: skip
    assert single.status_code == 200 and single.json()["accepted"] == 1
    assert batch.status_code == 200 and batch.json()["accepted"] == 1


async def test_unknown_event_types_are_accepted_and_ignored(edge):
    event = copy.deepcopy(RECORDED["CallConnected"][0])
    event["type"] = "Microsoft.Communication.SomethingNew"
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(), json=[event], headers=edge.auth())
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 0, "duplicates": 0, "ignored": 1}


async def test_slow_and_failing_handlers_do_not_hold_the_response_or_the_batch(edge):
    release = asyncio.Event()
    seen: list[str] = []

    async def slow(ctx):
        await release.wait()
        seen.append("slow")

    async def boom(ctx):
        raise RuntimeError("handler bug")

    async def after(ctx):
        seen.append(ctx.event.id)

    processor = edge.state.processor
    processor.register_handler("Custom.Slow", slow)
    processor.register_handler("Custom.Boom", boom)
    processor.register_handler("Custom.Boom", after)
    processor.register_handler("Custom.After", after)
    mk = lambda i, t, cid: {"id": i, "type": t, "specversion": "1.0", "data": {"callConnectionId": cid}}  # noqa: E731
    body = [mk("1", "Custom.Slow", "call-a"), mk("2", "Custom.Boom", "call-b"), mk("3", "Custom.After", "call-b")]
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(), json=body, headers=edge.auth())
    # The response came back while the slow handler is still blocked.
    assert resp.status_code == 200 and resp.json()["accepted"] == 3
    assert "slow" not in seen
    # The failing handler did not stop the other handler of its event nor the next event of the batch.
    for _ in range(200):
        if seen == ["2", "3"]:
            break
        await asyncio.sleep(0.01)
    assert seen == ["2", "3"]
    release.set()
    await processor.drain()
    assert seen == ["2", "3", "slow"]
    from prometheus_client import generate_latest  # /metrics needs an operator key; read the registry here

    metrics = generate_latest(edge.state.metrics.registry).decode()
    assert 'callwright_events_total{outcome="failed",type="Boom"} 1.0' in metrics


async def test_startup_freezes_the_long_lived_heap(edge):
    """Full collections on the event loop must not walk every module and model object (stalls of
    50-110 ms at 20 calls, heard as gaps): the lifespan freezes what exists once the server is up."""
    import gc

    assert gc.get_freeze_count() > 10_000
