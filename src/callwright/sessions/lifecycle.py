"""Ending calls this server decides to end: the idle-call reaper and the shutdown drain.

Both end a call the same way (:func:`end_call`): optionally a goodbye through the media handler, a hang-up
through ACS, the media handler stopped, the session's final save (handed to the background saver if the
store is down), and the call finished in the registry. ACS's CallDisconnected for the same call may
arrive meanwhile; every step is idempotent, so whichever comes second is a no-op.

With other replicas alive (a shared call directory), the drain hands the calls still up at the end of the
grace period over instead (:func:`hand_over_calls`): no goodbye, no hang-up — the media handler stops, the
session is saved, the ownership released and the media socket closed; ACS reports the drop and a live
replica restarts the streaming (``scale/takeover.py``), which the draining replica does itself for any call
nobody reclaimed within ``HANDOVER_CONFIRM_SECONDS``. The reaper leaves a call whose media another live
replica holds to that replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from callwright.acs.call_control import CallControlError
from callwright.sessions.registry import CallRecord
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.calls")

STOP_TIMEOUT_SECONDS = 5.0
END_CONCURRENCY = 100  # calls ended at once by the drain (each is mostly waiting on ACS and Redis)
# ACS states in which a call is over on ACS's side: nothing to hang up.
ACS_ENDED = frozenset({"gone", "disconnected", "unreachable"})
CLOSE_GOING_AWAY = 1001
HANDOVER_CONFIRM_SECONDS = 6.0  # socket closed → another replica holds the call (ACS reported the drop)


async def end_call(
    st: Any,
    record: CallRecord,
    *,
    reason: str,
    hang_up: bool,
    goodbye: str | None = None,
    goodbye_seconds: float = 5.0,
    save_seconds: float = 1.0,
) -> None:
    cid = record.call_connection_id
    handler = record.media_handler
    if goodbye and handler is not None and goodbye_seconds > 0:
        say = getattr(handler, "say_goodbye", None)
        if callable(say):
            try:
                async with asyncio.timeout(goodbye_seconds):
                    await say(goodbye)
            except TimeoutError:
                log.warning("goodbye not finished within %.1fs; hanging up [call=%s]", goodbye_seconds, cid)
            except Exception:
                log.exception("goodbye failed; hanging up [call=%s]", cid)
    automation = getattr(st, "automation", None)
    if hang_up and automation is not None:
        try:
            await automation.actions(cid).hang_up()
        except CallControlError as exc:
            log.warning("hang up failed (%s); ending the call here anyway [call=%s]", exc, cid)
    handler = record.media_handler
    if handler is not None:
        try:
            await asyncio.wait_for(handler.stop(), STOP_TIMEOUT_SECONDS)
        except Exception:
            log.exception("media handler failed to stop [call=%s]", cid)
    memo = record.memo
    if memo is not None:
        memo.set_context("call_state", "disconnected")
        memo.set_context("end_reason", reason)
        await memo.final_persist(give_up_after=save_seconds)  # not landed → the saver (finish below)
    st.calls.finish(cid, reason=reason)
    st.metrics.calls_active.set(len(st.calls))


class CallReaper:
    """Ends calls with no media and no events for ``idle_seconds``, after asking ACS about them.

    ACS says the call is gone (or cannot be asked) → finished here. ACS says it is still up → hung up
    through ACS, then finished. Activity = ``record.touch()`` (media frames, events), a media socket
    being connected, or a new entry in ``record.events_seen``.
    """

    def __init__(self, st: Any, *, idle_seconds: float, interval: float, concurrency: int = 8) -> None:
        self._st = st
        self.idle_seconds = idle_seconds
        self.interval = interval
        self._sem = asyncio.Semaphore(concurrency)
        self._events_seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="call-reaper")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("call reaper sweep failed")

    async def sweep(self) -> list[str]:
        """One pass; returns the ids of the calls it ended."""
        now = time.monotonic()
        active = self._st.calls.active()
        live = {r.call_connection_id for r in active}
        self._events_seen = {k: v for k, v in self._events_seen.items() if k in live}
        idle: list[CallRecord] = []
        for record in active:
            seen = len(record.events_seen)
            if self._events_seen.get(record.call_connection_id, seen) != seen or record.media_connected:
                record.touch()
            self._events_seen[record.call_connection_id] = seen
            if record.idle_seconds(now) >= self.idle_seconds:
                idle.append(record)
        ended = await asyncio.gather(*(self._check(r) for r in idle))
        return [cid for cid in ended if cid]

    async def _held_elsewhere(self, record: CallRecord) -> bool | None:
        """True when another live replica holds the call's media (it is theirs to end); None when that
        cannot be known (Redis down: a call of another replica may look idle here, so it is left alone)."""
        directory = getattr(self._st, "directory", None)
        if directory is None or not directory.shared or record.media_connected:
            return False
        cid = record.call_connection_id
        try:
            owner = (await directory.owners([cid])).get(cid)
            if owner is None or owner == directory.replica_id:
                return False
            return owner in await directory.alive()
        except StoreUnavailable:
            return None

    async def _check(self, record: CallRecord) -> str | None:
        cid = record.call_connection_id
        elsewhere = await self._held_elsewhere(record)
        if elsewhere is None:
            log.info("reaper: an idle call left alone: the call directory is unreachable [call=%s]", cid)
            return None
        if elsewhere:
            log.info("reaper: an idle call is held by another replica; released here [call=%s]", cid)
            release = getattr(self._st.calls, "release_local", None)
            if release is not None:
                release(cid)
            return None
        async with self._sem:
            automation = getattr(self._st, "automation", None)
            if automation is None:
                state = "unreachable"
            else:
                try:
                    state = await automation.call_state(cid)
                except CallControlError as exc:
                    log.warning("reaper: could not ask ACS about an idle call (%s) [call=%s]", exc, cid)
                    state = "unreachable"
            if self._st.calls.get(cid) is not record or record.state in ("disconnected", "failed"):
                return None  # ended meanwhile
            if record.idle_seconds() < self.idle_seconds:
                return None  # came back to life while we asked
            alive = state not in ACS_ENDED
            log.warning(
                "reaping a call with no media and no events for %.0fs (ACS: %s)%s [call=%s]",
                record.idle_seconds(), state, "; hanging up" if alive else "", cid,
            )  # fmt: skip
            self._st.metrics.calls_reaped_total.labels("alive" if alive else state).inc()
            await end_call(self._st, record, reason="reaped", hang_up=alive)
            return cid


async def drain_calls(st: Any, settings: Any) -> None:
    """The shutdown drain (started on SIGTERM by callwright.serving.CallwrightServer)."""
    st.draining = True
    started = time.monotonic()
    active = len(st.calls)
    log.warning(
        "shutting down: /ready answers 503, new calls are refused; %d active call(s) get %.0fs to finish",
        active, settings.shutdown_grace_seconds,
    )  # fmt: skip
    await _say_draining(st)
    deadline = started + settings.shutdown_grace_seconds
    while _held_here(st) and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the registry, bounded
        await asyncio.sleep(0.2)
    # Replicas stopped together (a deployment shutting down, `serve --workers N`) each say "draining" at
    # once; one heartbeat round on, none mistakes another for a replica that stays and hands calls to it.
    settle = started + float(getattr(settings, "replica_heartbeat_seconds", 1.0)) + 0.3
    if _held_here(st) and time.monotonic() < settle:
        await asyncio.sleep(settle - time.monotonic())
    # Other replicas alive: the calls still up go on there instead of being hung up.
    try:
        async with asyncio.timeout(STOP_TIMEOUT_SECONDS + HANDOVER_CONFIRM_SECONDS + 30):
            await hand_over_calls(st, settings)
    except TimeoutError:
        log.error("handing the calls over took too long; the rest are ended")
    # Bounded as a whole: whatever is still up after this is hung up and saved by the lifespan's shutdown.
    bound = settings.shutdown_goodbye_seconds + settings.acs_request_timeout_seconds + STOP_TIMEOUT_SECONDS + 5
    try:
        async with asyncio.timeout(bound):
            await end_remaining_calls(st, settings, goodbye=True)
    except TimeoutError:
        log.error("ending the calls took over %.0fs; the rest is ended at exit", bound)
    left = await st.saver.flush(settings.shutdown_save_seconds)
    log.warning(
        "drain finished in %.1fs (%d call(s) were active at the signal); %d session(s) unsaved (spilled at exit)",
        time.monotonic() - started, active, left,
    )  # fmt: skip


async def _say_draining(st: Any) -> None:
    """Tell the other replicas now rather than at the next heartbeat (they stop handing calls to this one)."""
    directory = getattr(st, "directory", None)
    if directory is None or not directory.shared:
        return
    with contextlib.suppress(StoreUnavailable):  # logged by the directory; the heartbeat task tries again
        await directory.beat(draining=True)


def _held_here(st: Any) -> bool:
    """Calls the drain waits for: all active ones alone; with a shared directory only those whose media
    socket is on this replica (a call held here only because an event passed through goes on elsewhere)."""
    directory = getattr(st, "directory", None)
    if directory is None or not directory.shared:
        return bool(len(st.calls))
    return any(r.media_connected or r.media_handler is not None for r in st.calls.active())


async def _other_ready_replicas(st: Any) -> list[str]:
    directory = getattr(st, "directory", None)
    if directory is None or not directory.shared:
        return []
    try:
        alive = await directory.alive()
    except StoreUnavailable as exc:
        log.warning("no hand-over: live replicas unknown (%s)", exc)
        return []
    me = directory.replica_id
    return sorted(r for r, info in alive.items() if r != me and not (isinstance(info, dict) and info.get("draining")))


async def hand_over_calls(st: Any, settings: Any) -> int:
    """With other live, non-draining replicas: let go of every call still held here without ending it
    (see the module docstring). Returns how many calls were handed over; 0 (and nothing done) when this
    replica is alone, so the caller ends the calls as before."""
    others = await _other_ready_replicas(st)
    remaining = st.calls.active()
    if not others or not remaining:
        return 0
    directory = st.directory
    me = directory.replica_id
    ids = [r.call_connection_id for r in remaining]
    try:
        owners = await directory.owners(ids)
    except StoreUnavailable as exc:
        log.warning("no hand-over: media owners unknown (%s); the calls are ended", exc)
        return 0
    mine = [
        r
        for r in remaining
        if r.media_connected or r.media_handler is not None or owners.get(r.call_connection_id) == me
    ]
    for record in remaining:
        if record not in mine:  # its media is elsewhere (or nowhere yet): it goes on without this replica
            st.calls.release_local(record.call_connection_id)
    if not mine:
        return 0
    log.warning(
        "handing %d call(s) over to the other replicas (%s) instead of hanging up", len(mine), ", ".join(others)
    )
    sem = asyncio.Semaphore(END_CONCURRENCY)

    async def one(record: CallRecord) -> None:
        async with sem:
            await _hand_over(st, settings, record, me)

    results = await asyncio.gather(*(one(r) for r in mine), return_exceptions=True)
    for record, result in zip(mine, results, strict=True):
        if isinstance(result, BaseException):
            log.error("handing the call over failed: %r [call=%s]", result, record.call_connection_id)
    return len(mine)


async def _hand_over(st: Any, settings: Any, record: CallRecord, me: str) -> None:
    cid = record.call_connection_id
    handler = record.media_handler
    transport = getattr(handler, "_transport", None)  # the call's media socket (voice/transport.py)
    if handler is not None:
        try:
            # No goodbye: the caller stays on. A reply cut off here is kept as heard, marked interrupted,
            # and the next replica's agent repeats it.
            await asyncio.wait_for(handler.stop(), STOP_TIMEOUT_SECONDS)
        except Exception:
            log.exception("media handler failed to stop for the hand-over [call=%s]", cid)
    memo = record.memo
    if memo is not None:
        memo.cancel_pending_persist()
        await memo.final_persist(give_up_after=settings.shutdown_save_seconds)
    try:
        await st.directory.release(cid)
    except StoreUnavailable as exc:
        log.warning("media ownership not released for the hand-over (%s) [call=%s]", exc, cid)
    close = getattr(transport, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close(CLOSE_GOING_AWAY, "replica draining")
    st.calls.release_local(cid)
    st.metrics.calls_active.set(len(st.calls))
    log.warning("call handed over: media socket closed, session saved; another replica takes it [call=%s]", cid)
    # ACS reports the drop (MediaStreamingFailed) to a live replica, which restarts the streaming. Should that
    # not happen (the report reached this replica as it stops, or ACS said nothing), restart it from here.
    deadline = time.monotonic() + HANDOVER_CONFIRM_SECONDS
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        try:
            owner = (await st.directory.owners([cid])).get(cid)
        except StoreUnavailable:
            owner = None
        if owner is not None and owner != me:
            log.info("call taken by replica %s after the hand-over [call=%s]", owner, cid)
            return
    monitor = getattr(st, "replica_monitor", None)
    restart = getattr(monitor, "restart_streaming", None)
    if restart is None:
        log.error("nobody took the handed-over call and no media restart is available [call=%s]", cid)
        return
    log.warning("nobody took the handed-over call within %.0fs: restarting its media streaming [call=%s]",
                HANDOVER_CONFIRM_SECONDS, cid)  # fmt: skip
    await restart(cid, trigger="handover", stale_owner=me)


async def end_remaining_calls(st: Any, settings: Any, *, goodbye: bool) -> int:
    """Goodbye (if asked), hang up and save every call still active, concurrently (bounded)."""
    remaining = st.calls.active()
    if not remaining:
        return 0
    sem = asyncio.Semaphore(END_CONCURRENCY)

    async def one(record: CallRecord) -> None:
        async with sem:
            st.metrics.calls_ended_at_shutdown_total.inc()
            await end_call(
                st,
                record,
                reason="server shutdown",
                hang_up=True,
                goodbye=settings.shutdown_goodbye_text if goodbye else None,
                goodbye_seconds=settings.shutdown_goodbye_seconds,
            )

    log.warning(
        "ending %d call(s) for the shutdown%s",
        len(remaining),
        " (goodbye first where the handler offers one)" if goodbye else "",
    )
    results = await asyncio.gather(*(one(r) for r in remaining), return_exceptions=True)
    for record, result in zip(remaining, results, strict=True):
        if isinstance(result, BaseException):
            log.error("ending the call failed: %r [call=%s]", result, record.call_connection_id)
    return len(remaining)
