"""The fault scenarios (Redis stopped mid-call, ACS unreachable, SIGTERM mid-call) and the lost-transcripts
check: what must survive the store, ACS or the process failing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from callwright.bench.robustness_common import TRANSCRIPT, Note, _user_turns
from callwright.localredis import LocalRedis

if TYPE_CHECKING:
    from callwright.bench.robustness import RobustnessPlan


# ---- lost transcripts --------------------------------------------------------------------------------


async def lost_transcripts(stack: Any, also: list[str]) -> dict[str, Any]:
    """Every call with turns in memory (and every call a check heard) must have them in the store."""
    st = stack.state
    records = {r.call_connection_id: r for r in [*st.calls.active(), *st.calls.recent()]}
    ids = {cid for cid, r in records.items() if r.memo is not None and r.memo.history} | set(also)
    lost: list[dict[str, Any]] = []
    await asyncio.sleep(1.5)  # debounced saves (0.25 s) and the stop-time saves land first
    for cid in sorted(ids):
        record = records.get(cid) or st.calls.get(cid)
        in_memory = len(record.memo.history) if record is not None and record.memo is not None else 0
        try:
            doc = await st.store.load(cid)
        except Exception as exc:  # the store being down is itself the finding
            lost.append({"call": cid, "memory": in_memory, "store": f"error {type(exc).__name__}"})
            continue
        stored = len((doc or {}).get("history") or [])
        if stored < max(in_memory, 1 if cid in also else 0):
            lost.append({"call": cid, "memory": in_memory, "store": stored})
    return {"calls_with_turns": len(ids), "lost": len(lost), "examples": lost[:5], "store": st.store.kind}


# ---- faults ------------------------------------------------------------------------------------------

REDIS_CALL_SCRIPT = """
name: robustness redis fault
direction: inbound
from: "+15553330000"
to: "+15550001000"
timeout_s: 90
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 4.0
  - say: "Where is your office?"
  - silence: 4.0
  - hangup
"""


async def _wait_for(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def fault_redis_restart(stack: Any, redis: LocalRedis | None, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    name = "redis stopped mid-call, call ends while it is down, restarted"
    if redis is None:
        return {"name": name, "outcome": "not available: redis-server is not installed", "ok": None}
    from callwright.emulator.phone import build_phone_from_script

    note(f"fault: {name} (down {plan.redis_down_s:g} s)")
    phone = build_phone_from_script(REDIS_CALL_SCRIPT, transcriber=stack.transcriber)
    call = await stack.emulator.place_inbound_call(phone, from_number="+15553330000", to_number="+15550001000")
    cid = call.call_connection_id
    run = asyncio.get_running_loop().create_task(phone.run(call))
    first = await _wait_for(lambda: _user_turns(stack, cid) >= 1, 30)
    await asyncio.sleep(0.6)  # the first turn's debounced save lands: the store holds a partial session
    await asyncio.to_thread(redis.stop)
    stopped_at = time.monotonic()
    report: dict[str, Any] = {}
    try:
        report = await asyncio.wait_for(run, 90)
    except Exception as exc:  # the call failing is an outcome
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ended_while_down = redis.proc is None
    await asyncio.sleep(max(0.0, plan.redis_down_s - (time.monotonic() - stopped_at)))
    await asyncio.to_thread(redis.start)
    record = stack.state.calls.get(cid)
    in_memory = len(record.memo.history) if record is not None and record.memo is not None else 0
    stored = 0

    async def stored_turns() -> int:
        try:
            doc = await stack.state.store.load(cid)
        except Exception:
            return -1
        return len((doc or {}).get("history") or [])

    t = time.monotonic()
    while time.monotonic() - t < 20:
        stored = await stored_turns()
        if stored >= in_memory > 0:
            break
        await asyncio.sleep(0.5)
    saved = stored >= in_memory > 0
    return {
        "name": name,
        "ok": bool(first and report.get("ok") and saved),
        "outcome": (
            f"call {'completed' if report.get('ok') else 'FAILED'}; {in_memory} history entries in "
            f"memory, {max(stored, 0)} in Redis {time.monotonic() - t:.0f} s after it came back"
            f"{'' if saved else ' — TRANSCRIPT LOST'}"
        ),
        "redis_down_s": plan.redis_down_s,
        "call_ended_while_down": ended_while_down,
        "history_in_memory": in_memory,
        "history_in_store": stored,
    }


class _Blackhole:
    """A TCP port that accepts and then never answers (a hung ACS front end)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self._held: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> _Blackhole:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._held.append(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass

        self.server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        for w in self._held:
            w.close()
        if self.server is not None:
            self.server.close()


async def fault_acs_unreachable(stack: Any, plan: RobustnessPlan, variant: str, note: Note,
                                parked: list[Any]) -> dict[str, Any]:  # fmt: skip
    name = f"ACS unreachable ({'connection refused' if variant == 'refused' else 'accepts, never answers'}) " \
           "when placing an outbound call"  # fmt: skip
    try:
        from pydantic import SecretStr

        from callwright.app import _build_automation
    except ImportError:
        return {"name": name, "ok": None, "outcome": "not available: no automation factory to point elsewhere"}
    note(f"fault: {name}")
    st = stack.state
    async with contextlib.AsyncExitStack() as ex:
        if variant == "refused":
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])  # closed again: nothing listens there
        else:
            port = (await ex.enter_async_context(_Blackhole())).port
        conn = f"endpoint=http://127.0.0.1:{port}/;accesskey={stack.emulator.access_key}"
        try:
            temp = _build_automation(stack.settings.model_copy(update={"acs_connection_string": SecretStr(conn)}))
        except Exception as exc:
            return {"name": name, "ok": None, "outcome": f"not available: {type(exc).__name__}: {exc}"[:200]}
        parked.append(temp)  # closed at the end: a request may still be using it after our client gave up
        saved, st.automation = st.automation, temp
        pending_before = await st.directory.pending_count()
        t = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=plan.acs_timeout_s) as http:
                resp = await http.post(f"{stack.url}/api/v1/calls", json={"target": "+15557654321"},
                                       headers=dict(getattr(stack, "operator_headers", {}) or {}))  # fmt: skip
            status: int | None = resp.status_code
            detail = resp.text[:160]
        except httpx.TimeoutException:
            status, detail = None, f"no answer within {plan.acs_timeout_s:g} s"
        finally:
            st.automation = saved
        took = time.monotonic() - t
        await asyncio.sleep(0.1)
        leaked = await st.directory.pending_count() - pending_before
    ok = status == 502 and took <= 15 and leaked <= 0
    return {"name": name, "ok": ok, "status": status, "seconds": round(took, 2), "pending_entries_left": leaked,
            "outcome": f"{status if status is not None else 'no answer'} after {took:.1f} s"
                       f"{'' if leaked <= 0 else f', {leaked} pending entries left behind'}: {detail}"}  # fmt: skip


SIGTERM_CALL_SCRIPT = """
name: robustness sigterm
direction: inbound
from: "+15554440000"
to: "+15550001000"
timeout_s: 120
transcribe: false
steps:
  - barge_in: {at_ms: 800, of: next, timeout_s: 20, say: "What are your opening hours?"}
  - silence: 60
  - hangup
"""
SIGTERM_GRACE_S = 4  # SHUTDOWN_GRACE_SECONDS for this scenario (default 20): the bench's time budget


@contextlib.asynccontextmanager
async def _serve_child(emulator: Any, env_extra: dict[str, str], log_path: Path) -> AsyncIterator[Any]:
    """``callwright serve`` as production runs it, in its own process (a signal to it must not reach us),
    configured for the emulator like ``local_stack``. Yields (process, url, operator headers)."""
    import secrets

    from callwright.localstack import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret = secrets.token_urlsafe(16)
    env = {**os.environ, "LOG_LEVEL": "WARNING", **env_extra,
           "ACS_CONNECTION_STRING": emulator.connection_string, "ACS_CALLBACK_URL": url,
           "ACS_JWT_AUDIENCE": emulator.resource_id, "ACS_OPENID_CONFIG_URL": emulator.openid_config_url,
           "EVENTGRID_SECRET": secret}  # fmt: skip
    headers: dict[str, str] = {}
    try:
        from callwright.security.keys import hash_key, new_key

        key = new_key()
        env["OPERATOR_API_KEYS"] = f"operator:{hash_key(key)}"
        headers = {"Authorization": f"Bearer {key}"}
    except ImportError:  # a tree without operator auth: the API is open
        pass
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callwright.cli", "serve", "--workers", "1",
            "--host", "127.0.0.1", "--port", str(port),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 90
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"the server exited with {proc.returncode} while starting (log {log_path})")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/ready")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the server was not ready within 90 s (log {log_path})")
                await asyncio.sleep(0.3)
        emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
        yield proc, url, headers
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


async def fault_sigterm(redis: LocalRedis | None, note: Note, log_dir: Path) -> dict[str, Any]:
    name = "SIGTERM to the server mid-call"
    from callwright.emulator.phone import build_phone_from_script
    from callwright.emulator.service import Emulator

    note(f"fault: {name} (`callwright serve` in a child process, SHUTDOWN_GRACE_SECONDS={SIGTERM_GRACE_S})")
    env = {"STT_ENGINE": "instant", "TTS_ENGINE": "instant", "INSTANT_STT_TRANSCRIPT": TRANSCRIPT,
           "SHUTDOWN_GRACE_SECONDS": str(SIGTERM_GRACE_S), "SESSION_SPILL_DIR": str(log_dir / "spill")}  # fmt: skip
    if redis is not None:
        env["REDIS_URL"] = redis.url
    try:
        async with Emulator() as emulator, _serve_child(emulator, env, log_dir / "sigterm-server.log") as child:
            proc, url, headers = child
            phone = build_phone_from_script(SIGTERM_CALL_SCRIPT, transcribe=False)
            call = await emulator.place_inbound_call(phone, from_number="+15554440000", to_number="+15550001000")
            connected_at = time.monotonic()
            cid = call.call_connection_id
            run = asyncio.get_running_loop().create_task(phone.run(call))
            turns, replied = 0, False
            async with httpx.AsyncClient(timeout=10, headers=headers) as http:
                t = time.monotonic()
                while time.monotonic() - t < 40 and not replied:  # the question asked and fully answered
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        resp = await http.get(f"{url}/api/v1/calls/{cid}")
                        roles = [m.get("role") for m in resp.json().get("transcript", [])]
                        turns = roles.count("user")
                        replied = turns >= 1 and roles[-1] == "assistant"
                    await asyncio.sleep(0.3)
            await asyncio.sleep(0.5)
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            ended = asyncio.ensure_future(call.ended.wait())
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({ended, exited}, timeout=90, return_when=asyncio.ALL_COMPLETED)
            exit_s = time.monotonic() - sent_at if exited.done() else None
            hung_up = call.state == "disconnected" and call.disconnect_reason == "app_hangup"
            reason = call.disconnect_reason or call.state
            ended.cancel()
            if call.state != "disconnected":
                call.hang_up_by_phone()  # the caller gives up on the dead air
            report: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                report = await asyncio.wait_for(run, 15)
            if not run.done():
                run.cancel()
            sig_ms = (sent_at - connected_at) * 1000
            agent = [e for e in report.get("transcript", []) if e.get("speaker") == "agent"]
            goodbye = any((e.get("start_ms") or 0) > sig_ms for e in agent)
            saved: int | None = None
            if redis is not None:
                from callwright.sessions.store import build_store

                store = build_store(redis.url, prefix="callwright", ttl_seconds=3600)
                try:
                    doc = await store.load(cid)
                    saved = sum(1 for m in (doc or {}).get("history") or [] if m.get("role") == "user")
                finally:
                    await store.close()
            code = proc.returncode
    except Exception as exc:  # a stack that cannot start here is reported, not fatal to the run
        return {"name": name, "ok": None, "outcome": f"not available: {type(exc).__name__}: {exc}"[:300]}
    ok = bool(hung_up and goodbye and exit_s is not None and exit_s < 60 and (saved is None or saved >= turns >= 1))
    return {
        "name": name,
        "ok": ok,
        "outcome": (f"exit {code} after {exit_s:.1f} s" if exit_s is not None else "process still running after 90 s")
        + ("; goodbye heard" if goodbye else "; no goodbye heard")
        + (f"; call hung up by the server ({reason})" if hung_up else f"; caller left in dead air (call end: {reason})")
        + (f"; {saved} of {turns} user turns in Redis" if saved is not None else "; no Redis to check"),
        "exit_code": code,
        "exit_s": None if exit_s is None else round(exit_s, 1),
        "goodbye_heard": goodbye,
        "agent_utterances_before_after": [
            sum(1 for e in agent if (e.get("start_ms") or 0) <= sig_ms),
            sum(1 for e in agent if (e.get("start_ms") or 0) > sig_ms),
        ],
        "hung_up_by_server": hung_up,
        "user_turns_before": turns,
        "user_turns_saved": saved,
        "shutdown_grace_s": SIGTERM_GRACE_S,
    }
