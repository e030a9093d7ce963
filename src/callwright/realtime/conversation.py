"""The conversation side of a session: items, user commits, transcription, truncation, deletion.

Kept apart from session.py (client events, responses, the ear) so each file stays small. Items are kept
in conversation order; ``previous_item_id`` on client-created items is accepted but they are appended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from callwright.realtime.audio import InputFramer, decode_audio
from callwright.realtime.model import parse_output
from callwright.realtime.protocol import ProtocolError, new_id
from callwright.realtime.response import AudioTrack

log = logging.getLogger("callwright.realtime")

_ROLES = ("user", "assistant", "system")
MAX_ITEMS = 1000  # a long session forgets its oldest items (the agent's memo keeps the history it needs)


class ConversationMixin:
    # Attributes provided by RealtimeSession (declared for type checkers).
    items: dict[str, dict[str, Any]]
    tracks: dict[str, AudioTrack]
    transcripts: dict[str, asyncio.Future[str]]
    unanswered: list[str]
    _history: dict[str, dict[str, Any]]
    dialect: str
    id: str
    memo: Any
    orchestrator: Any
    config: Any
    turn_run: Any
    response: Any
    server: Any
    listener: Any

    async def send(self, event: dict[str, Any]) -> None: ...  # pragma: no cover - provided by the session

    def _spawn(self, coro: Any) -> None: ...  # pragma: no cover - provided by the session

    # --- items ------------------------------------------------------------------------------------
    def _previous(self, item_id: str) -> str | None:
        ids = list(self.items)
        i = ids.index(item_id) if item_id in ids else len(ids)
        return ids[i - 1] if i > 0 else None

    def add_item(self, item: dict[str, Any], track: AudioTrack | None = None) -> None:
        self.items[item["id"]] = item
        if track is not None:
            self.tracks[item["id"]] = track
        while len(self.items) > MAX_ITEMS:
            oldest = next(iter(self.items))
            del self.items[oldest]
            self.tracks.pop(oldest, None)
            self.transcripts.pop(oldest, None)
            self._history.pop(oldest, None)

    async def send_item_created(self, item: dict[str, Any]) -> None:
        await self.send({"type": "conversation.item.created", "previous_item_id": self._previous(item["id"]),
                         "item": item})  # fmt: skip

    async def send_item_done(self, item: dict[str, Any]) -> None:
        if self.dialect == "ga":  # GA: conversation.item.added, then .done once the item is complete
            await self.send({"type": "conversation.item.done", "previous_item_id": self._previous(item["id"]),
                             "item": item})  # fmt: skip

    def record_assistant(self, item_id: str, text: str) -> None:
        if self.memo is not None and text:
            self._history[item_id] = self.memo.append_history("assistant", text, agent=self.orchestrator.active_agent)

    # --- user input -------------------------------------------------------------------------------
    async def commit_user(self, item_id: str, final: asyncio.Future[str]) -> None:
        item = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        previous = list(self.items)[-1] if self.items else None
        self.add_item(item)
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        await self.send_item_created(item)
        await self.send_item_done(item)
        self.transcripts[item_id] = final
        self.unanswered.append(item_id)
        if final.done():
            await self._transcribed(item_id, final)
        else:
            self._spawn(self._transcribed(item_id, final))

    async def _transcribed(self, item_id: str, final: asyncio.Future[str]) -> None:
        started = time.monotonic()
        text = await final
        item = self.items.get(item_id)
        if item is not None:
            item["content"][0]["transcript"] = text
        log.debug("caller said %r [session=%s]", text, self.id)
        if not self.config.transcription:
            return
        ids = {"item_id": item_id, "content_index": 0}
        if text:
            await self.send({"type": "conversation.item.input_audio_transcription.delta", **ids, "delta": text})
        usage = {"type": "duration", "seconds": round(time.monotonic() - started, 3)}
        await self.send(
            {"type": "conversation.item.input_audio_transcription.completed", **ids, "transcript": text,
             "usage": usage}
        )  # fmt: skip

    async def item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ProtocolError("missing_required_parameter", "Missing required parameter: 'item'.", param="item")
        kind = item.get("type", "message")
        item_id = item.get("id") or new_id("item")
        if not isinstance(item_id, str) or item_id in self.items:
            raise ProtocolError("invalid_value", f"Item id {item_id!r} is already in use.", param="item.id")
        if kind == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or not isinstance(output, str):
                raise ProtocolError(
                    "missing_required_parameter", "function_call_output needs 'call_id' and 'output' strings.",
                    param="item.call_id",
                )  # fmt: skip
            stored = {"id": item_id, "object": "realtime.item", "type": "function_call_output",
                      "status": "completed", "call_id": call_id, "output": output}  # fmt: skip
            self.add_item(stored)
            await self.send_item_created(stored)
            await self.send_item_done(stored)
            waited = self.turn_run is not None and self.turn_run.provide_output(call_id, output)
            if not waited and self.memo is not None:  # an output the agent did not wait for: keep it as context
                self.memo.append_history("tool", str(parse_output(output)), agent=self.orchestrator.active_agent)
            return
        if kind != "message":
            raise ProtocolError("invalid_value", f"Unsupported item type {kind!r}.", param="item.type")
        role = item.get("role")
        if role not in _ROLES:
            raise ProtocolError("invalid_value", f"item.role must be one of {', '.join(_ROLES)}", param="item.role")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError("missing_required_parameter", "A message item needs content.", param="item.content")
        text = " ".join(str(c.get("text") or c.get("transcript") or "") for c in content if isinstance(c, dict))
        # audio parts are kept without their audio (echoing megabytes of base64 back helps no one)
        kept = [{**c, "audio": None, "transcript": None} if isinstance(c, dict) and c.get("type") == "input_audio"
                else c for c in content]  # fmt: skip
        stored = {"id": item_id, "object": "realtime.item", "type": "message", "status": "completed",
                  "role": role, "content": kept}  # fmt: skip
        self.add_item(stored)
        await self.send_item_created(stored)
        await self.send_item_done(stored)
        if role == "user":
            audio = [c.get("audio") for c in content if isinstance(c, dict) and c.get("type") == "input_audio"]
            if any(isinstance(a, str) and a for a in audio):
                # audio inside the item: recognised like the caller's live speech, in order with it
                framer = InputFramer(self.config.input_rate, self.config.input_codec)
                frames = [f for a in audio if isinstance(a, str) for f in framer.push(decode_audio(a))]
                frames.extend(framer.push(b"\0" * (self.config.input_rate // 10 * 2)))  # flush soxr's tail
                final = self.listener.recognize(frames)
                self.transcripts[item_id] = final
                self.unanswered.append(item_id)
                self._spawn(self._transcribed(item_id, final))
                return
            done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            done.set_result(text.strip())
            self.transcripts[item_id] = done
            self.unanswered.append(item_id)
        elif self.memo is not None:
            self.memo.append_history(role, text.strip(), agent=self.orchestrator.active_agent)

    # --- truncation and deletion ------------------------------------------------------------------
    async def item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms, index = event.get("item_id"), event.get("audio_end_ms"), event.get("content_index", 0)
        if not isinstance(item_id, str) or isinstance(end_ms, bool) or not isinstance(end_ms, int):
            raise ProtocolError(
                "missing_required_parameter", "truncate needs 'item_id' (string) and 'audio_end_ms' (integer).",
                param="audio_end_ms",
            )  # fmt: skip
        item = self.items.get(item_id)
        track = self.tracks.get(item_id)
        if item is None or item.get("role") != "assistant" or track is None:
            raise ProtocolError(
                "invalid_value", f"Item {item_id!r} is not an assistant message with audio.", param="item_id"
            )
        if index != 0:
            raise ProtocolError("invalid_value", "content_index must be 0.", param="content_index")
        if end_ms < 0 or end_ms > int(track.produced_ms):
            raise ProtocolError(
                "invalid_value",
                f"audio_end_ms ({end_ms}) is beyond the audio of item {item_id} ({int(track.produced_ms)} ms).",
                param="audio_end_ms",
            )
        await self._truncate(item_id, track, end_ms)

    async def _truncate(self, item_id: str, track: AudioTrack, end_ms: int) -> None:
        heard = _heard(track.transcript, end_ms, track.produced_ms)
        entry = self._history.get(item_id)
        if entry is not None:  # the agent's memory keeps what the caller heard, marked interrupted
            entry["content"], entry["interrupted"] = heard, True
        item = self.items[item_id]
        for part in item.get("content") or []:
            if isinstance(part, dict) and "transcript" in part:
                part["transcript"] = ""  # the services delete the truncated item's transcript
        track.produced_ms = float(end_ms)
        await self.send({"type": "conversation.item.truncated", "item_id": item_id, "content_index": 0,
                         "audio_end_ms": end_ms})  # fmt: skip

    async def auto_truncate(self) -> None:
        """VoiceLive ``auto_truncate``: cut the reply still playing at the client's ear, assuming the
        client plays audio in real time from the first delta."""
        now = time.monotonic()
        for item_id in reversed(list(self.tracks)):
            track = self.tracks[item_id]
            if track.first_delta_at is None:
                continue
            played = min((now - track.first_delta_at) * 1000.0, track.produced_ms)
            if played < track.produced_ms:
                await self._truncate(item_id, track, int(played))
            return

    async def item_delete(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            raise ProtocolError("invalid_value", f"Item {item_id!r} does not exist.", param="item_id")
        del self.items[item_id]
        self.tracks.pop(item_id, None)
        if item_id in self.unanswered:
            self.unanswered.remove(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def item_retrieve(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        if not isinstance(item_id, str) or item_id not in self.items:
            raise ProtocolError("invalid_value", f"Item {item_id!r} does not exist.", param="item_id")
        await self.send({"type": "conversation.item.retrieved", "item": self.items[item_id]})


def _heard(transcript: str, end_ms: int, produced_ms: float) -> str:
    """The words of ``transcript`` the caller heard by ``end_ms`` (proportional to the audio)."""
    if produced_ms <= 0:
        return ""
    words = transcript.split()
    return " ".join(words[: int(len(words) * min(1.0, end_ms / produced_ms))])
