"""The token attack: forged and malformed JWTs on the callback webhook and the media upgrade, with genuine
tokens as positive controls for the "accepted" detector."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

from callwright.bench.robustness_common import (
    FORGED_CLOSE_WAIT_S,
    SEED,
    Note,
    _acs_headers,
    _call_id,
    _MediaClient,
    _ws_url,
)
from callwright.bench.robustness_inputs import forged_tokens

if TYPE_CHECKING:
    from callwright.bench.robustness import RobustnessPlan


def _callback_body(call_id: str) -> bytes:
    data = {"version": "2024-04-15", "callConnectionId": call_id, "serverCallId": "c2VydmVy",
            "correlationId": str(uuid.uuid4()), "publicEventType": "Microsoft.Communication.CallConnected"}  # fmt: skip
    where = f"calling/callConnections/{call_id}"
    event = {"id": str(uuid.uuid4()), "source": where, "type": "Microsoft.Communication.CallConnected",
             "data": data, "specversion": "1.0", "time": "2026-01-01T00:00:00Z", "subject": where}  # fmt: skip
    return json.dumps([event]).encode()


async def _try_webhook(stack: Any, http: httpx.AsyncClient, authorization: str) -> tuple[str, bool]:
    """(outcome, accepted) for one callback POST carrying ``authorization`` and no Event Grid secret."""
    call_id = _call_id("forged")
    try:
        headers = {"authorization": authorization, "content-type": "application/json"}
        resp = await http.post(f"{stack.url}/api/v1/call-events", content=_callback_body(call_id), headers=headers)
    except httpx.LocalProtocolError:
        return "unsendable", False  # our HTTP client refuses the header (e.g. trailing space): never sent
    except httpx.HTTPError as exc:
        return f"dropped:{type(exc).__name__}", False
    await asyncio.sleep(0)  # handlers run in the background: give them a turn before looking
    accepted = 200 <= resp.status_code < 300 or stack.state.calls.get(call_id) is not None
    return ("5xx" if resp.status_code >= 500 else str(resp.status_code)), accepted


async def _try_media(stack: Any, authorization: str) -> tuple[str, bool]:
    call_id = _call_id("forged")
    client = _MediaClient(_ws_url(stack), _acs_headers(stack, call_id, authorization), open_timeout=6.0)
    failure = await client.open()
    if failure is not None:
        return ("5xx" if failure == "http_5xx" else failure), False
    try:
        closed = await client.wait_closed(FORGED_CLOSE_WAIT_S)
        accepted = not closed or stack.state.calls.get(call_id) is not None
        return f"close_{client.close_code}", accepted
    finally:
        await client.close()


async def token_surface(stack: Any, plan: RobustnessPlan, note: Note) -> dict[str, Any]:
    issuer = stack.emulator.tokens
    note(f"tokens: {plan.tokens:,} forged tokens on the webhook and the media upgrade")
    # The emulator's private key signs the variants whose claims (not signatures) are wrong. Reaching
    # into the emulator is the point: only the key's owner can make those, and they must still fail.
    real_key = getattr(issuer, "_key", None)
    if real_key is None:  # an emulator that hides its key: claim variants are then signed by a stranger
        from cryptography.hazmat.primitives.asymmetric import rsa

        real_key = await asyncio.to_thread(rsa.generate_private_key, public_exponent=65537, key_size=2048)
    forgeries = await asyncio.to_thread(forged_tokens, plan.tokens, SEED, real_key=real_key, kid=issuer.kid,
                                        issuer=issuer.issuer, audience=issuer.audience)  # fmt: skip
    web: Counter[str] = Counter()
    media: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    it = iter(forgeries)

    async def worker(http: httpx.AsyncClient) -> None:
        for f in it:
            outcome, ok = await _try_webhook(stack, http, f.authorization)
            web[outcome] += 1
            if ok:
                accepted[f"webhook:{f.kind}"] += 1
            outcome, ok = await _try_media(stack, f.authorization)
            media[outcome] += 1
            if ok:
                accepted[f"media:{f.kind}"] += 1

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(worker(http) for _ in range(16)))
        # Positive controls: genuine tokens through the same code paths must be accepted.
        controls = {"webhook": 0, "media": 0, "tried": 3}
        for _ in range(3):
            _, ok = await _try_webhook(stack, http, f"Bearer {issuer.callback_token()}")
            controls["webhook"] += ok
            _, ok = await _try_media(stack, f"Bearer {issuer.media_token()}")
            controls["media"] += ok
    five = web["5xx"] + media["5xx"]
    # A refusal is a 4xx on the upgrade or a policy close (1008, or the 4xxx application range).
    abnormal = sum(
        v for k, v in media.items() if k.startswith("close_") and not (k == "close_1008" or k.startswith("close_4"))
    )
    return {
        "inputs": len(forgeries),
        "requests": 2 * len(forgeries) - web["unsendable"],
        "http_5xx": five,
        "forgeries_accepted": sum(accepted.values()),
        "accepted_by_kind": dict(accepted),
        "abnormal_closes": abnormal,
        "unanswered_upgrades": media["no_answer"],
        "webhook_outcomes": dict(web),
        "media_outcomes": dict(media),
        "inputs_by_kind": dict(Counter(f.kind for f in forgeries)),
        "genuine_controls_accepted": controls,
    }
