"""Virtual phone scripts (YAML): what the remote party says and does, step by step.

Validation is hand-written rather than schema-generated so every mistake yields one sentence naming the
step and the field (``step 3 (say): 'ms' must be a positive integer, got -5``), which is what someone
editing a script by hand needs.

Example::

    name: opening hours
    direction: inbound
    from: "+15551230001"
    to: "+15550001000"
    echo: {db: -20, delay_ms: 100}   # optional line echo of the agent's audio
    steps:
      - wait: agent_done
      - say: "What are your opening hours?"
      - wait: {phrase: "monday", timeout_s: 15}
      - barge_in: {at_ms: 800, say: "Sorry, what about Saturday?"}
      - say: {noise: pink, ms: 300}
      - dtmf: {digits: "1234#", gap_ms: 250}
      - silence: 1.5
      - frame_ms: 100                    # caller audio in 100 ms frames from here on
      - raw: {audio_bytes: 642}          # a literal media frame (also: text, nested; repeat)
      - hangup

Top-level ``frame_ms`` (default 20) and ``sample_rate`` (16000 | 24000; default: what the app negotiated)
shape the caller's stream as a misbehaving or differently configured sender would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from callwright.acs.media import TONE_CHARS

FLITE_VOICES = ("slt", "kal16", "kal", "rms", "awb")
DEFAULT_AGENT_DONE_MS = 700


class ScriptError(ValueError):
    """An invalid phone script; the message names the step and the field."""


@dataclass(frozen=True, slots=True)
class Say:
    source: Literal["text", "file", "noise", "click"]
    text: str | None = None
    file: Path | None = None
    noise: Literal["pink", "white"] | None = None
    ms: int = 0
    db: float = -20.0
    voice: str | None = None
    probe: bool = False  # a false-barge-in probe: the agent should *not* stop for it

    @property
    def label(self) -> str:
        if self.source == "text":
            return self.text or ""
        if self.source == "file":
            return f"<file {self.file.name if self.file else ''}>"
        if self.source == "noise":
            return f"<{self.noise} noise {self.ms} ms>"
        return "<click>"


@dataclass(frozen=True, slots=True)
class Wait:
    kind: Literal["seconds", "agent_done", "phrase", "disconnected"]
    seconds: float = 0.0
    silence_ms: int = DEFAULT_AGENT_DONE_MS
    phrase: str | None = None
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class BargeIn:
    at_ms: int
    say: Say
    of: Literal["current", "next"] | None = None  # None: the current agent utterance if one is playing
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digits: str
    gap_ms: int = 250


@dataclass(frozen=True, slots=True)
class Silence:
    seconds: float


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


MAX_RAW_CHARS = 2_000_000
MAX_RAW_REPEAT = 1000
MAX_NESTING = 100_000


@dataclass(frozen=True, slots=True)
class Raw:
    """Literal text frames on the media socket, as a broken or hostile sender would send them."""

    text: str
    repeat: int = 1

    @property
    def label(self) -> str:
        return f"<raw {len(self.text)} chars x{self.repeat}>"


@dataclass(frozen=True, slots=True)
class FrameSize:
    """From here on, caller audio goes out in frames of ``ms`` milliseconds (ACS sends 20)."""

    ms: int


Step = Say | Wait | BargeIn | Dtmf | Silence | Hangup | Raw | FrameSize


@dataclass(frozen=True, slots=True)
class OutboundSpec:
    answer_after_s: float = 1.0
    outcome: Literal["answer", "busy", "no_answer"] = "answer"


@dataclass(frozen=True, slots=True)
class EchoSpec:
    """The handset/line echo: the agent's audio as played, back into the caller's uplink."""

    db: float = -20.0  # echo level relative to the agent's audio
    delay_ms: int = 100  # play → back on the uplink


@dataclass(frozen=True, slots=True)
class PhoneScript:
    name: str
    steps: tuple[Step, ...]
    direction: Literal["inbound", "outbound"] = "inbound"
    from_number: str = "+15551230001"
    to_number: str = "+15550001000"
    outbound: OutboundSpec = field(default_factory=OutboundSpec)
    timeout_s: float = 60.0
    voice: str = "slt"
    transcribe: bool = True
    seed: int = 0
    description: str = ""
    echo: EchoSpec | None = None
    frame_ms: int = 20  # caller audio frame length on the wire (ACS: 20 ms)
    sample_rate: int | None = None  # the stream's rate; None: what the app negotiated

    @property
    def needs_live_stt(self) -> bool:
        return any(isinstance(s, Wait) and s.kind == "phrase" for s in self.steps)


class _Ctx:
    """Where we are in the script, for error messages."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, msg: str) -> ScriptError:
        return ScriptError(f"{self.where}: {msg}")

    def keys(self, d: dict[str, Any], allowed: set[str]) -> None:
        extra = sorted(str(k) for k in d if k not in allowed)
        if extra:
            raise self.fail(f"unknown field {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")

    def pos_int(self, d: dict[str, Any], key: str, default: int | None = None, zero_ok: bool = False) -> int:
        v = d.get(key, default)
        if v is None:
            raise self.fail(f"field {key!r} is required")
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (v == 0 and not zero_ok):
            raise self.fail(f"field {key!r} must be a {'non-negative' if zero_ok else 'positive'} integer, got {v!r}")
        return v

    def pos_num(self, v: Any, key: str, zero_ok: bool = True) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (v == 0 and not zero_ok):
            raise self.fail(f"field {key!r} must be a {'non-negative' if zero_ok else 'positive'} number, got {v!r}")
        return float(v)

    def text(self, v: Any, key: str) -> str:
        if v is None:
            raise self.fail(f"field {key!r} is required")
        if not isinstance(v, str) or not v.strip():
            raise self.fail(f"field {key!r} must be a non-empty string, got {v!r}")
        return v.strip()


def _parse_say(v: Any, ctx: _Ctx, base_dir: Path | None) -> Say:
    if isinstance(v, str):
        return Say(source="text", text=ctx.text(v, "say"))
    if not isinstance(v, dict):
        raise ctx.fail(f"'say' must be text or a mapping with text/file/noise/click, got {type(v).__name__}")
    # With 'file', 'text' is the file's transcript (for the report), not a second source.
    sources = [k for k in ("file", "noise", "click") if k in v] or [k for k in ("text",) if k in v]
    if len(sources) != 1 or ("text" in v and sources[0] in ("noise", "click")):
        raise ctx.fail("'say' needs exactly one of 'text', 'file', 'noise', 'click'")
    src = sources[0]
    probe = v.get("probe", src in ("noise", "click"))
    if not isinstance(probe, bool):
        raise ctx.fail(f"field 'probe' must be true or false, got {probe!r}")
    db = v.get("db", -20.0 if src == "noise" else -6.0)
    if isinstance(db, bool) or not isinstance(db, int | float) or db > 0:
        raise ctx.fail(f"field 'db' must be a level in dBFS (≤ 0), got {db!r}")
    if src == "text":
        ctx.keys(v, {"text", "voice", "probe"})
        voice = v.get("voice")
        if voice is not None and voice not in FLITE_VOICES:
            raise ctx.fail(f"field 'voice' must be one of {', '.join(FLITE_VOICES)}, got {voice!r}")
        return Say(source="text", text=ctx.text(v["text"], "text"), voice=voice, probe=probe)
    if src == "file":
        ctx.keys(v, {"file", "probe", "text"})
        raw = ctx.text(v["file"], "file")
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.exists():
            raise ctx.fail(f"field 'file': no such file {str(path)!r}")
        # 'text' is the transcript of the file, so the report can show what the caller said.
        text = v.get("text")
        return Say(source="file", file=path, text=ctx.text(text, "text") if text is not None else None, probe=probe)
    if src == "noise":
        ctx.keys(v, {"noise", "ms", "db", "probe"})
        if v["noise"] not in ("pink", "white"):
            raise ctx.fail(f"field 'noise' must be 'pink' or 'white', got {v['noise']!r}")
        return Say(source="noise", noise=v["noise"], ms=ctx.pos_int(v, "ms", 300), db=float(db), probe=probe)
    ctx.keys(v, {"click", "db", "probe"})
    if v["click"] is not True:
        raise ctx.fail(f"field 'click' must be true, got {v['click']!r}")
    return Say(source="click", ms=20, db=float(db), probe=probe)


def _parse_wait(v: Any, ctx: _Ctx) -> Wait:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return Wait(kind="seconds", seconds=ctx.pos_num(v, "wait"))
    if v == "agent_done":
        return Wait(kind="agent_done")
    if v == "disconnected":
        return Wait(kind="disconnected")
    if not isinstance(v, dict):
        raise ctx.fail(f"'wait' must be seconds, 'agent_done', 'disconnected' or a mapping, got {v!r}")
    ctx.keys(v, {"seconds", "agent_done", "phrase", "disconnected", "timeout_s"})
    kinds = [k for k in ("seconds", "agent_done", "phrase", "disconnected") if k in v]
    if len(kinds) != 1:
        raise ctx.fail("'wait' needs exactly one of 'seconds', 'agent_done', 'phrase', 'disconnected'")
    timeout = v.get("timeout_s")
    timeout_s = ctx.pos_num(timeout, "timeout_s", zero_ok=False) if timeout is not None else None
    kind = kinds[0]
    if kind == "seconds":
        return Wait(kind="seconds", seconds=ctx.pos_num(v["seconds"], "seconds"))
    if kind == "agent_done":
        a = v["agent_done"]
        silence = DEFAULT_AGENT_DONE_MS if a is True else ctx.pos_int(v, "agent_done")
        return Wait(kind="agent_done", silence_ms=silence, timeout_s=timeout_s)
    if kind == "phrase":
        return Wait(kind="phrase", phrase=ctx.text(v["phrase"], "phrase"), timeout_s=timeout_s)
    if v["disconnected"] is not True:
        raise ctx.fail(f"field 'disconnected' must be true, got {v['disconnected']!r}")
    return Wait(kind="disconnected", timeout_s=timeout_s)


def _parse_step(raw: Any, ctx: _Ctx, base_dir: Path | None) -> Step:
    if raw == "hangup":
        return Hangup()
    if isinstance(raw, str):
        raise ctx.fail(f"unknown step {raw!r} (a bare word is only valid for 'hangup')")
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ctx.fail("a step must be a mapping with exactly one key: say, wait, barge_in, dtmf, silence, hangup")
    kind, v = next(iter(raw.items()))
    ctx.where += f" ({kind})"
    if kind == "say":
        return _parse_say(v, ctx, base_dir)
    if kind == "wait":
        return _parse_wait(v, ctx)
    if kind == "barge_in":
        if not isinstance(v, dict):
            raise ctx.fail("'barge_in' must be a mapping with 'at_ms' and 'say'")
        ctx.keys(v, {"at_ms", "say", "of", "timeout_s"})
        if "say" not in v:
            raise ctx.fail("field 'say' is required")
        of = v.get("of")
        if of not in (None, "current", "next"):
            raise ctx.fail(f"field 'of' must be 'current' or 'next', got {of!r}")
        timeout = v.get("timeout_s")
        return BargeIn(
            at_ms=ctx.pos_int(v, "at_ms", zero_ok=True),
            say=_parse_say(v["say"], ctx, base_dir),
            of=of,
            timeout_s=ctx.pos_num(timeout, "timeout_s", zero_ok=False) if timeout is not None else None,
        )
    if kind == "dtmf":
        spec = {"digits": v} if isinstance(v, str | int) and not isinstance(v, bool) else v
        if not isinstance(spec, dict):
            raise ctx.fail("'dtmf' must be a digit string or a mapping with 'digits'")
        ctx.keys(spec, {"digits", "gap_ms"})
        digits = ctx.text(str(spec.get("digits", "")), "digits").upper()
        bad = [c for c in digits if c not in TONE_CHARS]
        if bad:
            raise ctx.fail(f"field 'digits' has {bad[0]!r}; allowed are 0-9, *, #, A-D")
        return Dtmf(digits=digits, gap_ms=ctx.pos_int(spec, "gap_ms", 250))
    if kind == "silence":
        secs = v.get("seconds") if isinstance(v, dict) else v
        if isinstance(v, dict):
            ctx.keys(v, {"seconds"})
        return Silence(seconds=ctx.pos_num(secs, "silence", zero_ok=False))
    if kind == "raw":
        return _parse_raw(v, ctx)
    if kind == "frame_ms":
        return FrameSize(ms=_frame_ms(v, ctx))
    if kind == "hangup":
        if v not in (True, None):
            raise ctx.fail(f"'hangup' takes no value, got {v!r}")
        return Hangup()
    raise ctx.fail(f"unknown step kind {kind!r} (expected say, wait, barge_in, dtmf, silence, raw, frame_ms, hangup)")


def _frame_ms(v: Any, ctx: _Ctx) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
        raise ctx.fail(f"'frame_ms' must be a whole number of milliseconds from 1 to 1000, got {v!r}")
    return v


def _parse_raw(v: Any, ctx: _Ctx) -> Raw:
    """``raw: "<text>"``, or a mapping with exactly one of ``text``, ``audio_bytes`` (an AudioData frame
    carrying that many bytes) or ``nested`` (JSON nested that deep), and an optional ``repeat``."""
    import base64
    import json

    spec = {"text": v} if isinstance(v, str) else v
    if not isinstance(spec, dict):
        raise ctx.fail("'raw' must be text or a mapping with text, audio_bytes or nested")
    ctx.keys(spec, {"text", "audio_bytes", "nested", "repeat"})
    sources = [k for k in ("text", "audio_bytes", "nested") if k in spec]
    if len(sources) != 1:
        raise ctx.fail("'raw' needs exactly one of 'text', 'audio_bytes', 'nested'")
    repeat = spec.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_RAW_REPEAT:
        raise ctx.fail(f"field 'repeat' must be a whole number from 1 to {MAX_RAW_REPEAT}, got {repeat!r}")
    src = sources[0]
    if src == "text":
        text = spec["text"]
        if not isinstance(text, str):
            raise ctx.fail(f"field 'text' must be a string, got {type(text).__name__}")
    elif src == "audio_bytes":
        n = spec["audio_bytes"]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 1_000_000:
            raise ctx.fail(f"field 'audio_bytes' must be a whole number from 0 to 1000000, got {n!r}")
        data = base64.b64encode(bytes(n)).decode("ascii")
        text = json.dumps({"kind": "AudioData", "audioData": {"data": data, "silent": False}})
    else:
        depth = spec["nested"]
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_NESTING:
            raise ctx.fail(f"field 'nested' must be a whole number from 1 to {MAX_NESTING}, got {depth!r}")
        text = '{"kind":"AudioData","audioData":' + '{"a":' * depth + "1" + "}" * depth + "}"
    if len(text) > MAX_RAW_CHARS:
        raise ctx.fail(f"the raw frame has {len(text)} characters (limit {MAX_RAW_CHARS})")
    return Raw(text=text, repeat=repeat)


_TOP = {"name", "description", "direction", "from", "to", "outbound", "steps", "timeout_s", "voice",
        "transcribe", "seed", "echo", "frame_ms", "sample_rate"}  # fmt: skip


def _parse_echo(raw: object, name: str) -> EchoSpec | None:
    if raw is None:
        return None
    ctx = _Ctx(f"script {name!r} echo")
    if not isinstance(raw, dict):
        raise ctx.fail("field 'echo' must be a mapping with db and delay_ms")
    ctx.keys(raw, {"db", "delay_ms"})
    db = raw.get("db", -20.0)
    if isinstance(db, bool) or not isinstance(db, int | float) or db > 0:
        raise ctx.fail(f"field 'db' must be a level at or below 0 dB, got {db!r}")
    delay = raw.get("delay_ms", 100)
    if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 1000:
        raise ctx.fail(f"field 'delay_ms' must be a whole number of ms from 0 to 1000, got {delay!r}")
    return EchoSpec(db=float(db), delay_ms=delay)


def parse_script(text: str, *, base_dir: Path | None = None) -> PhoneScript:
    """Parse and validate a script; raises ScriptError with one clear message."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScriptError(f"phone script is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ScriptError("phone script must be a YAML mapping with 'name' and 'steps'")
    top = _Ctx("phone script")
    top.keys(doc, _TOP)
    name = top.text(doc.get("name"), "name")
    top = _Ctx(f"script {name!r}")
    direction = doc.get("direction", "inbound")
    if direction not in ("inbound", "outbound"):
        raise top.fail(f"field 'direction' must be 'inbound' or 'outbound', got {direction!r}")
    numbers = {}
    for key, default in (("from", "+15551230001"), ("to", "+15550001000")):
        val = doc.get(key, default)
        if not isinstance(val, str | int) or isinstance(val, bool) or not str(val).strip():
            raise top.fail(f"field {key!r} must be a phone number string, got {val!r}")
        numbers[key] = str(val).strip()
    ob = doc.get("outbound") or {}
    if not isinstance(ob, dict):
        raise top.fail("field 'outbound' must be a mapping with answer_after_s/outcome")
    octx = _Ctx(f"script {name!r} outbound")
    octx.keys(ob, {"answer_after_s", "outcome"})
    outcome = ob.get("outcome", "answer")
    if outcome not in ("answer", "busy", "no_answer"):
        raise octx.fail(f"field 'outcome' must be answer, busy or no_answer, got {outcome!r}")
    outbound = OutboundSpec(
        answer_after_s=octx.pos_num(ob.get("answer_after_s", 1.0), "answer_after_s"), outcome=outcome
    )
    voice = doc.get("voice", "slt")
    if voice not in FLITE_VOICES:
        raise top.fail(f"field 'voice' must be one of {', '.join(FLITE_VOICES)}, got {voice!r}")
    transcribe = doc.get("transcribe", True)
    if not isinstance(transcribe, bool):
        raise top.fail(f"field 'transcribe' must be true or false, got {transcribe!r}")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise top.fail(f"field 'seed' must be an integer, got {seed!r}")
    frame_ms = _frame_ms(doc.get("frame_ms", 20), top)
    sample_rate = doc.get("sample_rate")
    if sample_rate is not None and (isinstance(sample_rate, bool) or sample_rate not in (16_000, 24_000)):
        raise top.fail(f"field 'sample_rate' must be 16000 or 24000, got {sample_rate!r}")
    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise top.fail("field 'steps' must be a non-empty list")
    steps = tuple(_parse_step(s, _Ctx(f"script {name!r} step {i + 1}"), base_dir) for i, s in enumerate(raw_steps))
    return PhoneScript(
        name=name,
        steps=steps,
        direction=direction,
        from_number=numbers["from"],
        to_number=numbers["to"],
        outbound=outbound,
        timeout_s=top.pos_num(doc.get("timeout_s", 60.0), "timeout_s", zero_ok=False),
        voice=voice,
        transcribe=transcribe,
        seed=seed,
        description=str(doc.get("description", "")),
        echo=_parse_echo(doc.get("echo"), name),
        frame_ms=frame_ms,
        sample_rate=sample_rate,
    )


def load_script(path: Path | str) -> PhoneScript:
    """Read a script file; relative ``say: {file: ...}`` paths resolve against the script's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"cannot read phone script {p}: {exc}") from None
    return parse_script(text, base_dir=p.parent)
