"""Media messages: parse/build round trips for every kind and casing, and bad frames over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from callwright.acs import media as m

PCM = bytes(range(256)) * 2 + bytes(128)  # 640 bytes = one 20 ms frame


def test_inbound_round_trips_for_every_kind():
    meta = m.parse_inbound(m.build_audio_metadata("sub-1"))
    assert meta == m.AudioMetadata("sub-1", "PCM", 16000, 1, 640)
    audio = m.parse_inbound(m.build_audio_data(PCM, silent=False, participant_raw_id="4:+15551230001"))
    assert isinstance(audio, m.AudioData)
    assert audio.pcm == PCM and audio.silent is False and audio.participant_raw_id == "4:+15551230001"
    silent = m.parse_inbound(m.build_audio_data(bytes(640), silent=True))
    assert isinstance(silent, m.AudioData) and silent.silent and silent.participant_raw_id is None
    dtmf = m.parse_inbound(m.build_dtmf("#"))  # (two builds could straddle a millisecond: parse one)
    assert isinstance(dtmf, m.DtmfData) and dtmf.tone == "#" and dtmf.timestamp
    assert isinstance(m.parse_inbound('{"kind":"TranscriptionMetadata","transcriptionMetadata":{}}'), m.IgnoredMessage)
    t = m.parse_inbound('{"kind":"TranscriptionData","transcriptionData":{"text":"hi","resultStatus":"Final"}}')
    assert isinstance(t, m.TranscriptionData) and t.text == "hi" and t.result_status == "final"


def test_documented_inbound_examples_parse():
    doc_audio = {"kind": "AudioData", "audioData": {"timestamp": "2024-11-15T19:16:12.925Z",
                 "participantRawID": "8:acs:3d20e1de", "data": base64.b64encode(PCM).decode(), "silent": False}}  # fmt: skip
    frame = m.parse_inbound(json.dumps(doc_audio))
    assert isinstance(frame, m.AudioData) and frame.participant_raw_id == "8:acs:3d20e1de"
    assert m.parse_inbound('{"kind":"DtmfData","dtmfData":{"data":"3"}}') == m.DtmfData("3")


def test_outbound_is_the_documented_pascal_case_form():
    doc = json.loads(m.build_outbound_audio(PCM))
    assert doc == {"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(PCM).decode()}, "StopAudio": None}
    assert json.loads(m.build_stop_audio()) == {"Kind": "StopAudio", "AudioData": None, "StopAudio": {}}


@pytest.mark.parametrize(
    "text",
    [
        m.build_outbound_audio(PCM),
        json.dumps({"kind": "audioData", "audioData": {"data": base64.b64encode(PCM).decode(), "isSilent": False},
                    "stopAudio": {}}),  # JS SDK
        json.dumps({"Kind": "AudioData", "AudioData": {"Data": base64.b64encode(PCM).decode(),
                    "Timestamp": "0001-01-01T00:00:00+00:00", "Participant": None, "IsSilent": False},
                    "StopAudio": None, "MarkData": None}),  # .NET SDK
        json.dumps({"KIND": "AUDIODATA", "AUDIODATA": {"DATA": base64.b64encode(PCM).decode()}}),
    ],
)  # fmt: skip
def test_outbound_audio_parses_in_every_casing(text):
    assert m.parse_outbound(text) == m.OutboundAudio(PCM)


@pytest.mark.parametrize("text", [m.build_stop_audio(), '{"kind":"stopAudio","stopAudio":{}}', '{"Kind":"StopAudio"}'])
def test_stop_audio_parses_in_every_casing(text):
    assert m.parse_outbound(text) == m.OutboundStop()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nope", "not JSON"),
        ("[1]", "JSON object"),
        ('{"audioData":{}}', "missing 'kind'"),
        ('{"kind":"AudioData","audioData":{"data":"!!!not base64"}}', "not valid base64"),
        ('{"kind":"AudioData","audioData":{"data":"AAEC"}}', "whole number of 16-bit samples"),
        ('{"kind":"Bogus","bogus":{}}', "unknown kind"),
        ('{"kind":"DtmfData","dtmfData":{"data":"x"}}', "unknown DTMF tone"),
        ('{"kind":"AudioMetadata","audioMetadata":{"sampleRate":8000}}', "unsupported audio format"),
    ],
)
def test_bad_inbound_frames_name_the_problem(text, needle):
    with pytest.raises(m.MediaFrameError, match=needle):
        m.parse_inbound(text)


async def test_bad_frames_are_skipped_and_the_socket_stays_up(tone_edge, caplog):
    edge = tone_edge
    url = edge.url.replace("http://", "ws://") + "/api/v1/media/stream"
    headers = {**edge.auth(lifetime=86400), "x-ms-call-connection-id": "media-call"}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(m.build_audio_metadata("sub"))
        greeting = json.loads(await ws.recv())
        assert greeting["Kind"] == "AudioData"
        for bad in ("garbage", '{"kind":"AudioData","audioData":{"data":"%%%"}}', '{"kind":"Nope"}', b"\x00\x01"):
            await ws.send(bad)
        for _ in range(5):
            await ws.send(m.build_audio_data(PCM, silent=False))
        await ws.send(m.build_audio_data(bytes(640), silent=True))
        await ws.send(m.build_dtmf("5"))
        # The DTMF tone is answered with audio: the socket survived every bad frame.
        deadline = asyncio.get_running_loop().time() + 5
        handler = None
        while asyncio.get_running_loop().time() < deadline:
            call = edge.state.calls.get("media-call")
            handler = call.media_handler if call else None
            if handler is not None and handler.dtmf == ["5"]:
                break
            await asyncio.sleep(0.02)
        assert handler is not None and handler.dtmf == ["5"]
        assert handler.frames == 6 and handler.silent_frames == 1
        assert bytes(handler.caller_audio[:640]) == PCM
    assert "media frame skipped (not_json): not JSON" in caplog.text
    assert "media frame skipped (binary)" in caplog.text
    rejected = edge.state.metrics.media_frames_rejected_total
    # Each skipped frame is counted under a reason from the fixed set.
    assert rejected.labels("not_json")._value.get() == 1
    assert rejected.labels("bad_audio")._value.get() == 1
    assert rejected.labels("unknown_kind")._value.get() == 1
    assert rejected.labels("binary")._value.get() == 1


async def test_media_socket_without_a_call_id_is_refused(edge):
    url = edge.url.replace("http://", "ws://") + "/api/v1/media/stream"
    from websockets.exceptions import ConnectionClosed

    async with connect(url, additional_headers=edge.auth()) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008


def _ws_url(edge) -> str:
    return edge.url.replace("http://", "ws://") + "/api/v1/media/stream"


async def _handler(edge, call_id: str, ready, timeout: float = 5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        call = edge.state.calls.get(call_id)
        handler = call.media_handler if call else None
        if handler is not None and ready(handler):
            return handler
        await asyncio.sleep(0.02)
    raise AssertionError(f"handler for {call_id} never became ready")


async def test_any_frame_size_reaches_the_handler_as_20ms_frames(tone_edge):
    headers = {**tone_edge.auth(lifetime=86400), "x-ms-call-connection-id": "reframe-call"}
    stream = bytes(range(256)) * 50  # 12,800 bytes = 20 frames of 640
    async with connect(_ws_url(tone_edge), additional_headers=headers) as ws:
        await ws.send(m.build_audio_metadata("sub"))
        sizes = [320, 642, 960, 1280, 3200, 0, 2, 6398]
        i = 0
        for n in sizes:
            await ws.send(m.build_audio_data(stream[i : i + n], silent=False))
            i += n
        handler = await _handler(tone_edge, "reframe-call", lambda h: h.frames >= 20)
        assert handler.frames == 20
        assert bytes(handler.caller_audio) == stream  # same bytes, same order, cut at 640
    rejected = tone_edge.state.metrics.media_frames_rejected_total
    assert rejected.labels("empty")._value.get() == 1


async def test_a_24k_stream_is_resampled_both_ways(tone_edge):
    from callwright.voice.tone import tone_pcm

    headers = {**tone_edge.auth(lifetime=86400), "x-ms-call-connection-id": "hd-call"}
    async with connect(_ws_url(tone_edge), additional_headers=headers) as ws:
        await ws.send(m.build_audio_metadata("sub", 24_000))
        # Caller: 1 s of 24 kHz 440 Hz in 960-byte frames → 16 kHz 20 ms frames.
        caller = tone_pcm(440, 1000, 24_000)
        for i in range(0, len(caller), 960):
            await ws.send(m.build_audio_data(caller[i : i + 960], silent=False))
        # Agent: the 200 ms greeting tone, generated at 16 kHz, arrives at 24 kHz (acs-protocol.md §4.3).
        heard = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(heard) < 8500 and loop.time() < deadline:
            msg = m.parse_outbound(await asyncio.wait_for(ws.recv(), 5))
            if isinstance(msg, m.OutboundAudio):
                heard += msg.pcm
        handler = await _handler(tone_edge, "hd-call", lambda h: h.frames >= 45)
    # 200 ms at 24 kHz is 9,600 bytes; soxr holds back ~16 ms for its filter (sent with the next audio).
    assert 8500 <= len(heard) <= 9600
    out = np.frombuffer(bytes(heard), dtype="<i2").astype(np.float64)
    assert abs(np.argmax(np.abs(np.fft.rfft(out))) * 24_000 / out.size - 440) < 10
    got = np.frombuffer(bytes(handler.caller_audio), dtype="<i2").astype(np.float64)
    assert len(handler.caller_audio) % 640 == 0 and abs(len(got) - 16_000) <= 640
    assert abs(np.argmax(np.abs(np.fft.rfft(got))) * 16_000 / got.size - 440) < 5


async def test_a_socket_that_never_starts_or_goes_idle_is_closed():
    from websockets.exceptions import ConnectionClosed

    from .conftest import edge_server, use_tone_handler

    async with edge_server(
        configure_media=use_tone_handler, media_start_timeout_seconds=0.5, media_idle_timeout_seconds=0.6
    ) as edge:
        # Only garbage: no AudioMetadata or AudioData within the start timeout.
        headers = {**edge.auth(lifetime=86400), "x-ms-call-connection-id": "silent-call"}
        async with connect(_ws_url(edge), additional_headers=headers) as ws:
            for _ in range(3):
                await ws.send("garbage")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 1008
        # Started, then nothing at all.
        headers = {**edge.auth(lifetime=86400), "x-ms-call-connection-id": "idle-call"}
        async with connect(_ws_url(edge), additional_headers=headers) as ws:
            await ws.send(m.build_audio_metadata("sub"))
            await ws.send(m.build_audio_data(PCM, silent=False))
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # the greeting tone, then the close
                    await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 1001
        outcomes = edge.state.metrics.media_connections_total
        assert outcomes.labels("closed_no_start")._value.get() == 1
        assert outcomes.labels("closed_idle")._value.get() == 1


@pytest.mark.parametrize("call_id", ["a" * 129, "bad id", "x\u0000y", "\u00e9t\u00e9", "<script>"])
async def test_an_invalid_call_id_is_refused_and_never_logged(edge, caplog, call_id):
    from urllib.parse import quote

    from websockets.exceptions import ConnectionClosed

    url = _ws_url(edge) + "?callConnectionId=" + quote(call_id)
    async with connect(url, additional_headers=edge.auth()) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008
    assert call_id not in caplog.text
    assert "call connection id is not a valid id" in caplog.text
