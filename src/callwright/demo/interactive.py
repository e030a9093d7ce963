"""``callwright demo --interactive``: the person at the keyboard is the caller.

Each line typed is one of:

- text — spoken by the virtual phone (flite). Runs of three or more digits are read out digit by digit
  ("5678" → "five six seven eight"), the way a caller reads a policy or account number, not as
  "five thousand six hundred seventy-eight";
- keypad input — a ``#``-terminated digit string (``5678#``, ``12 34#``) or ``/dtmf 12*3#``: DTMF tones on
  the media stream and as ACS tone events, exactly as a scripted ``dtmf`` step sends them;
- a command — ``/help``, ``/quit`` (also ``/hangup``, ``/bye``; end of input hangs up too).

The parsing is a pure function (:func:`parse_line`) so it can be tested on its own; the loop that acts on
the lines (:func:`keyboard_caller`) takes them from a queue fed by a daemon thread reading stdin.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.markup import escape

from callwright.acs.media import TONE_CHARS
from callwright.emulator.phone.audio import AudioSourceError, default_tts_cache_dir, flite_say
from callwright.emulator.phone.media import CallerUtterance

HELP = (
    "Type what the caller says and press Enter (it is spoken). Keypad: digits ending in # (e.g. 5678#) "
    "or /dtmf 12*3#. /help shows this, /quit (or Ctrl-D) hangs up."
)

# The gap between keys, as in the demo script's dtmf step: a person pressing keys, well inside the
# server's inter-digit timeout (2 s), so one entry stays one turn.
DTMF_GAP_MS = 250
# A keyed entry longer than this is a typing accident, not a phone number (ACS caps tones per request).
MAX_TONES = 32
_QUIT = frozenset({"/quit", "/q", "/hangup", "/bye", "/exit"})
_HELP = frozenset({"/help", "/h", "/?"})
# Keypad entry typed bare: digits (and '*'), optionally grouped by spaces or dashes, ending in '#'.
_BARE_KEYS = re.compile(r"[0-9*][0-9*\s-]*#|#")
_DIGIT_RUN = re.compile(r"\d{3,}")
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True, slots=True)
class Speak:
    text: str


@dataclass(frozen=True, slots=True)
class Keys:
    tones: str


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


Command = Speak | Keys | Quit | ShowHelp | Invalid | Nothing


def _tones(raw: str) -> Keys | Invalid:
    tones = re.sub(r"[\s-]", "", raw).upper()
    if not tones:
        return Invalid("/dtmf needs keys, e.g. /dtmf 1234#")
    bad = sorted({c for c in tones if c not in TONE_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        return Invalid(f"/dtmf: {shown} is not a phone key (keys are 0-9, *, #, A-D)")
    if len(tones) > MAX_TONES:
        return Invalid(f"/dtmf: {len(tones)} keys; at most {MAX_TONES} at a time")
    return Keys(tones)


def parse_line(line: str) -> Command:
    """What one typed line asks for. Never raises: a bad command is :class:`Invalid` with a message."""
    text = line.strip()
    if not text:
        return Nothing()
    if text.startswith("/"):
        word, _, rest = text.partition(" ")
        word = word.lower()
        if word in _QUIT:
            return Quit()
        if word in _HELP:
            return ShowHelp()
        if word == "/dtmf":
            return _tones(rest)
        return Invalid(f"unknown command {word} (commands: /dtmf KEYS, /help, /quit)")
    if _BARE_KEYS.fullmatch(text):
        return _tones(text)
    return Speak(text)


def spoken_form(text: str) -> str:
    """``text`` as flite should say it: runs of 3+ digits read digit by digit (numbers callers read out)."""
    return _DIGIT_RUN.sub(lambda m: " ".join(_DIGIT_WORDS[int(d)] for d in m.group()), text)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """A daemon thread: a blocked ``readline`` must not keep the process alive after the call ends."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, None)


def stdin_lines() -> asyncio.Queue[str | None]:
    """Lines typed on stdin, ``None`` at end of input."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(asyncio.get_running_loop(), lines), daemon=True).start()
    return lines


async def _media_ready(phone: Any) -> Any:
    # The call is connected but its media stream may still be opening; the phone has no public event
    # for that, and polling a 20 ms tick is what the phone itself does.
    while phone.link is None:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return phone.link


async def _press(phone: Any, call: Any, tones: str) -> None:
    """Key ``tones`` as a script's ``dtmf`` step does: a DtmfData frame each, plus the ACS tone event."""
    link = await _media_ready(phone)
    utt = CallerUtterance(label=tones, kind="dtmf")
    phone.utterances.append(utt)  # the phone's report lists it (and its dtmf_sent timeline)
    for k, tone in enumerate(tones):
        if k:
            await asyncio.sleep(DTMF_GAP_MS / 1000)
        now = time.monotonic()
        utt.onset_t = utt.onset_t or now
        utt.end_t = now
        await link.send_dtmf(tone)
        call.dtmf_from_phone(tone)


async def _speak(phone: Any, text: str) -> None:
    pcm = await flite_say(spoken_form(text), phone.script.voice, default_tts_cache_dir())
    link = await _media_ready(phone)
    utt = CallerUtterance(label=text, kind="speech")
    phone.utterances.append(utt)
    await link.say(pcm, utt)


async def keyboard_caller(phone: Any, call: Any, lines: asyncio.Queue[str | None], console: Console) -> None:
    """Act on each typed line until /quit or end of input, which hang up."""
    console.print(f"[bold]{escape(HELP)}[/]")
    while True:
        line = await lines.get()
        cmd = Quit() if line is None else parse_line(line)
        if isinstance(cmd, Quit):
            console.print("[dim]hanging up…[/]")
            call.hang_up_by_phone()
            return
        if isinstance(cmd, ShowHelp):
            console.print(escape(HELP))
        elif isinstance(cmd, Invalid):
            console.print(f"[red]{escape(cmd.message)}[/]")
        elif isinstance(cmd, Keys):
            console.print(f"[dim]keypad: {escape(cmd.tones)}[/]")
            await _press(phone, call, cmd.tones)
        elif isinstance(cmd, Speak):
            try:
                await _speak(phone, cmd.text)
            except AudioSourceError as exc:  # flite missing or failing: say so and keep the call up
                console.print(f"[red]cannot speak that line:[/] {escape(str(exc))}")
