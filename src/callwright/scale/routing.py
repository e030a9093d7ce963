"""Cross-replica routing of webhook events, and who holds each call's media.

Between the webhook's parsing and the processor, with a shared call directory (Redis):

1. **Deduplication across replicas.** Every event's id — and, for an IncomingCall, the call it announces
   (``incoming:<serverCallId or correlationId>``) — is marked seen in Redis in one round trip; an event any
   of whose keys was already seen is a duplicate (counted like the processor's own), so an IncomingCall
   Event Grid delivers to two replicas is answered once. Events the processor then defers (its queues
   full: the webhook answers 503 and Event Grid retries) are un-marked, so the retry is not a duplicate.
2. **Routing to the media owner.** The owners of the delivery's calls are read in one round trip. An
   event whose call's media socket a *live* replica holds is put on that replica's relay stream
   (``relay.py``) and runs there; everything else (no owner yet, or a dead one: the take-over restarts its
   media) runs here at once, and so do the media stream's own reports (MediaStreamingStarted/Stopped/
   Failed: a failure after the owner died must not wait for its heartbeat to run out). Which replicas are
   alive comes from the heartbeats, cached for about a heartbeat interval (not a query per event). An
   event for a call this replica holds goes through its own stream too: one ~1 ms round trip buys a strict
   per-call order — the order the stream got them — whichever replicas the load balancer handed a call's
   callbacks to (taken straight to the processor, an event posted here could overtake one another replica
   relayed a moment earlier).

Redis unreachable: events run here with this process's deduplication only (a line every 10 s says so);
for a second after a failure Redis is not asked again, so a hung server does not slow every delivery.
With one replica (no Redis) the router only hands the delivery to the processor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from callwright.acs.events import ACSEventTypes, CallEvent
from callwright.events.processor import DOES_NOT_HOLD, LOGGED_PER_DELIVERY, ProcessResult
from callwright.logs import LogLimiter
from callwright.scale.relay import ClaimNotices, EventRelay
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.scale")

DOWN_BACKOFF_SECONDS = 1.0
# The media stream's own reports run on the replica they reach, not at the call's media owner: a
# MediaStreamingFailed after a replica died would otherwise wait in the dead replica's stream until its
# heartbeat runs out (~3 s of silence for the caller). Their handlers (scale/takeover.py) hold a per-call
# lock in Redis and keep their counters there, so where they run does not matter.
RUN_WHERE_THEY_LAND = DOES_NOT_HOLD
# An owner missing from the cached live set may have just started: re-read the heartbeats, but not more
# often than this.
ALIVE_MIN_REFRESH_SECONDS = 0.25


def dedup_keys(event: CallEvent) -> list[str]:
    """The processor's own keys (events/processor.py), shared by every replica."""
    keys = [f"id:{event.id}"]
    if event.type == ACSEventTypes.INCOMING_CALL:
        keys.append(f"incoming:{event.server_call_id or event.correlation_id}")
    return keys


@dataclass(frozen=True)
class Routed:
    result: ProcessResult
    forwarded: int = 0


class EventRouter:
    def __init__(self, app_state: Any, *, relay: EventRelay | None, alive_ttl: float) -> None:
        self._st = app_state
        self.relay = relay
        self._alive_ttl = alive_ttl
        self._alive: dict[str, dict[str, Any]] = {}
        self._alive_at = float("-inf")
        self._alive_lock = asyncio.Lock()
        self._down_until = float("-inf")
        self._limiter = LogLimiter(log)

    @property
    def _directory(self) -> Any:
        return self._st.directory

    @property
    def shared(self) -> bool:
        directory = getattr(self._st, "directory", None)
        return bool(directory is not None and directory.shared and self.relay is not None)

    @property
    def replica_id(self) -> str:
        return str(self._directory.replica_id)

    # -- liveness ------------------------------------------------------------------------------------
    async def alive(self, *, want: str | None = None) -> dict[str, dict[str, Any]]:
        """Live replicas (cached ~a heartbeat interval; re-read sooner when ``want`` is missing from it)."""
        if not self.shared:
            return {self.replica_id: {"draining": bool(getattr(self._st, "draining", False))}}
        age = time.monotonic() - self._alive_at
        if age < self._alive_ttl and (want is None or want in self._alive or age < ALIVE_MIN_REFRESH_SECONDS):
            return self._alive
        async with self._alive_lock:
            age = time.monotonic() - self._alive_at
            if age >= ALIVE_MIN_REFRESH_SECONDS and (age >= self._alive_ttl or (want and want not in self._alive)):
                try:
                    self._alive = await self._directory.alive()
                except StoreUnavailable as exc:
                    self._limiter.warning("alive", "live replicas unknown (%s): keeping the last answer", exc)
                self._alive_at = time.monotonic()  # a failure is not retried at once either
        return self._alive

    async def other_ready_replica(self) -> str | None:
        """Another live replica that is not draining (None when this one is alone, or Redis is down)."""
        if not self.shared:
            return None
        alive = await self.alive()
        for rid, info in alive.items():
            if rid != self.replica_id and not (isinstance(info, dict) and info.get("draining")):
                return rid
        return None

    # -- routing -------------------------------------------------------------------------------------
    async def _local(self, events: list[CallEvent]) -> ProcessResult:
        result: ProcessResult = await self._st.processor.process_events(events, self._st)
        return result

    def _redis_down(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + DOWN_BACKOFF_SECONDS
        self._limiter.warning(
            "down",
            "redis unreachable (%s): events run on this replica, without cross-replica deduplication or routing",
            exc,
        )

    async def route(self, events: list[CallEvent], *, dedup: bool = True) -> Routed:
        """Run a delivery where each event belongs. ``dedup=False`` for events already marked seen (a dead
        replica's relay stream, taken over): they are only routed."""
        if not self.shared:
            return Routed(await self._local(events))
        if time.monotonic() < self._down_until:
            self._limiter.warning("down", "redis unreachable: events run on this replica only")
            return Routed(await self._local(events))
        st = self._st
        keys = [dedup_keys(e) for e in events]
        try:
            flat = [k for ks in keys for k in ks]
            firsts = await self._directory.first_deliveries(flat) if dedup else [True] * len(flat)
        except StoreUnavailable as exc:
            self._redis_down(exc)
            return Routed(await self._local(events))
        fresh: list[tuple[CallEvent, list[str]]] = []
        duplicates = 0
        n = 0
        for event, ks in zip(events, keys, strict=True):
            first = all(firsts[n : n + len(ks)])
            n += len(ks)
            if first:
                fresh.append((event, ks))
                continue
            duplicates += 1
            label = st.processor.type_label(event.type)
            st.metrics.events_total.labels(label, "duplicate").inc()
            if duplicates <= LOGGED_PER_DELIVERY:
                log.info(
                    "duplicate delivery of %s (%s) ignored: another replica had it",
                    label,
                    event.id,
                    extra={"call_id": event.call_connection_id},
                )
        if duplicates > LOGGED_PER_DELIVERY:
            log.info("%d more duplicate events of this delivery ignored", duplicates - LOGGED_PER_DELIVERY)

        remote, local = await self._split(fresh)
        relayed = forwarded = 0
        for owner, group in remote.items():
            assert self.relay is not None
            try:
                await self.relay.forward(owner, [e for e, _ in group])
            except StoreUnavailable as exc:
                self._redis_down(exc)
                local.extend(group)  # runs here rather than not at all
                continue
            relayed += len(group)
            if owner != self.replica_id:
                forwarded += len(group)
                self._drop_local_copies(group, owner)
        if local and remote:
            # Events that could not be forwarded were appended after the others: put them back in order.
            position = {id(e): i for i, (e, _) in enumerate(fresh)}
            local.sort(key=lambda item: position[id(item[0])])
        result = await self._local([e for e, _ in local]) if local else ProcessResult(0, 0, 0)
        if result.deferred:
            await self._unmark_deferred(local)
        return Routed(
            ProcessResult(
                accepted=result.accepted + relayed,
                duplicates=result.duplicates + duplicates,
                ignored=result.ignored,
                deferred=result.deferred,
            ),
            forwarded,
        )

    async def _split(
        self, fresh: list[tuple[CallEvent, list[str]]]
    ) -> tuple[dict[str, list[tuple[CallEvent, list[str]]]], list[tuple[CallEvent, list[str]]]]:
        """(owner → its events in order, events that run here)."""
        call_ids = sorted({cid for e, _ in fresh if (cid := e.call_connection_id) is not None})
        if not call_ids and not getattr(self._st, "draining", False):
            return {}, list(fresh)
        try:
            owners: dict[str, str] = await self._directory.owners(call_ids)
        except StoreUnavailable as exc:
            self._redis_down(exc)
            return {}, list(fresh)
        me = self.replica_id
        remote: dict[str, list[tuple[CallEvent, list[str]]]] = {}
        local: list[tuple[CallEvent, list[str]]] = []
        handover = await self.other_ready_replica() if getattr(self._st, "draining", False) else None
        for item in fresh:
            cid = item[0].call_connection_id
            if handover is not None and item[0].type == ACSEventTypes.INCOMING_CALL:
                # Draining: a new call is answered by a replica that stays, not refused (the caller would
                # hear busy while the load balancer has not yet taken this replica out of rotation).
                remote.setdefault(handover, []).append(item)
                log.info("IncomingCall handed to replica %s: this one is draining", handover)
                continue
            owner = owners.get(cid) if cid is not None else None
            if owner is None or item[0].type in RUN_WHERE_THEY_LAND:
                local.append(item)
                continue
            if owner != me and owner not in await self.alive(want=owner):
                # Its owner is dead: run here (the take-over restarts its media on a live replica).
                local.append(item)
                continue
            remote.setdefault(owner, []).append(item)
        return remote, local

    def _drop_local_copies(self, group: list[tuple[CallEvent, list[str]]], owner: str) -> None:
        """A call whose events go to its owner is not held here: drop a copy an earlier event left (an answer
        or CallConnected that ran here before the media socket reached the owner)."""
        for cid in {e.call_connection_id for e, _ in group}:
            if cid is not None:
                release_if_held(self._st, cid, owner)

    async def _unmark_deferred(self, local: list[tuple[CallEvent, list[str]]]) -> None:
        """Un-mark in Redis what the processor deferred (not marked seen there), so Event Grid's retry runs it."""
        processor = self._st.processor
        keys = [k for e, ks in local if not processor.has_seen(e) for k in ks]
        if not keys:
            return
        directory = self._directory
        try:
            await directory.client.delete(*[directory.key("seen", k) for k in keys])
        except Exception as exc:  # the retry is then a duplicate: logged, never a 500
            self._limiter.warning("unmark", "deferred events stay marked seen (%s): their retry is dropped", exc)


def release_if_held(st: Any, call_id: str, owner: str) -> bool:
    """Another replica (``owner``) holds this call's media: drop this replica's live copy, if it has one and
    no media socket of its own for it. True when something was released."""
    calls = st.calls
    record = calls.get(call_id)
    if record is None or record.ended_at is not None or record.media_connected:
        return False  # a socket of this replica's own for it is released when that socket ends
    release = getattr(calls, "release_local", None)
    if release is None or release(call_id) is None:
        return False
    log.info("call held by replica %s now: released here", owner, extra={"call_id": call_id})
    return True


class Routing:
    """What the lifespan builds, starts and closes: the router, and with Redis the relay and claim notices."""

    def __init__(self, app_state: Any) -> None:
        self._st = app_state
        directory = app_state.directory
        settings = app_state.settings
        self.relay: EventRelay | None = None
        self.claims: ClaimNotices | None = None
        if getattr(directory, "shared", False):
            self.relay = EventRelay(
                client=directory.client,
                url=directory.url,
                key=directory.key,
                replica_id=directory.replica_id,
                on_events=self._run_relayed,
                on_release=self._released,
                metrics=app_state.metrics,
            )
            self.claims = ClaimNotices(
                client=directory.client,
                url=directory.url,
                channel=directory.key("claims"),
                replica_id=directory.replica_id,
                on_claim=self._released,
            )
        self.router = EventRouter(
            app_state, relay=self.relay, alive_ttl=float(getattr(settings, "replica_heartbeat_seconds", 1.0))
        )

    async def _run_relayed(self, events: list[CallEvent]) -> ProcessResult:
        result: ProcessResult = await self._st.processor.process_events(events, self._st)
        return result

    def _released(self, call_id: str, owner: str) -> None:
        release_if_held(self._st, call_id, owner or "another replica")

    async def route(self, events: list[CallEvent], *, dedup: bool = True) -> Routed:
        return await self.router.route(events, dedup=dedup)

    async def claimed(self, call_id: str, previous: str | None) -> None:
        """This replica's media socket holds ``call_id`` now: the previous owner, and any replica holding a
        copy, let go of it."""
        me = self._st.directory.replica_id
        if self.relay is not None and previous and previous != me:
            try:
                await self.relay.send_release(previous, call_id, me)
            except StoreUnavailable as exc:
                log.warning("replica %s not told that the call's media moved here: %s", previous, exc)
        if self.claims is not None:
            await self.claims.announce(call_id)

    async def other_ready_replica(self) -> str | None:
        return await self.router.other_ready_replica()

    async def take_stream_of(self, replica_id: str) -> list[CallEvent]:
        """A dead replica's relayed events it never ran (for the take-over), oldest first; route them with
        ``route(events, dedup=False)`` (they were marked seen when they first arrived), once their calls'
        media has a new owner. Raises StoreUnavailable."""
        if self.relay is None:
            return []
        return await self.relay.take_stream_of(replica_id)

    async def rerun_stream_of(self, replica_id: str) -> int:
        """Take a dead replica's unrun events and route them to their calls' owners now (or run them here).
        Returns how many; 0 when Redis is unreachable (logged)."""
        try:
            events = await self.take_stream_of(replica_id)
        except StoreUnavailable as exc:
            log.warning("replica %s's relayed events not taken: %s", replica_id, exc)
            return 0
        if events:
            await self.route(events, dedup=False)
        return len(events)

    def start(self) -> None:
        if self.relay is not None:
            self.relay.start()
        if self.claims is not None:
            self.claims.start()

    async def close(self) -> None:
        if self.claims is not None:
            await self.claims.close()
        if self.relay is not None:
            await self.relay.close()
