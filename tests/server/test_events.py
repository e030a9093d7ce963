"""Every default event type, from bodies recorded from the live service, parsed and handled."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from callwright.acs.events import ACSEventTypes, parse_delivery
from callwright.events.handlers import DEFAULT_HANDLERS
from callwright.voice.tone import ToneHandler

RECORDED = json.loads((Path(__file__).parents[1] / "data" / "events" / "recorded.json").read_text())
CALL_ID = RECORDED["CallConnected"][0]["data"]["callConnectionId"]


class _NullTransport:
    sample_rate = 16_000
    closed = False

    async def send_audio(self, pcm: bytes) -> None:
        return None

    async def stop_audio(self) -> None:
        return None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


def test_every_default_event_type_parses_from_recorded_bodies():
    handled_types = set(DEFAULT_HANDLERS)
    for name, body in RECORDED.items():
        delivery = parse_delivery(json.dumps(body).encode())
        assert delivery.rejections == []
        [event] = delivery.events
        assert event.short_type == name
        assert event.type in handled_types, name
        if name != "IncomingCall":
            assert event.call_connection_id == CALL_ID
            assert event.schema == "cloudevents"
        else:
            assert event.schema == "eventgrid"
    # Every type ACS sends has a handler (the ones without a recorded body are covered in tests/webhook).
    assert ACSEventTypes.all() - handled_types == {ACSEventTypes.SUBSCRIPTION_VALIDATION}


async def _deliver(edge, http, name: str) -> None:
    resp = await http.post(edge.webhook(secret=False), json=RECORDED[name], headers=edge.auth())
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 1, (name, resp.json())
    await edge.state.processor.drain()


async def test_default_handlers_update_the_session(edge):
    st = edge.state
    async with httpx.AsyncClient() as http:
        await _deliver(edge, http, "CallConnected")
        call = st.calls.get(CALL_ID)
        assert call is not None and call.state == "connected"
        assert call.memo.get_context("call_state") == "connected"

        await _deliver(edge, http, "ParticipantsUpdated")
        assert call.participants[0] == "4:+18447649276"
        assert call.memo.get_context("participants") == call.participants

        handler = ToneHandler(_NullTransport())
        call.media_handler = handler
        await _deliver(edge, http, "ContinuousDtmfRecognitionToneReceived")
        assert handler.dtmf == ["8"]

        for name in ("PlayCompleted", "PlayFailed", "PlayCanceled"):
            await _deliver(edge, http, name)
        assert [m["outcome"] for m in call.memo.metrics if m["name"] == "play"] == [
            "PlayCompleted", "PlayFailed", "PlayCanceled"
        ]  # fmt: skip

        await _deliver(edge, http, "RecognizeCompleted")
        assert call.memo.get_context("last_recognize")["dtmf"] == "123#"
        await _deliver(edge, http, "RecognizeFailed")
        assert "silence timeout" in call.memo.get_context("last_recognize")["reason"]

        await _deliver(edge, http, "CallTransferAccepted")
        assert call.state == "transferring"
        await _deliver(edge, http, "CallTransferFailed")
        assert call.memo.get_context("transfer")["accepted"] is False

        for name in ("MediaStreamingStarted", "MediaStreamingStopped", "MediaStreamingFailed"):
            await _deliver(edge, http, name)
        assert call.memo.get_context("media_streaming") == "mediaStreamingFailed"

        await _deliver(edge, http, "CallDisconnected")
    assert st.calls.get(CALL_ID).state == "disconnected"
    assert CALL_ID not in {c.call_connection_id for c in st.calls.active()}
    # The final state landed in the store, including everything the events wrote.
    doc = await st.store.load(CALL_ID)
    assert doc["context"]["call_state"] == "disconnected"
    assert doc["context"]["participants"][0] == "4:+18447649276"
    assert call.events_seen[:2] == ["CallConnected", "ParticipantsUpdated"]
    assert call.events_seen[-1] == "CallDisconnected"


async def test_create_and_answer_failures_end_the_call(edge):
    async with httpx.AsyncClient() as http:
        await _deliver(edge, http, "CallConnected")
        await _deliver(edge, http, "CreateCallFailed")
    assert edge.state.calls.get(CALL_ID).state == "failed"
    assert edge.state.calls.get(CALL_ID).end_reason == "Call was not answered."


async def test_events_of_one_call_run_in_order_and_calls_run_concurrently(edge):
    processor = edge.state.processor
    order: dict[str, list[int]] = {"a": [], "b": []}
    gate = asyncio.Event()

    async def record(ctx):
        cid = ctx.call_connection_id
        seq = ctx.get_event_data()["seq"]
        if cid == "a" and seq == 0:
            await gate.wait()  # call a's first event blocks; call b must still progress
        order[cid].append(seq)

    processor.register_handler("Custom.Seq", record)
    events = [
        {"id": f"{cid}-{i}", "type": "Custom.Seq", "specversion": "1.0", "data": {"callConnectionId": cid, "seq": i}}
        for i in range(5)
        for cid in ("a", "b")
    ]
    async with httpx.AsyncClient() as http:
        resp = await http.post(edge.webhook(secret=False), json=events, headers=edge.auth())
    assert resp.json()["accepted"] == 10
    for _ in range(300):
        if len(order["b"]) == 5:
            break
        await asyncio.sleep(0.01)
    assert order == {"a": [], "b": [0, 1, 2, 3, 4]}
    gate.set()
    await processor.drain()
    assert order["a"] == [0, 1, 2, 3, 4]
    assert ACSEventTypes.CALL_CONNECTED in ACSEventTypes.all()
