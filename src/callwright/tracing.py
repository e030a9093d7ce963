"""OpenTelemetry traces of calls: call → turn → recognition / agent / tool / synthesis, each with the call id.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exported over OTLP/HTTP) or ``TRACING_ENABLED`` is set; off, every
method is a cheap no-op. The provider is this object's own (never the process-global one), built in the
app's lifespan, so two apps in one process (tests, the bench) keep their traces apart.

A turn's spans are made when the turn is over, from the instants the handler measured anyway (end of the
caller's speech, final transcript, first agent text, first audio out): the hot path gains no span objects
to carry across tasks and threads, and the spans carry exactly the figures the metrics and the post-call
record report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

log = logging.getLogger("callwright.tracing")

MAX_OPEN_CALLS = 10_000  # call spans never ended (a lost CallDisconnected) are ended when this many are open


@dataclass
class ToolTiming:
    name: str
    started: float  # time.monotonic()
    ended: float
    ok: bool = True


@dataclass
class TurnTiming:
    """One agent turn, in ``time.monotonic()`` seconds; absent instants leave their span out."""

    kind: str  # greeting / speech / dtmf / realtime
    mode: str = "media"
    agent: str | None = None
    speech_end: float | None = None
    final: float | None = None
    first_text: float | None = None
    first_audio: float | None = None
    ended: float | None = None
    interrupted: bool = False
    tools: list[ToolTiming] = field(default_factory=list)


class Tracing:
    def __init__(
        self,
        *,
        service_name: str = "callwright",
        replica_id: str | None = None,
        endpoint: str | None = None,
        enabled: bool = False,
        exporter: SpanExporter | None = None,
    ) -> None:
        if exporter is None and endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=_traces_url(endpoint), timeout=5)
            processor: Any = BatchSpanProcessor(exporter)
        elif exporter is not None:
            processor = SimpleSpanProcessor(exporter)  # tests and in-process collectors: spans visible at once
        else:
            processor = None
        self.enabled = processor is not None or enabled
        self._provider: TracerProvider | None = None
        if self.enabled:
            attributes: dict[str, Any] = {"service.name": service_name}
            if replica_id:
                attributes["service.instance.id"] = replica_id
            self._provider = TracerProvider(resource=Resource.create(attributes))
            if processor is not None:
                self._provider.add_span_processor(processor)
            self._tracer: trace.Tracer = self._provider.get_tracer("callwright")
        else:
            self._tracer = trace.NoOpTracer()
        self._calls: OrderedDict[str, Span] = OrderedDict()
        # monotonic → wall clock in ns, fixed once: the handlers measure with time.monotonic()
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    @classmethod
    def from_settings(cls, settings: Any, *, replica_id: str | None = None) -> Tracing:
        return cls(
            service_name=settings.otel_service_name,
            replica_id=replica_id,
            endpoint=settings.otel_exporter_otlp_endpoint,
            enabled=settings.tracing_enabled,
        )

    def _ns(self, monotonic_seconds: float) -> int:
        return int(monotonic_seconds * 1e9) + self._offset_ns

    # -- calls -----------------------------------------------------------------------------------------
    def call_started(self, call_id: str, *, direction: str, mode: str) -> None:
        if not self.enabled or call_id in self._calls:
            return
        span = self._tracer.start_span(
            "call",
            kind=SpanKind.SERVER,
            attributes={"callwright.call_id": call_id, "callwright.direction": direction, "callwright.mode": mode},
        )
        self._calls[call_id] = span
        while len(self._calls) > MAX_OPEN_CALLS:
            _, stale = self._calls.popitem(last=False)
            stale.set_attribute("callwright.end_reason", "span limit")
            stale.end()

    def call_ended(self, call_id: str, *, state: str, reason: str | None = None, released: bool = False) -> None:
        span = self._calls.pop(call_id, None)
        if span is None:
            return
        span.set_attribute("callwright.state", state)
        if reason:
            span.set_attribute("callwright.end_reason", reason[:200])
        if released:
            span.set_attribute("callwright.released", True)  # the call goes on on another replica
        if state == "failed":
            span.set_status(Status(StatusCode.ERROR, reason or "call failed"))
        span.end()

    # -- turns -----------------------------------------------------------------------------------------
    def turn(self, call_id: str, timing: TurnTiming) -> None:
        """Record one finished turn under its call's span (a turn of a call with no open span stands alone)."""
        if not self.enabled:
            return
        instants = [
            t for t in (timing.speech_end, timing.final, timing.first_text, timing.first_audio, timing.ended) if t
        ]
        if not instants:
            return
        start, end = min(instants), max(instants)
        parent = self._calls.get(call_id)
        context = trace.set_span_in_context(parent) if parent is not None else None
        attrs: dict[str, Any] = {
            "callwright.call_id": call_id,
            "callwright.turn.kind": timing.kind,
            "callwright.mode": timing.mode,
            "callwright.turn.interrupted": timing.interrupted,
        }
        if timing.agent:
            attrs["callwright.agent"] = timing.agent
        if timing.speech_end and timing.first_audio:
            attrs["callwright.turn.response_ms"] = round((timing.first_audio - timing.speech_end) * 1000)
        turn = self._tracer.start_span("turn", context=context, start_time=self._ns(start), attributes=attrs)
        inner = trace.set_span_in_context(turn)
        self._child(inner, "recognition", timing.speech_end, timing.final, call_id)
        self._child(inner, "agent", timing.final or timing.speech_end or start, timing.first_text, call_id)
        for tool in timing.tools:
            span = self._tracer.start_span(
                "tool",
                context=inner,
                start_time=self._ns(tool.started),
                attributes={"callwright.call_id": call_id, "callwright.tool": tool.name},
            )
            if not tool.ok:
                span.set_status(Status(StatusCode.ERROR, "tool failed"))
            span.end(end_time=self._ns(max(tool.ended, tool.started)))
        self._child(inner, "synthesis", timing.first_text, timing.first_audio, call_id)
        turn.end(end_time=self._ns(end))

    def _child(self, context: Any, name: str, begin: float | None, finish: float | None, call_id: str) -> None:
        if begin is None or finish is None or finish < begin:
            return
        span = self._tracer.start_span(
            name, context=context, start_time=self._ns(begin), attributes={"callwright.call_id": call_id}
        )
        span.end(end_time=self._ns(finish))

    async def close(self) -> None:
        for call_id in list(self._calls):
            self.call_ended(call_id, state="unknown", reason="server stopped")
        if self._provider is not None:
            # Flushing may post to the collector: off the event loop, bounded by the exporter's timeout.
            await asyncio.to_thread(self._provider.shutdown)


def _traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; the HTTP exporter wants the traces path."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"
