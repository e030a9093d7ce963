"""Hostile inputs for ``callwright bench --robustness``: media frames, webhook bodies and forged tokens.

Every generator is seeded (a run can be repeated exactly) and labels each input with its kind, so the
report can say which kind of input a failure followed. Inputs are built ahead of sending where they are
costly (base64 audio, RSA signatures), so the attack measures the server rather than the attacker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from callwright.acs.media import build_audio_metadata, frame_bytes

# Frame lengths ACS never sends at 16 kHz but other stacks and proxies do (issue 14): each once left the
# agent deaf for the rest of the call.
ODD_SIZES = (0, 320, 642, 960, 1280, 3200)
DEEP_LEVELS = 2_000
TS = "2026-01-01T00:00:00.000Z"


def _audio_msg(pcm: bytes, *, silent: bool) -> str:
    data = base64.b64encode(pcm).decode("ascii")
    return json.dumps({"kind": "AudioData", "audioData": {"timestamp": TS, "data": data, "silent": silent}})


def _quiet_noise(n_bytes: int, rng: np.random.Generator) -> bytes:
    """Noise ~-60 dBFS: real samples, far below any VAD's speech threshold (so fuzz frames never make
    the agent answer, and a turn seen during the deaf check comes from the check's own speech)."""
    samples = (rng.standard_normal(n_bytes // 2) * 30).astype("<i2")
    return samples.tobytes() + (b"\x00" if n_bytes % 2 else b"")


@dataclass(frozen=True)
class MediaFuzz:
    """A pool of pre-built messages per kind for one negotiated sample rate; ``draw`` picks one."""

    rate: int
    pools: dict[str, list[str | bytes]]
    weights: dict[str, float]

    def metadata(self) -> str:
        return build_audio_metadata(str(uuid.uuid4()), self.rate)

    def valid(self, rng: random.Random) -> str:
        return str(rng.choice(self.pools["valid"]))

    def draw(self, rng: random.Random) -> tuple[str, str | bytes]:
        kinds = list(self.weights)
        kind = rng.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
        return kind, rng.choice(self.pools[kind])

    def one(self, kind: str, rng: random.Random) -> str | bytes:
        return rng.choice(self.pools[kind])


def media_fuzz(rate: int, seed: int) -> MediaFuzz:
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    size = frame_bytes(rate)
    pools: dict[str, list[str | bytes]] = {}
    pools["valid"] = [_audio_msg(bytes(size), silent=True) for _ in range(1)] + [
        _audio_msg(_quiet_noise(size, rng), silent=False) for _ in range(8)
    ]
    for n in ODD_SIZES:
        if n != size:
            pools[f"size_{n}"] = [_audio_msg(_quiet_noise(n, rng), silent=False), _audio_msg(bytes(n), silent=True)]
    pools["size_odd_bytes"] = [_audio_msg(_quiet_noise(n, rng), silent=False) for n in (1, 641, 961)]
    pools["size_6400"] = [_audio_msg(_quiet_noise(6400, rng), silent=False)]
    pools["big_frame_256k"] = [_audio_msg(_quiet_noise(256 * 1024, rng), silent=False)]
    pools["metadata_repeat"] = [build_audio_metadata(str(uuid.uuid4()), rate)]

    def meta(**fields: Any) -> str:
        base: dict[str, Any] = {"subscriptionId": str(uuid.uuid4()), "encoding": "PCM", "sampleRate": rate,
                                "channels": 1, "length": size}  # fmt: skip
        base.update(fields)
        return json.dumps({"kind": "AudioMetadata", "audioMetadata": base})

    # json.dumps writes float("inf") as Infinity; 1e999 is the literal an attacker sends.
    pools["sample_rate_1e999"] = [meta(sampleRate=0).replace('"sampleRate": 0', '"sampleRate": 1e999')]
    pools["metadata_garbage"] = [
        meta(sampleRate="abc"), meta(sampleRate=-1), meta(sampleRate=8000), meta(channels=2), meta(length=-5),
        meta(length=10**30), meta(sampleRate=None), meta(subscriptionId=12), meta(encoding=["x"]),
        meta(sampleRate=16000.5), meta(sampleRate=True),
        json.dumps({"kind": "AudioMetadata", "audioMetadata": "16000"}),
    ]  # fmt: skip
    good_b64 = base64.b64encode(bytes(size)).decode("ascii")
    pools["bad_base64"] = [
        json.dumps({"kind": "AudioData", "audioData": {"data": d, "silent": False}})
        for d in ("!!!!", good_b64[:-3], "AAA", "====", good_b64 + "*", "\u00e9\u00e9==", 123, ["AAAA"], {"a": 1})
    ]
    pools["non_json"] = ["not json", "{", '{"kind": "AudioData",', "\x00\x01\x02", "[1, 2", "kind=AudioData",
                         "{'kind': 'AudioData'}", "\ud7ff" * 10]  # fmt: skip
    pools["empty_text"] = [""]
    pools["json_not_object"] = [
        "[]",
        "null",
        "42",
        '"AudioData"',
        "true",
        "[" + _audio_msg(bytes(size), silent=True) + "]",
    ]
    deep_list = "[" * DEEP_LEVELS + "]" * DEEP_LEVELS
    deep_obj = '{"a":' * DEEP_LEVELS + "1" + "}" * DEEP_LEVELS
    pools["deep_json_2000"] = [
        deep_list,
        deep_obj,
        '{"kind": "AudioData", "audioData": ' + deep_list + "}",
        '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": ' + deep_list + "}}",
    ]
    pools["huge_numbers"] = [
        '{"kind": "AudioData", "audioData": {"data": "' + good_b64 + '", "silent": 1e999}}',
        '{"kind": "AudioData", "audioData": {"data": "' + good_b64 + '", "timestamp": 1e999, "silent": false}}',
        '{"kind": "AudioData", "audioData": {"data": "' + good_b64 + '", "silent": -1e999}}',
        '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "length": 1e999}}',
        '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": 16000, "channels": 1e999}}',
        '{"kind": "AudioMetadata", "audioMetadata": {"sampleRate": ' + "9" * 5000 + "}}",
        '{"kind": "AudioData", "audioData": {"data": "' + good_b64 + '", "silent": NaN}}',
    ]
    pools["unknown_kind"] = [
        json.dumps({"kind": k, "x": {"data": good_b64}})
        for k in ("Foo", "audio", "AudioDataX", "StopAudio", "Mark", "", " ", "A" * 5000)
    ] + [json.dumps({"kind": 5}), json.dumps({"kind": None}), json.dumps({"audioData": {"data": good_b64}}),
         json.dumps({"kind": ["AudioData"]})]  # fmt: skip
    pools["binary"] = [
        bytes(size),
        r.randbytes(size),
        r.randbytes(17),
        b"",
        _audio_msg(bytes(size), silent=True).encode(),
    ]
    pools["dtmf"] = [json.dumps({"kind": "DtmfData", "dtmfData": {"data": t}}) for t in ("5", "#", "x", "", "ten")] + [
        json.dumps({"kind": "DtmfData", "dtmfData": {"data": 5}}),
        json.dumps({"kind": "DtmfData", "dtmfData": None}),
    ]
    pools["null_fields"] = [
        json.dumps({"kind": "AudioData", "audioData": None}),
        json.dumps({"kind": "AudioData", "audioData": {"data": None, "silent": None}}),
        json.dumps({"kind": "AudioData", "audioData": {"data": good_b64, "participantRawID": {"x": [1]}}}),
        json.dumps({"kind": "AudioMetadata", "audioMetadata": None}),
        json.dumps({"kind": "TranscriptionData", "transcriptionData": {"text": None, "resultStatus": 5}}),
    ]
    pools["case_variant"] = [
        json.dumps({"KIND": "AUDIODATA", "AUDIODATA": {"DATA": good_b64, "SILENT": True}}),
        json.dumps({"Kind": "audioData", "AudioData": {"Data": good_b64}}),
    ]
    weights = {"valid": 60.0, "size_odd_bytes": 1.0, "size_6400": 1.0, "big_frame_256k": 0.02,
               "metadata_repeat": 0.5, "sample_rate_1e999": 0.2, "metadata_garbage": 1.0, "bad_base64": 2.0,
               "non_json": 2.0, "empty_text": 0.5, "json_not_object": 1.0, "deep_json_2000": 0.2,
               "huge_numbers": 1.0, "unknown_kind": 2.0, "binary": 2.0, "dtmf": 0.5, "null_fields": 1.0,
               "case_variant": 1.0}  # fmt: skip
    for k in pools:
        if k.startswith("size_") and k not in weights:
            weights[k] = 3.0
    return MediaFuzz(rate=rate, pools=pools, weights=weights)


# ---- webhook bodies ----------------------------------------------------------------------------------

ACS_TYPES = (
    "CallConnected", "ParticipantsUpdated", "PlayStarted", "PlayCompleted", "PlayFailed", "HoldAudioStarted",
    "HoldAudioCompleted", "TranscriptionStarted", "TranscriptionFailed", "RecordingStateChanged",
    "MediaStreamingStarted", "MediaStreamingStopped", "ContinuousDtmfRecognitionToneReceived",
    "CallTransferAccepted", "AddParticipantFailed", "RecognizeCompleted", "CancelAddParticipantSucceeded",
)  # fmt: skip


@dataclass(frozen=True)
class WebhookInput:
    kind: str
    secret: str  # valid | none | wrong | code | bearer_garbage
    body: bytes
    content_type: str = "application/json"
    method: str = "POST"


def _cloud_event(etype: str, data: Any, *, call_id: str | None = None) -> dict[str, Any]:
    cid = call_id or (data.get("callConnectionId") if isinstance(data, dict) else None) or "x"
    return {"id": str(uuid.uuid4()), "source": f"calling/callConnections/{cid}", "type": etype, "data": data,
            "time": "2026-01-01T00:00:00Z", "specversion": "1.0", "datacontenttype": "application/json",
            "subject": f"calling/callConnections/{cid}"}  # fmt: skip


def _acs_event(rng: random.Random, call_ids: list[str]) -> dict[str, Any]:
    cid = rng.choice(call_ids)
    etype = "Microsoft.Communication." + rng.choice(ACS_TYPES)
    data: dict[str, Any] = {"version": "2024-04-15", "callConnectionId": cid, "serverCallId": "c2VydmVy",
                            "correlationId": str(uuid.uuid4()), "publicEventType": etype}  # fmt: skip
    if etype.endswith("ParticipantsUpdated"):
        data["participants"] = [{"identifier": {"rawId": "4:+15550001", "kind": "phoneNumber"}, "isMuted": False}]
        data["sequenceNumber"] = rng.randint(0, 9)
    return _cloud_event(etype, data, call_id=cid)


def _incoming_call(corr: str) -> list[dict[str, Any]]:
    data = {
        "to": {"kind": "phoneNumber", "rawId": "4:+15550001000", "phoneNumber": {"value": "+15550001000"}},
        "from": {"kind": "phoneNumber", "rawId": "4:+15551110000", "phoneNumber": {"value": "+15551110000"}},
        "serverCallId": base64.urlsafe_b64encode(corr.encode()).decode(),
        "callerDisplayName": "",
        "incomingCallContext": f"robustness-unknown-context-{corr}",
        "correlationId": corr,
    }
    return [{"id": str(uuid.uuid4()), "topic": "/subscriptions/x", "subject": "/caller/4:+15551110000/recipient/x",
             "data": data, "eventType": "Microsoft.Communication.IncomingCall", "dataVersion": "1.0",
             "metadataVersion": "1", "eventTime": "2026-01-01T00:00:00Z"}]  # fmt: skip


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth > 4 or pick < 0.3:
        scalars = [None, True, False, rng.randint(-(10**6), 10**6), rng.random() * 1e6, "", "x" * rng.randint(0, 40),
                   "Microsoft.Communication.CallConnected", "\u2603", [], {}]  # fmt: skip
        return rng.choice(scalars)
    if pick < 0.6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ["id", "type", "eventType", "data", "callConnectionId", "specversion", "source", "x", "validationCode"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def _bad_event(rng: random.Random, call_ids: list[str]) -> Any:
    cid = rng.choice(call_ids)
    choice = rng.randrange(12)
    if choice == 0:
        return _cloud_event("Microsoft.Communication.RecordingFileStatusUpdated",
                            {"recordingStorageInfo": {"recordingChunks": []}, "recordingStartTime": TS})  # fmt: skip
    if choice == 1:
        return _cloud_event("Microsoft.Communication.CallConnected", {"callConnectionId": 12345})
    if choice == 2:
        return {"id": None, "type": "Microsoft.Communication.PlayStarted", "data": {"callConnectionId": cid}}
    if choice == 3:
        return _cloud_event("Microsoft.Communication.PlayStarted", [1, 2, 3])
    if choice == 4:
        ev = _cloud_event("Microsoft.Communication.PlayStarted", {"callConnectionId": cid})
        ev["data"] = "{not json"
        return ev
    if choice == 5:
        return rng.choice([None, 5, "event", [], [[]]])
    if choice == 6:
        return {"eventType": 5, "id": "x", "data": {}}
    if choice == 7:
        return _cloud_event(
            "Microsoft.EventGrid.SubscriptionValidationEvent", {"validationCode": rng.choice([5, None, []])}
        )
    if choice == 8:
        return _cloud_event("Microsoft.Communication.CallDisconnected", {"callConnectionId": "x" * 10_000})
    if choice == 9:
        return _cloud_event("Microsoft.Communication.IncomingCall", {"incomingCallContext": 5})
    if choice == 10:
        return _cloud_event("Microsoft.Communication.CallConnected", {"callConnectionId": "bad id\n\x1b[31mred"})
    return _cloud_event("Microsoft.Communication.ParticipantsUpdated",
                        {"callConnectionId": cid, "participants": "everyone", "sequenceNumber": 1e999})  # fmt: skip


def _with_lone_surrogates(rng: random.Random) -> bytes:
    # json.dumps escapes a lone surrogate as \ud800: the body is valid ASCII, the parsed string is not UTF-8.
    cid = rng.choice(["\ud800", "abc\udfff", "\udc00" * 3, "ok-\ud83d"])
    ev = _cloud_event("Microsoft.Communication." + rng.choice(ACS_TYPES), {"callConnectionId": cid}, call_id="x")
    if rng.random() < 0.3:
        ev["type"] = "Microsoft.Communication.Call\ud800"
    if rng.random() < 0.3:
        ev["id"] = "\udfff"
    return json.dumps([ev]).encode()


def webhook_inputs(n: int, seed: int, *, big_batches: bool = True) -> Iterator[WebhookInput]:
    """``n`` bodies (plus the giant ones when ``big_batches``), kinds interleaved."""
    rng = random.Random(seed)
    call_ids = [f"robust-stray-{i:04d}-{uuid.UUID(int=rng.getrandbits(128))}" for i in range(150)]
    kinds = {"good_events": 14, "mixed_batch": 16, "random_json": 10, "truncated": 10, "unknown_type": 8,
             "lone_surrogate": 6, "deep_nesting": 1.0, "oversize": 0.08, "duplicate_incoming": 2,
             "validation_weird": 3, "schema_confusion": 8, "raw_bytes": 6, "huge_numbers": 4,
             "wrong_method": 1, "wrong_content_type": 3}  # fmt: skip
    names = list(kinds)
    secrets = ["valid", "none", "wrong", "code", "bearer_garbage"]
    secret_w = [60, 12, 12, 8, 8]
    count = 0
    if big_batches:
        # Over Event Grid's 5,000-event maximum; one with a valid secret of each size.
        for size in (6_000, 20_000):
            evs = [_cloud_event(f"Microsoft.Communication.Unknown{i % 50}", {"callConnectionId": call_ids[i % 10]})
                   for i in range(size)]  # fmt: skip
            yield WebhookInput(f"batch_{size}", "valid", json.dumps(evs).encode())
    while count < n:
        kind = rng.choices(names, weights=[kinds[k] for k in names])[0]
        secret = rng.choices(secrets, weights=secret_w)[0]
        if kind == "good_events":
            body = json.dumps([_acs_event(rng, call_ids) for _ in range(rng.randint(1, 3))]).encode()
        elif kind == "mixed_batch":
            items = [_acs_event(rng, call_ids) if rng.random() < 0.5 else _bad_event(rng, call_ids)
                     for _ in range(rng.randint(2, 8))]  # fmt: skip
            if rng.random() < 0.3:
                items += _incoming_call(str(uuid.UUID(int=rng.getrandbits(128))))
            body = json.dumps(items).encode()
        elif kind == "random_json":
            body = json.dumps(_random_json(rng)).encode()
        elif kind == "truncated":
            whole = json.dumps([_acs_event(rng, call_ids) for _ in range(rng.randint(1, 3))]).encode()
            body = whole[: rng.randint(0, len(whole) - 1)]
        elif kind == "unknown_type":
            t = rng.choice(["Microsoft.Communication.", "Microsoft.EventGrid.", "Contoso.", ""]) + "".join(
                rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 30))
            )
            body = json.dumps([_cloud_event(t, {"callConnectionId": rng.choice(call_ids)})]).encode()
        elif kind == "lone_surrogate":
            body = _with_lone_surrogates(rng)
        elif kind == "deep_nesting":
            levels = rng.choice([2_000, 2_000, 100_000])
            opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
            body = (opener * levels + ("1" if opener != "[" else "") + closer * levels).encode()
        elif kind == "oversize":
            mb = rng.choice([2, 2, 12])
            pad = "x" * (mb * 2**20)
            body = json.dumps([_cloud_event("Microsoft.Communication.PlayStarted",
                                            {"callConnectionId": call_ids[0], "pad": pad})]).encode()  # fmt: skip
        elif kind == "duplicate_incoming":
            one = json.dumps(_incoming_call(str(uuid.UUID(int=rng.getrandbits(128))))).encode()
            if count < n - 1:  # the same IncomingCall twice (never past ``n``)
                yield WebhookInput("duplicate_incoming", "valid", one)
                count += 1
            body, secret = one, "valid"
        elif kind == "validation_weird":
            data = rng.choice([{"validationCode": 5}, {}, None, {"validationCode": "x" * 100_000},
                               {"validationCode": "ok", "validationUrl": "http://169.254.169.254/"}])  # fmt: skip
            ev = {"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": data,
                  "topic": "t", "subject": "", "dataVersion": "1", "eventTime": TS}  # fmt: skip
            body = json.dumps(rng.choice([[ev], ev, [ev, ev], [ev, _acs_event(rng, call_ids)]])).encode()
        elif kind == "schema_confusion":
            ev = _acs_event(rng, call_ids)
            mutate = rng.randrange(6)
            if mutate == 0:
                ev["eventType"] = ev.pop("type")
            elif mutate == 1:
                ev["type"] = [ev["type"]]
            elif mutate == 2:
                ev["data"] = json.dumps(ev["data"])  # data as a JSON string (allowed by CloudEvents)
            elif mutate == 3:
                ev["specversion"] = {"v": 1}
            elif mutate == 4:
                ev.pop("id")
            else:
                ev["data"]["callConnectionId"] = [ev["data"]["callConnectionId"]]
            body = json.dumps(ev if rng.random() < 0.4 else [ev]).encode()
        elif kind == "raw_bytes":
            body = rng.choice([b"", b"   ", b"\xff\xfe\x00", b"\xef\xbb\xbf[]", rng.randbytes(rng.randint(1, 500)),
                               b"null", b"[]", b"{}", b"[null]", b'"str"', b"NaN", b"[Infinity]"])  # fmt: skip
        elif kind == "huge_numbers":
            body = rng.choice([b"[" + b"9" * 10_000 + b"]", b'[{"id": 1e999, "type": 1e999}]',
                               b'{"specversion": 1e999, "id": "x", "type": "t"}',
                               b"[" + b"-" + b"1" * 5000 + b"]"])  # fmt: skip
        elif kind == "wrong_method":
            yield WebhookInput(kind, secret, b"[]", method=rng.choice(["PUT", "PATCH", "DELETE", "GET"]))
            count += 1
            continue
        else:  # wrong_content_type
            body = json.dumps([_acs_event(rng, call_ids)]).encode()
            yield WebhookInput(kind, secret, body, content_type=rng.choice(["text/plain", "application/xml", ""]))
            count += 1
            continue
        yield WebhookInput(kind, secret, body)
        count += 1


# ---- forged tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forgery:
    kind: str
    authorization: str  # the whole Authorization header value


def _b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forged_tokens(n: int, seed: int, *, real_key: Any, kid: str, issuer: str, audience: str) -> list[Forgery]:
    """``n`` Authorization values, none of which a correct verifier may accept. ``real_key`` (the
    emulator's private key) signs the variants whose claims, not signatures, are wrong; every other
    variant is signed by an attacker's key or not at all. CPU-heavy (RSA): run in a thread."""
    rng = random.Random(seed)
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = real_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip

    def claims(**over: Any) -> dict[str, Any]:
        now = int(time.time())
        c: dict[str, Any] = {"iss": issuer, "aud": audience, "iat": now, "nbf": now, "exp": now + 300,
                             "jti": uuid.uuid4().hex}  # fmt: skip
        for k, v in over.items():
            if v is ...:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def signed(key: Any, header: dict[str, Any], alg: str = "RS256", **over: Any) -> str:
        if alg != "RS256":
            return jwt.encode(claims(**over), key, algorithm=alg, headers=header)
        # Signed by hand: PyJWT refuses to encode the malformed claims (a non-string iss, say) we need.
        signing_input = f"{_b64({'alg': 'RS256', 'typ': 'JWT', **header})}.{_b64(claims(**over))}"
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(sig)}"

    def unsigned(header: Any, payload: Any, sig: str = "") -> str:
        return f"{_b64(header)}.{_b64(payload)}.{sig}"

    real_sig = signed(real_key, {"kid": kid}).rsplit(".", 1)[1]

    def make(kind: str) -> str:
        if kind == "alg_none":
            return unsigned({"alg": rng.choice(["none", "None", "NONE"]), "kid": kid, "typ": "JWT"}, claims())
        if kind in ("hs256_public_key", "hs256_guess"):
            # Algorithm confusion: HMAC keyed with the RSA public key (or a guessable secret).
            secret = public_pem if kind == "hs256_public_key" else rng.choice([b"secret", b"", audience.encode()])
            head, body = _b64({"alg": "HS256", "kid": kid, "typ": "JWT"}), _b64(claims())
            mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64(mac)}"
        if kind == "unknown_kid":
            return signed(attacker, {"kid": rng.choice([uuid.uuid4().hex, "../../etc/passwd", "x" * 3000, "\u2603",
                                                        " ", "null"])})  # fmt: skip
        if kind == "non_string_kid":
            k = rng.choice([5, 1.5, None, True, [kid], {"kid": kid}, [], -(10**30)])
            return unsigned({"alg": "RS256", "kid": k, "typ": "JWT"}, claims(), real_sig)
        if kind == "crit_header":
            hdr = {"alg": "RS256", "kid": kid, "crit": rng.choice([["exp"], ["x-unknown"], "exp", 5, [5], None])}
            return unsigned(hdr, claims(), real_sig)
        if kind == "bad_base64":
            good = signed(attacker, {"kid": kid})
            h, p, s = good.split(".")
            return rng.choice([f"{h}!.{p}.{s}", f"{h}.{p}*.{s}", f"{h}.{p}.{s}%", f"{h}.{p}", f"{h}.{p}.{s}.{s}",
                               "...", ".", "a.b.c", f"{h}..{s}", f"%%%.{p}.{s}", f"{h[:-1]}.{p}.{s}"])  # fmt: skip
        if kind == "header_not_object":
            return unsigned(rng.choice([[], "RS256", 5, None]), claims(), real_sig)
        if kind == "header_not_json":
            return f"{_b64(b'{alg: RS256')}.{_b64(claims())}.{real_sig}"
        if kind == "expired":
            return signed(real_key, {"kid": kid}, exp=int(time.time()) - rng.randint(120, 10**6))
        if kind == "not_yet_valid":
            return signed(real_key, {"kid": kid}, nbf=int(time.time()) + rng.randint(600, 10**6))
        if kind == "wrong_audience":
            return signed(real_key, {"kid": kid}, aud=rng.choice([str(uuid.uuid4()), "", [str(uuid.uuid4())], 5]))
        if kind == "wrong_issuer":
            return signed(real_key, {"kid": kid}, iss=rng.choice(["https://evil.example", issuer + "/", "", None]))
        if kind == "missing_claims":
            return signed(real_key, {"kid": kid}, **{rng.choice(["exp", "aud", "iss"]): ...})
        if kind == "wrong_key":
            return signed(attacker, {"kid": kid})
        if kind == "tampered_payload":  # a real signature over different claims
            good = signed(real_key, {"kid": kid})
            h, _, s = good.split(".")
            return f"{h}.{_b64(claims(aud=str(uuid.uuid4())))}.{s}"
        if kind == "stripped_signature":
            return signed(real_key, {"kid": kid}).rsplit(".", 1)[0] + "."
        if kind == "other_alg":
            alg = rng.choice(["RS512", "PS256", "RS384"])
            return signed(attacker if rng.random() < 0.5 else real_key, {"kid": kid}, alg=alg, aud="wrong")
        if kind == "jku_injection":
            return signed(
                attacker, {"kid": "attacker", "jku": "http://127.0.0.1:1/keys", "x5u": "http://127.0.0.1:1/x"}
            )
        if kind == "huge_token":
            return signed(attacker, {"kid": kid}, pad="x" * rng.choice([10_000, 60_000]))
        raise AssertionError(kind)

    token_kinds = ["alg_none", "hs256_public_key", "hs256_guess", "unknown_kid", "non_string_kid", "crit_header",
                   "bad_base64", "header_not_object", "header_not_json", "expired", "not_yet_valid",
                   "wrong_audience", "wrong_issuer", "missing_claims", "wrong_key", "tampered_payload",
                   "stripped_signature", "other_alg", "jku_injection", "huge_token"]  # fmt: skip
    header_forms = ["Basic {t}", "bearer  {t}", "Bearer", "Bearer ", "{t}", "Bearer {t} extra", "Token {t}"]
    out: list[Forgery] = []
    for i in range(n):
        if i % 12 == 11:  # malformed Authorization header around an otherwise forged token
            form = rng.choice(header_forms)
            out.append(Forgery("header_form", form.format(t=make("wrong_key"))))
            continue
        # Every kind once, then at random; huge tokens less often (each one holds a socket for seconds).
        weights = [0.3 if k == "huge_token" else 1.0 for k in token_kinds]
        kind = token_kinds[i] if i < len(token_kinds) else rng.choices(token_kinds, weights=weights)[0]
        out.append(Forgery(kind, f"Bearer {make(kind)}"))
    return out
