"""Reading request bodies with a cap, for every route that takes one from outside (the webhook, the calls API)."""

from __future__ import annotations

from fastapi import Request


class BodyTooLarge(Exception):
    """The body passes the route's cap; the message says how it was known."""


async def read_body_capped(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge as soon as it is known to pass ``limit`` (the rest is never read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge(f"Content-Length {int(declared)} exceeds {limit} bytes")
        except ValueError:
            pass  # the server's HTTP parser owns malformed framing; the stream below is still capped
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
