"""The call registry: what this server knows about each call (id → direction, mode, state, owner objects).

Session *conversation* state lives in MemoManager (synced to the store); the registry holds the live,
process-local objects of active calls (memo, media handler) and a bounded list of recent calls for the API.
With a store and a saver (built in the app's lifespan) finished calls are also remembered in the store,
so the list and :meth:`CallRegistry.lookup` serve calls from before a restart.

With a shared call directory (Redis, several replicas) every call's fields are written through to it
(:meth:`CallRegistry.publish`), so any replica lists every active call, opens the media handler of a call
whose events another replica handled (:meth:`CallRegistry.resolve`), and lets go of a call whose media
socket another replica now holds (:meth:`CallRegistry.release_local`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from callwright.acs.identifiers import is_call_connection_id
from callwright.logs import LogLimiter
from callwright.sessions.memo import MemoManager
from callwright.sessions.store import SessionStore, StoreUnavailable

if TYPE_CHECKING:
    from callwright.metrics import Metrics
    from callwright.sessions.directory import CallDirectory
    from callwright.sessions.saver import SessionSaver
    from callwright.tracing import Tracing

log = logging.getLogger("callwright.sessions")

CallState = Literal["initiating", "connecting", "connected", "transferring", "disconnected", "failed"]
Mode = Literal["media", "voice_live"]
CALL_STATES = frozenset(get_args(CallState))


@dataclass
class CallRecord:
    call_connection_id: str
    direction: Literal["inbound", "outbound"]
    mode: Mode
    state: CallState = "connecting"
    caller: str | None = None
    target: str | None = None
    server_call_id: str | None = None
    correlation_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    participants: list[str] = field(default_factory=list)
    events_seen: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    connected_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    memo: MemoManager | None = field(default=None, repr=False)
    media_handler: Any = field(default=None, repr=False)
    media_connected: bool = False
    # Monotonic time of the last media frame or call event (see touch); the call reaper reads it.
    last_activity: float = field(default_factory=time.monotonic, repr=False)
    # The outcome a stored summary carried (calls from before a restart, with no session loaded).
    _outcome: str | None = field(default=None, repr=False)

    def touch(self) -> None:
        """Something happened on this call (a media frame, an event): it is not abandoned."""
        self.last_activity = time.monotonic()

    def idle_seconds(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last_activity

    @property
    def outcome(self) -> str | None:
        """How the call ended, from its post-call record (hung_up_by_caller, transferred, ...), once saved."""
        if self._outcome is not None:
            return self._outcome
        record = self.memo.get_context("post_call_record") if self.memo is not None else None
        value = record.get("outcome") if isinstance(record, dict) else None
        return value if isinstance(value, str) else None

    def to_api(self, *, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "call_connection_id": self.call_connection_id,
            "direction": self.direction,
            "mode": self.mode,
            "state": self.state,
            "caller": self.caller,
            "target": self.target,
            "created_at": self.created_at,
            "connected_at": self.connected_at,
            "ended_at": self.ended_at,
            "end_reason": self.end_reason,
        }
        outcome = self.outcome
        if outcome is not None:
            out["outcome"] = outcome
        if detail:
            out["participants"] = list(self.participants)
            out["events_seen"] = list(self.events_seen)
            out["context"] = dict(self.context)
            out["media_connected"] = self.media_connected
            history = self.memo.history if self.memo else []
            out["transcript"] = [
                {k: m[k] for k in ("role", "content", "agent", "interrupted", "ts") if k in m} for m in history
            ]
        return out

    def summary(self) -> dict[str, Any]:
        """What the recent-calls list keeps in the store."""
        return {**self.to_api(), "participants": list(self.participants)}

    def directory_entry(self) -> dict[str, Any]:
        """What the shared call directory keeps while the call is up (no live objects)."""
        return {
            **self.summary(),
            "server_call_id": self.server_call_id,
            "correlation_id": self.correlation_id,
            "context": dict(self.context),
            "media_connected": self.media_connected,
        }

    def absorb(self, entry: dict[str, Any]) -> None:
        """Take what another replica learnt about this call (its directory entry): that it was answered,
        fields still unknown here, context keys not set here. Never moves the state back or ends the call."""
        # Only "answered" travels this way: transferring can legitimately go back to connected (a failed
        # transfer) and the end of a call is its owner's to record.
        if entry.get("state") == "connected" and self.state in ("initiating", "connecting") and self.ended_at is None:
            self.state = "connected"
        for key in ("caller", "target", "server_call_id", "correlation_id", "connected_at"):
            if getattr(self, key) is None and entry.get(key) is not None:
                setattr(self, key, entry[key])
        if not self.participants and isinstance(entry.get("participants"), list):
            self.participants = [str(p) for p in entry["participants"]]
        context = entry.get("context")
        if isinstance(context, dict):
            for key, value in context.items():
                self.context.setdefault(key, value)

    @classmethod
    def from_directory(cls, data: dict[str, Any]) -> CallRecord:
        """A live call another replica published (the media socket or an event reached this one)."""
        record = cls.from_summary(data)
        state = data.get("state")
        record.state = state if state in CALL_STATES else "connecting"  # type: ignore[assignment]
        record.server_call_id = data.get("server_call_id")
        record.correlation_id = data.get("correlation_id")
        context = data.get("context")
        record.context = dict(context) if isinstance(context, dict) else {}
        return record

    @classmethod
    def from_summary(cls, data: dict[str, Any]) -> CallRecord:
        state = data.get("state")
        return cls(
            call_connection_id=str(data["call_connection_id"]),
            direction="outbound" if data.get("direction") == "outbound" else "inbound",
            mode="voice_live" if data.get("mode") == "voice_live" else "media",
            state=state if state in CALL_STATES else "disconnected",  # type: ignore[arg-type]
            caller=data.get("caller"),
            target=data.get("target"),
            created_at=float(data.get("created_at") or 0.0),
            connected_at=data.get("connected_at"),
            ended_at=data.get("ended_at"),
            end_reason=data.get("end_reason"),
            participants=[str(p) for p in data.get("participants") or []],
            _outcome=data["outcome"] if isinstance(data.get("outcome"), str) else None,
        )

    @classmethod
    def from_document(cls, call_id: str, doc: dict[str, Any]) -> CallRecord:
        """A record rebuilt from a stored session alone (a call this process never saw end)."""
        ctx = doc.get("context") or {}
        state = ctx.get("call_state")
        participants = ctx.get("participants")
        stamps = [m["ts"] for m in doc.get("history") or [] if isinstance(m, dict) and isinstance(m.get("ts"), float)]
        return cls(
            call_connection_id=call_id,
            direction="outbound" if ctx.get("direction") == "outbound" else "inbound",
            mode="voice_live" if ctx.get("mode") == "voice_live" else "media",
            state=state if state in CALL_STATES else "disconnected",
            caller=ctx.get("caller"),
            target=ctx.get("callee"),
            created_at=min(stamps) if stamps else 0.0,  # the session holds no start time: first message
            participants=[str(p) for p in participants] if isinstance(participants, list) else [],
        )


class CallRegistry:
    def __init__(
        self,
        recent_limit: int = 200,
        *,
        store: SessionStore | None = None,
        saver: SessionSaver | None = None,
        directory: CallDirectory | None = None,
        tracing: Tracing | None = None,
        metrics: Metrics | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._active: dict[str, CallRecord] = {}
        self._recent: OrderedDict[str, CallRecord] = OrderedDict()
        self._recent_limit = recent_limit
        self._store = store
        self._saver = saver
        self._directory = directory
        self._tracing = tracing
        self._metrics = metrics
        # Told the id of every call that started, changed or ended (the operator page's live feed).
        self._on_change = on_change
        self._tasks: set[asyncio.Task[None]] = set()
        self._publishing: set[str] = set()
        self._limiter = LogLimiter(log)

    @property
    def shared(self) -> bool:
        """True when other replicas see these calls (a shared directory)."""
        return self._directory is not None and self._directory.shared

    # -- the shared directory --------------------------------------------------------------------
    async def publish(self, record: CallRecord) -> None:
        """Write the call's fields through to the shared directory (no-op for one replica)."""
        if not self.shared or record.call_connection_id not in self._active:
            return
        assert self._directory is not None
        try:
            entry = await self._directory.get(record.call_connection_id)
            if entry is not None:
                record.absorb(entry)  # another replica may have handled an event of this call meanwhile
            await self._directory.put(record.call_connection_id, record.directory_entry())
        except StoreUnavailable as exc:
            self._limiter.warning("publish", "call not published to the directory: %s", exc)

    def changed(self, record: CallRecord) -> None:
        """Something about the call changed (an event was handled): tell the feed, publish it soon."""
        self._notify(record.call_connection_id)
        self.publish_soon(record)

    def _notify(self, call_id: str) -> None:
        if self._on_change is not None:
            try:
                self._on_change(call_id)
            except Exception:
                log.exception("call change listener failed [call=%s]", call_id)

    async def republish_all(self) -> None:
        """Every call held here back into the directory (after Redis came back, possibly empty)."""
        for record in self.active():
            await self.publish(record)
            if record.media_connected and self.shared:
                assert self._directory is not None
                try:  # its events must keep coming here, where its media socket is
                    await self._directory.claim(record.call_connection_id)
                except StoreUnavailable:
                    return

    def publish_soon(self, record: CallRecord) -> None:
        """:meth:`publish` in the background, coalesced per call: event handling never waits on Redis, and
        a burst of events for one call costs one write of its latest state."""
        if not self.shared or record.call_connection_id in self._publishing:
            return
        self._publishing.add(record.call_connection_id)

        async def later() -> None:
            await asyncio.sleep(0)  # the rest of the burst lands in the same write
            self._publishing.discard(record.call_connection_id)
            await self.publish(record)

        self._spawn(later())

    async def resolve(self, call_id: str) -> CallRecord | None:
        """The call held here, or — with a shared directory — a live call another replica published,
        now held here too (with its session loaded by the caller). None when nobody knows it as active."""
        record = self._active.get(call_id)
        if record is not None or not self.shared or not is_call_connection_id(call_id):
            return record
        assert self._directory is not None
        try:
            entry = await self._directory.get(call_id)
        except StoreUnavailable:
            return None
        if entry is None or entry.get("ended_at") is not None:
            return None
        record = self._active.get(call_id)  # added meanwhile by another task
        if record is None:
            record = self.add(CallRecord.from_directory(entry))
        return record

    def release_local(self, call_id: str) -> CallRecord | None:
        """Another replica holds this call's media now: drop it here without ending it. Its session's
        unsaved changes land in the background (the memo merges with the other replica's writes)."""
        record = self._active.pop(call_id, None)
        if record is None:
            return None
        handler, record.media_handler = record.media_handler, None
        if handler is not None:
            self._spawn(self._stop_quietly(handler, call_id))
        if record.memo is not None and record.memo.dirty and self._saver is not None:
            self._saver.adopt(record.memo)
        if self._tracing is not None:
            self._tracing.call_ended(call_id, state=record.state, released=True)
        log.info("call released: its media is held by another replica [call=%s]", call_id)
        return record

    @staticmethod
    async def _stop_quietly(handler: Any, call_id: str) -> None:
        try:
            await handler.stop()
        except Exception:
            log.exception("media handler failed to stop on release [call=%s]", call_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_in_directory(self, call_id: str, entry: dict[str, Any]) -> None:
        assert self._directory is not None
        try:
            await self._directory.put(call_id, entry)
            await self._directory.end(call_id)
        except StoreUnavailable as exc:
            self._limiter.warning("end", "ended call not removed from the directory: %s", exc)

    async def everywhere(self) -> list[CallRecord]:
        """Active calls on every replica (this one's live records first)."""
        local = self.active()
        if not self.shared:
            return local
        assert self._directory is not None
        try:
            entries = await self._directory.active()
        except StoreUnavailable:
            return local
        seen = {r.call_connection_id for r in local}
        others = [
            CallRecord.from_directory(e)
            for e in entries
            if isinstance(e.get("call_connection_id"), str) and e["call_connection_id"] not in seen
        ]
        return local + others

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def add(self, record: CallRecord) -> CallRecord:
        record.touch()
        self._active[record.call_connection_id] = record
        if self._tracing is not None:
            self._tracing.call_started(record.call_connection_id, direction=record.direction, mode=record.mode)
        self._notify(record.call_connection_id)
        return record

    def get(self, call_id: str) -> CallRecord | None:
        return self._active.get(call_id) or self._recent.get(call_id)

    async def lookup(self, call_id: str) -> CallRecord | None:
        """Like :meth:`get`, but also finds calls this process no longer (or never) held in memory —
        e.g. after a restart — in the session store. For API reads."""
        record = self.get(call_id)
        if record is not None and self.shared and call_id in self._active and not record.media_connected:
            # A copy held here without its media socket: if another replica holds the media, its view
            # (directory + stored session) is the current one, and this copy should not linger.
            assert self._directory is not None
            try:
                owner = (await self._directory.owners([call_id])).get(call_id)
            except StoreUnavailable:
                owner = None
            if owner is not None and owner != self._directory.replica_id:
                self.release_local(call_id)
                record = self.get(call_id)
        if record is not None and (record.memo is not None or self._store is None or call_id in self._active):
            return record
        if self._store is None or not is_call_connection_id(call_id):
            return record
        if record is None and self.shared:
            assert self._directory is not None
            try:
                entry = await self._directory.get(call_id)
            except StoreUnavailable:
                entry = None
            if entry is not None:  # live on another replica: its fields from the directory, its session below
                record = CallRecord.from_directory(entry)
                try:
                    doc = await self._store.load(call_id)
                except StoreUnavailable:
                    doc = None
                if doc is not None:
                    record.memo = MemoManager.from_document(call_id, self._store, doc)
                return record
        try:
            doc = await self._store.load(call_id)
        except StoreUnavailable:
            return record
        if doc is None:
            return record
        if record is None:
            record = CallRecord.from_document(call_id, doc)
            self._remember_locally(record, newest=False)
        record.memo = MemoManager.from_document(call_id, self._store, doc)
        return record

    async def restore(self) -> int:
        """Load the persisted recent-calls list (at start); returns how many calls it held."""
        if self._store is None:
            return 0
        try:
            summaries = await self._store.recent_calls(self._recent_limit)
        except StoreUnavailable:
            log.warning("recent calls not restored: the session store is unreachable")
            return 0
        for data in reversed(summaries):  # oldest first, so the newest ends up last (= first in recent())
            try:
                record = CallRecord.from_summary(data)
            except (KeyError, TypeError, ValueError):
                continue
            if record.call_connection_id not in self._active:
                self._remember_locally(record, newest=True)
        return len(summaries)

    def active(self) -> list[CallRecord]:
        return list(self._active.values())

    def recent(self) -> list[CallRecord]:
        return list(reversed(self._recent.values()))

    def finish(self, call_id: str, *, state: CallState = "disconnected", reason: str | None = None) -> None:
        rec = self._active.pop(call_id, None)
        if rec is None:
            return
        rec.state = state
        rec.ended_at = time.time()
        rec.end_reason = reason
        # The post-call record goes into the session whoever ended the call (ACS, the reaper, the drain);
        # the memo is then dirty and lands through the saver below.
        from callwright.sessions.postcall import store_record  # postcall reads CallRecord: imported late

        try:
            store_record(rec)
        except Exception:  # a record that cannot be built must not keep the call from ending
            log.exception("post-call record not built [call=%s]", call_id)
        rec.media_handler = None
        self._remember_locally(rec, newest=True)
        if self._tracing is not None:
            self._tracing.call_ended(call_id, state=state, reason=reason)
        self._notify(call_id)
        if self._metrics is not None and rec.connected_at is not None:
            self._metrics.call_duration_seconds.labels(rec.direction, rec.mode, state).observe(
                max(0.0, rec.ended_at - rec.connected_at)
            )
        if self.shared:
            self._spawn(self._end_in_directory(call_id, rec.directory_entry()))
        if self._saver is not None:
            if rec.memo is not None and rec.memo.dirty:
                # Its final save has not landed (store down): retried in the background, spilled at exit.
                self._saver.adopt(rec.memo)
            self._saver.remember(call_id, rec.summary(), rec.ended_at)

    def _remember_locally(self, rec: CallRecord, *, newest: bool) -> None:
        self._recent[rec.call_connection_id] = rec
        self._recent.move_to_end(rec.call_connection_id, last=newest)
        while len(self._recent) > self._recent_limit:
            self._recent.popitem(last=False)

    def __len__(self) -> int:
        return len(self._active)
