"""What every media handler does to the call itself: hang it up, transfer it.

Both go through Call Automation (the official SDK); a failed hang-up still ends the caller's audio by
closing the media stream, and a failed transfer is logged and left to the caller's next turn.
"""

from __future__ import annotations

import logging
from typing import Any

from callwright.voice.base import MediaTransport

log = logging.getLogger("callwright.media")


async def hang_up(app_state: Any, call_connection_id: str, transport: MediaTransport, reason: str) -> None:
    automation = app_state.automation
    log.info("hanging up: %s", reason)
    if automation is not None:
        try:
            await automation.actions(call_connection_id).hang_up()
            return
        except Exception:
            log.exception("hang up through call automation failed; closing the media stream")
    await transport.close()


async def transfer(app_state: Any, call_connection_id: str, target: str) -> None:
    automation = app_state.automation
    if automation is None:
        log.error("cannot transfer to %s: no call automation client", target)
        return
    try:
        await automation.actions(call_connection_id).transfer(target)
        log.info("transfer to %s requested", target)
    except Exception:
        log.exception("transfer to %s failed", target)
