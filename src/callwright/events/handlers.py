"""Default handlers: the call lifecycle as ACS reports it.

Handlers find what they need on ``app_state`` (built in the app's lifespan): ``settings``, ``calls``
(CallRegistry), ``store`` (SessionStore), ``automation`` (CallAutomation or None), ``metrics`` and
optionally ``profile_loader`` (caller number → profile dict).
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from callwright.acs.events import ACSEventTypes
from callwright.acs.identifiers import display_number, raw_id_from_model
from callwright.acs.media import MediaFrameError, tone_to_char
from callwright.events.context import CallEventContext
from callwright.events.processor import CallEventProcessor, is_being_placed
from callwright.sessions.memo import MemoManager
from callwright.sessions.registry import CallRecord
from callwright.sessions.store import StoreUnavailable

log = logging.getLogger("callwright.events")


async def ensure_call(app_state: Any, call_connection_id: str, *, publish: bool = False, **defaults: Any) -> CallRecord:
    """The call's record with a loaded session, created on first sight (events may race the answer).
    ``publish`` waits until other replicas can see it (the answer: ACS opens the media socket next)."""
    # A call another replica published (its events or its answer happened there) keeps its mode and fields.
    record: CallRecord | None = await app_state.calls.resolve(call_connection_id)
    created = record is None
    if record is None:
        settings = app_state.settings
        record = CallRecord(
            call_connection_id=call_connection_id,
            direction=defaults.pop("direction", "inbound"),
            mode=defaults.pop("mode", settings.acs_streaming_mode),
            **defaults,
        )
        app_state.calls.add(record)
        app_state.metrics.calls_total.labels(record.direction).inc()
        app_state.metrics.calls_active.set(len(app_state.calls))
    else:
        for key, value in defaults.items():
            if value is not None and getattr(record, key, None) in (None, {}, []):
                setattr(record, key, value)
    if record.memo is None:
        record.memo = await MemoManager.load(
            call_connection_id,
            app_state.store,
            debounce_seconds=app_state.settings.session_persist_debounce,
        )
    if publish:
        await app_state.calls.publish(record)  # the media socket that follows may reach another replica
    elif created or defaults:
        app_state.calls.publish_soon(record)
    return record


async def _take_pending(st: Any, operation_context: str) -> dict[str, Any] | None:
    """The outbound call the API (of any replica) is placing under this operation context, taken once."""
    try:
        return await st.directory.take_pending(operation_context)
    except StoreUnavailable:
        log.warning("pending outbound calls unreachable (the call directory's store is down)")
        return None


async def _ensure_call_for_event(ctx: CallEventContext, **defaults: Any) -> CallRecord:
    """The event's call; an outbound call placed by the API is recognised by the operation context it
    carries, because its events can arrive before create_call has returned."""
    st = ctx.app_state
    op_ctx = ctx.event.operation_context
    pending = await _take_pending(st, op_ctx) if op_ctx else None
    if pending:
        defaults.update(direction="outbound", mode=pending["mode"], target=pending["target"])
    record = await ensure_call(st, ctx.call_connection_id or "", **defaults)
    if pending:
        record.context.update(pending["context"])
    return record


async def handle_incoming_call(ctx: CallEventContext) -> None:
    st = ctx.app_state
    data = ctx.get_event_data()
    caller = raw_id_from_model(data.get("from"))
    callee = raw_id_from_model(data.get("to"))
    if st.automation is None:
        log.error("IncomingCall from %s not answered: ACS_CONNECTION_STRING is not configured", caller)
        return
    if getattr(st, "draining", False):
        # Shutting down: no new call is answered. ACS offers it elsewhere (or the caller hears busy) when
        # it is rejected; a client without reject leaves it to ring out.
        reject = getattr(st.automation, "reject", None)
        if reject is None:
            log.warning("IncomingCall from %s not answered: the server is shutting down", caller)
            return
        try:
            await reject(data["incomingCallContext"])
        except Exception as exc:
            log.warning("IncomingCall from %s not answered (shutting down); reject failed: %s", caller, exc)
            return
        log.warning("IncomingCall from %s rejected: the server is shutting down", caller)
        return
    answered = await st.automation.answer(data["incomingCallContext"], operation_context="callwright-answer")
    record = await ensure_call(
        st,
        answered.call_connection_id,
        publish=True,
        direction="inbound",
        caller=caller,
        target=callee,
        server_call_id=data.get("serverCallId"),
        correlation_id=data.get("correlationId"),
    )
    record.memo.update_context(  # type: ignore[union-attr]
        {"caller": display_number(caller), "callee": display_number(callee), "direction": "inbound"}
    )
    log.info("answered call from %s (mode=%s)", caller, record.mode, extra={"call_id": record.call_connection_id})


async def handle_call_connected(ctx: CallEventContext) -> None:
    st = ctx.app_state
    data = ctx.get_event_data()
    record = await _ensure_call_for_event(
        ctx, server_call_id=data.get("serverCallId"), correlation_id=data.get("correlationId")
    )
    record.state = "connected"
    record.connected_at = record.connected_at or time.time()
    memo = record.memo
    assert memo is not None
    memo.set_context("call_state", "connected")
    loader = getattr(st, "profile_loader", None)
    number = display_number(record.caller if record.direction == "inbound" else record.target)
    if loader is not None and number and memo.get_context("caller_profile") is None:
        profile = loader(number)
        if inspect.isawaitable(profile):
            profile = await profile
        if profile:
            memo.set_context("caller_profile", profile)
    memo.persist_background()
    log.info("call connected (%s, %s)", record.direction, record.mode)


async def handle_call_disconnected(ctx: CallEventContext) -> None:
    st = ctx.app_state
    record: CallRecord | None = ctx.call
    if record is None:
        log.debug("CallDisconnected for a call this server does not hold")
        return
    result = ctx.get_event_data().get("resultInformation") or {}
    reason = result.get("message") if isinstance(result, dict) else None
    handler = record.media_handler
    if handler is not None:
        try:
            await handler.stop()
        except Exception:
            log.exception("media handler failed to stop")
    memo = record.memo
    if memo is not None:
        memo.cancel_pending_persist()
        memo.set_context("call_state", "disconnected")
        await memo.final_persist()
    st.calls.finish(record.call_connection_id, reason=reason)
    st.metrics.calls_active.set(len(st.calls))
    log.info("call disconnected: %s", reason or "no reason given")


async def handle_participants_updated(ctx: CallEventContext) -> None:
    # ParticipantsUpdated often arrives before CallConnected (acs-protocol.md §3.5, "either order"): it
    # opens the call record like CallConnected does, so the participants are kept whatever the order.
    record = ctx.call or await _ensure_call_for_event(ctx)
    participants = [
        raw
        for p in ctx.get_event_data().get("participants") or []
        if isinstance(p, dict) and (raw := raw_id_from_model(p.get("identifier")))
    ]
    record.participants = participants
    if record.memo is not None:
        record.memo.set_context("participants", participants)
        record.memo.persist_background()


async def handle_dtmf_tone(ctx: CallEventContext) -> None:
    data = ctx.get_event_data()
    tone = data.get("tone") or (data.get("toneInfo") or {}).get("tone")
    try:
        char = tone_to_char(str(tone))
    except MediaFrameError:
        log.warning("DTMF event with an unknown tone %r skipped", tone)
        return
    record = ctx.call
    handler = record.media_handler if record else None
    if handler is None:
        log.info("DTMF %s received with no media handler attached", char)
        return
    await handler.on_dtmf(char)


async def handle_play_result(ctx: CallEventContext) -> None:
    memo = ctx.memo_manager
    if memo is None:
        return
    result = ctx.get_event_data().get("resultInformation") or {}
    memo.record_metric(
        "play",
        outcome=ctx.event.short_type,
        operation_context=ctx.event.operation_context,
        code=result.get("code"),
        sub_code=result.get("subCode"),
    )
    if ctx.event.type == ACSEventTypes.PLAY_FAILED:
        log.warning("play failed: %s", result.get("message"))


async def handle_recognize_result(ctx: CallEventContext) -> None:
    memo = ctx.memo_manager
    if memo is None:
        return
    data = ctx.get_event_data()
    result: dict[str, Any] = {
        "outcome": ctx.event.short_type,
        "operation_context": ctx.event.operation_context,
    }
    if ctx.event.type == ACSEventTypes.RECOGNIZE_COMPLETED:
        result["type"] = data.get("recognitionType")
        if isinstance(data.get("dtmfResult"), dict):
            tones = data["dtmfResult"].get("tones") or []
            result["dtmf"] = "".join(tone_to_char(t) for t in tones if isinstance(t, str))
        if isinstance(data.get("speechResult"), dict):
            result["speech"] = data["speechResult"].get("speech")
        if isinstance(data.get("choiceResult"), dict):
            result["choice"] = data["choiceResult"].get("label")
    else:
        result["reason"] = (data.get("resultInformation") or {}).get("message")
    memo.set_context("last_recognize", result)
    memo.persist_background()


async def handle_transfer(ctx: CallEventContext) -> None:
    record = ctx.call
    if record is None:
        return
    accepted = ctx.event.type == ACSEventTypes.CALL_TRANSFER_ACCEPTED
    ctx.app_state.metrics.transfers_total.labels("accepted" if accepted else "failed").inc()
    record.state = "transferring" if accepted else "connected"
    if record.memo is not None:
        record.memo.set_context("transfer", {"accepted": accepted, "data": ctx.get_event_data()})
        record.memo.persist_background()
    log.info("transfer %s", "accepted" if accepted else "failed")


async def handle_call_failed(ctx: CallEventContext) -> None:
    st = ctx.app_state
    result = ctx.get_event_data().get("resultInformation") or {}
    log.error(
        "%s: %s (code %s/%s)",
        ctx.event.short_type,
        result.get("message"),
        result.get("code"),
        result.get("subCode"),
    )
    # The failure can arrive before create_call has returned: record the call so the API shows it failed.
    # A failure for a call this server neither knows nor is placing opens no record (it would never end).
    placing = await is_being_placed(st, ctx.event.operation_context)
    if ctx.call is None and not placing:
        return
    record = await _ensure_call_for_event(ctx)
    if record.memo is not None:
        record.memo.set_context("call_state", "failed")
        await record.memo.final_persist()
    if ctx.call_connection_id:
        st.calls.finish(ctx.call_connection_id, state="failed", reason=result.get("message"))
        st.metrics.calls_active.set(len(st.calls))


async def handle_media_streaming(ctx: CallEventContext) -> None:
    record = ctx.call
    update = ctx.get_event_data().get("mediaStreamingUpdate") or {}
    status = update.get("mediaStreamingStatus")
    if ctx.event.type == ACSEventTypes.MEDIA_STREAMING_FAILED:
        log.error("media streaming failed: %s", update.get("mediaStreamingStatusDetails"))
    if record is not None and record.memo is not None:
        record.memo.set_context("media_streaming", status)
        record.memo.persist_background()


def _result(data: dict[str, Any]) -> dict[str, Any]:
    result = data.get("resultInformation")
    return result if isinstance(result, dict) else {}


async def handle_operation_result(ctx: CallEventContext) -> None:
    """Events that report on an operation (hold, transcription, recording, participants, DTMF…): kept in
    the call's session metrics, failures logged. They never open a call."""
    data = ctx.get_event_data()
    result = _result(data)
    short = ctx.event.short_type
    if short.endswith("Failed"):
        log.warning("%s: %s (code %s/%s)", short, result.get("message"), result.get("code"), result.get("subCode"))
    memo = ctx.memo_manager
    if memo is None:
        log.debug("%s for a call this server does not hold", short)
        return
    memo.record_metric(
        "operation",
        outcome=short,
        operation_context=ctx.event.operation_context,
        code=result.get("code"),
        sub_code=result.get("subCode"),
    )
    state_key = _STATE_KEYS.get(ctx.event.type)
    if state_key is not None:
        memo.set_context(state_key, _state_value(ctx.event.type, data))
    memo.persist_background()


def _state_value(event_type: str, data: dict[str, Any]) -> Any:
    if event_type == ACSEventTypes.RECORDING_STATE_CHANGED:
        return {"state": data.get("state"), "recording_id": data.get("recordingId")}
    short = event_type.rsplit(".", 1)[-1]
    update = data.get("transcriptionUpdate")
    if short.startswith("Transcription") and isinstance(update, dict):
        status = update.get("transcriptionStatus")
        return status if isinstance(status, str) else short
    return short


async def handle_call_less_notice(ctx: CallEventContext) -> None:
    """Event Grid notifications that name no call connection (recording files ready, call started/ended
    on the resource): logged, never an error."""
    data = ctx.get_event_data()
    info = data.get("recordingStorageInfo")
    chunks = info.get("recordingChunks") if isinstance(info, dict) else None
    if isinstance(chunks, list):
        log.info(
            "%s: %d recording chunk(s), recording started %s",
            ctx.event.short_type,
            len(chunks),
            data.get("recordingStartTime"),
        )
    else:
        log.info("%s (no call connection) received", ctx.event.short_type)


_STATE_KEYS: dict[str, str] = {
    ACSEventTypes.HOLD_AUDIO_STARTED: "hold",
    ACSEventTypes.HOLD_AUDIO_PAUSED: "hold",
    ACSEventTypes.HOLD_AUDIO_RESUMED: "hold",
    ACSEventTypes.HOLD_AUDIO_COMPLETED: "hold",
    ACSEventTypes.HOLD_FAILED: "hold",
    ACSEventTypes.TRANSCRIPTION_STARTED: "transcription",
    ACSEventTypes.TRANSCRIPTION_UPDATED: "transcription",
    ACSEventTypes.TRANSCRIPTION_STOPPED: "transcription",
    ACSEventTypes.TRANSCRIPTION_FAILED: "transcription",
    ACSEventTypes.RECORDING_STATE_CHANGED: "recording",
    ACSEventTypes.START_RECORDING_FAILED: "recording",
}

_OPERATION_RESULTS = (
    ACSEventTypes.PLAY_STARTED,
    ACSEventTypes.RECOGNIZE_CANCELED,
    ACSEventTypes.ADD_PARTICIPANT_SUCCEEDED,
    ACSEventTypes.ADD_PARTICIPANT_FAILED,
    ACSEventTypes.REMOVE_PARTICIPANT_SUCCEEDED,
    ACSEventTypes.REMOVE_PARTICIPANT_FAILED,
    ACSEventTypes.CANCEL_ADD_PARTICIPANT_SUCCEEDED,
    ACSEventTypes.CANCEL_ADD_PARTICIPANT_FAILED,
    ACSEventTypes.CONTINUOUS_DTMF_TONE_FAILED,
    ACSEventTypes.CONTINUOUS_DTMF_STOPPED,
    ACSEventTypes.SEND_DTMF_COMPLETED,
    ACSEventTypes.SEND_DTMF_FAILED,
    *_STATE_KEYS,
)

_CALL_LESS_NOTICES = (
    ACSEventTypes.RECORDING_FILE_STATUS_UPDATED,
    ACSEventTypes.CALL_STARTED,
    ACSEventTypes.CALL_ENDED,
    ACSEventTypes.CALL_PARTICIPANT_ADDED,
    ACSEventTypes.CALL_PARTICIPANT_REMOVED,
)


DEFAULT_HANDLERS: dict[str, tuple[Any, ...]] = {
    ACSEventTypes.INCOMING_CALL: (handle_incoming_call,),
    ACSEventTypes.CALL_CONNECTED: (handle_call_connected,),
    ACSEventTypes.CALL_DISCONNECTED: (handle_call_disconnected,),
    ACSEventTypes.PARTICIPANTS_UPDATED: (handle_participants_updated,),
    ACSEventTypes.CONTINUOUS_DTMF_TONE_RECEIVED: (handle_dtmf_tone,),
    ACSEventTypes.PLAY_COMPLETED: (handle_play_result,),
    ACSEventTypes.PLAY_FAILED: (handle_play_result,),
    ACSEventTypes.PLAY_CANCELED: (handle_play_result,),
    ACSEventTypes.RECOGNIZE_COMPLETED: (handle_recognize_result,),
    ACSEventTypes.RECOGNIZE_FAILED: (handle_recognize_result,),
    ACSEventTypes.CALL_TRANSFER_ACCEPTED: (handle_transfer,),
    ACSEventTypes.CALL_TRANSFER_FAILED: (handle_transfer,),
    ACSEventTypes.CREATE_CALL_FAILED: (handle_call_failed,),
    ACSEventTypes.ANSWER_FAILED: (handle_call_failed,),
    ACSEventTypes.MEDIA_STREAMING_STARTED: (handle_media_streaming,),
    ACSEventTypes.MEDIA_STREAMING_STOPPED: (handle_media_streaming,),
    ACSEventTypes.MEDIA_STREAMING_FAILED: (handle_media_streaming,),
    ACSEventTypes.CONNECT_FAILED: (handle_call_failed,),
    **{t: (handle_operation_result,) for t in _OPERATION_RESULTS},
    **{t: (handle_call_less_notice,) for t in _CALL_LESS_NOTICES},
}


def register_default_handlers(processor: CallEventProcessor) -> CallEventProcessor:
    for event_type, handlers in DEFAULT_HANDLERS.items():
        for handler in handlers:
            processor.register_handler(event_type, handler)
    return processor
