"""Shared pieces of the robustness run: the note callback type, the constants, the caller's speech and
ACS's side of one media WebSocket, used by the media and token attacks alike."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from callwright.acs.media import frame_bytes
from callwright.bench.robustness_inputs import _audio_msg

Note = Callable[[str], None]

# What the instant recognizer "hears" for every utterance the server's VAD segments: a question the
# front desk answers without transferring or hanging up, so a deaf-check call is never ended by the agent.
TRANSCRIPT = "what are your opening hours"
SPEECH_TEXT = "What are your opening hours, please?"
SPEECH_VOICE = "slt"
HEARD_WAIT_S = 12.0  # after the speech ends: endpointing, a busy recognition queue, the turn queue
FORGED_CLOSE_WAIT_S = 3.0  # a refused media upgrade closes at once; open this long = accepted
SEED = 14


def _call_id(tag: str) -> str:
    return f"robust-{tag}-{uuid.uuid4()}"


def _user_turns(stack: Any, call_id: str) -> int:
    record = stack.state.calls.get(call_id)
    memo = getattr(record, "memo", None)
    if memo is None:
        return 0
    return sum(1 for m in memo.history if m.get("role") == "user")


def _ws_url(stack: Any) -> str:
    return stack.url.replace("http://", "ws://", 1) + "/api/v1/media/stream"


# ---- speech for the deaf checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Speech:
    """Caller speech as ready-to-send AudioData messages, per sample rate."""

    messages: dict[int, list[str]]
    silence: dict[int, str]


def _build_speech() -> _Speech | None:
    from callwright.emulator.phone.audio import AudioSourceError, default_tts_cache_dir, flite_say_blocking, resample

    try:
        pcm16 = flite_say_blocking(SPEECH_TEXT, SPEECH_VOICE, default_tts_cache_dir())
    except AudioSourceError:
        return None
    messages: dict[int, list[str]] = {}
    silence: dict[int, str] = {}
    for rate in (16_000, 24_000):
        pcm = resample(pcm16, 16_000, rate)
        size = frame_bytes(rate)
        pcm += bytes(-len(pcm) % size)
        messages[rate] = [_audio_msg(pcm[i : i + size], silent=False) for i in range(0, len(pcm), size)]
        silence[rate] = _audio_msg(bytes(size), silent=True)
    return _Speech(messages, silence)


# ---- one media socket --------------------------------------------------------------------------------


class _MediaClient:
    """ACS's side of one media WebSocket: sends what it is told, drains the agent's audio, notices when
    the server closes or drops the connection."""

    def __init__(self, url: str, headers: dict[str, str], *, open_timeout: float = 20.0) -> None:
        self.url = url
        self.headers = headers
        self.open_timeout = open_timeout
        self.ws: Any = None
        self.agent_messages = 0
        self.first_audio = asyncio.Event()
        self.server_closed = False
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    async def open(self) -> str | None:
        """None when connected; otherwise what happened (``http_5xx``, ``http_4xx``, ``error:…``)."""
        try:
            self.ws = await websockets.connect(self.url, additional_headers=self.headers, max_size=2**24,
                                               open_timeout=self.open_timeout, compression=None,
                                               ping_interval=None, close_timeout=5)  # fmt: skip
        except InvalidStatus as exc:
            code = exc.response.status_code
            return "http_5xx" if code >= 500 else f"http_{code}"
        except TimeoutError:
            return "no_answer"  # the upgrade request was never answered
        except (OSError, websockets.exceptions.WebSocketException) as exc:
            return f"error:{type(exc).__name__}"
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return None

    async def _read(self) -> None:
        try:
            async for _ in self.ws:
                self.agent_messages += 1
                self.first_audio.set()
        except ConnectionClosed:
            pass
        finally:
            self.server_closed = not self._closing

    @property
    def close_code(self) -> int | None:
        return None if self.ws is None else self.ws.close_code

    async def send(self, message: str | bytes) -> bool:
        if self.server_closed:
            return False
        try:
            await self.ws.send(message)
        except ConnectionClosed:
            return False
        return True

    async def wait_closed(self, timeout: float) -> bool:
        if self._reader is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self._reader.done()

    async def close(self) -> None:
        self._closing = not self.server_closed
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 10)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _acs_headers(stack: Any, call_id: str, authorization: str | None = None) -> dict[str, str]:
    token = stack.emulator.tokens.media_token()
    return {"Authorization": authorization if authorization is not None else f"Bearer {token}",
            "x-ms-call-connection-id": call_id, "x-ms-call-correlation-id": str(uuid.uuid4())}  # fmt: skip
