"""Misuse gets the services' error events and the socket stays up, for every client (VoiceLive, openai GA, beta)."""

from __future__ import annotations

from typing import Any

import pytest
from rt_support import CLIENTS, Client, Events, b64


def _codes(events: Events) -> list[str | None]:
    return [e.error.code for e in events.of("error")]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect)
async def test_errors_leave_the_socket_up(rt: tuple[str, Any], client: Client) -> None:
    url, _ = rt
    async with client.connect(url) as conn:
        events = Events(conn)
        await events.wait("session.created")
        bad_vad = client.session(vad={"type": "psychic_vad"})
        await client.send_raw(conn, "{not json")
        await client.send_raw(conn, b"\x00\x01binary")
        await conn.send({"type": "no.such.event", "event_id": "evt_client_1"})
        await conn.send({"type": "input_audio_buffer.commit"})
        await conn.send({"type": "response.cancel"})
        await conn.send({"type": "input_audio_buffer.append", "audio": "@@not base64@@"})
        await conn.send({"type": "session.update", "session": bad_vad})
        await conn.send({"type": "conversation.item.truncate", "item_id": "item_nope", "content_index": 0,
                         "audio_end_ms": 10})  # fmt: skip
        await events.wait("error", 8)
        # commit is answered by the audio lane, so its error may come after later events' errors
        assert sorted(c or "" for c in _codes(events)) == sorted(
            [
                "invalid_json",
                "invalid_event",
                "invalid_event",
                "input_audio_buffer_commit_empty",
                "response_cancel_not_active",
                "invalid_value",
                "invalid_value",
                "invalid_value",
            ]
        )
        errors = events.of("error")
        named = [e for e in errors if e.error.event_id == "evt_client_1"]
        assert len(named) == 1 and named[0].error.code == "invalid_event"  # the client's event is named
        vad_param = "audio.input.turn_detection.type" if client.dialect == "ga" else "turn_detection.type"
        assert any(e.error.param == vad_param for e in errors), [e.error.param for e in errors]
        assert all(e.error.type == "invalid_request_error" for e in errors)

        # two response.create in a row: the second is refused while the first (the greeting) runs
        await conn.send({"type": "response.create"})
        await conn.send({"type": "response.create"})
        await events.wait("error", 9)
        assert _codes(events)[-1] == "conversation_already_has_active_response"
        delta_name = client.ev("response.audio.delta")
        first_delta = (await events.wait(delta_name))[0]
        await conn.send({"type": "response.cancel"})
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "cancelled"
        assert client.reason(done) == "client_cancelled"
        # truncating past the audio the item has is refused; within it, accepted
        ours = [e for e in events.of(delta_name) if e.item_id == first_delta.item_id]
        produced = len(client.audio(ours)) // 48  # every dialect's default output: 24 kHz PCM16 bytes → ms
        await conn.send({"type": "conversation.item.truncate", "item_id": first_delta.item_id, "content_index": 0,
                         "audio_end_ms": produced + 500})  # fmt: skip
        await events.wait("error", 10)
        assert _codes(events)[-1] == "invalid_value"
        assert "beyond the audio" in events.of("error")[-1].error.message
        await conn.send({"type": "conversation.item.truncate", "item_id": first_delta.item_id, "content_index": 0,
                         "audio_end_ms": max(0, produced - 10)})  # fmt: skip
        await events.wait("conversation.item.truncated")

        # still a working session: a manual commit of real speech, then an update that applies
        await conn.send({"type": "session.update", "session": client.session(vad=None)})
        await events.wait("session.updated")
        await conn.send({"type": "input_audio_buffer.append", "audio": b64(client.speech("yes") + client.silence(200))})
        await conn.send({"type": "input_audio_buffer.commit"})
        committed = (await events.wait("input_audio_buffer.committed"))[0]
        assert committed.item_id
        await conn.send({"type": "conversation.item.delete", "item_id": committed.item_id})
        await events.wait("conversation.item.deleted")
        await conn.send({"type": "conversation.item.delete", "item_id": committed.item_id})
        await events.wait("error", 11)
        assert len(events.of("error")) == 11
        await events.close()
