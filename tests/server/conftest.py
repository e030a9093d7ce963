"""A running Callwright server wired to a JWT issuer and an ACS stand-in, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from callwright.app import create_app
from callwright.config import Settings, load_settings
from callwright.security.keys import hash_key
from support.servers import AcsStandIn, TokenIssuer, free_port, running_app

ACCESS_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
EVENTGRID_SECRET = "s3cret-value"
# The operator API (/api/v1/calls*, /metrics) needs a credential; the edge carries one operator key.
OPERATOR_KEY = "cw_test-operator-key"


@dataclass
class Edge:
    url: str
    app: Any
    settings: Settings
    issuer: TokenIssuer
    acs: AcsStandIn

    @property
    def state(self) -> Any:
        return self.app.state

    def webhook(self, *, secret: bool = True) -> str:
        return f"{self.url}/api/v1/call-events" + (f"?secret={EVENTGRID_SECRET}" if secret else "")

    @property
    def operator_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {OPERATOR_KEY}"}

    def auth(self, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.token(**kwargs)}"}


@contextlib.asynccontextmanager
async def edge_server(configure_media: Any = None, **overrides: Any) -> AsyncIterator[Edge]:
    issuer = TokenIssuer()
    acs = AcsStandIn()
    async with running_app(issuer.app()) as issuer_url, running_app(acs.app()) as acs_url:
        issuer.base_url = issuer_url
        port = free_port()
        settings = load_settings(
            acs_connection_string=f"endpoint={acs_url}/;accesskey={ACCESS_KEY}",
            acs_callback_url=f"http://127.0.0.1:{port}",
            acs_jwt_audience=issuer.audience,
            acs_openid_config_url=issuer.openid_config_url,
            eventgrid_secret=EVENTGRID_SECRET,
            **{
                "stt_pool_warm": 0,
                "tts_pool_warm": 0,
                "operator_api_keys": f"operator:{hash_key(OPERATOR_KEY)}",
                **overrides,
            },
        )
        app = create_app(settings, configure_media=configure_media)
        async with running_app(app, port=port) as url:
            yield Edge(url=url, app=app, settings=settings, issuer=issuer, acs=acs)


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    async with edge_server() as e:
        yield e


def use_tone_handler(app_state: Any, factory: Any) -> None:
    """Protocol tests use the minimal tone handler so they see exactly what the socket delivered."""
    from callwright.voice.tone import ToneHandler

    factory.register("media", lambda record, transport, st: ToneHandler(transport))


@pytest.fixture
async def tone_edge() -> AsyncIterator[Edge]:
    async with edge_server(configure_media=use_tone_handler) as e:
        yield e
