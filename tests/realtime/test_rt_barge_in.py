"""Barge-in: speech during a reply cancels it (turn_detected), the client truncates what was not heard;
VoiceLive auto_truncate does the truncation server-side. Every client (VoiceLive, openai GA and beta)."""

from __future__ import annotations

import time

import pytest
from rt_support import CLIENTS, SERVER_VAD, Client, Events, realtime_server


async def _barge_in(client: Client, auto_truncate: bool) -> None:
    # slow pacing keeps the reply in progress long enough to interrupt it on a loaded machine
    async with (
        realtime_server(realtime_audio_pace=1.2, realtime_audio_burst_ms=0) as (url, _),
        client.connect(url) as conn,
    ):
        events = Events(conn)
        vad = {**SERVER_VAD, "auto_truncate": True} if auto_truncate else SERVER_VAD
        await conn.send({"type": "session.update", "session": client.session(vad=vad)})
        await events.wait("session.updated")
        delta_name = client.ev("response.audio.delta")
        await client.stream(conn, client.speech("hours") + client.silence(800))
        first = (await events.wait(delta_name))[0]
        first_at = time.monotonic()
        item_id = first.item_id
        await client.stream(conn, client.speech("person") + client.silence(1000), speed=1.0)
        starts = await events.wait("input_audio_buffer.speech_started", 2)
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "cancelled"
        assert client.reason(done) == "turn_detected"
        cut = events.items.index(starts[1])
        bytes_per_ms = client.out_rate * 2 / 1000
        received = len(client.audio([e for e in events.items[:cut] if e.type == delta_name])) / bytes_per_ms
        assert events.items.index(done) > cut
        if auto_truncate:
            truncated = (await events.wait("conversation.item.truncated"))[0]
            assert truncated.item_id == item_id
            assert 0 < truncated.audio_end_ms <= received + 1
        else:
            played = (time.monotonic() - first_at) * 1000
            end_ms = int(min(played, received))
            await conn.send(
                {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": end_ms}
            )
            truncated = (await events.wait("conversation.item.truncated"))[0]
            assert truncated.item_id == item_id
            assert truncated.audio_end_ms == end_ms
        assert not events.of("error")
        # the interruption is the caller's next turn: asking for a person is answered with a transfer line
        await events.wait("response.done", 2)
        spoken = events.of(client.ev("response.audio_transcript.done"))[-1].transcript
        assert "connecting you" in spoken
        await events.close()


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.dialect)
async def test_barge_in_cancels_and_client_truncates(client: Client) -> None:
    await _barge_in(client, auto_truncate=False)


async def test_voicelive_auto_truncate() -> None:
    await _barge_in(Client("voicelive"), auto_truncate=True)
