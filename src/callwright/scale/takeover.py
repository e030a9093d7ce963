"""Liveness and take-over: a call whose media socket is lost gets it back, on whichever replica is alive.

Three ways a call loses its media WebSocket, one remedy — ask ACS to restart the call's media streaming
(``start_media_streaming`` through the official SDK). ACS then dials ``ACS_MEDIA_URL`` again, through the
load balancer, and whichever live replica takes the socket opens the call's media handler from the session
in Redis (history intact; the agent apologises and repeats its last question, see
``AgentRuntime.greeting``):

- **the socket dropped** (network, a replica that lost it, or a replica that died and took its sockets
  with it): ACS reports ``MediaStreamingFailed`` (or ``MediaStreamingStopped`` nobody here asked for). The
  replica that receives the event restarts streaming. A per-call lock in Redis (``SET NX PX``) makes that
  one replica per call even if the take-over below fires at the same time. With one replica (no Redis) the
  same happens in memory: a dropped socket comes back.
- **a replica died** and ACS said nothing (a hung process, a partition): every replica refreshes a
  heartbeat key with a short TTL every ``REPLICA_HEARTBEAT_SECONDS``; a replica whose key expired
  (``REPLICA_DEAD_AFTER_SECONDS``) is dead. One survivor wins ``claim_takeover`` and restarts the streaming
  of every call the dead replica still owned, re-routes the events left in its relay stream, then forgets it.
- **a replica drains** (SIGTERM with other replicas alive): it closes its sockets and, unless another
  replica reclaimed the call within a few seconds, restarts streaming itself (``sessions/lifecycle.py``).

A restart is confirmed when ACS reports ``MediaStreamingStarted`` afterwards (a per-call counter, shared
through Redis); unconfirmed within ``CONFIRM_SECONDS`` it is retried with back-off, a few times, and each call
gets a bounded number of restarts per ten minutes — a socket that keeps failing does not loop forever.
A second ``start_media_streaming`` for a call already streaming is harmless (ACS refuses it); the lock and
the owner checks keep it rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from callwright.acs.call_control import CallControlError
from callwright.acs.events import ACSEventTypes
from callwright.events.context import CallEventContext
from callwright.logs import call_scope
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.scale")

#: operationContext of our own start/stop requests: a MediaStreamingStopped carrying STOP_CONTEXT was asked for.
RESTART_CONTEXT = "callwright-media-restart"
STOP_CONTEXT = "callwright-media-stop"
# MediaStreamingFailed details that another attempt cannot fix (acs-protocol.md, MediaStreamingFailed).
PERMANENT_FAILURES = frozenset({"authenticationFailure", "badRequest", "forbidden", "streamUrlMissing"})
RESTART_ATTEMPTS = 4
RESTART_BACKOFF_SECONDS = (0.3, 1.0, 2.0)
CONFIRM_SECONDS = 4.0  # start request → MediaStreamingStarted (ACS dials, the LB routes, a replica accepts)
LOCK_SECONDS = 25.0  # longer than one whole restart (attempts × (request timeout + confirm)), bounded anyway
RESTART_BUDGET = 6  # restarts per call per BUDGET_WINDOW_SECONDS
BUDGET_WINDOW_SECONDS = 600
TAKEOVER_CLAIM_SECONDS = 30.0  # a winner that dies mid-take-over is replaced after this
STOPPED_SETTLE_SECONDS = 1.0  # a Stopped at hang-up precedes CallDisconnected: let that land first
CLOSE_WAIT_SECONDS = 3.0


class _LocalCoordination:
    """One replica: the lock, the budget and the Started counter in memory."""

    def __init__(self) -> None:
        self._locks: dict[str, float] = {}
        self._started: dict[str, tuple[int, float]] = {}
        self._spent: dict[str, list[float]] = {}

    async def lock(self, call_id: str) -> bool:
        now = time.monotonic()
        if self._locks.get(call_id, 0.0) > now:
            return False
        self._locks = {k: v for k, v in self._locks.items() if v > now}
        self._locks[call_id] = now + LOCK_SECONDS
        return True

    async def unlock(self, call_id: str) -> None:
        self._locks.pop(call_id, None)

    async def started(self, call_id: str) -> tuple[int, float]:
        return self._started.get(call_id, (0, 0.0))

    async def note_started(self, call_id: str, at: float) -> None:
        if len(self._started) > 10_000:  # bounded: the oldest calls are long over
            for key in list(self._started)[:1000]:
                del self._started[key]
        count, last = self._started.get(call_id, (0, 0.0))
        self._started[call_id] = (count + 1, max(last, at))

    async def spend(self, call_id: str) -> int:
        now = time.monotonic()
        recent = [t for t in self._spent.get(call_id, []) if t > now - BUDGET_WINDOW_SECONDS] + [now]
        self._spent[call_id] = recent
        if len(self._spent) > 10_000:
            for key in list(self._spent)[:1000]:
                del self._spent[key]
        return len(recent)


class _RedisCoordination:
    """Replicas sharing Redis: the same, in keys next to the call directory's (all with TTLs)."""

    def __init__(self, directory: Any) -> None:
        self._dir = directory
        self._client = directory.client
        self._me = directory.replica_id

    async def _run(self, op: str, coro: Any) -> Any:
        try:
            return await coro
        except Exception as exc:  # redis errors, timeouts, OSError: the caller degrades
            raise StoreUnavailable(f"redis {op} failed: {type(exc).__name__}: {exc}") from exc

    async def lock(self, call_id: str) -> bool:
        key = self._dir.key("media-restart", call_id)
        return bool(await self._run("lock SET", self._client.set(key, self._me, nx=True, px=int(LOCK_SECONDS * 1000))))

    async def unlock(self, call_id: str) -> None:
        key = self._dir.key("media-restart", call_id)
        raw = await self._run("lock GET", self._client.get(key))
        if raw is not None and (raw.decode() if isinstance(raw, bytes) else str(raw)) == self._me:
            await self._run("lock DEL", self._client.delete(key))

    async def started(self, call_id: str) -> tuple[int, float]:
        key = self._dir.key("media-started", call_id)
        count, at = await self._run("started HMGET", self._client.hmget(key, ["count", "at"]))
        return int(count or 0), float(at or 0.0)

    async def note_started(self, call_id: str, at: float) -> None:
        key = self._dir.key("media-started", call_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(key, "count", 1)
        pipe.hset(key, "at", repr(at))  # events of one call are handled in order: the last one is the newest
        pipe.expire(key, BUDGET_WINDOW_SECONDS * 6)
        await self._run("started HINCRBY", pipe.execute())

    async def spend(self, call_id: str) -> int:
        key = self._dir.key("media-restarts", call_id)
        pipe = self._client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, BUDGET_WINDOW_SECONDS, nx=True)
        count, _ = await self._run("budget INCR", pipe.execute())
        return int(count)


class ReplicaMonitor:
    """Heartbeats, dead-replica take-over and media restarts (built in the app's lifespan)."""

    def __init__(self, st: Any, settings: Any) -> None:
        self._st = st
        self._dir = st.directory
        self._interval = float(settings.replica_heartbeat_seconds)
        self._dead_after = float(settings.replica_dead_after_seconds)
        self._coord: _LocalCoordination | _RedisCoordination = (
            _RedisCoordination(self._dir) if self._dir.shared else _LocalCoordination()
        )
        self._restarting: dict[str, asyncio.Task[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._taking_over: set[str] = set()
        self._healthy_since: float | None = None
        self._recovered = False
        #: measured take-overs (seconds from winning the claim to every call's streaming restarted)
        self.takeover_seconds: list[float] = []

    @property
    def replica_id(self) -> str:
        return str(self._dir.replica_id)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        processor = self._st.processor
        for event_type in (
            ACSEventTypes.MEDIA_STREAMING_STARTED,
            ACSEventTypes.MEDIA_STREAMING_STOPPED,
            ACSEventTypes.MEDIA_STREAMING_FAILED,
        ):
            processor.register_handler(event_type, self.on_media_streaming)
        if self._dir.shared:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="replica-heartbeat")

    async def close(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [t for t in (*self._tasks, *self._restarting.values()) if not t.done()]
        if pending:
            # A restart in flight is worth finishing (the caller is in dead air until it lands), briefly.
            _, late = await asyncio.wait(pending, timeout=CLOSE_WAIT_SECONDS)
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- heartbeats and take-over --------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self.beat_and_check()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("replica heartbeat failed")
            await asyncio.sleep(self._interval)

    async def beat_and_check(self) -> list[str]:
        """One heartbeat, then a look for dead replicas; returns the replicas whose take-over began here."""
        try:
            await self._dir.beat(draining=bool(getattr(self._st, "draining", False)))
        except StoreUnavailable:
            self._healthy_since = None  # logged by the directory; no verdicts until beats flow again
            return []
        now = time.monotonic()
        if self._healthy_since is None:
            self._healthy_since = now
            # Redis is back (or this is the first beat): it may have restarted empty, so this replica's
            # calls go back into the directory, or a CallDisconnected reaching another replica finds none.
            self._spawn(self._st.calls.republish_all(), "takeover:republish")
        if not self._recovered:
            self._recovered = True
            self._spawn(self._recover_own(), "takeover:self")
        # Right after a start or a Redis outage, the others' heartbeats may not have been refreshed yet:
        # judging then would take over live replicas' calls.
        if now - self._healthy_since < self._dead_after + self._interval:
            return []
        try:
            alive = await self._dir.alive()
            known = await self._dir.known()
        except StoreUnavailable:
            return []
        begun: list[str] = []
        for dead in sorted(known - set(alive) - {self.replica_id} - self._taking_over):
            try:
                won = await self._dir.claim_takeover(dead, TAKEOVER_CLAIM_SECONDS)
            except StoreUnavailable:
                return begun
            if won:
                self._taking_over.add(dead)
                self._spawn(self._take_over(dead), f"takeover:{dead}")
                begun.append(dead)
        return begun

    async def _take_over(self, dead: str) -> None:
        started = time.monotonic()
        try:
            calls = await self._dir.owned_by(dead)
            log.warning(
                "replica %s is dead (no heartbeat for %.1fs): taking over its %d call(s)",
                dead,
                self._dead_after,
                len(calls),
            )
            outcomes = await asyncio.gather(*(self._take_call(dead, cid) for cid in calls))
            await self._reroute_events(dead)
            elapsed = time.monotonic() - started
            failed = [cid for cid, outcome in zip(calls, outcomes, strict=True) if outcome in ("failed", "error")]
            self._st.metrics.replica_takeovers_total.labels("partial" if failed else "done").inc()
            self._st.metrics.replica_takeover_seconds.observe(elapsed)
            self.takeover_seconds.append(elapsed)
            if failed:
                # Not forgotten: its claim expires and a survivor tries these calls again.
                log.error("take-over of replica %s: %d call(s) not restarted: %s", dead, len(failed), failed)
            else:
                await self._dir.forget(dead)
            log.warning(
                "took over replica %s in %.2fs: %s",
                dead,
                elapsed,
                ", ".join(f"{cid}={o}" for cid, o in zip(calls, outcomes, strict=True)) or "no calls",
            )
        except StoreUnavailable as exc:
            log.error("take-over of replica %s interrupted: %s", dead, exc)
        finally:
            self._taking_over.discard(dead)

    async def _recover_own(self) -> None:
        """Restarted under the same replica id (a container restarted in place, faster than a survivor could
        notice): the calls the directory still lists as this replica's have no socket here — their media
        streaming is restarted like a dead replica's."""
        try:
            calls = await self._dir.owned_by(self.replica_id)
        except StoreUnavailable:
            return
        lost = [cid for cid in calls if (r := self._st.calls.get(cid)) is None or not r.media_connected]
        if not lost:
            return
        log.warning("started with %d call(s) still listed as this replica's: restarting their media", len(lost))
        await asyncio.gather(*(self._take_call(self.replica_id, cid) for cid in lost))

    async def _take_call(self, dead: str, call_id: str) -> str:
        with call_scope(call_id):
            try:
                owner = (await self._dir.owners([call_id])).get(call_id)
                if owner is not None and owner != dead:
                    return "moved"  # already reclaimed (ACS reported the drop, a restart landed)
                if not await self._still_up(call_id):
                    return "ended"
            except StoreUnavailable:
                return "error"
            log.warning("taking over the call of dead replica %s: restarting its media streaming", dead)
            return await self.restart_streaming(call_id, trigger="takeover", stale_owner=dead)

    async def _reroute_events(self, dead: str) -> None:
        """Events relayed to the dead replica that it never ran (scale/relay.py) run here now: they were marked
        seen when they arrived, so they bypass the router, and the processor opens their calls from the
        directory. A late MediaStreamingFailed among them is recognised as stale (see request_restart)."""
        routing = getattr(self._st, "routing", None)
        take = getattr(routing, "take_stream_of", None)
        if take is None:
            return
        try:
            events = await take(dead)
        except StoreUnavailable as exc:
            log.warning("events queued for dead replica %s not re-routed: %s", dead, exc)
            return
        except Exception:
            log.exception("events queued for dead replica %s could not be read", dead)
            return
        if not events:
            return
        result = await self._st.processor.process_events(events, self._st)
        log.warning(
            "ran %d event(s) relayed to dead replica %s (%d deferred)",
            len(events),
            dead,
            getattr(result, "deferred", 0),
        )

    # -- media streaming events ----------------------------------------------------------------------
    async def on_media_streaming(self, ctx: CallEventContext) -> None:
        call_id = ctx.call_connection_id
        if not call_id:
            return
        update = ctx.get_event_data().get("mediaStreamingUpdate") or {}
        detail = str(update.get("mediaStreamingStatusDetails") or "")
        at = _event_time(ctx.event.time)
        if ctx.event.type == ACSEventTypes.MEDIA_STREAMING_STARTED:
            try:
                await self._coord.note_started(call_id, at or time.time())
            except StoreUnavailable as exc:
                log.warning("MediaStreamingStarted not noted (%s)", exc)
            return
        if ctx.event.type == ACSEventTypes.MEDIA_STREAMING_STOPPED:
            if ctx.event.operation_context == STOP_CONTEXT:
                return  # this server asked for it
            trigger = "stopped"
        else:
            if detail in PERMANENT_FAILURES:
                log.error("media streaming failed (%s): not restarted, another attempt would fail the same", detail)
                return
            trigger = "failed"
        # In the background: the restart waits for MediaStreamingStarted, which may be queued behind this.
        self.request_restart(call_id, trigger=trigger, reason=detail or trigger, lost_at=at)

    def request_restart(
        self,
        call_id: str,
        *,
        trigger: str,
        reason: str = "",
        stale_owner: str | None = None,
        lost_at: float | None = None,
    ) -> None:
        """Restart the call's media streaming in the background (at most one task per call here). ``lost_at``
        (ACS's time of the failure) lets a late report of an old drop be ignored once a newer stream started."""
        running = self._restarting.get(call_id)
        if running is not None and not running.done():
            return

        async def run() -> str:
            with call_scope(call_id):
                if trigger == "stopped":
                    await asyncio.sleep(STOPPED_SETTLE_SECONDS)
                try:
                    if not await self._still_up(call_id):
                        return "ended"
                    _, last_started = await self._coord.started(call_id)
                    if lost_at is not None and last_started > lost_at:
                        log.info("media stream loss reported late: a newer stream is up already; not restarted")
                        return "stale"
                except StoreUnavailable:
                    pass  # Redis down: a duplicate start is harmless (ACS refuses it), dead air is not
                log.warning("media stream lost (%s): asking ACS to restart it", reason or trigger)
                return await self.restart_streaming(call_id, trigger=trigger, stale_owner=stale_owner)

        task = asyncio.get_running_loop().create_task(run(), name=f"media-restart:{call_id}")
        self._restarting[call_id] = task
        task.add_done_callback(
            lambda t, cid=call_id: self._restarting.pop(cid, None) if self._restarting.get(cid) is t else None
        )

    async def _still_up(self, call_id: str) -> bool:
        """The call is up (not ended or failed) as far as this replica and the directory know."""
        why = await self._not_up(call_id)
        if why is not None:
            log.info("media streaming not restarted: %s", why)
        return why is None

    async def _not_up(self, call_id: str) -> str | None:
        record = self._st.calls.get(call_id)
        if record is not None and (record.ended_at is not None or record.state in ("disconnected", "failed")):
            return f"the call has ended here ({record.state})"
        if self._dir.shared:
            entry = await self._dir.get(call_id)
            if entry is None and record is not None:
                return None  # held here, though Redis lost its entry (restarted empty): the record is the truth
            if entry is None or entry.get("ended_at") is not None:
                return "the call has ended (not in the call directory)"
            if entry.get("state") in ("disconnected", "failed"):
                return f"the call is {entry.get('state')}"
            # Not "connected" alone: a replica's stale copy may have published "connecting" over it. ACS is
            # the judge: a start for a call it no longer has answers 404, and nothing more is tried.
            return None
        if record is None:
            return "the call is not held here"
        return None

    # -- the restart itself --------------------------------------------------------------------------
    async def restart_streaming(self, call_id: str, *, trigger: str, stale_owner: str | None = None) -> str:
        """Ask ACS to restart the call's media streaming until it is confirmed (bounded). Returns the outcome:
        restarted / busy (another replica is on it) / ended / gone / budget / failed / unavailable."""
        outcome = await self._restart(call_id, trigger=trigger, stale_owner=stale_owner)
        self._st.metrics.media_restarts_total.labels(trigger, outcome).inc()
        return outcome

    async def _restart(self, call_id: str, *, trigger: str, stale_owner: str | None) -> str:
        automation = getattr(self._st, "automation", None)
        if automation is None:
            log.error("media streaming not restarted: ACS is not configured")
            return "unavailable"
        locked = True
        try:
            if not await self._coord.lock(call_id):
                log.info("media restart already under way on another replica")
                return "busy"
            if await self._coord.spend(call_id) > RESTART_BUDGET:
                log.error(
                    "media streaming restarted %d times within %ds already: giving up on it",
                    RESTART_BUDGET, BUDGET_WINDOW_SECONDS,
                )  # fmt: skip
                return "budget"
        except StoreUnavailable as exc:
            # Redis down: a duplicate start is harmless (ACS refuses it), dead air is not.
            log.warning("media restart without the cross-replica lock (%s)", exc)
            locked = False
        started = time.monotonic()
        try:
            for attempt in range(RESTART_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(RESTART_BACKOFF_SECONDS[min(attempt - 1, len(RESTART_BACKOFF_SECONDS) - 1)])
                    if stale_owner is not None and await self._reclaimed(call_id, stale_owner):
                        return "restarted"
                before = await self._started_count(call_id)
                try:
                    await automation.start_media_streaming(call_id, operation_context=RESTART_CONTEXT)
                except ResourceNotFoundError:
                    log.info("media streaming not restarted: ACS no longer knows the call")
                    return "gone"
                except CallControlError as exc:
                    log.warning("media restart attempt %d/%d failed: %s", attempt + 1, RESTART_ATTEMPTS, exc)
                    continue
                if await self._confirmed(call_id, before, stale_owner):
                    log.warning(
                        "media streaming restarted (%s, attempt %d) in %.2fs%s",
                        trigger, attempt + 1, time.monotonic() - started,
                        f"; previously held by {stale_owner}" if stale_owner else "",
                    )  # fmt: skip
                    return "restarted"
                log.warning(
                    "media restart attempt %d/%d: no MediaStreamingStarted within %.0fs",
                    attempt + 1, RESTART_ATTEMPTS, CONFIRM_SECONDS,
                )  # fmt: skip
            log.error("media streaming could not be restarted after %d attempts", RESTART_ATTEMPTS)
            return "failed"
        finally:
            if locked:
                with contextlib.suppress(StoreUnavailable):
                    await self._coord.unlock(call_id)

    async def _started_count(self, call_id: str) -> int | None:
        try:
            count, _ = await self._coord.started(call_id)
        except StoreUnavailable:
            return None
        return count

    async def _reclaimed(self, call_id: str, stale_owner: str) -> bool:
        try:
            owner = (await self._dir.owners([call_id])).get(call_id)
        except StoreUnavailable:
            return False
        return owner is not None and owner != stale_owner

    async def _confirmed(self, call_id: str, before: int | None, stale_owner: str | None) -> bool:
        deadline = time.monotonic() + CONFIRM_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = await self._started_count(call_id)
            if before is not None and now is not None and now > before:
                return True
            if stale_owner is not None and await self._reclaimed(call_id, stale_owner):
                return True
            record = self._st.calls.get(call_id)
            if record is not None and record.ended_at is not None:
                return True  # ended meanwhile: nothing left to restart
        return False


def _event_time(value: str | None) -> float | None:
    """ACS's event time (ISO 8601, 7 fractional digits) as epoch seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def media_restarter(st: Any) -> ReplicaMonitor | None:
    """The app's monitor, if the lifespan built one (tests build apps without it)."""
    monitor = getattr(st, "replica_monitor", None)
    return monitor if isinstance(monitor, ReplicaMonitor) else None
