"""The local realtime server's own figures (reported, not asserted).

- **end of speech → first audio delta**: a client streams natural speech (tests' caller WAVs) in real
  time, 20 ms frames on a wall-clock schedule; "end of speech" is the moment the last voiced frame was
  sent, so the figure includes the server VAD's ``silence_duration_ms`` as it does against the real
  services. The same from ``speech_stopped`` is reported beside it.
- **speech start → response.done(cancelled)**: the next question is spoken over the reply as soon as its
  first audio arrives (barge-in); measured from the first voiced frame sent to ``response.done`` with
  ``status: cancelled``. Also from the server's ``speech_started``.
- **sessions sustained**: K concurrent sessions each run turns; K doubles until a turn fails, a session
  is refused, or p95 first-audio latency passes ``max_p95_s``.

Run: ``python -m callwright.bench.realtime_bench [--turns 20] [--max-sessions 16] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUESTIONS = ("hours", "office")  # both get long answers, so a barge-in lands while one is generated
FRAME_BYTES = 640  # 20 ms at 16 kHz


def _wav(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        if w.getframerate() != 16_000 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16 kHz mono")
        return w.readframes(w.getnframes())


def _questions(data_dir: Path | None) -> list[bytes]:
    """The caller recordings shipped with the tests (natural speech with known transcripts)."""
    data = data_dir or Path(__file__).resolve().parents[3] / "tests" / "data" / "caller"
    return [_wav(data / f"{q}.wav") for q in QUESTIONS]


def _voiced_span(pcm: bytes) -> tuple[int, int]:
    """Indexes of the first and last voiced 20 ms frames, by the same VAD the server runs (webrtcvad +
    Silero), so "end of speech" is where the server's VAD would put it."""
    from callwright.speech.vad import SileroGatedVad, WebRtcVad

    vad = SileroGatedVad(WebRtcVad(mode=3))
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    voiced = [i for i, f in enumerate(frames) if vad.is_speech(f)]
    return (voiced[0], voiced[-1]) if voiced else (0, len(frames) - 1)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _summary(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": _round(_pct(ms, 50)),
        "p95_ms": _round(_pct(ms, 95)),
        "max_ms": _round(max(ms, default=None)),
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


@dataclass
class SessionRun:
    """One client session: turns chained by barge-in, with timings."""

    uri: str
    questions: list[bytes]
    turns: int
    eos_to_audio: list[float] = field(default_factory=list)
    stopped_to_audio: list[float] = field(default_factory=list)
    onset_to_cancel: list[float] = field(default_factory=list)
    started_to_cancel: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: bool = False

    async def run(self) -> None:
        import websockets

        try:
            ws = await websockets.connect(self.uri, max_size=None, open_timeout=30)
        except websockets.exceptions.InvalidStatus:
            self.refused = True
            return
        async with ws:
            await ws.send(json.dumps({"type": "session.update", "session": {
                "input_audio_sampling_rate": 16000, "output_audio_format": "pcm16_16000hz",
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}))  # fmt: skip
            state: dict[str, Any] = {"first_audio": asyncio.Event(), "resp_active": False}
            reader = asyncio.create_task(self._read(ws, state))
            try:
                await self._talk(ws, state)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _talk(self, ws: Any, state: dict[str, Any]) -> None:
        clock = time.monotonic()
        frame_no = 0

        async def send_frame(frame: bytes) -> float:
            nonlocal frame_no
            frame_no += 1
            delay = clock + frame_no * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()}))
            return time.monotonic()

        silence = b"\0" * FRAME_BYTES
        for turn in range(self.turns):
            pcm = self.questions[turn % len(self.questions)]
            first, last = _voiced_span(pcm)
            state["first_audio"].clear()
            state["answer_id"] = None  # late audio of the reply being interrupted is not this turn's answer
            state["onset_sent"] = None
            for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
                sent = await send_frame(pcm[i : i + FRAME_BYTES])
                index = i // FRAME_BYTES
                if index == first:
                    state["onset_sent"] = sent
                if index == last:
                    state["eos"] = sent
            deadline = time.monotonic() + 15
            while not state["first_audio"].is_set():  # keep the line "live" with silence, like a phone
                if time.monotonic() > deadline:
                    self.errors.append(f"turn {turn}: no audio within 15 s")
                    return
                await send_frame(silence)

    async def _read(self, ws: Any, state: dict[str, Any]) -> None:
        async for raw in ws:
            event = json.loads(raw)
            kind = event.get("type")
            now = time.monotonic()
            if kind == "input_audio_buffer.speech_started":
                state["speech_started"] = now
            elif kind == "input_audio_buffer.speech_stopped":
                state["speech_stopped"] = now
                state["want_response"] = True
            elif kind == "response.created":
                state["resp_active"] = True
                if state.pop("want_response", False):  # the answer to this turn (not the reply cut off)
                    state["answer_id"] = (event.get("response") or {}).get("id")
            elif (
                kind == "response.audio.delta"
                and event.get("response_id") == state.get("answer_id")
                and not state["first_audio"].is_set()
            ):
                if state.get("eos") is not None:
                    self.eos_to_audio.append(now - state["eos"])
                if state.get("speech_stopped") is not None:
                    self.stopped_to_audio.append(now - state["speech_stopped"])
                state["eos"] = state["speech_stopped"] = None
                state["first_audio"].set()
            elif kind == "response.done":
                response = event.get("response") or {}
                if response.get("status") == "cancelled":
                    if state.get("onset_sent") is not None:
                        self.onset_to_cancel.append(now - state["onset_sent"])
                    if state.get("speech_started") is not None:
                        self.started_to_cancel.append(now - state["speech_started"])
                state["resp_active"] = False
            elif kind == "error":
                self.errors.append(str(event.get("error")))


async def _level(uri: str, questions: list[bytes], sessions: int, turns: int) -> list[SessionRun]:
    runs = [SessionRun(uri, questions[i % 2 :] + questions[: i % 2], turns) for i in range(sessions)]
    await asyncio.gather(*(r.run() for r in runs))
    return runs


async def run_realtime_bench(
    *, turns: int = 21, max_sessions: int = 16, max_p95_s: float = 1.5, data_dir: Path | None = None
) -> dict[str, Any]:
    from callwright.config import load_settings
    from callwright.realtime import running_realtime_server

    questions = await asyncio.to_thread(_questions, data_dir)
    settings = load_settings(
        stt_pool_size=max_sessions + 2, tts_pool_size=max_sessions + 2, realtime_max_sessions=max_sessions + 2
    )
    result: dict[str, Any] = {"engines": {"stt": settings.stt_engine, "tts": settings.tts_engine,
                                          "vad": settings.vad_engine}, "silence_duration_ms": 500,
                              "audio_pace": settings.realtime_audio_pace}  # fmt: skip
    async with running_realtime_server(settings) as (url, _app):
        uri = url.replace("http://", "ws://") + "/voice-live/realtime?model=callwright-scenario:insurance"
        (single,) = await _level(uri, questions, 1, turns)
        result["latency"] = {
            "end_of_speech_to_first_audio": _summary(single.eos_to_audio),
            "speech_stopped_to_first_audio": _summary(single.stopped_to_audio),
            "speech_start_to_cancelled_done": _summary(single.onset_to_cancel),
            "speech_started_to_cancelled_done": _summary(single.started_to_cancel),
            "errors": single.errors[:5],
        }
        sustained, levels = 0, []
        k = 1
        while k <= max_sessions:
            runs = await _level(uri, questions, k, 3)
            latencies = [v for r in runs for v in r.eos_to_audio]
            p95 = _pct(latencies, 95)
            failed = any(r.refused or r.errors for r in runs) or len(latencies) < 3 * k
            levels.append({"sessions": k, "turns": len(latencies), "p95_ms": _round(p95 * 1000 if p95 else None),
                           "failed": failed})  # fmt: skip
            if failed or p95 is None or p95 > max_p95_s:
                break
            sustained = k
            k *= 2
        result["sessions"] = {"sustained": sustained, "criterion": f"every turn answered, p95 ≤ {max_p95_s} s",
                              "levels": levels}  # fmt: skip
    return result


async def run_for_size(size: str) -> dict[str, Any]:
    """For ``callwright bench``: ``full`` (21 turns, up to 16 sessions), ``quick`` or ``tiny``."""
    turns, sessions = {"full": (21, 16), "quick": (6, 4), "tiny": (2, 1)}.get(size, (6, 4))
    return await run_realtime_bench(turns=turns, max_sessions=sessions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=21)
    parser.add_argument("--max-sessions", type=int, default=16)
    parser.add_argument("--max-p95", type=float, default=1.5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run_realtime_bench(turns=args.turns, max_sessions=args.max_sessions, max_p95_s=args.max_p95))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    lat = result["latency"]
    for name, summary in lat.items():
        if isinstance(summary, dict):
            print(f"{name:36s} n={summary['n']:3d}  p50 {summary['p50_ms']} ms  p95 {summary['p95_ms']} ms")
    print(f"sessions sustained: {result['sessions']['sustained']}  ({result['sessions']['criterion']})")
    for level in result["sessions"]["levels"]:
        print(f"  {level}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
