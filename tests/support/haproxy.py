"""A real HAProxy on loopback in front of several backends: :mod:`callwright.bench.haproxy` (the scale
bench uses the same one). Usage and guarantees are in that module's docstring."""

from __future__ import annotations

from callwright.bench.haproxy import (
    HAPROXY_BINARY,
    LOG_TAG,
    SERVED_BY_HEADER,
    HAProxy,
    HAProxyUnavailable,
    Served,
    render_config,
)

__all__ = ["HAPROXY_BINARY", "LOG_TAG", "SERVED_BY_HEADER", "HAProxy", "HAProxyUnavailable", "Served", "render_config"]
