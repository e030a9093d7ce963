"""Generate the committed caller test audio in tests/data/caller/ (run by hand, not in CI).

Speech comes from Debian ``flite`` (voices slt, rms, awb: far more natural than espeak, which
pocketsphinx barely understands); the noise burst and click come from numpy with a fixed seed, so
re-running the script reproduces the files.

    python scripts/make_caller_audio.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 16_000
PAD_S = 0.3
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "caller"

UTTERANCES: dict[str, tuple[str, str, str]] = {
    # file: (voice, text spoken by flite, reference transcript)
    "hours.wav": ("slt", "what are your opening hours", "what are your opening hours"),
    "office.wav": ("rms", "where is your office", "where is your office"),
    "claim.wav": ("awb", "I want to check my claim status", "i want to check my claim status"),
    "person.wav": ("slt", "I'd like to speak to a person", "i'd like to speak to a person"),
    "yes.wav": ("rms", "yes", "yes"),
    "policy.wav": (
        "slt",
        "my policy number is one two three four",
        "my policy number is one two three four",
    ),
    "uh_huh.wav": ("awb", "uh huh", "uh huh"),
    "okay.wav": ("slt", "okay", "okay"),
}


def _write(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.astype("<i2").tobytes())


def _flite(voice: str, text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "out.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
        with wave.open(str(raw), "rb") as w:
            if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
                raise SystemExit(f"flite voice {voice} did not produce 16 kHz mono s16")
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _pad(speech: np.ndarray) -> np.ndarray:
    silence = np.zeros(int(PAD_S * RATE), dtype=np.int16)
    return np.concatenate([silence, speech, silence])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    transcripts: dict[str, str] = {}
    for name, (voice, text, reference) in UTTERANCES.items():
        _write(OUT / name, _pad(_flite(voice, text)))
        transcripts[name] = reference
    rng = np.random.default_rng(4)
    # 150 ms of loud white noise: a door slam or line crackle, not speech.
    burst = (rng.standard_normal(int(0.15 * RATE)) * 6000).clip(-32767, 32767).astype(np.int16)
    _write(OUT / "noise_burst.wav", _pad(burst))
    # A 5 ms decaying impulse: a click on the line.
    n = int(0.005 * RATE)
    click = (20000 * np.exp(-np.arange(n) / 15.0) * np.where(np.arange(n) % 2, -1, 1)).astype(np.int16)
    _write(OUT / "click.wav", _pad(click))
    _write(OUT / "silence.wav", np.zeros(RATE, dtype=np.int16))
    (OUT / "transcripts.json").write_text(json.dumps(transcripts, indent=2) + "\n")
    print(f"wrote {len(transcripts) + 3} files to {OUT}")


if __name__ == "__main__":
    main()
