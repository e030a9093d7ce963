"""Operator authentication for the operator API: API keys or OIDC tokens, roles, Host/Origin checks.

Every ``/api/v1/calls*`` route, ``/api/v1/audit`` and ``/metrics`` depend on :func:`require_role`. The
credential is a request header (``Authorization: Bearer …`` or ``X-API-Key``), never a cookie: a browser
never attaches it on its own, so another site cannot make a logged-in browser act (no CSRF by
construction); the Origin check below is a second line for state-changing requests.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request, Response
from fastapi.routing import APIRoute

from callwright.acs.auth import JwksCache
from callwright.config import Settings
from callwright.security.audit import AuditLog, clean
from callwright.security.keys import ApiKeyEntry, Role, match_key, parse_api_keys
from callwright.security.oidc import OidcError, OidcVerifier, looks_like_jwt
from callwright.security.principal import OperatorDenied, Principal
from callwright.security.tollfraud import DestinationPolicy, RateLimiter

log = logging.getLogger("callwright.security")

NOT_CONFIGURED = (
    "operator access is not configured: set OPERATOR_API_KEYS (role:sha256 entries; "
    "`python -m callwright.security.keys new` makes a key) or OPERATOR_OIDC_ISSUER + OPERATOR_OIDC_AUDIENCE; "
    "for local development only, OPERATOR_DEV_LOOPBACK=true"
)
_CHALLENGE = 'Bearer realm="callwright"'
# Headers a reverse proxy adds: a request carrying one did not really start on this machine, whatever
# its socket address says, so it never gets the loopback dev role.
_FORWARDED = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _norm_host(value: str, scheme: str | None = None) -> str | None:
    """``Example.COM:443`` → ``example.com:443`` (default port of ``scheme`` dropped); None if unparsable."""
    value = value.strip()
    if not value or any(c in value for c in "/?#@\\") or not value.isprintable() or " " in value:
        return None  # not a host[:port] at all; urlsplit would read only a part of it
    try:
        parts = urlsplit(f"//{value}")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or (scheme, port) in (("http", 80), ("https", 443)):
        return host
    return f"{host}:{port}"


def host_matches(host_header: str, allowed: tuple[str, ...]) -> bool:
    """``allowed`` entries: ``example.com`` (any port), ``example.com:8443``, ``*.example.com``, ``*``."""
    full = _norm_host(host_header)
    if full is None:
        return False
    name = full.rsplit(":", 1)[0] if not full.endswith("]") else full
    for entry in allowed:
        e = entry.strip().lower()
        if e in ("*", full, name):
            return True
        if e.startswith("*.") and name.endswith(e[1:]):
            return True
    return False


def same_origin(origin: str, host: str, forwarded_host: str | None = None) -> bool:
    """Whether a browser's ``Origin`` names this server: its host[:port] equals the request's Host (or,
    behind a proxy that rewrites Host, the first X-Forwarded-Host). The scheme is not compared: behind a
    TLS proxy the server itself sees http. ``null`` and anything unparsable are foreign."""
    value = origin.strip()
    if value.lower() == "null":
        return False
    try:
        parts = urlsplit(value)
        scheme, netloc = parts.scheme.lower(), parts.netloc
    except ValueError:
        return False
    if scheme not in ("http", "https") or not netloc or "@" in netloc:
        return False
    origin_host = _norm_host(netloc, scheme)
    here = {_norm_host(host, scheme)}
    if forwarded_host:
        here.add(_norm_host(forwarded_host.split(",")[0], scheme))
    return origin_host is not None and origin_host in here


def parse_allowed_hosts(spec: str | None) -> tuple[str, ...]:
    out = []
    for item in (p.strip().lower() for p in (spec or "").split(",")):
        if not item:
            continue
        if "/" in item or " " in item or (item != "*" and _norm_host(item.removeprefix("*.")) is None):
            raise ValueError(f"{item[:60]!r} is not a host name (example.com, example.com:8443, *.example.com)")
        out.append(item)
    return tuple(out)


def _is_loopback(request: Request) -> bool:
    client = request.client.host if request.client else ""
    try:
        addr = ipaddress.ip_address(client)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback and not any(h in request.headers for h in _FORWARDED)


class OperatorSecurity:
    """Everything the operator routes check, built once per app from the settings (in the lifespan)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None, metrics: Any = None) -> None:
        self.metrics = metrics
        self.keys: list[ApiKeyEntry] = parse_api_keys(settings.operator_api_keys)
        self.dev_loopback = settings.operator_dev_loopback
        self.allowed_hosts = parse_allowed_hosts(settings.allowed_hosts)
        self.oidc: OidcVerifier | None = None
        if settings.operator_oidc_issuer and settings.operator_oidc_audience:
            if http is None:
                raise ValueError("OIDC needs an HTTP client for its key set")
            issuer = settings.operator_oidc_issuer
            discovery = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
            keys = JwksCache(http, openid_config_url=discovery, jwks_url=settings.operator_oidc_jwks_url)
            self.oidc = OidcVerifier(
                keys,
                issuer=issuer,
                audience=settings.operator_oidc_audience,
                role_claim=settings.operator_oidc_role_claim,
                operator_value=settings.operator_oidc_operator_role,
                viewer_value=settings.operator_oidc_viewer_role,
            )
        self.policy = DestinationPolicy.from_settings(
            settings.outbound_allowed_prefixes, settings.outbound_blocked_prefixes
        )
        self.rates = RateLimiter(settings.outbound_rate_per_minute, settings.outbound_global_rate_per_minute)
        self.max_concurrent = settings.outbound_max_concurrent
        self.context_max_bytes = settings.outbound_context_max_bytes
        self.audit = AuditLog(settings.audit_log_size, metrics)

    @property
    def configured(self) -> bool:
        return bool(self.keys) or self.oidc is not None

    # --- checks, in the order they run ---------------------------------------------------------------
    def check_host_origin(self, request: Request) -> None:
        host = request.headers.get("host", "")
        if self.allowed_hosts and not host_matches(host, self.allowed_hosts):
            raise OperatorDenied(403, "host_not_allowed", f"Host {clean(host)[:80]!r} is not in ALLOWED_HOSTS")
        origin = request.headers.get("origin")
        if origin is None:
            return  # not a browser's cross-origin request (curl, Prometheus, same-origin GET)
        if not same_origin(origin, host, request.headers.get("x-forwarded-host")):
            raise OperatorDenied(
                403, "cross_origin", f"requests from origin {clean(origin)[:80]!r} are refused on the operator API"
            )

    async def authenticate(self, request: Request) -> Principal:
        credential = _credential(request)
        if credential is None:
            if self.dev_loopback and _is_loopback(request):
                return Principal(id="dev-loopback", role="operator", kind="dev_loopback")
            if not self.configured:
                raise OperatorDenied(403, "operator_auth_not_configured", NOT_CONFIGURED)
            raise OperatorDenied(
                401,
                "unauthorized",
                "credentials required: send 'Authorization: Bearer <API key or token>' or 'X-API-Key: <key>'",
                {"WWW-Authenticate": _CHALLENGE},
            )
        if not self.configured:
            raise OperatorDenied(403, "operator_auth_not_configured", NOT_CONFIGURED)
        entry = match_key(self.keys, credential)
        if entry is not None:
            return Principal(id=f"key:{entry.key_id}", role=entry.role, kind="api_key")
        if self.oidc is not None and looks_like_jwt(credential):
            try:
                return await self.oidc.verify(credential)
            except OidcError as exc:
                raise OperatorDenied(
                    401,
                    "invalid_token",
                    f"the bearer token was refused: {exc}",
                    {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
                ) from None
        raise OperatorDenied(
            401,
            "invalid_credentials",
            "the API key or token is not valid",
            {"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )

    def denied(self, request: Request, exc: OperatorDenied, actor: str = "anonymous") -> None:
        """State-changing refusals go to the audit log; reads only to the security log."""
        client = request.client.host if request.client else None
        if self.metrics is not None:
            self.metrics.operator_refused_total.labels(reason=exc.error).inc()
        if request.method in _STATE_CHANGING:
            self.audit.record(
                actor=actor,
                action=f"{request.method} {request.url.path}",
                outcome=f"refused:{exc.error}",
                detail=exc.detail,
                client=client,
            )
        else:
            log.info(
                "operator request refused: %s %s from %s: %s",
                request.method,
                clean(request.url.path),
                clean(client),
                exc.error,
            )


def _credential(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise OperatorDenied(
                401,
                "unauthorized",
                "the Authorization header must be 'Bearer <API key or token>'",
                {"WWW-Authenticate": _CHALLENGE},
            )
        return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key is not None and key.strip() else None


def security_of(request: Request) -> OperatorSecurity:
    sec = getattr(request.app.state, "operator_security", None)
    if sec is None:
        raise RuntimeError("operator security is not set up: the calls router's lifespan did not run")
    return sec  # type: ignore[no-any-return]


def require_role(role: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A FastAPI dependency: the request's principal, which has at least ``role``; else 401/403."""

    async def operator_principal(request: Request) -> Principal:
        sec = security_of(request)
        principal: Principal | None = None
        try:
            sec.check_host_origin(request)
            principal = await sec.authenticate(request)
            if not principal.has(role):
                raise OperatorDenied(
                    403, "forbidden", f"the {role} role is needed; {principal.id} has {principal.role or 'no role'}"
                )
        except OperatorDenied as exc:
            sec.denied(request, exc, actor=principal.id if principal else "anonymous")
            raise
        request.state.principal = principal
        return principal

    return operator_principal


class OperatorRoute(APIRoute):
    """Answers :class:`OperatorDenied` (raised while resolving dependencies) as the API's usual
    ``{"error", "detail"}`` JSON — FastAPI's own HTTPException would answer ``{"detail"}`` only."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except OperatorDenied as exc:
                return exc.response()

        return guarded


@contextlib.asynccontextmanager
async def operator_lifespan(app: Any) -> AsyncIterator[None]:
    """Builds ``app.state.operator_security`` (runs inside the app's lifespan, after the settings are set)."""
    settings: Settings = app.state.settings
    http = httpx.AsyncClient(timeout=5.0) if settings.operator_oidc_issuer else None
    app.state.operator_security = sec = OperatorSecurity(settings, http, getattr(app.state, "metrics", None))
    if sec.dev_loopback:
        log.warning(
            "OPERATOR_DEV_LOOPBACK=true: requests from 127.0.0.1/::1 without credentials get the operator "
            "role. For development only: never behind a reverse proxy on the same machine."
        )
    if not sec.configured and not sec.dev_loopback:
        log.warning("operator API locked: %s", NOT_CONFIGURED)
    else:
        log.info(
            "operator API: %d API key(s), OIDC %s, dev loopback %s",
            len(sec.keys),
            "on" if sec.oidc else "off",
            "on" if sec.dev_loopback else "off",
        )
    try:
        yield
    finally:
        if http is not None:
            await http.aclose()
