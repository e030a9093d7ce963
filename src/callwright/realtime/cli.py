"""``callwright realtime``: the local realtime server on its own, with the endpoints to point SDKs at."""

from __future__ import annotations

import logging

from pydantic import SecretStr

log = logging.getLogger("callwright.realtime")


def run_realtime(host: str, port: int, api_key: str | None) -> int:
    from callwright.config import load_settings
    from callwright.logs import configure_logging
    from callwright.realtime.server import create_realtime_app
    from callwright.serving import ServerLimits, build_server

    settings = load_settings()
    if api_key:
        settings = settings.model_copy(update={"realtime_api_key": SecretStr(api_key)})
    configure_logging(settings)
    base = f"http://{host}:{port}"
    key = "set (api-key header, ?api-key= or bearer)" if settings.realtime_api_key else "none required"
    print(f"Callwright realtime server on {base}  (scenario {settings.scenario}; key: {key})")
    print(f"  VoiceLive:      azure.ai.voicelive.aio.connect(endpoint='{base}', credential=AzureKeyCredential(key),")
    print(f"                  model='callwright-scenario:{settings.scenario}')")
    print(f"  OpenAI GA:      AsyncOpenAI(api_key=key, base_url='{base}/v1').realtime.connect(model=...)")
    print(f"  OpenAI beta:    AsyncOpenAI(api_key=key, websocket_base_url='ws://{host}:{port}/v1').beta.realtime...")
    print(f"  Azure OpenAI:   AsyncAzureOpenAI(..., websocket_base_url='ws://{host}:{port}/openai')")
    print(f"  scenario tools: {base}/v1/scenarios/{settings.scenario}/tools   metrics: {base}/metrics")
    app = create_realtime_app(settings)
    server = build_server(app, host=host, port=port, limits=ServerLimits.from_settings(settings))
    server.run()
    return 0
