"""Real servers on 127.0.0.1 for tests: run an ASGI app with uvicorn, mint ACS-style JWTs, stand in for ACS.

The ACS stand-in here is a plain capture endpoint for the server's own tests (the issue asks for the SDK's
answer request to reach "a local HTTP endpoint standing in for ACS"); whole calls use the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from callwright.localstack import free_port, serve_asgi

ACS_ISSUER = "https://acscallautomation.communication.azure.com"


@contextlib.asynccontextmanager
async def running_app(app: Any, port: int | None = None) -> AsyncIterator[str]:
    """Serve an ASGI app (lifespan included) on 127.0.0.1; yields its base URL."""
    async with serve_asgi(app, port or free_port()) as url:
        yield url


@dataclass
class TokenIssuer:
    """Mints RS256 JWTs the way ACS does and serves the matching OpenID configuration and JWKS."""

    audience: str = field(default_factory=lambda: str(uuid.uuid4()))
    issuer: str = ACS_ISSUER
    kid: str = "test-key-1"

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.base_url = ""

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def token(
        self,
        *,
        audience: str | None = None,
        issuer: str | None = None,
        lifetime: float = 300,
        kid: str | None = None,
        wrong_key: bool = False,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.issuer,
            "aud": audience or self.audience,
            "iat": now,
            "nbf": now - 1 if lifetime > 0 else now - 600,
            "exp": now + int(lifetime),
        }
        key = self.other_key if wrong_key else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid or self.kid})

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/calling/.well-known/acsopenidconfiguration")
        async def openid() -> dict[str, Any]:
            return {"issuer": self.issuer, "jwks_uri": f"{self.base_url}/calling/keys"}

        @app.get("/calling/keys")
        async def keys() -> dict[str, Any]:
            return self.jwks()

        return app

    @property
    def openid_config_url(self) -> str:
        return f"{self.base_url}/calling/.well-known/acsopenidconfiguration"


@dataclass
class CapturedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: dict[str, Any] | None


class AcsStandIn:
    """Answers the SDK's call-automation requests with the minimal bodies SDK 1.6.0 accepts (§2.6)."""

    def __init__(self) -> None:
        self.requests: list[CapturedRequest] = []
        self.answered = asyncio.Event()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/{path:path}", methods=["GET", "POST", "DELETE"])
        async def capture(path: str, request: Request) -> Response:
            raw = await request.body()
            body = await request.json() if raw else None
            self.requests.append(
                CapturedRequest(request.method, "/" + path, request.url.query, dict(request.headers), body)
            )
            if path.endswith(":answer") or (path == "calling/callConnections" and request.method == "POST"):
                call_id = str(uuid.uuid4())
                props = {
                    "callConnectionId": call_id,
                    "serverCallId": "c2VydmVyLWNhbGw",
                    "callConnectionState": "connecting",
                    "callbackUri": (body or {}).get("callbackUri"),
                    "correlationId": str(uuid.uuid4()),
                    "targets": [
                        {"kind": "phoneNumber", "rawId": "4:+15551230001", "phoneNumber": {"value": "+15551230001"}}
                    ],
                    "source": {
                        "kind": "communicationUser",
                        "rawId": "8:acs:bot_1",
                        "communicationUser": {"id": "8:acs:bot_1"},
                    },
                }
                self.answered.set()
                return JSONResponse(props, status_code=200 if path.endswith(":answer") else 201)
            if request.method == "DELETE" or path.endswith(":terminate"):
                return Response(status_code=204)
            return Response(status_code=202)

        return app
