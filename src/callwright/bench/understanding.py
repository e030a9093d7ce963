"""``callwright bench --understanding``: does the server understand natural-voice callers, and wait for them?

Every utterance of the natural-voice corpus (``tests/data/callers_natural``, see
:mod:`callwright.bench.corpus`) is one emulated inbound call to a real server child process
(``split_stack``): the phone waits for the greeting, says the WAV as one caller turn, listens to the
whole answer and hangs up; two calls run at a time (``--concurrency``). Per STT configuration and
end-of-turn setting this reports:

* **WER** of the server's recognised caller turns (its call record, ``GET /api/v1/calls/{id}``; all of a
  call's user turns joined) against the corpus transcript. Normalisation, applied to both sides: lower
  case; "4,567" → "4567"; digits spelled out one word per digit ("4567" → "four five six seven"); "'" and
  other punctuation removed ("I'd" → "id", "1-2-3-4" → "one two three four"); fillers "um uh er erm ah
  hmm mm" dropped; "ok" → "okay". Corpus WER = word errors / reference words.
* **intent accuracy**: the agent's replies in the call record contain the utterance's expected phrase
  (an out-of-scope request's right answer is one of the agent's reprompts, never a hang-up or a
  transfer); wrong hang-ups and transfers are counted on their own. ``first_reply_accuracy`` is the
  stricter share whose *first* answer was right (a caller cut off mid-sentence often hears a wrong one).
* **cut-off rate**: the agent's audio reached the caller's ear while the caller was still inside the
  utterance (between its first and last voiced frame, i.e. during a mid-utterance pause), from the phone's
  wire timestamps; given over the utterances with a pause and over all.
* **response latency** p50/p95: end of the caller's speech → first agent audio at the ear (turns that
  were cut off are left out: their "latency" is negative or belongs to a later reply).

The scenario is the package's insurance scenario with the greeting shortened to one sentence (copied to
a temporary ``SCENARIOS_DIR``), only so that each call is short. Run standalone with
``python -m callwright.bench.understanding --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from callwright.bench.corpus import CORPUS_DIR, REPLIES, Utterance, load_corpus
from callwright.bench.stats import edit_distance, p50_p95

Note = Callable[[str], None]

# --- WER ------------------------------------------------------------------------------------------
FILLERS = frozenset(["um", "uh", "er", "erm", "ah", "hmm", "hm", "mm", "umm", "uhm"])
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_SPELLING = {"ok": "okay", "alright": "all right", "goodbye": "good bye"}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DIGIT = re.compile(r"\d")
_PUNCT = re.compile(r"[^a-z0-9 ]+")


def wer_words(text: str) -> list[str]:
    """The normalised words WER is computed on (the rules are in the module docstring)."""
    t = text.lower().replace("’", "'")
    t = _THOUSANDS.sub("", t)
    t = _DIGIT.sub(lambda m: f" {_DIGIT_WORDS[int(m.group())]} ", t)
    t = t.replace("'", "")
    t = _PUNCT.sub(" ", t)
    words: list[str] = []
    for w in t.split():
        if w in FILLERS:
            continue
        words.extend(_SPELLING.get(w, w).split())
    return words


def wer(ref: str, hyp: str) -> tuple[int, int]:
    """(word errors, reference words) after normalisation."""
    r, h = wer_words(ref), wer_words(hyp)
    return edit_distance(r, h), len(r)


def reply_matches(expected: str, replies: str) -> bool:
    """Whether the agent's replies contain the expected phrase, or one of its ``|``-separated
    alternatives (case and apostrophe style ignored)."""
    norm = " ".join(replies.lower().replace("’", "'").split())
    return any(alt.strip().lower() in norm for alt in expected.split("|") if alt.strip())


# --- configurations ---------------------------------------------------------------------------------
STT_CONFIGS: dict[str, dict[str, str]] = {
    "pocketsphinx": {"STT_ENGINE": "pocketsphinx"},  # phrase-list LM for every utterance (before)
    "whisper": {"STT_ENGINE": "whisper"},  # faster-whisper tiny.en finals, pocketsphinx partials
}
TURN_CONFIGS: dict[str, dict[str, str]] = {
    "silence-300": {"TURN_DETECTOR": "silence", "ENDPOINT_SILENCE_MS": "300"},  # before
    "silence-500": {"TURN_DETECTOR": "silence", "ENDPOINT_SILENCE_MS": "500"},
    "silence-800": {"TURN_DETECTOR": "silence", "ENDPOINT_SILENCE_MS": "800"},
    "silence-1200": {"TURN_DETECTOR": "silence", "ENDPOINT_SILENCE_MS": "1200"},
    "words": {"TURN_DETECTOR": "words"},
    "smart": {"TURN_DETECTOR": "smart"},
}
SHORT_GREETING = "Contoso Insurance, how can I help?"
CALLER_NUMBER = "+15559990013"  # not in the fixture: no profile, the greeting has no name


def whisper_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("faster_whisper", "callwright.speech.stt_whisper"))


@dataclass(frozen=True, slots=True)
class RunSpec:
    stt: str
    turn: str
    utterances: tuple[Utterance, ...]
    curve: bool = False  # a point of the cut-off vs latency curve (all points share one sample)

    @property
    def name(self) -> str:
        return f"{self.stt}/{self.turn}{' (curve)' if self.curve else ''}"

    @property
    def env(self) -> dict[str, str]:
        return {**STT_CONFIGS[self.stt], **TURN_CONFIGS[self.turn]}


@dataclass
class UnderstandingPlan:
    runs: list[RunSpec] = field(default_factory=list)
    concurrency: int = 2
    corpus_dir: Path = CORPUS_DIR
    server_src: Path | None = None

    @classmethod
    def build(cls, *, quick: bool, stts: Sequence[str] | None = None, turns: Sequence[str] | None = None,
              curve: bool = True, main_runs: bool = True, split: str = "all", concurrency: int = 2,
              corpus_dir: Path = CORPUS_DIR) -> UnderstandingPlan:  # fmt: skip
        """Main runs: each STT with today's turn rule (silence 300 ms) and, for whisper, the smart detector,
        on the corpus (``quick``: a stratified third). Curve: the last STT over every turn setting, all on
        one sample — the utterances with a pause plus half as many without (``quick``: half of those)."""
        corpus = [u for u in load_corpus(corpus_dir) if split == "all" or u.split == split]
        if stts is None:
            stts = ["pocketsphinx", *(["whisper"] if whisper_available() else [])]
        main = _subset(corpus, 3) if quick else corpus
        runs: list[RunSpec] = []
        for stt in stts if main_runs else ():
            for turn in turns or (["silence-300", "smart"] if stt == "whisper" else ["silence-300"]):
                runs.append(RunSpec(stt, turn, tuple(main)))
        if curve and stts:
            paused = [u for u in corpus if u.has_pause]
            plain = [u for u in corpus if not u.has_pause][: len(paused) // 2]
            sample = paused + plain
            sample = _subset(sample, 2) if quick else sample
            for turn in TURN_CONFIGS:
                runs.append(RunSpec(stts[-1], turn, tuple(sample), curve=True))
        return cls(runs=runs, concurrency=concurrency, corpus_dir=corpus_dir)


def _subset(items: Sequence[Utterance], every: int) -> list[Utterance]:
    """Every ``every``-th utterance of each intent (keeps intents, voices and pauses represented)."""
    by_intent: dict[str, list[Utterance]] = {}
    for u in items:
        by_intent.setdefault(u.intent, []).append(u)
    return [u for group in by_intent.values() for u in group[::every]]


# --- one call ----------------------------------------------------------------------------------------
def phone_script(u: Utterance, corpus_dir: Path) -> str:
    doc = {
        "name": f"understanding {u.id}",
        "direction": "inbound",
        "from": CALLER_NUMBER,
        "to": "+15550001000",
        "timeout_s": 40,
        "transcribe": False,  # the agent's words come from the server's record, not from decoding audio
        "steps": [
            {"wait": {"agent_done": 700, "timeout_s": 20}},
            {"say": {"file": str((corpus_dir / u.file).resolve()), "text": u.text}},
            # the whole answer (its key phrase may come late: "... key in your policy number"), then hang up
            {"wait": {"agent_done": 1000, "timeout_s": 25}},
            "hangup",
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def score_call(u: Utterance, report: dict[str, Any], view: dict[str, Any] | None) -> dict[str, Any]:
    """One utterance's figures from the phone's report and the server's call record."""
    history = list((view or {}).get("transcript") or [])
    heard = " ".join(str(e.get("content", "")) for e in history if e.get("role") == "user").strip()
    first_user = next((i for i, e in enumerate(history) if e.get("role") == "user"), None)
    replies = " ".join(
        str(e.get("content", ""))
        for e in history[(first_user if first_user is not None else len(history)) :]
        if e.get("role") == "assistant"
    )
    first_reply = next(
        (str(e.get("content", "")) for e in history[(first_user or 0) :] if e.get("role") == "assistant"), ""
    )
    errors, ref_words = wer(u.text, heard)
    correct = bool(heard) and reply_matches(u.reply, replies)
    hung_up = reply_matches(REPLIES["goodbye"], replies)
    transferred = reply_matches(REPLIES["human"], replies)
    caller = next((t for t in report.get("transcript") or [] if t.get("speaker") == "caller"), None)
    cut_off = False
    if caller is not None:
        start, end = float(caller["start_ms"]), float(caller["end_ms"]) - 20.0
        cut_off = any(
            t.get("speaker") == "agent" and start < float(t["start_ms"]) < end for t in report.get("transcript") or []
        )
    turn = next((t for t in report.get("turns") or [] if t.get("kind") != "dtmf"), None)
    latency = turn.get("response_latency_ms") if turn else None
    return {
        "id": u.id,
        "split": u.split,
        "voice": u.voice,
        "intent": u.intent,
        "pause_ms": u.pause_ms,
        "heard": heard,
        "replies": replies,
        "wer_errors": errors,
        "ref_words": ref_words,
        "correct": correct,
        # stricter: the very first answer was right (a cut-off caller often gets a wrong one first)
        "first_correct": bool(heard) and first_user is not None and reply_matches(u.reply, first_reply),
        "wrong_hangup": hung_up and u.intent != "goodbye",
        "wrong_transfer": transferred and u.intent != "human",
        "cut_off": cut_off,
        "latency_ms": None if cut_off else latency,
        "call_ok": bool(report.get("ok")) or bool(history),
        "error": report.get("error"),
    }


def short_greeting_scenarios(base: Path, into: Path) -> Path:
    """A copy of the scenarios folder whose insurance front desk greets in one short sentence."""
    target = into / "scenarios"
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    path = target / "insurance" / "agents" / "front_desk.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["greeting"] = SHORT_GREETING
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return target


def _server_env(spec: RunSpec, tmp: Path, server_src: Path | None, extra_env: dict[str, str] | None) -> dict[str, str]:
    """The child's settings: the scenario copy with the short greeting, the run's STT and turn settings."""
    import callwright.scenarios

    base = Path(str(callwright.scenarios.__file__)).parent
    if server_src is not None:
        base = server_src / "callwright" / "scenarios"
        if not base.is_dir():
            raise ValueError(f"--server-src {server_src}: no callwright/scenarios folder there")
    scenarios = short_greeting_scenarios(base, tmp)
    env = {"SCENARIOS_DIR": str(scenarios), "SCENARIO": "insurance", **spec.env, **(extra_env or {})}
    if server_src is not None:
        env["PYTHONPATH"] = str(server_src.resolve())
    return env


async def run_one(
    spec: RunSpec,
    corpus_dir: Path,
    concurrency: int,
    note: Note,
    extra_env: dict[str, str] | None = None,
    server_src: Path | None = None,
) -> dict[str, Any]:
    """One configuration over its utterances: a fresh server child, calls ``concurrency`` at a time.

    ``server_src``: a folder holding another version of the ``callwright`` package (e.g. the last commit:
    ``git archive HEAD src | tar -x -C DIR``, then ``DIR/src``) that the server child runs instead,
    scenarios included — how the "before" figures are measured on the same corpus."""
    from callwright.bench.stack import split_stack

    with tempfile.TemporaryDirectory(prefix="callwright-understanding-") as tmp:
        env = await asyncio.to_thread(_server_env, spec, Path(tmp), server_src, extra_env)
        started = time.monotonic()
        async with split_stack(env, log_dir=Path(tmp) / "logs") as stack:
            gate = asyncio.Semaphore(max(1, concurrency))
            done = 0

            async def one(u: Utterance) -> dict[str, Any]:
                nonlocal done
                async with gate:
                    report = await stack.call(phone_script(u, corpus_dir))
                    view = None
                    if report.get("call_id"):
                        with contextlib.suppress(Exception):
                            view = await stack.server_call(str(report["call_id"]))
                    item = score_call(u, report, view)
                done += 1
                if done % 10 == 0 or done == len(spec.utterances):
                    note(f"{spec.name}: {done}/{len(spec.utterances)} calls")
                return item

            items = list(await asyncio.gather(*(one(u) for u in spec.utterances)))
            log_tail = stack.log_tail(5) if not any(i["heard"] for i in items) else ""
        return {"stt": spec.stt, "turn": spec.turn, "curve": spec.curve, "env": spec.env, "concurrency": concurrency,
                **summarize(items), "seconds": round(time.monotonic() - started, 1),
                **({"server_log_tail": log_tail} if log_tail else {}), "items": items}  # fmt: skip


# --- figures -------------------------------------------------------------------------------------------
def _rate(items: Iterable[dict[str, Any]], key: str) -> float | None:
    xs = list(items)
    return round(sum(bool(i[key]) for i in xs) / len(xs), 3) if xs else None


def _wer(items: Iterable[dict[str, Any]]) -> float | None:
    xs = list(items)
    ref = sum(i["ref_words"] for i in xs)
    return round(sum(i["wer_errors"] for i in xs) / ref, 3) if ref else None


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    def part(pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        return [i for i in items if pred(i)]

    groups = {
        "all": items,
        "dev": part(lambda i: i["split"] == "dev"),
        "heldout": part(lambda i: i["split"] == "heldout"),
        "joe": part(lambda i: i["voice"] == "joe"),
        "slt": part(lambda i: i["voice"] == "slt"),
    }
    paused = part(lambda i: i["pause_ms"] > 0)
    latencies = [float(i["latency_ms"]) for i in items if i["latency_ms"] is not None]
    return {
        "n": len(items),
        "n_paused": len(paused),
        "wer": {k: _wer(v) for k, v in groups.items()},
        "intent_accuracy": {k: _rate(v, "correct") for k, v in groups.items()},
        "first_reply_accuracy": {k: _rate(v, "first_correct") for k, v in groups.items()},
        "wrong_hangups": sum(i["wrong_hangup"] for i in items),
        "wrong_transfers": sum(i["wrong_transfer"] for i in items),
        "cut_off_rate": {"paused": _rate(paused, "cut_off"), "all": _rate(items, "cut_off")},
        "latency_ms": {**p50_p95(latencies), "n": len(latencies)},
        "failed_calls": sum(not i["call_ok"] for i in items),
    }


async def run_understanding(plan: UnderstandingPlan, note: Note) -> dict[str, Any]:
    runs = []
    for spec in plan.runs:
        note(f"understanding: {spec.name} on {len(spec.utterances)} utterances")
        try:
            runs.append(await run_one(spec, plan.corpus_dir, plan.concurrency, note, server_src=plan.server_src))
        except Exception as exc:  # one configuration that cannot start (a missing engine) must not sink the rest
            note(f"understanding: {spec.name} could not run: {type(exc).__name__}: {exc}")
            runs.append(
                {
                    "stt": spec.stt,
                    "turn": spec.turn,
                    "curve": spec.curve,
                    "env": spec.env,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
    curve = sorted(
        (
            {
                "stt": r["stt"],
                "turn": r["turn"],
                "cut_off_rate": r["cut_off_rate"]["paused"],
                "latency_p50_ms": r["latency_ms"].get("p50"),
                "latency_p95_ms": r["latency_ms"].get("p95"),
            }
            for r in runs
            if "error" not in r and r.get("curve")
        ),
        key=lambda c: (c["stt"], c["latency_p50_ms"] or 0.0),
    )
    return {"corpus": str(plan.corpus_dir), "wer_normalisation": WER_NOTE, "runs": runs, "curve": curve}


WER_NOTE = (
    "lower case; thousands commas dropped; digits spelled one word per digit; punctuation and apostrophes "
    "removed; fillers um/uh/er/erm/ah/hmm/mm dropped; ok→okay, alright→all right, goodbye→good bye; both sides"
)


# --- output ----------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _ms(x: Any) -> str:
    return "—" if x is None else f"{float(x):.0f}"


def table_lines(result: dict[str, Any]) -> list[str]:
    head = (
        "| STT / end of turn | n | WER all (dev / held-out) | intent acc. all (dev / held-out) | "
        "first reply right | wrong hang-ups / transfers | cut-off (paused / all) | latency p50 / p95 ms |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in result["runs"]:
        if r.get("curve"):
            continue
        if "error" in r:
            lines.append(f"| {r['stt']} / {r['turn']} | — | could not run: {r['error']} | | | | | |")
            continue
        w, a, c, lat = r["wer"], r["intent_accuracy"], r["cut_off_rate"], r["latency_ms"]
        lines.append(
            f"| {r['stt']} / {r['turn']} | {r['n']} | {_pct(w['all'])} ({_pct(w['dev'])} / {_pct(w['heldout'])}) | "
            f"{_pct(a['all'])} ({_pct(a['dev'])} / {_pct(a['heldout'])}) | "
            f"{_pct(r['first_reply_accuracy']['all'])} | {r['wrong_hangups']} / "
            f"{r['wrong_transfers']} | {_pct(c['paused'])} / {_pct(c['all'])} | {_ms(lat.get('p50'))} / "
            f"{_ms(lat.get('p95'))} |"
        )
    n_curve = next((r.get("n") for r in result["runs"] if r.get("curve") and "n" in r), 0)
    lines += ["", f"Cut-off rate (of the utterances with a pause) vs latency, one sample of {n_curve}:", "",
              "| STT | end of turn | cut-off | p50 ms | p95 ms |", "|---|---|---|---|---|"]  # fmt: skip
    for c in result["curve"]:
        lines.append(
            f"| {c['stt']} | {c['turn']} | {_pct(c['cut_off_rate'])} | {_ms(c['latency_p50_ms'])} | "
            f"{_ms(c['latency_p95_ms'])} |"
        )
    lines += ["", f"WER normalisation: {result['wer_normalisation']}."]
    return lines


def run_understanding_command(quick: bool, as_json: bool, out: Path | None, markdown_out: Path | None,
                              **plan_args: Any) -> int:  # fmt: skip
    """The entry point of ``callwright bench --understanding`` and of ``python -m``."""

    def note(msg: str) -> None:
        sys.stderr.write(f"· {msg}\n")
        sys.stderr.flush()

    server_src = plan_args.pop("server_src", None)
    try:
        plan = UnderstandingPlan.build(quick=quick, **plan_args)
        plan.server_src = server_src
    except (OSError, KeyError, ValueError) as exc:
        sys.stderr.write(f"error: cannot build the understanding plan: {type(exc).__name__}: {exc}\n")
        return 2
    result = asyncio.run(run_understanding(plan, note))
    result = {"quick": quick, "server_src": str(server_src) if server_src else None, **result}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = table_lines(result)
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text("\n".join(["# Understanding natural-voice callers", "", *lines]) + "\n", "utf-8")
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if all("error" not in r for r in result["runs"]) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Understanding of natural-voice callers (WER, intents, cut-offs).")
    p.add_argument("--quick", action="store_true", help="a stratified third of the corpus, half the curve")
    p.add_argument("--stt", help=f"comma-separated STT configurations ({', '.join(STT_CONFIGS)})")
    p.add_argument("--turn", help=f"comma-separated end-of-turn settings for the main runs ({', '.join(TURN_CONFIGS)})")
    p.add_argument("--no-curve", action="store_true", help="skip the cut-off vs latency curve")
    p.add_argument("--curve-only", action="store_true", help="only the curve (for the last --stt)")
    p.add_argument("--split", choices=("all", "dev", "heldout"), default="all")
    p.add_argument("--concurrency", type=int, default=2, help="calls at once (latency is cleanest at 1)")
    p.add_argument("--corpus", type=Path, default=CORPUS_DIR)
    p.add_argument("--server-src", type=Path, help="run the server from this package folder (before figures)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--markdown", type=Path)
    a = p.parse_args(argv)
    stts = a.stt.split(",") if a.stt else None
    turns = a.turn.split(",") if a.turn else None
    for name, known in ((stts, STT_CONFIGS), (turns, TURN_CONFIGS)):
        bad = [x for x in name or [] if x not in known]
        if bad:
            p.error(f"unknown configuration {bad[0]!r} (known: {', '.join(known)})")
    return run_understanding_command(
        a.quick,
        a.json,
        a.out,
        a.markdown,
        stts=stts,
        turns=turns,
        curve=not a.no_curve,
        main_runs=not a.curve_only,
        split=a.split,
        concurrency=a.concurrency,
        corpus_dir=a.corpus,
        server_src=a.server_src,
    )


if __name__ == "__main__":
    raise SystemExit(main())
