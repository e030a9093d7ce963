"""Offline micro-benchmark of the final-recognition engines: ``python -m callwright.bench.stt_engines``.

Per configuration (pocketsphinx with the scenario's phrase-list LM — the light default — and with its
general LM; whisper tiny.en beam 1 / beam 5, with and without domain biasing) it reports WER, latency
per utterance (p50/p95), CPU seconds per utterance, the RSS the loaded engine added, and optionally the
same with the other core kept busy (``--busy``).

WER normalisation: lowercase; digits spelled out one word per digit ("4567" → "four five six seven");
apostrophes kept inside words ("i'd"), every other punctuation mark dropped; hyphens split words.

Corpus: ``--corpus DIR`` reads WAVs (16 kHz mono s16le) and a ``*.jsonl`` with one object per utterance
naming the file (``wav``/``file``/``audio``/``path``) and its words (``text``/``transcript``).
Without it, ``HELD_OUT`` is synthesised with Piper's natural voice into a temp dir (needs piper-tts
and a ``*-piper-voice`` package).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callwright.bench.stats import edit_distance, percentile

# Realistic caller requests, none of them the scenario's own example phrases verbatim (held out).
# The last six are out of the scenario's domain: recognition must not depend on the phrase list.
HELD_OUT: tuple[str, ...] = (
    "Hi, I'm calling about my auto insurance policy.",
    "Can you tell me what time your office opens tomorrow?",
    "I was in a car accident last week and I need to file a claim.",
    "My policy number is four five six seven.",
    "Hello, my name is Alice Brown and I'd like to check on my claim.",
    "Could I please speak with a real person?",
    "Where exactly is your office located?",
    "What is the status of the claim I filed on Monday?",
    "I'd like to know how much I owe this month.",
    "Are you open on Saturday mornings?",
    "No, that's everything, thank you very much.",
    "Can you transfer me to someone in billing?",
    "When is my next payment due?",
    "I think there is a mistake on my last bill.",
    "Yes, that's right.",
    "Can you repeat that please?",
    "My claim number is two eight one nine.",
    "I need to update the address on my account.",
    "What happens if I get into an accident?",
    "Can you help me check my account balance?",
    "I just moved to Chicago and I need a new quote.",
    "The weather has been terrible all week.",
    "My daughter is starting college in September.",
    "Please send the documents to my email address.",
    "The package arrived broken and nobody answered the phone.",
    "I have a question about my dentist appointment on Friday.",
)
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|\d")


def normalize(text: str) -> list[str]:
    """The WER normalisation stated in the module docstring."""
    words: list[str] = []
    for token in _TOKEN.findall(text.lower().replace("-", " ")):
        words.append(DIGIT_WORDS[int(token)] if token.isdigit() else token)
    return words


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER: total word edits over total reference words."""
    errors = sum(edit_distance(normalize(r), normalize(h)) for r, h in zip(refs, hyps, strict=True))
    words = sum(len(normalize(r)) for r in refs)
    return errors / max(1, words)


# --- corpus ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Utterance:
    name: str
    text: str
    pcm: bytes  # 16 kHz s16le mono
    group: str = ""  # WER is also reported per group (voice/split, or the name's prefix)


def read_pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16_000, 1, 2):
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit WAV")
        return w.readframes(w.getnframes())


def load_corpus(directory: Path) -> list[Utterance]:
    out: list[Utterance] = []
    for manifest in sorted(directory.glob("*.jsonl")):
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            name = next((row[k] for k in ("wav", "file", "audio", "path") if k in row), None)
            text = next((row[k] for k in ("text", "transcript") if k in row), None)
            if name is None or text is None:
                raise ValueError(f"{manifest}: each line needs a wav/file and a text/transcript field: {line[:80]}")
            wav = Path(name) if Path(name).is_absolute() else directory / name
            group = "/".join(str(row[k]) for k in ("voice", "split") if row.get(k)) or wav.stem.split("_", 1)[0]
            out.append(Utterance(wav.stem, str(text), read_pcm(wav), group))
    if not out:
        raise ValueError(f"{directory}: no *.jsonl manifest with utterances")
    return out


def synthesize(
    texts: Sequence[str], *, length_scale: float = 1.0, lead_s: float = 0.3, tail_s: float = 0.3
) -> Iterator[bytes]:
    """Piper's natural voice at 16 kHz with a little silence around it (as the VAD would cut it)."""
    from piper import PiperVoice, SynthesisConfig

    from callwright.speech.resample import StreamResampler
    from callwright.speech.tts_piper import find_piper_voice

    voice = PiperVoice.load(str(find_piper_voice(None)))
    rate = int(voice.config.sample_rate)
    config = SynthesisConfig(length_scale=length_scale)
    for text in texts:
        raw = b"".join(c.audio_int16_bytes for c in voice.synthesize(text, syn_config=config))
        resampler = StreamResampler(rate, 16_000)
        pcm = resampler.process(raw) + resampler.flush()
        yield bytes(int(lead_s * 32_000)) + pcm + bytes(int(tail_s * 32_000))


def phone_band(pcm: bytes) -> bytes:
    """What a PSTN caller sounds like after the network: 8 kHz, G.711 µ-law (8-bit companded), back to 16 kHz."""
    import numpy as np
    import soxr

    x = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0, 16_000, 8_000)
    x = np.clip(x, -1.0, 1.0)
    mu = 255.0
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round(companded * 127.0) / 127.0
    y = np.sign(quantised) * ((1.0 + mu) ** np.abs(quantised) - 1.0) / mu
    y = soxr.resample(y.astype(np.float32), 8_000, 16_000)
    return (np.clip(y, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def synthesize_corpus(texts: Sequence[str] = HELD_OUT) -> list[Utterance]:
    """Each sentence twice: at Piper's normal rate on a clean 16 kHz line, and ~10 % faster through a
    phone-band (8 kHz µ-law) line."""
    clean = [
        Utterance(f"clean_{i:02d}", t, pcm) for i, (t, pcm) in enumerate(zip(texts, synthesize(texts), strict=True))
    ]
    fast = synthesize(texts, length_scale=0.9)
    phone = [
        Utterance(f"phone_{i:02d}", t, phone_band(pcm)) for i, (t, pcm) in enumerate(zip(texts, fast, strict=True))
    ]
    return clean + phone + espeak_corpus(texts)


def espeak_corpus(texts: Sequence[str]) -> list[Utterance]:
    """The same sentences in espeak-ng's robotic voice: not a natural caller, but hard audio on which
    domain biasing has something to fix (on the natural voice whisper is already near-perfect)."""
    from callwright.speech.tts_espeak import make_espeak

    synth = make_espeak("en-us")
    out = []
    try:
        for i, text in enumerate(texts):
            chunks: list[bytes] = []

            def sink(chunk: bytes, into: list[bytes] = chunks) -> bool:
                into.append(chunk)
                return True  # False would cancel the synthesis

            synth.synthesize(text, sink)
            out.append(Utterance(f"espeak_{i:02d}", text, bytes(9600) + b"".join(chunks) + bytes(9600)))
    finally:
        synth.close()
    return out


# --- engines --------------------------------------------------------------------------------------
def scenario_phrases(scenario_name: str = "insurance") -> list[str]:
    """What the scenario's first agent expects (its intents' examples), as the server would pass them."""
    from callwright.agents.scenario import load_scenario_dir
    from callwright.config import PACKAGE_DIR

    scenario = load_scenario_dir(PACKAGE_DIR / "scenarios" / scenario_name)
    phrases = [e for intent in scenario.intents_for(scenario.start_agent) for e in intent.examples]
    phrases.extend(DIGIT_WORDS)
    phrases.extend(("yes", "no", "uh huh", "okay", "mm hmm", "yeah", "right", "i see", "got it"))
    return list(dict.fromkeys(phrases))


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Config:
    name: str
    build: Callable[[], Callable[[bytes], str]]  # returns a transcribe(pcm) -> text
    extra: dict[str, Any] = field(default_factory=dict)


def pocketsphinx_config(name: str, phrases: Sequence[str], lm: str = "domain") -> Config:
    def build() -> Callable[[bytes], str]:
        from callwright.speech.stt_pocketsphinx import Lexicon, PocketsphinxRecognizer

        recognizer = PocketsphinxRecognizer(Lexicon(), lm=lm)
        recognizer.configure(phrases)

        def run(pcm: bytes) -> str:
            recognizer.start_utterance()
            for i in range(0, len(pcm) - 639, 640):
                recognizer.push(pcm[i : i + 640])
            final = recognizer.end_utterance()
            return final.text if final else ""

        return run

    return Config(name, build)


def whisper_config(name: str, phrases: Sequence[str], **options: Any) -> Config:
    def build() -> Callable[[bytes], str]:
        from callwright.speech.stt_whisper import WhisperOptions, WhisperTranscriber

        transcriber = WhisperTranscriber(WhisperOptions(**options))
        return lambda pcm: transcriber.transcribe(pcm, phrases).text

    return Config(name, build, options)


def default_configs(phrases: Sequence[str]) -> list[Config]:
    return [
        pocketsphinx_config("pocketsphinx domain LM (default today)", phrases),
        pocketsphinx_config("pocketsphinx general LM", phrases, lm="general"),
        whisper_config("whisper beam1 bias", phrases, beam_size=1, bias=True),
        whisper_config("whisper beam1 no-bias", phrases, beam_size=1, bias=False),
        whisper_config("whisper beam5 bias", phrases, beam_size=5, bias=True),
        whisper_config("whisper beam5 no-bias", phrases, beam_size=5, bias=False),
        whisper_config("whisper beam1 bias 30s-window", phrases, beam_size=1, bias=True, short_window=False),
    ]


def run_config(config: Config, corpus: Sequence[Utterance]) -> dict[str, Any]:
    """Measured in this process: build (RSS before/after), one untimed pass, then the timed pass."""
    rss0 = rss_kb()
    t0 = time.perf_counter()
    run = config.build()
    load_s = time.perf_counter() - t0
    rss1 = rss_kb()
    run(corpus[0].pcm)  # caches warm for every engine alike
    hyps: list[str] = []
    latencies: list[float] = []
    cpu: list[float] = []
    for utt in corpus:
        c0, w0 = cpu_seconds(), time.perf_counter()
        hyps.append(run(utt.pcm))
        latencies.append((time.perf_counter() - w0) * 1000)
        cpu.append(cpu_seconds() - c0)
    refs = [u.text for u in corpus]
    subsets: dict[str, list[int]] = {}
    for i, utt in enumerate(corpus):
        subsets.setdefault(utt.group or utt.name.split("_", 1)[0], []).append(i)
    return {
        "config": config.name,
        "wer": round(100 * wer(refs, hyps), 1),
        "wer_by_set": {
            name: round(100 * wer([refs[i] for i in idx], [hyps[i] for i in idx]), 1) for name, idx in subsets.items()
        },
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "cpu_s_per_utt": round(sum(cpu) / len(cpu), 3),
        "load_s": round(load_s, 2),
        "rss_mb": round((rss1 - rss0) / 1024, 1),
        "errors": [{"ref": r, "hyp": h} for r, h in zip(refs, hyps, strict=True) if normalize(r) != normalize(h)],
    }


CONCURRENCY_LAYOUTS = ((1, 2), (2, 1), (1, 1), (2, 2))


def run_concurrency(corpus: Sequence[Utterance], decodes: int, threads: int, callers: int = 4) -> dict[str, Any]:
    """``callers`` threads transcribing at once (calls whose turns end together) against one transcriber
    with ``decodes`` x ``threads``; then one caller alone on 2 s / 5 s / 10 s utterances."""
    import concurrent.futures

    from callwright.speech.stt_whisper import WhisperOptions, WhisperTranscriber

    phrases = scenario_phrases()
    transcriber = WhisperTranscriber(WhisperOptions(decodes=decodes, threads=threads))
    latencies: list[float] = []

    def one(utt: Utterance) -> None:
        t0 = time.perf_counter()
        transcriber.transcribe(utt.pcm, phrases)
        latencies.append((time.perf_counter() - t0) * 1000)

    c0, w0 = cpu_seconds(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        list(pool.map(one, corpus))
    wall = time.perf_counter() - w0
    cpu = cpu_seconds() - c0
    by_length: dict[str, Any] = {}
    speech = [u.pcm for u in corpus if u.name.startswith("clean")] or [u.pcm for u in corpus]
    for seconds in (2, 5, 10):
        pcm = b""
        for chunk in speech:  # sentences back to back up to the length wanted
            pcm += chunk
            if len(pcm) >= seconds * 32_000:
                break
        pcm = pcm[: seconds * 32_000]
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            transcriber.transcribe(pcm, phrases)
            runs.append((time.perf_counter() - t0) * 1000)
        by_length[f"{seconds}s"] = round(sorted(runs)[1], 1)
    transcriber.close()
    return {
        "config": f"whisper beam1 bias, {decodes} decode(s) x {threads} thread(s), {callers} callers at once",
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "throughput_utt_per_s": round(len(corpus) / wall, 2),
        "cpu_s_per_utt": round(cpu / len(corpus), 3),
        "alone_ms_by_length": by_length,
    }


def _child(config_index: int, corpus_dir: str | None, out: str) -> None:
    corpus = load_corpus(Path(corpus_dir)) if corpus_dir else synthesize_corpus()
    if config_index >= 100:  # concurrency layouts
        decodes, threads = CONCURRENCY_LAYOUTS[config_index - 100]
        result = run_concurrency(corpus, decodes, threads)
    else:
        result = run_config(default_configs(scenario_phrases())[config_index], corpus)
    Path(out).write_text(json.dumps(result), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m callwright.bench.stt_engines", description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", help="directory with WAVs and a *.jsonl manifest (default: synthesise with Piper)")
    parser.add_argument("--busy", action="store_true", help="also run each configuration with the other core busy")
    parser.add_argument("--only", default="", help="comma-separated substrings of configuration names to run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--concurrency", action="store_true", help="whisper decode layouts (decodes x threads) with 4 callers at once"
    )
    parser.add_argument("--errors", action="store_true", help="list each misrecognised utterance")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child is not None:
        _child(args.child, args.corpus, args.out)
        return 0

    corpus_dir = args.corpus
    with tempfile.TemporaryDirectory(prefix="callwright-stt-bench-") as tmp:
        if corpus_dir is None:
            # Synthesise once and hand every child the same files (each configuration runs in its own
            # process so RSS and CPU are its own).
            corpus = synthesize_corpus()
            rows = []
            for utt in corpus:
                with wave.open(str(Path(tmp, utt.name + ".wav")), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(16_000)
                    w.writeframes(utt.pcm)
                rows.append(json.dumps({"wav": utt.name + ".wav", "text": utt.text}))
            Path(tmp, "corpus.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
            corpus_dir = tmp
        n = len(load_corpus(Path(corpus_dir)))
        names = [c.name for c in default_configs(())]
        indices = list(range(len(names)))
        if args.concurrency:
            names = [f"whisper {d} decode(s) x {t} thread(s)" for d, t in CONCURRENCY_LAYOUTS]
            indices = [100 + i for i in range(len(names))]
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        results: list[dict[str, Any]] = []
        for busy in (False, True) if args.busy else (False,):
            burner = None
            if busy:
                # One spinning process keeps the other core busy, like a neighbouring call's work.
                burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for index, name in zip(indices, names, strict=True):
                    if wanted and not any(w in name for w in wanted):
                        continue
                    out = Path(tmp, f"result-{index}-{int(busy)}.json")
                    cmd = [sys.executable, "-m", "callwright.bench.stt_engines", "--child", str(index)]
                    subprocess.run([*cmd, "--corpus", corpus_dir, "--out", str(out)], check=True, timeout=1800)
                    result = json.loads(out.read_text(encoding="utf-8"))
                    result["busy"] = busy
                    results.append(result)
                    if not args.json:
                        _print_row(result, args.errors)
            finally:
                if burner is not None:
                    burner.kill()
                    burner.wait()
    if args.json:
        print(json.dumps({"utterances": n, "results": results}, indent=2))
    return 0


def _print_row(r: dict[str, Any], errors: bool) -> None:
    lat = r["latency_ms"]
    busy = " [other core busy]" if r["busy"] else ""
    if "throughput_utt_per_s" in r:
        print(
            f"{r['config']:<68} latency p50 {lat['p50']:7.1f} ms  p95 {lat['p95']:7.1f} ms  "
            f"{r['throughput_utt_per_s']:.2f} utt/s  CPU {r['cpu_s_per_utt']:.3f} s/utt  "
            f"alone by length {r['alone_ms_by_length']}{busy}",
            flush=True,
        )
        return
    by_set = " ".join(f"{k} {v:.1f}" for k, v in r["wer_by_set"].items())
    print(
        f"{r['config']:<40} WER {r['wer']:5.1f}% ({by_set})  "
        f"latency p50 {lat['p50']:7.1f} ms  p95 {lat['p95']:7.1f} ms  "
        f"CPU {r['cpu_s_per_utt']:.3f} s/utt  load {r['load_s']:.2f} s  RSS +{r['rss_mb']:.0f} MB{busy}",
        flush=True,
    )
    if errors:
        for e in r["errors"]:
            print(f"    ref: {e['ref']}\n    hyp: {e['hyp']}")


if __name__ == "__main__":
    raise SystemExit(main())
