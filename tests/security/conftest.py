"""A real server (uvicorn on 127.0.0.1, ACS stand-in, JWT issuer) with operator keys, and an OIDC IdP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
from fastapi import FastAPI

from callwright.security.keys import hash_key
from server.conftest import Edge, edge_server
from support.servers import TokenIssuer, running_app

VIEWER_KEY = "cw_viewer-key-for-tests-0001"
OPERATOR_KEY = "cw_operator-key-for-tests-0001"
OTHER_OPERATOR_KEY = "cw_operator-key-for-tests-0002"
KEYS = ",".join(
    [f"viewer:{hash_key(VIEWER_KEY)}", f"operator:{hash_key(OPERATOR_KEY)}", f"operator:{hash_key(OTHER_OPERATOR_KEY)}"]
)
OIDC_AUDIENCE = "api://callwright-tests"
TENANT_PATH = "/tenant-1/v2.0"


def key_id(key: str) -> str:
    return "key:" + hash_key(key)[:8]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Idp:
    """An OIDC identity provider on 127.0.0.1 shaped like Entra ID: discovery document at
    ``<issuer>/.well-known/openid-configuration`` and a JWKS; keys and signing from TokenIssuer."""

    def __init__(self) -> None:
        self.keys = TokenIssuer()
        self.base_url = ""

    @property
    def issuer(self) -> str:
        return f"{self.base_url}{TENANT_PATH}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/calling/keys"

    def app(self) -> FastAPI:
        app = self.keys.app()

        @app.get(f"{TENANT_PATH}/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            return {"issuer": self.issuer, "jwks_uri": self.jwks_url}

        return app

    def token(
        self,
        *,
        roles: list[str] | str | None = None,
        audience: str = OIDC_AUDIENCE,
        issuer: str | None = None,
        lifetime: int = 300,
        wrong_key: bool = False,
        sub: str = "alice@contoso.test",
        headers: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": sub,
            "iat": now - (600 if lifetime < 0 else 0),
            "nbf": now - (600 if lifetime < 0 else 1),
            "exp": now + lifetime,
        }
        if roles is not None:
            claims["roles"] = roles
        key = self.keys.other_key if wrong_key else self.keys.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.keys.kid, **(headers or {})})


@contextlib.asynccontextmanager
async def idp_running() -> AsyncIterator[Idp]:
    idp = Idp()
    async with running_app(idp.app()) as url:
        idp.base_url = idp.keys.base_url = url
        yield idp


@contextlib.asynccontextmanager
async def secured_server(**overrides: Any) -> AsyncIterator[Edge]:
    """edge_server with the three test keys (unless ``operator_api_keys`` is given)."""
    async with edge_server(**{"operator_api_keys": KEYS, **overrides}) as edge:
        yield edge
