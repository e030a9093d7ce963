"""Barge-in: speech during a reply cancels it (turn_detected), the client truncates what was not heard;
VoiceLive auto_truncate does the truncation server-side."""

from __future__ import annotations

import time

from azure.ai.voicelive.aio import connect
from azure.core.credentials import AzureKeyCredential
from rt_support import Events, realtime_server, silence, stream_audio, wav16

SESSION = {
    "input_audio_sampling_rate": 16000,
    "output_audio_format": "pcm16_16000hz",
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
}


async def _barge_in(auto_truncate: bool) -> None:
    # slow pacing keeps the reply in progress long enough to interrupt it on a loaded machine
    async with (
        realtime_server(realtime_audio_pace=1.2, realtime_audio_burst_ms=0) as (url, _),
        connect(endpoint=url, credential=AzureKeyCredential("k"), model="callwright-scenario:insurance") as conn,
    ):
        events = Events(conn)
        session = {**SESSION, "turn_detection": {**SESSION["turn_detection"], "auto_truncate": auto_truncate}}
        await conn.send({"type": "session.update", "session": session})
        await events.wait("session.updated")
        await stream_audio(conn.send, wav16("hours") + silence(800))
        first = (await events.wait("response.audio.delta"))[0]
        first_at = time.monotonic()
        item_id = first.item_id
        await stream_audio(conn.send, wav16("person") + silence(1000), speed=1.0)
        starts = await events.wait("input_audio_buffer.speech_started", 2)
        done = (await events.wait("response.done"))[0]
        assert done.response.status == "cancelled"
        assert done.response.status_details["reason"] == "turn_detected"
        cut = events.items.index(starts[1])
        received = sum(len(e.delta) for e in events.items[:cut] if e.type == "response.audio.delta") / 32
        assert events.items.index(done) > cut
        if auto_truncate:
            truncated = (await events.wait("conversation.item.truncated"))[0]
            assert truncated.item_id == item_id
            assert 0 < truncated.audio_end_ms <= received + 1
        else:
            played = (time.monotonic() - first_at) * 1000
            end_ms = int(min(played, received))
            await conn.send(
                {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": end_ms,
                }
            )
            truncated = (await events.wait("conversation.item.truncated"))[0]
            assert truncated.audio_end_ms == end_ms
        assert not events.of("error")
        # the interruption is the caller's next turn: asking for a person is answered with a transfer line
        await events.wait("response.done", 2)
        spoken = events.of("response.audio_transcript.done")[-1].transcript
        assert "connecting you" in spoken
        await events.close()


async def test_barge_in_cancels_and_client_truncates() -> None:
    await _barge_in(auto_truncate=False)


async def test_voicelive_auto_truncate() -> None:
    await _barge_in(auto_truncate=True)
