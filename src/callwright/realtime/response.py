"""One realtime response: the §6.1/§6.3 event chains, audio faster than real time, cooperative cancel.

A response consumes steps from the session's :class:`~callwright.realtime.model.TurnRun`: spoken text
becomes an assistant message item (transcript delta, then the clause's audio deltas, synthesised on the
TTS executor and paced at ``pace`` × real time after an initial burst, like the real services), a
function call becomes a ``function_call`` item. Cancelling (``response.cancel``, barge-in) is
cooperative: the synthesiser's sink refuses the next chunk, the pacing wait wakes at once and the task
sends ``response.done`` with ``status: cancelled`` itself, so no send is ever cut in half.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callwright.realtime.audio import ENGINE_RATE, OutputEncoder
from callwright.realtime.model import FunctionCall, Say, TurnOver, TurnRun
from callwright.realtime.protocol import new_id, part_type

if TYPE_CHECKING:
    from callwright.realtime.session import RealtimeSession

log = logging.getLogger("callwright.realtime")


class _Cancelled(Exception):
    pass


@dataclass
class AudioTrack:
    """What one assistant item produced (truncation is validated against it)."""

    produced_ms: float = 0.0
    first_delta_at: float | None = None
    transcript: str = ""


class Response:
    def __init__(
        self,
        session: RealtimeSession,
        source: Callable[[Response], Awaitable[TurnRun | None]],
        *,
        text_only: bool,
        voice: str | None,
        trigger_time: float | None = None,
    ) -> None:
        self.session = session
        self.id = new_id("resp")
        self.status = "in_progress"
        self.status_details: dict[str, Any] | None = None
        self.output: list[dict[str, Any]] = []
        self._source = source
        self._text_only = text_only
        self._voice = voice
        self._cancel = asyncio.Event()
        self._cancel_flag = threading.Event()  # read by the synthesiser's thread
        self._cancel_reason = "client_cancelled"
        self.trigger_time = trigger_time  # end of the caller's speech (monotonic), for the latency metric
        self.first_audio_at: float | None = None
        self._out_tokens = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"realtime-response:{self.id}")

    def cancel(self, reason: str) -> None:
        if self._cancel.is_set():
            return
        self._cancel_reason = reason
        self._cancel.set()
        self._cancel_flag.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def describe(self, status: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.response",
            "status": status or self.status,
            "status_details": self.status_details,
            "output": self.output,
            "usage": None,
        }

    # --- the run ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        s = self.session
        await s.send({"type": "response.created", "response": self.describe()})
        message: dict[str, Any] | None = None
        try:
            run = await self._wait(self._source(self))
            while run is not None:
                step = await self._wait(run.steps.get())
                if isinstance(step, Say):
                    if message is None:
                        message = await self._open_message()
                    await self._speak(message, step.text)
                elif isinstance(step, FunctionCall):
                    if message is not None:
                        await self._close_message(message)
                        message = None
                    await self._function_call(step)
                    if step.result is not None:
                        break  # the agent waits for the client's output and a new response.create
                elif isinstance(step, TurnOver):
                    break
            if message is not None:
                await self._close_message(message)
                message = None
            self.status = "completed"
        except _Cancelled:
            self.status = "cancelled"
            self.status_details = {"type": "cancelled", "reason": self._cancel_reason}
            if message is not None:
                message["status"] = "incomplete"
        except Exception:
            log.exception("response %s failed [session=%s]", self.id, s.id)
            self.status = "failed"
            self.status_details = {"type": "failed", "error": {"type": "server_error", "code": "internal_error"}}
        finally:
            await s.finish_response(self)

    async def _wait(self, awaitable: Awaitable[Any]) -> Any:
        """Await ``awaitable`` unless the response is cancelled first."""
        if self._cancel.is_set():
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise _Cancelled
        task = asyncio.ensure_future(awaitable)
        stop = asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise _Cancelled
        return task.result()

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: 3.11's can swallow a racing cancel
                await self._cancel.wait()
        if self._cancel.is_set():
            raise _Cancelled

    # --- items ------------------------------------------------------------------------------------
    def _ids(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": item["id"], "output_index": self.output.index(item)}

    async def _open_message(self) -> dict[str, Any]:
        s = self.session
        kind = "text" if self._text_only else "audio"
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.output.append(item)
        s.add_item(item, track=AudioTrack())
        await s.send({"type": "response.output_item.added", "response_id": self.id,
                      "output_index": self.output.index(item), "item": item})  # fmt: skip
        await s.send_item_created(item)
        part = {"type": part_type(kind, s.dialect), "transcript" if kind == "audio" else "text": ""}
        await s.send({"type": "response.content_part.added", **self._ids(item), "content_index": 0, "part": part})
        return item

    async def _speak(self, item: dict[str, Any], text: str) -> None:
        s = self.session
        track = s.tracks[item["id"]]
        piece = text if not track.transcript else " " + text
        track.transcript += piece
        self._out_tokens += max(1, len(text.split()))
        if self._text_only:
            await s.send({"type": "response.text.delta", **self._ids(item), "content_index": 0, "delta": piece})
            return
        await s.send({"type": "response.audio_transcript.delta", **self._ids(item), "content_index": 0, "delta": piece})
        await self._synthesize(item, track, text)

    async def _synthesize(self, item: dict[str, Any], track: AudioTrack, text: str) -> None:
        s = self.session
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        flag = self._cancel_flag

        def sink(chunk: bytes) -> bool:
            if flag.is_set():
                return False
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            return True

        def work() -> None:
            try:
                s.synthesizer.synthesize(text, sink, self._voice)
            finally:
                loop.call_soon_threadsafe(chunks.put_nowait, None)

        job = loop.run_in_executor(s.server.tts_executor, work)
        s.track_job(job)  # the session waits for it before handing the synthesiser back to the pool
        encoder = s.encoders.get(item["id"])
        if encoder is None:
            encoder = OutputEncoder(ENGINE_RATE, s.config.output_rate, codec=s.config.output_codec)
            s.encoders[item["id"]] = encoder
        while True:
            chunk = await self._wait(chunks.get())  # on cancel the sink already refuses further chunks
            if chunk is None:
                break
            for delta in encoder.push(chunk):
                await self._send_audio(item, track, delta, encoder.duration_ms(len(delta)))
        await job  # finished (it queued None last); re-raises a synthesiser failure

    async def _send_audio(self, item: dict[str, Any], track: AudioTrack, data: bytes, ms: float) -> None:
        s = self.session
        now = time.monotonic()
        if track.first_delta_at is None:
            track.first_delta_at = now
        if self.first_audio_at is None:
            self.first_audio_at = now
            s.note_first_audio(self)
        # faster than real time, but not instantly: ``pace`` × real time after the initial burst
        allowed_ms = s.server.burst_ms + (now - track.first_delta_at) * 1000.0 * s.server.pace
        if track.produced_ms > allowed_ms:
            await self._sleep((track.produced_ms - allowed_ms) / 1000.0 / s.server.pace)
        track.produced_ms += ms
        delta = base64.b64encode(data).decode("ascii")
        await s.send({"type": "response.audio.delta", **self._ids(item), "content_index": 0, "delta": delta})
        await s.maybe_fault_after_audio(self)

    async def _close_message(self, item: dict[str, Any]) -> None:
        s = self.session
        track = s.tracks[item["id"]]
        encoder = s.encoders.pop(item["id"], None)
        if encoder is not None:
            for delta in encoder.finish():
                await self._send_audio(item, track, delta, encoder.duration_ms(len(delta)))
        ids = {**self._ids(item), "content_index": 0}
        if self._text_only:
            await s.send({"type": "response.text.done", **ids, "text": track.transcript})
            part = {"type": part_type("text", s.dialect), "text": track.transcript}
        else:
            await s.send({"type": "response.audio.done", **ids})
            await s.send({"type": "response.audio_transcript.done", **ids, "transcript": track.transcript})
            part = {"type": part_type("audio", s.dialect), "transcript": track.transcript}
        await s.send({"type": "response.content_part.done", **ids, "part": part})
        item["status"] = "completed"
        item["content"] = [part]
        await s.send({"type": "response.output_item.done", "response_id": self.id,
                      "output_index": self.output.index(item), "item": item})  # fmt: skip
        await s.send_item_done(item)
        s.record_assistant(item["id"], track.transcript)

    async def _function_call(self, call: FunctionCall) -> None:
        s = self.session
        call.call_id = new_id("call")
        arguments = json.dumps(call.arguments)
        item = {
            "id": new_id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": call.name,
            "call_id": call.call_id,
            "arguments": "",
        }
        self.output.append(item)
        s.add_item(item)
        index = self.output.index(item)
        await s.send({"type": "response.output_item.added", "response_id": self.id, "output_index": index,
                      "item": item})  # fmt: skip
        await s.send_item_created(item)
        ids = {"response_id": self.id, "item_id": item["id"], "output_index": index, "call_id": call.call_id}
        step = 24  # arguments stream in pieces, like a model's tokens
        for i in range(0, len(arguments), step):
            await s.send({"type": "response.function_call_arguments.delta", **ids, "delta": arguments[i : i + step]})
        await s.send({"type": "response.function_call_arguments.done", **ids, "name": call.name,
                      "arguments": arguments})  # fmt: skip
        item["arguments"] = arguments
        item["status"] = "completed"
        await s.send({"type": "response.output_item.done", "response_id": self.id, "output_index": index,
                      "item": item})  # fmt: skip
        await s.send_item_done(item)
        self._out_tokens += max(1, len(arguments) // 4)

    def usage(self, input_tokens: int) -> dict[str, Any]:
        audio_ms = sum(self.session.tracks[i["id"]].produced_ms for i in self.output if i["id"] in self.session.tracks)
        audio_tokens = int(audio_ms / 50)  # the services count ~20 audio tokens a second
        out = self._out_tokens + audio_tokens
        return {
            "total_tokens": input_tokens + out,
            "input_tokens": input_tokens,
            "output_tokens": out,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
            "output_token_details": {"text_tokens": self._out_tokens, "audio_tokens": audio_tokens},
        }
