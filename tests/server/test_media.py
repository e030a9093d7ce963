"""Media messages: parse/build round trips for every kind and casing, and bad frames over a real socket."""

from __future__ import annotations

import asyncio
import base64
import json

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
    assert m.parse_inbound(m.build_dtmf("#")) == m.DtmfData("#", m.parse_inbound(m.build_dtmf("#")).timestamp)  # type: ignore[union-attr]
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
    assert "media frame skipped: not JSON" in caplog.text
    assert "binary media frame skipped" in caplog.text
    rejected = edge.state.metrics.media_frames_rejected_total
    assert rejected.labels("malformed")._value.get() == 3
    assert rejected.labels("binary")._value.get() == 1


async def test_media_socket_without_a_call_id_is_refused(edge):
    url = edge.url.replace("http://", "ws://") + "/api/v1/media/stream"
    from websockets.exceptions import ConnectionClosed

    async with connect(url, additional_headers=edge.auth()) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 1008
