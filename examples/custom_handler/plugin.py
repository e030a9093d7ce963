"""A custom event handler, as in the seed's "Custom Handler Registration", on a running server.

Run it::

    cd examples
    callwright serve --app custom_handler.plugin:setup

``my_custom_handler`` is the seed's handler unchanged: it runs for every DTMF tone event of a call, after
Callwright's own handlers (several handlers per event type run in order; one that raises is logged and
does not stop the others). Handlers of one call run in order, different calls concurrently.

ACS sends ``ContinuousDtmfRecognitionToneReceived`` only while continuous DTMF recognition is on for the
call, so ``start_dtmf_events`` turns it on when the call connects. Callwright itself reads keys from the
media stream (DtmfData frames); with the tone events on too, its default tone handler would hand every
key to the agent a second time, so ``setup`` unregisters that one.
"""

from __future__ import annotations

import logging

from callwright.acs.call_control import sdk_identifier
from callwright.acs.events import ACSEventTypes
from callwright.events.context import CallEventContext
from callwright.events.handlers import handle_dtmf_tone
from callwright.services import Services

log = logging.getLogger("examples.custom_handler")


async def my_custom_handler(context: CallEventContext) -> None:
    """Custom handler for call events."""
    event_data = context.get_event_data()  # noqa: F841 — the seed's handler reads it; yours would use it

    if context.memo_manager:
        context.memo_manager.set_context("custom_field", "value")


async def start_dtmf_events(context: CallEventContext) -> None:
    """On CallConnected: ask ACS for a tone event per key the remote party presses."""
    call, automation = context.call, context.automation_client
    if call is None or automation is None or not context.call_connection_id:
        return
    remote = call.caller if call.direction == "inbound" else call.target
    if not remote:
        log.warning("call %s: remote party unknown; no DTMF events", context.call_connection_id)
        return
    await automation.connection(context.call_connection_id).start_continuous_dtmf_recognition(
        target_participant=sdk_identifier(remote), operation_context="examples.custom_handler"
    )


def setup(services: Services) -> None:
    processor = services.processor
    processor.register_handler(ACSEventTypes.CALL_CONNECTED, start_dtmf_events)
    processor.unregister_handler(ACSEventTypes.DTMF_TONE_RECEIVED, handle_dtmf_tone)
    processor.register_handler(ACSEventTypes.DTMF_TONE_RECEIVED, my_custom_handler)
