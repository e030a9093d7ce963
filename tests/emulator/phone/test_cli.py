"""``callwright call`` (run_call) against a real emulator's control API, and the rich summary."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from azure.communication.callautomation import CallAutomationClient, PhoneNumberIdentifier
from azure.core.credentials import AzureKeyCredential
from emu_support import Webhook
from rich.console import Console

from callwright.emulator.phone.cli import run_call
from callwright.emulator.phone.summary import render_report
from callwright.emulator.service import Emulator

BUSY = """
name: busy line
direction: outbound
from: "+15550001000"
to: "+15551237778"
outbound: {answer_after_s: 0.1, outcome: busy}
steps: [hangup]
"""


async def test_run_call_json_through_a_running_emulator(
    emulator: Emulator, webhook: Webhook, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "busy.yaml"
    script.write_text(BUSY)
    runner = asyncio.create_task(asyncio.to_thread(run_call, script, emulator.endpoint, True, None))
    for _ in range(250):  # the phone registers its number once the emulator has the script
        if emulator.directory.phone_for_number("4:+15551237778") is not None:
            break
        await asyncio.sleep(0.02)
    client = CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key))
    await asyncio.to_thread(client.create_call, PhoneNumberIdentifier("+15551237778"), webhook.callback_url)
    rc = await asyncio.wait_for(runner, 60)
    report = json.loads(capsys.readouterr().out)  # --json: the report alone on stdout
    assert rc == 0
    assert report["ok"] is True and report["outcome"] == "busy"


def test_run_call_rejects_an_invalid_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("name: bad\nsteps: [{say: {noise: brown}}]\n")
    assert run_call(script, "http://127.0.0.1:9", False, None) == 2
    assert "step 1 (say): field 'noise'" in capsys.readouterr().err.replace("\n", "")


def test_run_call_reports_an_unreachable_emulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ok.yaml"
    script.write_text("name: ok\nsteps: [hangup]\n")
    assert run_call(script, f"http://127.0.0.1:{port}", True, None) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot reach the emulator" in captured.err.replace("\n", " ")


def test_summary_shows_latencies_and_barge_ins() -> None:
    report = {
        "call_id": "c1", "script": "s", "ok": False, "error": "step 2 (wait): the agent did not speak within 5 s",
        "events": ["CallConnected", "CallDisconnected"],
        "transcript": [{"speaker": "caller", "text": "hello", "start_ms": 100.0, "end_ms": 900.0},
                       {"speaker": "agent", "text": "", "start_ms": 1200.0, "end_ms": 2000.0}],
        "turns": [{"index": 0, "caller": "hello", "response_latency_ms": 312.4}],
        "barge_ins": [{"caller": "stop", "stopped": True, "latency_ms": 88.0, "leaked_ms": 0.0}],
        "false_barge_in_probes": [{"kind": "click", "caller": "<click>", "during_agent_speech": True, "stopped": False}],
        "gaps": {"count": 1, "total_ms": 40.0},
    }  # fmt: skip
    console = Console(record=True, width=120)
    render_report(console, report)
    text = console.export_text()
    assert "failed" in text and "did not speak" in text
    assert "CallConnected → CallDisconnected" in text
    assert "312 ms" in text and "88 ms" in text and "(not transcribed)" in text
    assert "Gaps in agent audio: 1 (40 ms total)" in text
