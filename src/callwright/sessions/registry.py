"""The call registry: what this server knows about each call (id → direction, mode, state, owner objects).

Session *conversation* state lives in MemoManager (synced to the store); the registry holds the live,
process-local objects of active calls (memo, media handler) and a bounded list of recent calls for the API.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from callwright.sessions.memo import MemoManager

CallState = Literal["initiating", "connecting", "connected", "transferring", "disconnected", "failed"]
Mode = Literal["media", "voice_live"]


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


class CallRegistry:
    def __init__(self, recent_limit: int = 200) -> None:
        self._active: dict[str, CallRecord] = {}
        self._recent: OrderedDict[str, CallRecord] = OrderedDict()
        self._recent_limit = recent_limit

    def add(self, record: CallRecord) -> CallRecord:
        self._active[record.call_connection_id] = record
        return record

    def get(self, call_id: str) -> CallRecord | None:
        return self._active.get(call_id) or self._recent.get(call_id)

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
        rec.media_handler = None
        self._recent[call_id] = rec
        while len(self._recent) > self._recent_limit:
            self._recent.popitem(last=False)

    def __len__(self) -> int:
        return len(self._active)
