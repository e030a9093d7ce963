"""The emulator's control API: info, scripted calls (with the phone package's script parser), webhooks."""

from __future__ import annotations

import asyncio

import httpx
from azure.communication.callautomation import CallAutomationClient, PhoneNumberIdentifier
from azure.core.credentials import AzureKeyCredential
from emu_support import Webhook

from callwright.emulator.service import Emulator

BUSY_SCRIPT = """
name: busy-callee
direction: outbound
from: "+15550001000"
to: "+15551237777"
outbound: {answer_after_s: 0.1, outcome: busy}
steps:
  - hangup
"""


async def test_info_and_bad_script(emulator: Emulator) -> None:
    async with httpx.AsyncClient(base_url=emulator.endpoint) as http:
        info = (await http.get("/emulator/info")).json()
        assert info["connection_string"] == emulator.connection_string
        assert info["jwks_url"].endswith("/calling/keys")
        assert info["resource_id"] == emulator.resource_id
        r = await http.post("/emulator/calls", json={"script": "name: x\nsteps: 7\n"})
        assert r.status_code == 400
        assert "script" in r.json()["error"]["message"]
        r = await http.post("/emulator/calls", content=b"{broken")
        assert r.status_code == 400


async def test_scripted_outbound_busy_call(emulator: Emulator, webhook: Webhook) -> None:
    async with httpx.AsyncClient(base_url=emulator.endpoint, timeout=30) as http:
        r = await http.post("/emulator/calls", json={"script": BUSY_SCRIPT})
        assert r.status_code == 201, r.text
        sc = r.json()
        assert sc["direction"] == "outbound"
        for _ in range(100):  # the phone registers its number from a background task
            if emulator.directory.phone_for_number("4:+15551237777") is not None:
                break
            await asyncio.sleep(0.02)
        client = CallAutomationClient(emulator.endpoint, AzureKeyCredential(emulator.access_key))
        await asyncio.to_thread(client.create_call, PhoneNumberIdentifier("+15551237777"), webhook.callback_url)
        done = (await http.get(f"/emulator/calls/{sc['id']}", params={"wait": 20})).json()
    assert done["status"] == "finished", done
    assert done["report"]["outcome"] == "busy"
    assert done["report"]["events"] == ["CreateCallFailed", "CallDisconnected"]
    assert emulator.directory.phone_for_number("4:+15551237777") is None  # unregistered afterwards


async def test_webhook_can_be_set_and_validated_over_the_control_api(webhook: Webhook) -> None:
    async with Emulator() as emu, httpx.AsyncClient(base_url=emu.endpoint) as http:
        r = await http.post("/emulator/webhook", json={"url": webhook.eventgrid_url})
        assert r.json() == {"url": webhook.eventgrid_url, "validated": True}
        assert webhook.validations[0].headers["aeg-event-type"] == "SubscriptionValidation"
