"""ACS Call Recording as the official SDK drives it (``start_recording``, ``get_recording_properties``,
``pause_recording``, ``resume_recording``, ``stop_recording``).

Paths and success codes are the SDK's (``_generated/operations``): ``POST /calling/recordings`` → 200 with
``{recordingId, recordingState, recordingKind}``, ``GET /calling/recordings/{id}`` → 200 with the same,
``POST …/{id}:pause`` and ``:resume`` → 202, ``DELETE …/{id}`` → 204. Each state change is reported with a
``RecordingStateChanged`` callback (``state`` active/inactive) to ``recordingStateCallbackUri``, or to the
call's callback URI when none was given. A recording of a call that has ended is inactive.

The emulator keeps the recording's state only; it stores no audio (the phone records what it heard, and
Callwright records server side). The callback's CloudEvent ``source`` is the call's, where ACS uses
``calling/recordings/{serverCallId}/recordingId/{recordingId}``: the data fields are ACS's.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callwright.emulator.errors import AcsHttpError, bad_request

if TYPE_CHECKING:
    from callwright.emulator.calls import EmulatedCall

RECORDING_KIND = "azureCommunicationServices"
CONTENT_TYPES = ("audio", "audioVideo")
CHANNEL_TYPES = ("mixed", "unmixed")
FORMAT_TYPES = ("wav", "mp3", "mp4")
MAX_RECORDINGS = 10_000  # per emulator; the oldest stopped ones are forgotten first


@dataclass
class EmulatedRecording:
    recording_id: str
    call: EmulatedCall
    state_url: str | None
    content: str
    channel: str
    format: str
    state: str = "active"
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    stopped: bool = False
    history: list[str] = field(default_factory=list)  # states reported, in order (tests read it)

    def current_state(self) -> str:
        if self.stopped or self.call.state in ("disconnected", "disconnecting"):
            return "inactive"
        return self.state

    def properties(self) -> dict[str, Any]:
        state = self.current_state()
        return {"recordingId": self.recording_id, "recordingState": state, "recordingKind": RECORDING_KIND}

    def report(self) -> None:
        state = self.current_state()
        self.history.append(state)
        self.call.emit(
            "RecordingStateChanged",
            {"recordingId": self.recording_id, "state": state, "startDateTime": self.started,
             "recordingKind": RECORDING_KIND},
            result=None,
            url=self.state_url,
        )  # fmt: skip


def _recording_id(server_call_id: str) -> str:
    """Shaped like ACS's: base64 of a JSON blob naming the call (opaque to clients)."""
    blob = {"PlatformEndpointId": str(uuid.uuid4()), "ResourceSpecificId": server_call_id[-36:]}
    return base64.urlsafe_b64encode(json.dumps(blob).encode()).decode().rstrip("=")


class EmulatedRecordings:
    """The emulator's recordings, by id."""

    def __init__(self) -> None:
        self.by_id: dict[str, EmulatedRecording] = {}

    def start(self, body: dict[str, Any], find_call: Any, all_calls: Any) -> EmulatedRecording:
        call = self._locate(body, find_call, all_calls)
        if call.state != "connected":
            raise AcsHttpError(400, "8501", f"Action is invalid when call is in {call.state} state.")
        state_url = body.get("recordingStateCallbackUri")
        if state_url is not None and (
            not isinstance(state_url, str) or not state_url.startswith(("http://", "https://"))
        ):
            raise bad_request("recordingStateCallbackUri must be an http(s) URL")
        content = self._choice(body, "recordingContentType", CONTENT_TYPES, "audioVideo")
        channel = self._choice(body, "recordingChannelType", CHANNEL_TYPES, "mixed")
        fmt = self._choice(body, "recordingFormatType", FORMAT_TYPES, "mp4" if content == "audioVideo" else "wav")
        if channel == "unmixed" and (content != "audio" or fmt != "wav"):
            raise bad_request("unmixed recordings must be audio in wav format")
        if content == "audioVideo" and fmt != "mp4":
            raise bad_request("audioVideo recordings must be in mp4 format")
        for rec in self.by_id.values():
            if rec.call is call and not rec.stopped:
                raise AcsHttpError(400, "8527", "Recording is already in progress for this call.")
        pause = body.get("pauseOnStart")
        if pause is not None and not isinstance(pause, bool):
            raise bad_request("pauseOnStart must be a boolean")
        rec = EmulatedRecording(_recording_id(call.server_call_id), call, state_url or None, content, channel, fmt)
        rec.state = "inactive" if pause else "active"
        self._remember(rec)
        rec.report()
        return rec

    def get(self, recording_id: str) -> EmulatedRecording:
        rec = self.by_id.get(recording_id)
        if rec is None:
            raise AcsHttpError(404, "8522", f"Recording {recording_id[:80]} not found.")
        return rec

    def pause(self, recording_id: str) -> None:
        self._set(self.get(recording_id), "inactive")

    def resume(self, recording_id: str) -> None:
        self._set(self.get(recording_id), "active")

    def stop(self, recording_id: str) -> None:
        rec = self.get(recording_id)
        if rec.stopped:
            return
        rec.stopped = True
        rec.state = "inactive"
        rec.report()

    @staticmethod
    def _set(rec: EmulatedRecording, state: str) -> None:
        if rec.stopped or rec.call.state != "connected":
            raise AcsHttpError(400, "8501", "Action is invalid: the recording has stopped.")
        if rec.state != state:
            rec.state = state
            rec.report()

    @staticmethod
    def _choice(body: dict[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
        value = body.get(key, default)
        if value is None:
            return default
        if value not in allowed:
            raise bad_request(f"{key} must be one of {', '.join(allowed)}")
        return str(value)

    @staticmethod
    def _locate(body: dict[str, Any], find_call: Any, all_calls: Any) -> EmulatedCall:
        ccid = body.get("callConnectionId")
        if ccid is not None:
            if not isinstance(ccid, str) or not ccid:
                raise bad_request("callConnectionId must be a string")
            call = find_call(ccid)
            if call is None:
                raise AcsHttpError(404, "8523", f"Call {ccid[:80]} not found or has been terminated.")
            return call  # type: ignore[no-any-return]
        locator = body.get("callLocator")
        if not isinstance(locator, dict):
            raise bad_request("callLocator or callConnectionId is required")
        kind = locator.get("kind")
        server_call_id = locator.get("serverCallId") or (locator.get("id") if kind == "serverCallLocator" else None)
        if kind not in (None, "serverCallLocator") or not isinstance(server_call_id, str) or not server_call_id:
            raise bad_request("calls are located by serverCallLocator here (there are no group or room calls)")
        for call in all_calls():
            if call.server_call_id == server_call_id:
                return call  # type: ignore[no-any-return]
        raise AcsHttpError(404, "8523", "Call not found or has been terminated.")

    def _remember(self, rec: EmulatedRecording) -> None:
        self.by_id[rec.recording_id] = rec
        if len(self.by_id) > MAX_RECORDINGS:
            for rid in [r.recording_id for r in self.by_id.values() if r.stopped][: len(self.by_id) - MAX_RECORDINGS]:
                del self.by_id[rid]


def recordings_of(emulator: Any) -> EmulatedRecordings:
    """The emulator's recordings (made on first use: recording is an optional part of the API)."""
    recs = getattr(emulator, "recordings", None)
    if recs is None:
        recs = EmulatedRecordings()
        emulator.recordings = recs
    return recs  # type: ignore[no-any-return]
