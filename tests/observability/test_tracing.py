"""Traces, JSON logs and the split pool metrics.

The whole-call test exports over real OTLP/HTTP to an in-process collector (a small FastAPI app in this file
that decodes the protobuf the SDK's exporter posts) — a stand-in for an OpenTelemetry Collector, which cannot
run here."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import httpx
from fastapi import FastAPI, Request, Response
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from callwright.localstack import free_port, local_stack, serve_asgi
from callwright.logs import JsonFormatter
from callwright.metrics import Metrics
from callwright.tracing import ToolTiming, Tracing, TurnTiming

CID = "411f0b00-360b-49d4-8323-c08b3b9d4043"


def test_a_turn_becomes_a_span_tree_under_its_call() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter=exporter, replica_id="r0")
    tracing.call_started(CID, direction="inbound", mode="media")
    t = time.monotonic()
    tracing.turn(
        CID,
        TurnTiming(
            kind="speech",
            agent="front_desk",
            speech_end=t,
            final=t + 0.2,
            first_text=t + 0.5,
            first_audio=t + 0.6,
            ended=t + 2.0,
            tools=[ToolTiming("lookup_policy", t + 0.25, t + 0.4)],
        ),
    )
    tracing.call_ended(CID, state="disconnected", reason="caller hung up")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"call", "turn", "recognition", "agent", "tool", "synthesis"}
    call, turn = spans["call"], spans["turn"]
    assert turn.parent is not None and turn.parent.span_id == call.context.span_id
    for child in ("recognition", "agent", "tool", "synthesis"):
        assert spans[child].parent.span_id == turn.context.span_id, child
        assert spans[child].attributes["callwright.call_id"] == CID
    assert turn.attributes["callwright.turn.response_ms"] == 600
    assert abs((spans["recognition"].end_time - spans["recognition"].start_time) / 1e9 - 0.2) < 0.01
    assert call.attributes["callwright.end_reason"] == "caller hung up"
    assert call.resource.attributes["service.instance.id"] == "r0"


def test_off_by_default_it_records_nothing() -> None:
    tracing = Tracing()
    assert not tracing.enabled
    tracing.call_started(CID, direction="inbound", mode="media")
    tracing.turn(CID, TurnTiming(kind="speech", speech_end=1.0, first_audio=2.0))
    tracing.call_ended(CID, state="disconnected")  # nothing open, nothing raised


def test_json_log_lines_carry_the_call_id_and_the_exception() -> None:
    record = logging.LogRecord("callwright.events", logging.ERROR, __file__, 1, "handler %s failed", ("x",), None)
    record.call_id = CID
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "ERROR" and data["logger"] == "callwright.events"
    assert data["call_id"] == CID and data["message"] == "handler x failed"
    assert "ValueError: boom" in data["exc"]


def test_pool_figures_are_separate_metrics() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics()
    metrics.watch_pools(lambda: {"stt": {"size": 2, "in_use": 1, "broken": "n/a"}, "tts": {"size": 3}})
    text = generate_latest(metrics.registry).decode()
    assert 'callwright_pool_in_use{pool="stt"} 1.0' in text
    assert 'callwright_pool_size{pool="tts"} 3.0' in text
    assert "callwright_pool{" not in text and "broken" not in text


CALL = """
name: two turns for the trace
direction: inbound
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 30}
  - hangup
"""


async def test_a_whole_call_is_exported_over_otlp_with_its_span_tree(tmp_path: Path) -> None:
    received: list[ExportTraceServiceRequest] = []
    collector = FastAPI()

    @collector.post("/v1/traces")
    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(status_code=200)

    async with serve_asgi(collector, free_port()) as collector_url:
        async with local_stack(otel_exporter_otlp_endpoint=collector_url, log_format="json") as stack:
            report = await stack.call(CALL, record_dir=tmp_path)
            assert report["ok"], report.get("error")
            call_id = report["call_id"]
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"{stack.url}/metrics", headers=stack.operator_headers)).text
            assert "callwright_call_duration_seconds_count" in metrics
        # The stack's shutdown flushed the batch exporter to the collector.
        spans = [
            span
            for message in received
            for resource in message.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def attr(span, key):
        return next((a.value.string_value for a in span.attributes if a.key == key), None)

    mine = [s for s in spans if attr(s, "callwright.call_id") == call_id]
    by_id = {s.span_id: s for s in mine}
    calls = [s for s in mine if s.name == "call"]
    assert len(calls) == 1
    turns = [s for s in mine if s.name == "turn"]
    assert len(turns) >= 2  # the greeting and the answer
    assert all(t.parent_span_id == calls[0].span_id for t in turns)
    answer = [t for t in turns if attr(t, "callwright.turn.kind") == "speech"]
    assert answer, [attr(t, "callwright.turn.kind") for t in turns]
    children = {by_id[s.span_id].name for s in mine if s.parent_span_id == answer[0].span_id}
    assert {"recognition", "agent", "synthesis"} <= children
