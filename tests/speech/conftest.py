from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

CALLER_DIR = Path(__file__).resolve().parent.parent / "data" / "caller"
FRAME_BYTES = 640  # 20 ms of 16 kHz s16le


def read_wav(name: str) -> bytes:
    with wave.open(str(CALLER_DIR / name), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2), name
        return w.readframes(w.getnframes())


def frames_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


@pytest.fixture(scope="session")
def transcripts() -> dict[str, str]:
    return json.loads((CALLER_DIR / "transcripts.json").read_text())
