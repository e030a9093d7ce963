"""CallEventProcessor: the seed's V1 event processor, with what the original lacked.

- Several handlers per event type; a handler that raises is logged and does not stop the others,
  the rest of the batch or other calls.
- Deduplication by event id (and, for IncomingCall, by the call it announces), so a redelivered event
  runs once and an incoming call is never answered twice.
- Events of one call run in order; different calls run concurrently. ``process_events`` only
  enqueues, so the webhook answers at once however slow a handler is.
- Bounded: enqueueing and draining yield to the loop every few events (a 5,000-event delivery never
  holds it for long); queued keys and queued events are capped (what does not fit is *deferred*: not
  marked seen, so a retry delivers it); calls opened by events alone (CallConnected/ParticipantsUpdated
  for a call this server neither answered nor placed) are capped while unconfirmed, so a flood of
  forged ids cannot leave thousands of calls that never end.
- Metric labels are bounded: the type label is a known type's short name (or a type a handler was
  registered for) else ``other``; the outcome comes from :data:`OUTCOMES`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callwright.acs.events import ACSEventTypes, CallEvent
from callwright.events.context import CallEventContext
from callwright.logs import LogLimiter, call_scope
from callwright.metrics import Metrics
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.events")

EventHandler = Callable[[CallEventContext], Awaitable[None]]

OUTCOMES = ("handled", "failed", "duplicate", "ignored", "rejected", "deferred", "refused")
# The media stream's own reports run on whichever replica they reach (scale/routing.py); they never make
# that replica hold the call (a copy without its media socket would linger there and answer API reads
# with an empty transcript).
DOES_NOT_HOLD = frozenset(
    {
        ACSEventTypes.MEDIA_STREAMING_STARTED,
        ACSEventTypes.MEDIA_STREAMING_STOPPED,
        ACSEventTypes.MEDIA_STREAMING_FAILED,
    }
)
OTHER = "other"
# Types whose event may open a call record this server has not seen yet (the answer or create_call
# response can arrive after them, or another replica answered). Every other event needs a known call.
CALL_OPENING = frozenset({ACSEventTypes.CALL_CONNECTED, ACSEventTypes.PARTICIPANTS_UPDATED})
YIELD_EVERY = 64
LOGGED_PER_DELIVERY = 10


async def is_being_placed(st: Any, operation_context: str | None) -> bool:
    """Whether the API (of any replica) is placing a call under this operation context right now."""
    if not operation_context:
        return False
    try:
        return bool(await st.directory.has_pending(operation_context))
    except StoreUnavailable:
        return False


@dataclass(frozen=True)
class ProcessResult:
    accepted: int
    duplicates: int
    ignored: int
    deferred: int = 0

    def to_dict(self) -> dict[str, int]:
        out = {"accepted": self.accepted, "duplicates": self.duplicates, "ignored": self.ignored}
        if self.deferred:
            out["deferred"] = self.deferred
        return out


class _SeenIds:
    def __init__(self, limit: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: str) -> bool:
        return key in self._ids

    def add(self, key: str) -> bool:
        """True when new."""
        if key in self._ids:
            self._ids.move_to_end(key)
            return False
        self._ids[key] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True


class CallEventProcessor:
    def __init__(
        self,
        *,
        metrics: Metrics | None = None,
        dedup_limit: int = 20_000,
        max_queued_keys: int = 2_000,
        max_queued_events: int = 20_000,
        max_unconfirmed_calls: int = 100,
    ) -> None:
        self._handlers: dict[str, list[EventHandler]] = {}
        self._seen = _SeenIds(dedup_limit)
        self._queues: dict[str, deque[tuple[CallEvent, Any]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._metrics = metrics
        self._closed = False
        self._max_keys = max_queued_keys
        self._max_events = max_queued_events
        self._queued = 0
        self._max_unconfirmed = max_unconfirmed_calls
        # Calls opened by an event alone, until the answer, a placed call or media confirms them.
        self._unconfirmed: OrderedDict[str, None] = OrderedDict()
        self._log_limiter = LogLimiter(log)  # a flood of refused events logs a line per 10 s

    def register_handler(self, event_type: str, handler: EventHandler) -> None:
        handlers = self._handlers.setdefault(event_type, [])
        if handler not in handlers:
            handlers.append(handler)

    def unregister_handler(self, event_type: str, handler: EventHandler) -> None:
        if handler in self._handlers.get(event_type, []):
            self._handlers[event_type].remove(handler)

    def handlers_for(self, event_type: str) -> list[EventHandler]:
        return list(self._handlers.get(event_type, ()))

    def has_seen(self, event: CallEvent) -> bool:
        """Whether this processor took the event (a deferred one was not taken: its retry must run)."""
        return f"id:{event.id}" in self._seen

    def type_label(self, event_type: str | None) -> str:
        """A bounded metric label: a known or handled type's short name, else ``other``."""
        if event_type is not None and (event_type in _KNOWN or event_type in self._handlers):
            return event_type.rsplit(".", 1)[-1]
        return OTHER

    def _count_label(self, label: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.events_total.labels(label, outcome if outcome in OUTCOMES else OTHER).inc()

    def _count(self, event: CallEvent, outcome: str) -> None:
        self._count_label(self.type_label(event.type), outcome)

    def count_rejected(self, event_type: str | None) -> None:
        """An event the parser refused (the webhook logs it)."""
        self._count_label(self.type_label(event_type), "rejected")

    def _dedup_keys(self, event: CallEvent) -> list[str]:
        keys = [f"id:{event.id}"]
        if event.type == ACSEventTypes.INCOMING_CALL:
            keys.append(f"incoming:{event.server_call_id or event.correlation_id}")
        return keys

    async def process_events(self, events: list[CallEvent], app_state: Any) -> ProcessResult:
        """Enqueue a delivery. Handlers run in the background; see :meth:`drain` to wait for them."""
        accepted = duplicates = ignored = deferred = 0
        loop = asyncio.get_running_loop()
        for n, event in enumerate(events):
            if n and n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let media and other requests run between slices of a big delivery
            dedup_keys = self._dedup_keys(event)
            if any(k in self._seen for k in dedup_keys):
                for k in dedup_keys:
                    self._seen.add(k)
                duplicates += 1
                self._count(event, "duplicate")
                if duplicates <= LOGGED_PER_DELIVERY:
                    log.info(
                        "duplicate delivery of %s (%s) ignored",
                        self.type_label(event.type),
                        event.id,
                        extra={"call_id": event.call_connection_id},
                    )
                continue
            if not self._handlers.get(event.type):
                for k in dedup_keys:
                    self._seen.add(k)
                ignored += 1
                self._count(event, "ignored")
                log.debug("no handler for %s; ignored", event.type, extra={"call_id": event.call_connection_id})
                continue
            key = event.correlation_key or "call-less"
            if self._queued >= self._max_events or (key not in self._queues and len(self._queues) >= self._max_keys):
                # Not marked seen: the retry the webhook asks for (503) brings it back.
                deferred += 1
                self._count(event, "deferred")
                continue
            for k in dedup_keys:
                self._seen.add(k)
            self._queues.setdefault(key, deque()).append((event, app_state))
            self._queued += 1
            if key not in self._workers:
                self._workers[key] = loop.create_task(self._drain_key(key), name=f"events:{key[:80]}")
            accepted += 1
        if duplicates > LOGGED_PER_DELIVERY:
            log.info("%d more duplicate events of this delivery ignored", duplicates - LOGGED_PER_DELIVERY)
        if deferred:
            log.warning("%d events deferred: event queues are full", deferred)
        return ProcessResult(accepted, duplicates, ignored, deferred)

    async def _drain_key(self, key: str) -> None:
        queue = self._queues[key]
        done = 0
        try:
            while queue:
                event, app_state = queue.popleft()
                self._queued -= 1
                await self._dispatch(event, app_state)
                done += 1
                if done % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # handlers that never suspend must not hold the loop
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)
            else:  # cancelled with events left: they are dropped, keep the counter true
                self._queued -= len(queue)
                queue.clear()
                self._queues.pop(key, None)

    async def _may_open_call(self, ctx: CallEventContext) -> bool:
        """Whether an event for a call this server does not know may open its record (bounded)."""
        event = ctx.event
        st = ctx.app_state
        if await is_being_placed(st, event.operation_context):
            return True  # a call the API (of any replica) is placing right now
        calls = st.calls
        for cid in list(self._unconfirmed):
            rec = calls.get(cid)
            if (
                rec is None
                or rec.ended_at is not None
                or rec.media_connected
                or rec.caller is not None
                or rec.direction == "outbound"
            ):
                del self._unconfirmed[cid]
        if len(self._unconfirmed) >= self._max_unconfirmed:
            return False
        cid = event.call_connection_id
        if cid is not None:
            self._unconfirmed[cid] = None
        return True

    async def _dispatch(self, event: CallEvent, app_state: Any) -> None:
        ctx = CallEventContext(event=event, app_state=app_state)
        with call_scope(event.call_connection_id):
            call = ctx.call
            if call is None and event.call_connection_id is not None and event.type not in DOES_NOT_HOLD:
                # Published by another replica (its answer, its earlier events): held here from now on.
                call = await app_state.calls.resolve(event.call_connection_id)
            label = self.type_label(event.type)
            if (
                call is None
                and event.call_connection_id is not None
                and event.type in CALL_OPENING
                and not await self._may_open_call(ctx)
            ):
                self._log_limiter.warning(
                    "refused",
                    "%s for an unknown call not taken: %d calls opened by events alone are still unconfirmed",
                    label,
                    len(self._unconfirmed),
                )
                self._count_label(label, "refused")
                return
            if call is not None:
                _note(call, label)
            outcome = "handled"
            for handler in self.handlers_for(event.type):
                try:
                    await handler(ctx)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    outcome = "failed"
                    log.exception(
                        "handler %s failed on %s (%s)",
                        getattr(handler, "__name__", handler),
                        label,
                        event.id,
                    )
            if call is None and (created := ctx.call) is not None:  # the event created its call
                _note(created, label)
            if (current := ctx.call) is not None:
                app_state.calls.changed(current)  # the live page and other replicas see the new state
            self._count_label(label, outcome)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been handled (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            while self._workers:
                await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        try:
            await self.drain(timeout=5.0)
        except TimeoutError:
            for task in list(self._workers.values()):
                task.cancel()
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)


_KNOWN = frozenset(ACSEventTypes.all())
EVENTS_SEEN_LIMIT = 500


def _note(call: Any, label: str) -> None:
    """Record the event against its call (bounded: a flood of events cannot grow a record without end)."""
    seen = call.events_seen
    seen.append(label)
    if len(seen) > EVENTS_SEEN_LIMIT:
        del seen[: len(seen) - EVENTS_SEEN_LIMIT]
    touch = getattr(call, "touch", None)  # the reaper's activity clock
    if touch is not None:
        touch()
