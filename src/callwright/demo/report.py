"""The demo's closing transcript: what each side said beside what the other side got, each labelled.

Two records of one call exist and neither alone tells the whole truth:

- the **server's** transcript (``GET /api/v1/calls/{id}``): the agent's own words, and what the server
  recognized of the caller;
- the **phone's** report: what the caller said (the script's text), and what the caller's ear decoded of
  the agent's audio with pocketsphinx — an approximate speech recognizer hearing espeak, so its reading
  ("and cue for colleagues…") is a measure of the audio path, never a record of the agent's words.

:func:`conversation` lines them up. The server appends an agent line when its reply has finished playing
(or was cut) and a caller line when the recognizer has the final text, so each entry's wall-clock time
falls just after the phone's matching audio ends; a phone entry goes to the first server entry of the
same side whose time is within ``[end - SLACK_S, end + MAX_LAG_S]``, never going back (the call's order
holds on both sides). Without a time base the entries pair by order when both sides counted the same.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

SLACK_S = 1.5  # the phone's last audio tick may trail the server's stamp (playout ahead of the wire)
MAX_LAG_S = 12.0  # a slow final recognition on a loaded machine

EAR = "caller's ear (pocketsphinx)"
RECOGNIZED = "server (recognized)"


@dataclass
class Line:
    at_s: float | None
    who: str  # "caller", "agent", "tool", "system"
    agent: str | None
    said: str  # the agent's words from the server; the caller's from the script; a tool's result
    said_source: str  # "server", "script", "keypad"
    heard: str | None  # what the other side got (None: nothing to compare, e.g. a tool)
    heard_source: str | None  # EAR or "server (recognized)"
    interrupted: bool = False


def _wall(t0_wall: float | None, ms: Any) -> float | None:
    return None if t0_wall is None or not isinstance(ms, int | float) else t0_wall + ms / 1000


def _match(phone: list[dict[str, Any]], server: list[dict[str, Any]], t0_wall: float | None) -> dict[int, list[int]]:
    """server index → indexes of the phone entries that belong to it."""
    out: dict[int, list[int]] = {}
    if t0_wall is None or not all(isinstance(s.get("ts"), int | float) for s in server):
        if len(phone) == len(server):
            out = {k: [k] for k in range(len(server))}
        return out
    ptr = 0
    for i, entry in enumerate(phone):
        end = _wall(t0_wall, entry.get("end_ms", entry.get("start_ms")))
        if end is None:
            continue
        for k in range(ptr, len(server)):
            ts = float(server[k]["ts"])
            if ts > end + MAX_LAG_S:
                break
            if ts >= end - SLACK_S:
                out.setdefault(k, []).append(i)
                ptr = k
                break
    return out


def _keyed(entry: dict[str, Any]) -> bool:
    text = str(entry.get("content") or "").strip()
    return entry.get("kind") == "dtmf" or (bool(text) and all(c in "0123456789*#ABCD " for c in text))


def conversation(
    server_entries: list[dict[str, Any]], phone_transcript: list[dict[str, Any]], t0_wall: float | None
) -> list[Line]:
    """The call, line by line, each side's words beside what the other side got (see the module doc)."""
    server = [e for e in server_entries if isinstance(e, dict)]
    agent_srv = [k for k, e in enumerate(server) if e.get("role") == "assistant"]
    user_srv = [k for k, e in enumerate(server) if e.get("role") == "user" and not _keyed(e)]
    agent_ph = [e for e in phone_transcript if e.get("speaker") == "agent"]
    caller_ph = [e for e in phone_transcript if e.get("speaker") == "caller"]
    heard_by_ear = {agent_srv[k]: v for k, v in _match(agent_ph, [server[j] for j in agent_srv], t0_wall).items()}
    said_by_caller = {user_srv[k]: v for k, v in _match(caller_ph, [server[j] for j in user_srv], t0_wall).items()}

    keyed: list[tuple[float, Line]] = []
    order = 0.0

    def key(ts: Any) -> float:
        nonlocal order
        order += 1e-6  # keeps the server's own order among equal or missing stamps
        return (float(ts) if isinstance(ts, int | float) and t0_wall is not None else 0.0) + order

    def at(ts: Any) -> float | None:
        return round(float(ts) - t0_wall, 2) if isinstance(ts, int | float) and t0_wall is not None else None

    for k, e in enumerate(server):
        role, text = e.get("role"), str(e.get("content") or "").strip()
        if role == "assistant":
            parts = [str(agent_ph[i].get("text") or "").strip() for i in heard_by_ear.get(k, [])]
            joined = " / ".join(p for p in parts if p) or "(not transcribed)"
            heard = joined if parts else "(no audio matched)"
            cut = bool(e.get("interrupted"))
            said = text or ("(cut off before any of it was heard)" if cut else "")
            who = "system" if e.get("agent") == "system" else "agent"
            line = Line(at(e.get("ts")), who, e.get("agent"), said, "server", heard, EAR, cut)
        elif role == "user" and _keyed(e):
            line = Line(at(e.get("ts")), "caller", None, text, "keypad", text, "server (keyed)")
        elif role == "user":
            parts = [str(caller_ph[i].get("text") or "").strip() for i in said_by_caller.get(k, [])]
            said = " / ".join(p for p in parts if p) or "(not in the script's report)"
            line = Line(at(e.get("ts")), "caller", None, said, "script", text, RECOGNIZED)
        elif role == "tool":
            line = Line(at(e.get("ts")), "tool", e.get("name") or e.get("agent"), text, "server", None, None)
        else:
            continue
        keyed.append((key(e.get("ts")), line))

    used_agent = {i for v in heard_by_ear.values() for i in v}
    used_caller = {i for v in said_by_caller.values() for i in v}
    for side, entries, used in (("agent", agent_ph, used_agent), ("caller", caller_ph, used_caller)):
        for i, e in enumerate(entries):
            if i in used:
                continue
            end = _wall(t0_wall, e.get("end_ms", e.get("start_ms")))
            start = e.get("start_ms")
            at_s = round(start / 1000, 2) if isinstance(start, int | float) else None
            text = str(e.get("text") or "").strip()
            if side == "agent":
                said, heard = "(no server line matched this audio)", text or "(not transcribed)"
                line = Line(at_s, "agent", None, said, "server", heard, EAR)
            else:
                line = Line(at_s, "caller", None, text, "script", "(the server recorded nothing for it)", RECOGNIZED)
            keyed.append(((end if end is not None else float("inf")) + 1e-9 * i, line))
    keyed.sort(key=lambda kv: kv[0])
    return [line for _, line in keyed]


def as_json(lines: list[Line]) -> list[dict[str, Any]]:
    return [asdict(line) for line in lines]


def render_conversation(console: Console, lines: list[Line]) -> None:
    """The closing transcript, every cell labelled with where its words come from."""
    if not lines:
        return
    t = Table(
        title="Transcript — what was said, and what the other side got",
        title_justify="left",
        caption=(
            "agent: its words are the server's own text; 'heard' is what the caller's ear decoded from the "
            "audio with pocketsphinx (an approximate recognizer, not the agent's words). caller: the script's "
            "words; 'heard' is what the server recognized."
        ),
        caption_justify="left",
    )
    t.add_column("at", justify="right")
    t.add_column("who")
    t.add_column("said", overflow="fold")
    t.add_column("heard by the other side", overflow="fold")
    for line in lines:
        at = "" if line.at_s is None else f"{line.at_s:.1f} s"
        if line.who == "caller":
            who = "[cyan]caller[/]"
        elif line.who == "tool":
            who = f"[yellow]tool {escape(line.agent or '')}[/]"
        else:
            who = f"[magenta]{escape(line.agent or line.who)}[/]"
        cut = " [yellow](cut off)[/]" if line.interrupted else ""
        said = f"[dim]{escape(line.said_source)}:[/] {escape(line.said)}{cut}"
        heard = "" if line.heard is None else f"[dim]{escape(line.heard_source or '')}:[/] {escape(line.heard)}"
        t.add_row(at, who, said, heard)
    console.print(t)
