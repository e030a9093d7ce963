"""HMAC-SHA256 request verification, as ACS checks what the SDK signs (acs-protocol.md §2.2).

Two SDK quirks are accepted on purpose, because real clients hit them: the constructor with a trailing
slash signs ``host + "/"`` (§0.2), and the aio client signs ``participants/4%3A%2B…`` while aiohttp sends
``participants/4:%2B…``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

MAX_CLOCK_SKEW_S = 15 * 60


class HmacError(Exception):
    """Why a request's signature was refused (logged; the client gets 401)."""


def content_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign(key: bytes, method: str, path_and_query: str, date: str, host: str, body_hash: str) -> str:
    string_to_sign = f"{method}\n{path_and_query}\n{date};{host};{body_hash}"
    return base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest()).decode()


def _path_candidates(raw: str) -> Iterator[str]:
    yield raw
    path, _, query = raw.partition("?")
    if "/participants/" in path:
        head, _, seg = path.rpartition("/")
        yield f"{head}/{quote(unquote(seg), safe='')}" + (f"?{query}" if query else "")


def _signature_from(authorization: str) -> str:
    scheme, _, params = authorization.partition(" ")
    if scheme != "HMAC-SHA256":
        raise HmacError("Authorization is not HMAC-SHA256")
    fields = dict(part.split("=", 1) for part in params.split("&") if "=" in part)
    if fields.get("SignedHeaders", "").lower() != "x-ms-date;host;x-ms-content-sha256":
        raise HmacError("SignedHeaders must be x-ms-date;host;x-ms-content-sha256")
    sig = fields.get("Signature")
    if not sig:
        raise HmacError("Authorization has no Signature")
    return sig


def verify_request(
    *,
    key: bytes,
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime | None = None,
) -> None:
    """Raise :class:`HmacError` unless the request is signed with ``key``; ``headers`` is case-insensitive."""
    authorization = headers.get("authorization")
    date = headers.get("x-ms-date")
    declared_hash = headers.get("x-ms-content-sha256")
    host = headers.get("host")
    if not authorization or not date or not declared_hash or not host:
        raise HmacError("missing one of Authorization, x-ms-date, x-ms-content-sha256, Host")
    expected = _signature_from(authorization)
    if content_hash(body) != declared_hash:
        raise HmacError("x-ms-content-sha256 does not match the body")
    try:
        sent = parsedate_to_datetime(date)
    except (TypeError, ValueError) as exc:
        raise HmacError(f"x-ms-date {date!r} is not an RFC 1123 date") from exc
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if abs(((now or datetime.now(UTC)) - sent).total_seconds()) > MAX_CLOCK_SKEW_S:
        raise HmacError(f"x-ms-date {date!r} is more than 15 minutes off")
    for signed_host in (host, host + "/"):
        for candidate in _path_candidates(path_and_query):
            actual = sign(key, method, candidate, date, signed_host, declared_hash)
            if hmac.compare_digest(actual, expected):
                return
    raise HmacError("signature does not match (wrong access key, or the request was altered)")


def decode_access_key(access_key: str) -> bytes:
    try:
        return base64.b64decode(access_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the access key must be base64 (as in an ACS connection string)") from exc
