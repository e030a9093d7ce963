"""Plug-in tests: the examples/ folder on the import path, and a whole local stack with plug-ins loaded."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from callwright.app import create_app
from callwright.config import load_settings
from callwright.emulator.service import Emulator
from callwright.localstack import LocalStack, free_port, serve_asgi
from callwright.security.keys import hash_key, new_key

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Small pools: each test is one call; warming 50 engines would only cost time.
POOLS = {"stt_pool_warm": 1, "tts_pool_warm": 1, "stt_pool_size": 4, "tts_pool_size": 4}


@pytest.fixture
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The examples are imported as users run them: `cd examples; callwright serve --app <pkg>.plugin:setup`."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield EXAMPLES


@contextlib.asynccontextmanager
async def plugin_stack(*, unchecked: dict[str, Any] | None = None, **overrides: Any) -> AsyncIterator[LocalStack]:
    """callwright.localstack.local_stack, plus ``unchecked`` settings applied after validation.

    ``unchecked`` carries engine/orchestrator names that only a plug-in registers (AGENT_ENGINE=parrot):
    config.py still declares those settings as fixed Literals, so they are set past pydantic here and
    checked against the registries at start-up, as the server does.
    """
    secret = secrets.token_urlsafe(16)
    operator_key = new_key()
    async with Emulator() as emulator:
        port = free_port()
        settings = load_settings(
            acs_connection_string=emulator.connection_string,
            acs_callback_url=f"http://127.0.0.1:{port}",
            acs_jwt_audience=emulator.resource_id,
            acs_openid_config_url=emulator.openid_config_url,
            eventgrid_secret=secret,
            operator_api_keys=f"operator:{hash_key(operator_key)}",
            **{**POOLS, **overrides},
        )
        if unchecked:
            settings = settings.model_copy(update=unchecked)
        app = create_app(settings)
        async with serve_asgi(app, port) as url:
            emulator.webhook_url = f"{url}/api/v1/call-events?secret={secret}"
            yield LocalStack(emulator=emulator, app=app, settings=settings, url=url, operator_key=operator_key)


def history(stack: LocalStack, call_id: str) -> list[dict[str, Any]]:
    record = stack.state.calls.get(call_id)
    assert record is not None and record.memo is not None, f"the server never saw call {call_id}"
    return list(record.memo.history)


def said(entries: list[dict[str, Any]], role: str) -> list[str]:
    return [m["content"] for m in entries if m["role"] == role]
