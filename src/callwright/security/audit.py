"""The audit log: who placed or hung up what, and every refusal of such a request.

One line per entry on the ``callwright.audit`` logger (route it to durable storage in production) and
the last N entries in memory for ``GET /api/v1/audit``. Fields are sanitized: a subject claim or a path
may hold control characters meant to forge log lines.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

log = logging.getLogger("callwright.audit")
_MAX_FIELD = 200


def clean(value: object) -> str:
    """Printable, bounded, one line: control characters and lone surrogates become escapes."""
    text = str(value)
    if len(text) > _MAX_FIELD:
        text = text[:_MAX_FIELD] + "…"
    if text.isprintable():
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


class AuditLog:
    # Refusals of requests without a valid credential are kept apart (and fewer): anyone can send those,
    # and they must not push the entries of real operators out of the in-memory tail.
    ANONYMOUS_KEPT = 100

    def __init__(self, maxlen: int = 1000, metrics: Any = None) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._anonymous: deque[dict[str, Any]] = deque(maxlen=min(maxlen, self.ANONYMOUS_KEPT))
        self._metrics = metrics

    def record(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        target: str | None = None,
        call_id: str | None = None,
        detail: str | None = None,
        client: str | None = None,
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "at": time.time(),
            "actor": clean(actor),
            "action": clean(action),
            "outcome": clean(outcome),
            "target": clean(target) if target is not None else None,
            "call_id": clean(call_id) if call_id is not None else None,
            "detail": clean(detail) if detail is not None else None,
            "client": clean(client) if client is not None else None,
        }
        (self._anonymous if actor == "anonymous" else self._entries).append(entry)
        if self._metrics is not None and action == "place":
            # Outcomes are this module's callers' fixed codes ("placed", "failed", "refused:<error>").
            self._metrics.outbound_total.labels(outcome=entry["outcome"]).inc()
        parts = [f"{k}={entry[k]}" for k in ("actor", "action", "target", "call_id", "outcome", "client")]
        if entry["detail"]:
            parts.append(f"detail={entry['detail']!r}")
        log.info("audit %s", " ".join(p for p in parts if not p.endswith("=None")))
        return entry

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        items = sorted([*self._entries, *self._anonymous], key=lambda e: e["at"], reverse=True)
        return items if limit is None else items[:limit]

    def __len__(self) -> int:
        return len(self._entries) + len(self._anonymous)
