"""What an event handler gets: the event, its call, the session, the automation client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callwright.acs.events import CallEvent

if TYPE_CHECKING:
    from callwright.acs.call_control import CallAutomation
    from callwright.sessions.memo import MemoManager
    from callwright.sessions.registry import CallRecord


@dataclass
class CallEventContext:
    event: CallEvent
    app_state: Any

    @property
    def call_connection_id(self) -> str | None:
        return self.event.call_connection_id

    def get_event_data(self) -> dict[str, Any]:
        return self.event.data

    @property
    def call(self) -> CallRecord | None:
        cid = self.call_connection_id
        return self.app_state.calls.get(cid) if cid else None

    @property
    def memo_manager(self) -> MemoManager | None:
        call = self.call
        return call.memo if call else None

    @property
    def automation_client(self) -> CallAutomation | None:
        return getattr(self.app_state, "automation", None)
