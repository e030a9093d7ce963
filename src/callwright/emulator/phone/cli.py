"""``callwright call``: place one scripted call through a running emulator and print what the caller heard.

The call itself runs inside the emulator (its control API, ``POST /emulator/calls``); this side only
validates the script, submits it, waits for the report and renders it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console

from callwright.emulator.phone.script import ScriptError, load_script
from callwright.emulator.phone.summary import render_report

_POLL_S = 10.0


def _absolutise_files(text: str, base: Path) -> str:
    """Make relative ``say: {file: ...}`` paths absolute: the emulator resolves paths from its own cwd."""
    doc = yaml.safe_load(text)
    for step in doc.get("steps", []):
        if not isinstance(step, dict):
            continue
        for key in ("say", "barge_in"):
            spec = step.get(key)
            if key == "barge_in" and isinstance(spec, dict):
                spec = spec.get("say")
            if isinstance(spec, dict) and isinstance(spec.get("file"), str) and not Path(spec["file"]).is_absolute():
                spec["file"] = str((base / spec["file"]).resolve())
    return yaml.safe_dump(doc, sort_keys=False)


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return json.dumps(body)[:300]


def run_call(script: Path, emulator_url: str, as_json: bool, record_dir: Path | None) -> int:
    """Run one scripted call; 0 when the script completed, 1 when the call failed, 2 on usage errors."""
    err = Console(stderr=True)
    out = Console()
    try:
        spec = load_script(script)
        text = _absolutise_files(script.read_text(encoding="utf-8"), script.resolve().parent)
    except ScriptError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    base = emulator_url.rstrip("/")
    body: dict[str, Any] = {"script": text, "timeout_s": spec.timeout_s + 30}
    if record_dir is not None:
        body["record_dir"] = str(record_dir.resolve())
    deadline = time.monotonic() + spec.timeout_s + 90
    try:
        with httpx.Client(timeout=httpx.Timeout(_POLL_S + 10)) as client:
            resp = client.post(f"{base}/emulator/calls", json=body)
            if resp.status_code >= 400:
                err.print(f"[red]error:[/] the emulator refused the call ({resp.status_code}): {_error_text(resp)}")
                return 2
            view = resp.json()
            with err.status(f"calling ({spec.direction}) with script {spec.name!r}…") as status:
                while view.get("status") not in ("finished", "failed"):
                    if time.monotonic() > deadline:
                        err.print(f"[red]error:[/] no result from the emulator after {spec.timeout_s + 90:g} s")
                        return 1
                    status.update(f"call {view.get('call_connection_id') or view['id']}: {view.get('status')}…")
                    resp = client.get(f"{base}/emulator/calls/{view['id']}", params={"wait": _POLL_S})
                    if resp.status_code >= 400:
                        err.print(f"[red]error:[/] polling the call failed ({resp.status_code}): {_error_text(resp)}")
                        return 1
                    view = resp.json()
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/] cannot reach the emulator at {base}: {exc} (start it with `callwright emulator`)")
        return 2
    report = view.get("report") or {"ok": False, "call_id": view.get("call_connection_id"), "events": []}
    if view.get("error") and not report.get("error"):
        report = {**report, "ok": False, "error": view["error"]}
    failed = view.get("status") != "finished" or not report.get("ok", False)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        render_report(out, report)
    return 1 if failed else 0
