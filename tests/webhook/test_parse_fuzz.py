"""Property-based fuzzing of the webhook parser: random bodies give only the documented outcomes."""

from __future__ import annotations

import json
import random

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from callwright.acs.events import Delivery, DeliveryTooLarge, EventParseError, parse_delivery
from callwright.acs.identifiers import is_call_connection_id

_text = st.one_of(
    st.text(max_size=24),
    st.sampled_from(["\ud800", "a\udfffb", "x\n[call=forged]", "\u2028", "", "411f0b00-360b-49d4-8323-c08b3b9d4043"]),
)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=16,
)
_types = st.one_of(
    st.sampled_from(
        [
            "Microsoft.Communication.CallConnected",
            "Microsoft.Communication.IncomingCall",
            "Microsoft.Communication.RecordingFileStatusUpdated",
            "Microsoft.Communication.ParticipantsUpdated",
            "Microsoft.EventGrid.SubscriptionValidationEvent",
        ]
    ),
    _text,
    _json,
)
_data = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "callConnectionId": _text,
            "serverCallId": _text,
            "correlationId": _text,
            "incomingCallContext": _text,
            "validationCode": _text,
            "participants": _json,
        },
    ),
)
_event = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={"id": _text, "type": _types, "eventType": _types, "specversion": _json, "data": _data},
    ),
)
_body = st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.lists(_event, max_size=8).map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    _event.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)


def _items(body: bytes) -> int:
    doc = json.loads(body)
    return len(doc) if isinstance(doc, list) else 1


@settings(max_examples=600, deadline=None)
@given(body=_body)
def test_parse_delivery_gives_only_documented_outcomes(body):
    try:
        delivery = parse_delivery(body, max_events=5)
    except DeliveryTooLarge as exc:
        assert "at most 5" in str(exc)
        return
    except EventParseError as exc:
        assert str(exc)  # names the problem
        return
    assert isinstance(delivery, Delivery)
    # Every item is accounted for: taken or rejected with its index, never silently dropped.
    assert len(delivery.events) + len(delivery.rejections) == _items(body)
    assert sorted(r.index for r in delivery.rejections) == [r.index for r in delivery.rejections]
    for event in delivery.events:
        cid = event.call_connection_id
        assert cid is None or is_call_connection_id(cid)
        if "callConnectionId" in event.data:
            assert is_call_connection_id(event.data["callConnectionId"])
        # What reaches handlers, logs and the API can be encoded (no lone surrogate anywhere).
        json.dumps(event.data, ensure_ascii=False).encode("utf-8")
        assert event.id.isprintable() and event.type.isprintable()
    # Rejection reasons go into the JSON response: they must encode too.
    json.dumps([r.to_dict() for r in delivery.rejections], ensure_ascii=False).encode("utf-8")


async def test_random_bodies_over_http_never_give_a_5xx(edge):
    """A few hundred hostile bodies against the running server: 200, 400 or 413, never a 5xx."""
    rng = random.Random(1414)
    pieces = [b"[", b"]", b"{", b"}", b'"id"', b":", b",", b'"type"', b'"\\ud800"', b"1e999", b"null", b'"data"']
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
            if rng.random() < 0.3:
                body = json.dumps(
                    [{"id": f"r{rng.random()}", "type": rng.choice(["Microsoft.Communication.CallConnected", "X"]),
                      "data": {"callConnectionId": rng.choice(["ok-1", "\ud800", "bad id", 5])}}]
                ).encode("utf-8", "surrogatepass")  # fmt: skip
            resp = await http.post(edge.webhook(), content=body)
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            assert resp.status_code in (200, 400, 413), (body, resp.status_code, resp.text)
        assert (await http.get(f"{edge.url}/health")).status_code == 200
    assert statuses.get(400, 0) > 0 and statuses.get(200, 0) > 0, statuses
