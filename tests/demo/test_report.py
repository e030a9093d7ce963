"""The demo's closing transcript: the server's words beside what the caller's ear decoded, each labelled;
and ``demo --script`` reading a script's relative audio files from the script's folder."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from callwright.demo.report import EAR, RECOGNIZED, Line, conversation, render_conversation

T0 = 1_800_000_000.0  # the phone's first tick, wall clock

# What the server recorded (its own text; stamped when a reply finished or was cut, when a caller's turn
# was recognized) and what the phone measured (script text; the ear's pocketsphinx reading of the agent).
SERVER = [
    {"role": "assistant", "content": "Thank you for calling Contoso Insurance.", "agent": "front_desk", "ts": T0 + 3.2},
    {"role": "user", "content": "what are your opening hours", "ts": T0 + 6.1},
    {"role": "assistant", "content": "We are open", "agent": "front_desk", "interrupted": True, "ts": T0 + 8.0},
    {"role": "user", "content": "sorry where is your office", "ts": T0 + 10.9},
    {"role": "tool", "content": "{'address': '1 Main St'}", "agent": "front_desk", "ts": T0 + 11.0},
    {"role": "assistant", "content": "Our office is at 1 Main Street. Anything else?", "agent": "front_desk",
     "ts": T0 + 15.0},
    {"role": "user", "content": "1234#", "ts": T0 + 17.0},
    {"role": "assistant", "content": "", "agent": "claims", "interrupted": True, "ts": T0 + 18.0},
]  # fmt: skip
PHONE = [
    {"speaker": "agent", "text": "and cue for colleagues", "start_ms": 200.0, "end_ms": 3100.0},
    {"speaker": "caller", "text": "What are your opening hours?", "start_ms": 3600.0, "end_ms": 5200.0},
    {"speaker": "agent", "text": "we are", "start_ms": 6500.0, "end_ms": 7900.0},
    {"speaker": "caller", "text": "Sorry, where is your office?", "start_ms": 7600.0, "end_ms": 9800.0},
    {"speaker": "agent", "text": "our office is", "start_ms": 11500.0, "end_ms": 13000.0},
    {"speaker": "agent", "text": "anything else", "start_ms": 13600.0, "end_ms": 14900.0},
]


def test_each_agent_line_is_the_servers_text_beside_the_ears_reading():
    lines = conversation(SERVER, PHONE, T0)
    agent = [ln for ln in lines if ln.who == "agent"]
    assert [ln.said for ln in agent] == [
        "Thank you for calling Contoso Insurance.",
        "We are open",
        "Our office is at 1 Main Street. Anything else?",
        "(cut off before any of it was heard)",
    ]
    assert all(ln.said_source == "server" and ln.heard_source == EAR for ln in agent)
    # The garbled reading is shown as what the ear decoded, never as what the agent said.
    assert [ln.heard for ln in agent] == [
        "and cue for colleagues",
        "we are",
        "our office is / anything else",  # one reply heard as two stretches of audio
        "(no audio matched)",
    ]
    assert [ln.interrupted for ln in agent] == [False, True, False, True]
    assert agent[3].agent == "claims"

    caller = [ln for ln in lines if ln.who == "caller"]
    assert [(ln.said, ln.said_source, ln.heard, ln.heard_source) for ln in caller] == [
        ("What are your opening hours?", "script", "what are your opening hours", RECOGNIZED),
        ("Sorry, where is your office?", "script", "sorry where is your office", RECOGNIZED),
        ("1234#", "keypad", "1234#", "server (keyed)"),
    ]
    assert [ln.who for ln in lines] == ["agent", "caller", "agent", "caller", "tool", "agent", "caller", "agent"]
    assert lines[0].at_s == pytest.approx(3.2)


def test_without_a_time_base_lines_pair_by_order_only_when_both_sides_counted_the_same():
    server = [e for e in SERVER[:4]]
    phone = PHONE[:4]
    lines = conversation(server, phone, None)
    assert [ln.heard for ln in lines if ln.who == "agent"] == ["and cue for colleagues", "we are"]
    assert all(ln.at_s is None for ln in lines)
    # One more stretch of agent audio than server replies: nothing is paired by guesswork.
    lines = conversation(server, [*phone, PHONE[4]], None)
    assert [ln.heard for ln in lines if ln.who == "agent" and ln.said_source == "server"][:2] == [
        "(no audio matched)",
        "(no audio matched)",
    ]
    unmatched = [ln for ln in lines if ln.said == "(no server line matched this audio)"]
    assert [ln.heard for ln in unmatched] == ["and cue for colleagues", "we are", "our office is"]


def test_audio_with_no_server_line_is_listed_and_labelled():
    phone = [*PHONE, {"speaker": "agent", "text": "goodbye", "start_ms": 40000.0, "end_ms": 41000.0}]
    lines = conversation(SERVER, phone, T0)
    assert lines[-1].said == "(no server line matched this audio)"
    assert lines[-1].heard == "goodbye" and lines[-1].heard_source == EAR


def test_the_rendered_table_labels_where_every_text_comes_from():
    console = Console(record=True, width=240, color_system=None)
    render_conversation(console, conversation(SERVER, PHONE, T0))
    out = console.export_text()
    assert "server: Thank you for calling Contoso Insurance." in out
    assert f"{EAR}: and cue for colleagues" in out
    assert "script: What are your opening hours?" in out
    assert f"{RECOGNIZED}: what are your opening hours" in out
    assert "not the agent's words" in out


_entry = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "tool", "system"]),
        "content": st.text(max_size=20),
        "ts": st.floats(min_value=T0, max_value=T0 + 100),
    },
    optional={"interrupted": st.booleans(), "agent": st.sampled_from(["a", "b", "system"])},
)
_phone = st.fixed_dictionaries(
    {
        "speaker": st.sampled_from(["agent", "caller"]),
        "text": st.text(max_size=20),
        "start_ms": st.floats(min_value=0, max_value=100_000),
    }
).map(lambda e: {**e, "end_ms": e["start_ms"] + 500})


@settings(max_examples=200, deadline=None)
@given(st.lists(_entry, max_size=12), st.lists(_phone, max_size=12), st.sampled_from([None, T0]))
def test_any_records_give_every_server_line_once_and_never_raise(server, phone, t0):
    server = sorted(server, key=lambda e: e["ts"])
    phone = sorted(phone, key=lambda e: e["start_ms"])
    lines = conversation(server, phone, t0)
    from_server = [ln for ln in lines if ln.said_source in ("server", "keypad") or ln.heard_source == RECOGNIZED]
    shown = [e for e in server if e["role"] in ("user", "assistant", "tool")]
    # Unmatched caller audio is a script line with no server line: not counted as a server line.
    from_server = [ln for ln in from_server if ln.heard != "(the server recorded nothing for it)"]
    from_server = [ln for ln in from_server if ln.said != "(no server line matched this audio)"]
    assert len(from_server) == len(shown)
    for ln in lines:
        assert isinstance(ln, Line) and isinstance(ln.said, str)


# --- the real command ---------------------------------------------------------------------------------

SCRIPT = """\
name: relative audio
direction: inbound
from: "+15551230002"
to: "+15550001000"
timeout_s: 120
steps:
  - wait: {agent_done: 800, timeout_s: 40}
  - say: {file: audio/question.wav, text: "What are your opening hours?"}
  - wait: {agent_done: 800, timeout_s: 40}
  - hangup
"""


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(360)
async def test_demo_script_reads_relative_audio_from_the_scripts_folder_and_reports_both_sides(tmp_path: Path):
    folder = tmp_path / "scripts"
    (folder / "audio").mkdir(parents=True)
    flite = ["flite", "-t", "What are your opening hours?", "-o", str(folder / "audio" / "question.wav")]
    await asyncio.to_thread(subprocess.run, flite, check=True, timeout=60)
    (folder / "call.yaml").write_text(SCRIPT, encoding="utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1", "TERM": "dumb"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callwright.cli", "demo", "--script", "../scripts/call.yaml", "--json",
        "--record", str(tmp_path / "rec"),
        cwd=elsewhere, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, 9)
            await proc.wait()
    log = err.decode(errors="replace")[-3000:]
    assert proc.returncode == 0, log
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    assert report["ok"] is True, report.get("error")
    lines = report["conversation"]
    said_by_agent = [e["content"] for e in report["server_transcript"] if e["role"] == "assistant"]
    agent = [ln for ln in lines if ln["who"] == "agent" and ln["said_source"] == "server"]
    assert [ln["said"] for ln in agent] == said_by_agent
    assert all(ln["heard_source"] == EAR for ln in agent)
    assert any("Contoso" in ln["said"] for ln in agent)
    caller = [ln for ln in lines if ln["who"] == "caller"]
    # The phone names a file utterance by its file: proof the script's relative path was the one played.
    assert caller and "question.wav" in caller[0]["said"] and caller[0]["said_source"] == "script"
    assert caller[0]["heard_source"] == RECOGNIZED and caller[0]["heard"]
