"""Media WebSocket load: N sockets as ACS would open them, with realistic and odd frame sizes.

Each socket authenticates like ACS (a JWT from the emulator's issuer, ``x-ms-call-connection-id``), sends
AudioMetadata (every third one at 24 kHz) and then, paced in real time for ``seconds``:

- ``realistic`` sockets: a 20 ms frame every 20 ms (silence and pink noise);
- ``odd`` sockets: frames of 10, 20.06 (642 bytes), 30, 40 and 100 ms in turn, an empty frame now and then,
  and one of each hostile frame (odd byte count, ``sampleRate: 1e999``, 2,000-deep JSON, garbage, binary).

At the end every socket speaks a question ("What are your opening hours?", flite) in 20 ms frames, then
silence, and the server's transcript for that call (``GET /api/v1/calls/{id}``) is read: a call whose
question does not show up is *deaf*. Reported: frames and bytes sent, server-side closes other than
normal, 5xx answers (upgrade or API), deaf calls.

Loopback only, bounded: at most ``MAX_CALLS`` sockets and ``MAX_SECONDS`` of streaming.

    python bench/media_load.py --calls 6 --seconds 20          # starts its own local stack
    from bench.media_load import run_media_load                 # or drive a running stack
    result = await run_media_load(stack, calls=6, seconds=20)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from callwright.acs.media import build_audio_data, build_audio_metadata, frame_bytes
from callwright.emulator.phone.audio import default_tts_cache_dir, flite_say_blocking, pink_noise, resample

MAX_CALLS = 64
MAX_SECONDS = 600.0
QUESTION = "What are your opening hours?"
EXPECT = "opening hours"
ODD_MS = (10, 20, 30, 40, 100)  # frame lengths cycled by odd sockets (and one 642-byte frame per cycle)
HOSTILE = (
    json.dumps({"kind": "AudioData", "audioData": {"data": base64.b64encode(bytes(641)).decode()}}),
    '{"kind":"AudioMetadata","audioMetadata":{"sampleRate":1e999,"channels":1}}',
    '{"kind":"AudioData","audioData":' + '{"a":' * 2000 + "1" + "}" * 2000 + "}",
    "[" * 2000 + "]" * 2000,
    "not json at all",
)


@dataclass
class _Socket:
    index: int
    kind: str  # realistic | odd
    rate: int
    call_id: str = field(default_factory=lambda: f"load-{uuid.uuid4()}")
    frames: int = 0
    bytes_sent: int = 0
    hostile: int = 0
    server_close: int | None = None  # close code the server chose, if it closed first
    error: str | None = None
    recognised: bool = False
    agent_messages: int = 0


def _loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"media load runs against loopback only, not {host!r}")


def _media_token(stack: Any) -> str:
    token = getattr(stack, "media_token", None)
    if callable(token):
        return str(token())
    return stack.emulator.tokens.media_token()


async def _paced_send(ws: Any, sock: _Socket, pcm16k: bytes, frame_ms: int, t0: float, sent_ms: float) -> float:
    """Send ``pcm16k`` (converted to the socket's rate) in ``frame_ms`` frames on the real-time clock
    starting at ``t0 + sent_ms``; returns the new ``sent_ms``."""
    pcm = resample(pcm16k, 16_000, sock.rate) if sock.rate != 16_000 else pcm16k
    size = sock.rate * frame_ms // 1000 * 2
    for i in range(0, len(pcm), size):
        chunk = pcm[i : i + size]
        chunk = chunk[: len(chunk) // 2 * 2]
        delay = t0 + sent_ms / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await ws.send(build_audio_data(chunk, silent=not any(chunk)))
        sock.frames += 1
        sock.bytes_sent += len(chunk)
        sent_ms += len(chunk) / (sock.rate * 2) * 1000
    return sent_ms


async def _drain(ws: Any, sock: _Socket) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            sock.agent_messages += 1


async def _transcript_has(http: httpx.AsyncClient, stack: Any, call_id: str, text: str) -> bool:
    state = getattr(getattr(stack, "app", None), "state", None)
    if state is not None and getattr(state, "calls", None) is not None:  # in-process stack: read it directly
        record = state.calls.get(call_id)
        memo = getattr(record, "memo", None)
        return memo is not None and any(m["role"] == "user" and text in m["content"] for m in memo.history)
    resp = await http.get(f"{stack.url}/api/v1/calls/{call_id}", headers=getattr(stack, "operator_headers", {}))
    if resp.status_code != 200:
        return False
    return any(t.get("role") == "user" and text in t.get("content", "") for t in resp.json().get("transcript", []))


async def _one(stack: Any, sock: _Socket, seconds: float, speech: bytes, noise: bytes, result: dict[str, Any]) -> None:
    url = stack.url.replace("http://", "ws://", 1) + "/api/v1/media/stream"
    headers = {"Authorization": f"Bearer {_media_token(stack)}", "x-ms-call-connection-id": sock.call_id}
    try:
        ws = await websockets.connect(url, additional_headers=headers, open_timeout=20, compression=None,
                                      max_size=2**24, ping_interval=None)  # fmt: skip
    except InvalidStatus as exc:
        sock.error = f"http_{exc.response.status_code}"
        if exc.response.status_code >= 500:
            result["server_5xx"] += 1
        return
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        sock.error = f"connect: {type(exc).__name__}"
        return
    reader = asyncio.get_running_loop().create_task(_drain(ws, sock))
    try:
        await ws.send(build_audio_metadata(str(uuid.uuid4()), sock.rate))
        t0, sent_ms, n = time.monotonic(), 0.0, 0
        while sent_ms < seconds * 1000:
            if sock.kind == "odd":
                ms = ODD_MS[n % len(ODD_MS)]
                if n % len(ODD_MS) == 0:  # once a cycle: an empty frame, a 642-byte one and a hostile frame
                    await ws.send(build_audio_data(b"", silent=True))
                    await ws.send(HOSTILE[(n // len(ODD_MS)) % len(HOSTILE)])
                    await ws.send(b"\x00\x01binary")
                    sock.hostile += 3
                    await ws.send(build_audio_data(noise[:642], silent=False))  # 321 samples: not 20 ms
                    sock.frames += 1
                    sock.bytes_sent += 642
                    sent_ms += 642 / (sock.rate * 2) * 1000
            else:
                ms = 20
            # 100 ms of quiet pink noise or silence, in frames of ``ms``.
            sent_ms = await _paced_send(ws, sock, noise if n % 3 == 0 else bytes(len(noise)), ms, t0, sent_ms)
            n += 1
        # The check: the caller speaks, then is silent while the server decides.
        sent_ms = await _paced_send(ws, sock, speech + bytes(32_000), 20, t0, sent_ms)
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not sock.recognised:
                sock.recognised = await _transcript_has(http, stack, sock.call_id, EXPECT)
                if not sock.recognised:
                    sent_ms = await _paced_send(ws, sock, bytes(frame_bytes(16_000) * 10), 20, t0, sent_ms)
    except ConnectionClosed as exc:
        sock.error = f"closed: {exc.rcvd.code if exc.rcvd else 'no code'}"
    finally:
        if reader.done() and ws.close_code not in (None, 1000):
            sock.server_close = ws.close_code
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


async def run_media_load(stack: Any, calls: int, seconds: float) -> dict[str, Any]:
    """Drive ``calls`` media sockets at ``stack`` (``url``; an ``emulator`` with a token issuer or a
    ``media_token()``; optionally ``operator_headers`` / an in-process ``app``) for ``seconds`` each, all
    at once; returns the counts (``deaf_calls`` and ``server_5xx`` must be 0)."""
    if not 1 <= calls <= MAX_CALLS:
        raise ValueError(f"calls must be 1..{MAX_CALLS}, got {calls}")
    if not 0 < seconds <= MAX_SECONDS:
        raise ValueError(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds}")
    _loopback(stack.url)
    speech = await asyncio.to_thread(flite_say_blocking, QUESTION, "slt", default_tts_cache_dir())
    noise = pink_noise(100, -30.0, seed=1)
    sockets = [_Socket(i, "odd" if i % 2 else "realistic", 24_000 if i % 3 == 2 else 16_000) for i in range(calls)]
    result: dict[str, Any] = {"calls": calls, "seconds": seconds, "server_5xx": 0}
    started = time.monotonic()
    await asyncio.gather(*(_one(stack, s, seconds, speech, noise, result) for s in sockets))
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/health", "/metrics"):
            resp = await http.get(stack.url + path, headers=getattr(stack, "operator_headers", {}))
            if resp.status_code >= 500:
                result["server_5xx"] += 1
    result.update(
        wall_s=round(time.monotonic() - started, 1),
        frames_sent=sum(s.frames for s in sockets),
        bytes_sent=sum(s.bytes_sent for s in sockets),
        hostile_frames_sent=sum(s.hostile for s in sockets),
        abnormal_closes=sum(1 for s in sockets if s.server_close is not None or s.error),
        deaf_calls=sum(1 for s in sockets if not s.recognised),
        per_call=[
            {
                "call_id": s.call_id,
                "kind": s.kind,
                "rate": s.rate,
                "frames": s.frames,
                "recognised": s.recognised,
                "agent_messages": s.agent_messages,
                "server_close": s.server_close,
                "error": s.error,
            }
            for s in sockets
        ],
    )
    return result


async def _main(calls: int, seconds: float) -> dict[str, Any]:
    from callwright.localstack import local_stack

    sizes = {"stt_pool_size": max(4, calls), "tts_pool_size": max(4, calls)}
    async with local_stack(**sizes) as stack:
        return await run_media_load(stack, calls, seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    out = asyncio.run(_main(args.calls, args.seconds))
    print(json.dumps({k: v for k, v in out.items() if k != "per_call"}, indent=2))
    sys.exit(1 if out["deaf_calls"] or out["server_5xx"] else 0)
