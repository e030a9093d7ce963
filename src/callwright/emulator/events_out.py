"""Events the emulator sends: Event Grid deliveries (IncomingCall) and per-call callback CloudEvents.

Callbacks go out as ACS sends them (acs-protocol.md §3.1–3.2): a JSON array of one CloudEvent per POST,
``Authorization: Bearer <RS256 JWT>`` minted fresh per attempt, in order per call, retried with bounded
exponential back-off on non-2xx or connection errors. Event Grid deliveries follow §1: Event Grid schema
array, ``aeg-*`` headers, the SubscriptionValidation handshake before the first delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from callwright.emulator.tokens import TokenIssuer

log = logging.getLogger("callwright.emulator.events")

SUBSCRIPTION_NAME = "CALLWRIGHT-EMULATOR"


def event_time() -> str:
    """ACS-style timestamp with 7 fractional digits, e.g. 2024-04-10T19:10:42.4046861+00:00."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0+00:00"


def cloud_event(event_type: str, call_connection_id: str, data: dict[str, Any]) -> dict[str, Any]:
    source = f"calling/callConnections/{call_connection_id}"
    return {
        "id": str(uuid.uuid4()),
        "source": source,
        "type": f"Microsoft.Communication.{event_type}",
        "data": data,
        "time": event_time(),
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": source,
    }


def event_grid_event(event_type: str, *, topic: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": topic,
        "subject": subject,
        "data": data,
        "eventType": event_type,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": event_time().replace("+00:00", "Z"),
    }


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    timeout_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.base_delay_s * (2**attempt), self.max_delay_s)


class Poster:
    """POSTs JSON with retries; shared by all calls (one HTTP client, one retry policy)."""

    def __init__(self, http: httpx.AsyncClient, retry: RetryPolicy) -> None:
        self._http = http
        self.retry = retry

    async def post(self, url: str, payload: Any, headers_for_attempt: Callable[[int], dict[str, str]]) -> bool:
        body = json.dumps(payload).encode()
        for attempt in range(self.retry.max_attempts):
            try:
                resp = await self._http.post(
                    url, content=body, headers=headers_for_attempt(attempt), timeout=self.retry.timeout_s
                )
                if 200 <= resp.status_code < 300:
                    return True
                problem = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt + 1 < self.retry.max_attempts:
                delay = self.retry.delay(attempt)
                log.info("delivery to %s failed (%s); retry %d in %.1fs", url, problem, attempt + 1, delay)
                await asyncio.sleep(delay)
            else:
                log.warning("delivery to %s failed (%s); giving up after %d attempts", url, problem, attempt + 1)
        return False


class CallbackChannel:
    """One call's callback stream: events leave in the order they were queued, one at a time."""

    def __init__(self, poster: Poster, issuer: TokenIssuer, call_connection_id: str) -> None:
        self._poster = poster
        self._issuer = issuer
        self._ccid = call_connection_id
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name=f"callbacks-{call_connection_id}")
        self.delivered: list[str] = []
        self.failed: list[str] = []

    def send(self, url: str, event_type: str, data: dict[str, Any]) -> None:
        self._queue.put_nowait((url, cloud_event(event_type, self._ccid, data)))

    def _headers(self, attempt: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self._issuer.callback_token()}",
            "User-Agent": "callwright-acs-emulator",
        }

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                url, event = item
                ok = await self._poster.post(url, [event], self._headers)
                (self.delivered if ok else self.failed).append(event["type"])
            except Exception:  # a bug here must not silence the rest of the call's events
                log.exception("callback delivery for call %s crashed", self._ccid)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until everything queued so far has been delivered (or given up on)."""
        await self._queue.join()

    async def close(self, *, drain_timeout_s: float = 5.0) -> None:
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), drain_timeout_s)
        except TimeoutError:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker


class EventGridWebhook:
    """The app's Event Grid subscription: validated once, then IncomingCall deliveries."""

    def __init__(self, poster: Poster, http: httpx.AsyncClient, url: str, *, topic: str, validation_base: str):
        self.url = url
        self._poster = poster
        self._http = http
        self._topic = topic
        self._validation_base = validation_base
        self.validated = False
        self._pending_code: str | None = None
        self._async_validated = asyncio.Event()

    def confirm_async_validation(self, code: str) -> bool:
        """Called when the app GETs validationUrl (the asynchronous handshake)."""
        if self._pending_code is not None and code == self._pending_code:
            self._async_validated.set()
            return True
        return False

    def _headers(self, event_type: str, attempt: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json; charset=utf-8",
            "aeg-event-type": event_type,
            "aeg-subscription-name": SUBSCRIPTION_NAME,
            "aeg-delivery-count": str(attempt),
            "aeg-data-version": "1.0" if event_type == "Notification" else "1",
            "aeg-metadata-version": "1",
        }

    async def validate(self, *, async_wait_s: float = 10.0) -> bool:
        """Run the SubscriptionValidation handshake (synchronous reply, or a GET of validationUrl)."""
        code = str(uuid.uuid4())
        self._pending_code = code
        self._async_validated.clear()
        event = event_grid_event(
            "Microsoft.EventGrid.SubscriptionValidationEvent",
            topic=self._topic,
            subject="",
            data={"validationCode": code, "validationUrl": f"{self._validation_base}?id={code}"},
        )
        event["dataVersion"] = "1"
        try:
            resp = await self._http.post(
                self.url, content=json.dumps([event]).encode(), headers=self._headers("SubscriptionValidation", 0)
            )
        except httpx.HTTPError as exc:
            log.warning("Event Grid validation: webhook %s unreachable: %s", self.url, exc)
            return False
        if resp.status_code != 200:
            log.warning("Event Grid validation: webhook %s answered %d (200 required)", self.url, resp.status_code)
            return False
        answer: Any = None
        with contextlib.suppress(ValueError):
            answer = resp.json()
        if isinstance(answer, dict) and answer.get("validationResponse") == code:
            self.validated = True
        elif isinstance(answer, dict) and "validationResponse" in answer:
            log.warning("Event Grid validation: webhook echoed the wrong validationCode")
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._async_validated.wait(), async_wait_s)
            self.validated = self._async_validated.is_set()
            if not self.validated:
                log.warning("Event Grid validation: no validationResponse and validationUrl was not called")
        self._pending_code = None
        return self.validated

    async def deliver(self, event_type: str, *, subject: str, data: dict[str, Any]) -> bool:
        event = event_grid_event(event_type, topic=self._topic, subject=subject, data=data)
        return await self._poster.post(self.url, [event], lambda n: self._headers("Notification", n))
