"""Building the official Call Automation client from a connection string, for real ACS and local endpoints.

``CallAutomationClient.from_connection_string`` forces https (acs-protocol.md §0.1) and a trailing slash
in the endpoint breaks request signing (§0.2), so the endpoint is parsed here and handed to the
constructor with its own scheme and without the slash.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core.credentials import AzureKeyCredential


@dataclass(frozen=True)
class AcsEndpoint:
    endpoint: str  # scheme://host[:port], no trailing slash
    access_key: str


def parse_connection_string(conn: str) -> AcsEndpoint:
    parts: dict[str, str] = {}
    for item in conn.strip().strip(";").split(";"):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("ACS_CONNECTION_STRING must look like 'endpoint=https://…;accesskey=…'")
        parts[key.strip().lower()] = value.strip()
    endpoint = parts.get("endpoint")
    key = parts.get("accesskey")
    if not endpoint or not key:
        raise ValueError("ACS_CONNECTION_STRING needs both endpoint= and accesskey=")
    split = urlsplit(endpoint)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValueError(f"ACS_CONNECTION_STRING endpoint {endpoint!r} must be an http(s) URL")
    return AcsEndpoint(endpoint=f"{split.scheme}://{split.netloc}", access_key=key)


def build_async_client(
    conn: str, *, verify: bool | str = True, timeout: float | None = None
):  # -> aio.CallAutomationClient
    from azure.communication.callautomation.aio import CallAutomationClient

    ep = parse_connection_string(conn)
    kwargs: dict[str, object] = {}
    if timeout is not None:
        # Transport-level bounds for each attempt; CallAutomation also bounds each whole request
        # (retries included) with asyncio.timeout, because the SDK retries refused connections.
        kwargs["connection_timeout"] = min(timeout, 5.0)
        kwargs["read_timeout"] = timeout
    if verify is not True:
        kwargs["connection_verify"] = verify
    return CallAutomationClient(ep.endpoint, AzureKeyCredential(ep.access_key), **kwargs)
