"""voice_live settings: invalid combinations stop the start with one line; the backend each resolves to;
the bound on realtime connections."""

from __future__ import annotations

import pytest

from callwright.config import SettingsError, load_settings
from callwright.metrics import Metrics
from callwright.voice.realtime.backends import BackendError, backend_spec, resolve_kind
from callwright.voice.realtime.service import RealtimeService


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"voicelive_backend": "voicelive"}, "AZURE_VOICELIVE_ENDPOINT and AZURE_VOICELIVE_API_KEY"),
        ({"azure_voicelive_endpoint": "https://vl.example.com"}, "AZURE_VOICELIVE_API_KEY"),
        ({"azure_voicelive_endpoint": "ftp://vl.example.com", "azure_voicelive_api_key": "k"}, "http(s) or ws(s)"),
        ({"voicelive_backend": "openai"}, "OPENAI_API_KEY"),
        ({"voicelive_backend": "azure_openai", "azure_openai_endpoint": "https://x"}, "AZURE_OPENAI_API_KEY"),
        (
            {"voicelive_backend": "openai", "openai_api_key": "k", "voicelive_turn_detection": "azure_semantic_vad"},
            "VoiceLive only",
        ),
        ({"voicelive_vad_silence_ms": 10}, "VOICELIVE_VAD_SILENCE_MS"),
    ],
)
def test_invalid_combinations_stop_the_start_with_one_line(values, message):
    with pytest.raises(SettingsError) as err:
        load_settings(**values)
    text = str(err.value)
    assert message in text and "\n" not in text


def test_backends_resolve_from_the_settings():
    assert resolve_kind(load_settings()) == "local"  # nothing configured: the local realtime server
    local = backend_spec(load_settings(), "http://127.0.0.1:9")
    assert (local.sdk, local.audio_rate, local.model) == ("voicelive", 16_000, "callwright-scenario:insurance")
    ga = backend_spec(load_settings(voicelive_local_sdk="openai"), "http://127.0.0.1:9")
    assert (ga.sdk, ga.dialect, ga.audio_rate, ga.endpoint) == ("openai", "ga", 24_000, "http://127.0.0.1:9/v1")
    vl = backend_spec(load_settings(azure_voicelive_endpoint="https://vl.example.com", azure_voicelive_api_key="k"))
    assert (vl.kind, vl.sdk, vl.endpoint, vl.model) == (
        "voicelive",
        "voicelive",
        "https://vl.example.com",
        "gpt-realtime",
    )
    aoai_settings = load_settings(
        voicelive_backend="azure_openai",
        azure_openai_endpoint="https://r.openai.azure.com/",
        azure_openai_api_key="k",
        voicelive_openai_model="my-realtime",
    )
    aoai = backend_spec(aoai_settings)
    assert (aoai.sdk, aoai.endpoint, aoai.model) == ("openai", "https://r.openai.azure.com/openai/v1", "my-realtime")
    with pytest.raises(BackendError):
        backend_spec(load_settings())  # local, but the server is not running


async def test_connections_are_bounded_and_the_refusal_is_counted():
    settings = load_settings(voicelive_max_connections=1)
    service = RealtimeService(settings, engines=None, metrics=Metrics())
    service.active = 1  # one call holds the only connection
    with pytest.raises(BackendError) as err:
        await service.connect()
    assert err.value.reason == "full"
    assert service.stats()["exhausted_count"] == 1 and service.active == 1


async def test_an_unreachable_service_is_reported_as_such_and_frees_its_slot():
    from callwright.localstack import free_port

    port = free_port()  # nothing listens there
    for sdk in ("voicelive", "openai"):
        settings = load_settings(voicelive_local_sdk=sdk, voicelive_connect_timeout_seconds=5)
        service = RealtimeService(settings, engines=None, metrics=Metrics())
        service.local_url = f"http://127.0.0.1:{port}"
        with pytest.raises(BackendError) as err:
            await service.connect()
        assert err.value.reason == "unreachable", (sdk, err.value)
        assert service.active == 0
