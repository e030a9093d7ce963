"""Run the emulator standalone (``callwright emulator``): print how to point an app at it, serve until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from callwright.emulator.service import Emulator


def banner(emu: Emulator) -> str:
    lines = [
        "Callwright ACS emulator",
        f"  endpoint            {emu.endpoint}",
        f"  connection string   {emu.connection_string}",
        f"  access key          {emu.access_key}",
        f"  resource id (aud)   {emu.resource_id}",
        f"  issuer              {emu.issuer}",
        f"  JWKS                {emu.jwks_url}",
        f"  OpenID config       {emu.openid_config_url}",
        f"  Event Grid webhook  {emu.webhook_url or '(none: set --webhook or POST /emulator/webhook)'}",
        f"  control API         {emu.endpoint}/emulator/info",
    ]
    if emu.cert_path:
        lines.append(f"  TLS certificate     {emu.cert_path}  (connection_verify=<this path>)")
    else:
        lines.append(
            "  note: with http, build the SDK client with CallAutomationClient(endpoint, AzureKeyCredential(key));"
        )
        lines.append("        from_connection_string forces https (use --tls for that)")
    return "\n".join(lines)


async def serve_emulator(
    host: str = "127.0.0.1",
    port: int = 8090,
    access_key: str | None = None,
    webhook: str | None = None,
    *,
    tls: bool = False,
    resource_id: str | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Emulator(
        host=host, port=port, access_key=access_key, webhook_url=webhook, tls=tls, resource_id=resource_id
    ) as emu:
        print(banner(emu), flush=True)
        if webhook:
            ok = await emu.validate_webhook()
            print(
                f"  webhook validation  {'ok' if ok else 'FAILED (will retry before the next inbound call)'}",
                flush=True,
            )
        await stop.wait()


def run_emulator(
    host: str = "127.0.0.1",
    port: int = 8090,
    access_key: str | None = None,
    webhook: str | None = None,
    *,
    tls: bool = False,
    resource_id: str | None = None,
) -> None:
    """Blocking entry point for ``callwright emulator [--host] [--port] [--access-key] [--webhook] [--tls]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve_emulator(host, port, access_key, webhook, tls=tls, resource_id=resource_id))
