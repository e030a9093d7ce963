"""The operator page in a real browser, against the real server and the ACS emulator."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
from playwright.async_api import expect

from callwright.app import create_app
from callwright.config import load_settings
from callwright.emulator.phone import build_phone_from_script
from callwright.events.handlers import ensure_call
from callwright.localstack import free_port, serve_asgi
from callwright.security.keys import hash_key, new_key

from .conftest import Browser, sign_in

# The phone answers, hears the greeting, cuts the next reply short, then stays on the line until the
# page hangs up.
STAYS_ON_LINE = """
name: stays on the line
direction: outbound
from: "+15550001000"
to: "+15557770042"
outbound: {answer_after_s: 0.3, outcome: answer}
timeout_s: 90
steps:
  - wait: {agent_done: 700, timeout_s: 30}
  - say: "What are your opening hours?"
  - barge_in: {at_ms: 1000, of: next, timeout_s: 30, say: "Sorry, where is your office?"}
  - wait: {agent_done: 700, timeout_s: 30}
  - silence: 60
  - hangup
"""


def unexpected(errors: list[str]) -> list[str]:
    # Chromium logs every non-2xx fetch as a console error; a 422 the page asked for is not a fault.
    return [e for e in errors if "status of 422" not in e]


async def test_page_loads_without_console_errors(stack, browser: Browser):
    page = browser.page
    await sign_in(browser, stack.url, stack.operator_key)
    await expect(page.locator("h1")).to_have_text("Callwright")
    await expect(page.locator("#ready")).to_have_text("Ready")
    await expect(page.locator("#active-empty")).to_be_visible()
    await expect(page.locator("#recent-empty")).to_be_visible()
    options = await page.locator("#mode option").evaluate_all("opts => opts.map(o => o.value)")
    assert options == ["media", "voice_live"]
    await page.wait_for_timeout(1500)  # let a couple of polls run so their errors would show
    assert browser.errors == []
    # Each poll carried the key: still signed in, and a reload in the same tab keeps it (sessionStorage).
    await expect(page.locator("#main")).to_be_visible()
    await page.reload()
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()


async def test_bad_number_shows_the_api_422_detail(stack, browser: Browser):
    page = browser.page
    await sign_in(browser, stack.url, stack.operator_key)
    await page.fill("#target", "12345")
    await page.click("#place")
    error = page.locator("#form-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("target: '12345' is not an E.164 phone number")
    await expect(page.locator("#target")).to_have_attribute("aria-invalid", "true")

    # A context that is not a JSON object is refused before it reaches the server.
    await page.fill("#target", "+15557770001")
    await page.fill("#context", "[1, 2]")
    await page.click("#place")
    await expect(error).to_have_text('context: must be a JSON object, e.g. {"customer_name": "Ada"}')
    assert stack.state.calls.active() == [] and stack.state.calls.recent() == []
    assert unexpected(browser.errors) == []


async def test_voice_live_call_shows_live_transcript_and_hangs_up(stack, browser: Browser):
    page = browser.page
    phone = build_phone_from_script(STAYS_ON_LINE)
    stack.emulator.register_phone(phone.number, phone, phone.outbound_behaviour)
    waiter = stack.emulator.expect_outbound_call(phone.number)
    await sign_in(browser, stack.url, stack.operator_key)
    await page.fill("#target", phone.number)
    await page.select_option("#mode", "voice_live")
    await page.fill("#context", '{"customer_name": "Ada <script>"}')
    await page.click("#place")

    call = await asyncio.wait_for(waiter, 30)
    await asyncio.wait_for(call.connected.wait(), 30)
    run = asyncio.create_task(phone.run(call))
    try:
        row = page.locator(f'#active-calls tr[data-call-id="{call.call_connection_id}"]')
        await expect(row.locator(".mode")).to_have_text("voice_live")
        await expect(row).to_contain_text("outbound")
        await expect(row).to_contain_text(phone.number)
        await expect(page.locator("#d-mode")).to_have_text("voice_live")
        # The status line follows the call: no "Calling…" left standing once it is answered.
        await expect(page.locator("#form-status")).to_have_text(f"Connected to {phone.number} (voice_live).")
        greeting = page.locator("#transcript .role-assistant").first
        await expect(greeting).to_contain_text("Thank you for calling Contoso Insurance", timeout=45_000)
        await expect(page.locator("#events")).to_contain_text("CallConnected")
        await expect(page.locator("#d-state")).to_contain_text("connected")
        # The reply the caller talked over is shown as cut, and the caller's lines as the caller's.
        cut = page.locator("#transcript .role-assistant.cut .cut-mark").first
        await expect(cut).to_have_text("(cut off)", timeout=45_000)
        await expect(page.locator("#transcript .role-user .speaker").first).to_have_text("Caller: ")

        await row.get_by_role("button", name="Hang up").click()
        await expect(page.locator("#d-state .state")).to_have_text("disconnected", timeout=30_000)
        recent = page.locator(f'#recent-calls tr[data-call-id="{call.call_connection_id}"]')
        await expect(recent.locator(".state")).to_have_text("disconnected")
        await expect(page.locator("#d-hangup")).to_be_hidden()
        await expect(page.locator("#form-status")).to_have_text(f"The call to {phone.number} ended.")
        await expect(recent.locator(".outcome")).to_have_text("hung_up_by_agent")  # this side hung up (the operator)
        await asyncio.wait_for(call.ended.wait(), 30)
    finally:
        if not run.done():
            run.cancel()
        with contextlib.suppress(BaseException):
            await run
        stack.emulator.unregister_phone(phone.number)
    record = stack.state.calls.get(call.call_connection_id)
    assert record is not None and record.state == "disconnected" and record.mode == "voice_live"
    # The page re-renders the ended call from its post-call record a moment later: wait for it to settle.
    await expect(page.locator("#transcript .content")).to_have_text(
        [m["content"] for m in record.to_api(detail=True)["transcript"]], timeout=15_000
    )
    assert record.context.get("customer_name") == "Ada <script>"
    assert unexpected(browser.errors) == []


async def test_ui_files_are_served_from_the_package_and_nothing_else(stack):
    async with httpx.AsyncClient(base_url=stack.url) as http:
        index = await http.get("/")
        assert index.status_code == 200 and "Place a call" in index.text
        assert "default-src 'self'" in index.headers["content-security-policy"]
        js = await http.get("/ui/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text
        assert (await http.get("/ui/../app.py")).status_code == 404
        assert (await http.get("/ui/missing.css")).status_code == 404


async def test_unconfigured_server_shows_not_ready_and_the_503_detail(browser: Browser):
    key = new_key()
    app = create_app(
        load_settings(acs_connection_string=None, redis_url=None, operator_api_keys=f"operator:{hash_key(key)}")
    )
    async with serve_asgi(app, free_port()) as url:
        page = browser.page
        await sign_in(browser, url, key)
        await expect(page.locator("#ready")).to_have_text("Not ready")
        await page.fill("#target", "+15557770001")
        await page.click("#place")
        await expect(page.locator("#form-error")).to_have_text(
            "ACS_CONNECTION_STRING is not set; outbound calls are unavailable"
        )
        # Checked while the server is up: once it stops, the page's reconnect attempts fail by design.
        assert [e for e in browser.errors if "status of 503" not in e] == []


async def test_without_a_key_the_page_shows_sign_in_and_no_call_data(stack, browser: Browser):
    """Signed out, the page holds no call data (the API gave none); a wrong key is refused with a message
    and leaves it signed out; the right key shows the calls; signing out clears them again."""
    page = browser.page
    script = STAYS_ON_LINE.replace("outbound: {answer_after_s: 0.3, outcome: answer}", "outbound: {outcome: busy}")
    report = await stack.call(script)  # one call in the server's lists, placed through the API with the key
    assert report["ok"], report
    call_id = report["call_id"]

    await page.goto(f"{stack.url}/")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#main")).to_be_hidden()
    await page.wait_for_timeout(1500)  # polls would have filled the tables by now if data were served
    assert await page.locator("tr[data-call-id]").count() == 0
    assert call_id not in await page.content()
    await expect(page.locator("#signin-error")).to_be_hidden()  # no key yet: nothing to complain about

    await page.fill("#api-key", "cw_not-the-key")
    await page.click("#signin-button")
    error = page.locator("#signin-error")
    await expect(error).to_have_text("That key was not accepted: the API key or token is not valid")
    await expect(page.locator("#main")).to_be_hidden()
    assert await page.evaluate("sessionStorage.getItem('callwright.apiKey')") is None
    assert call_id not in await page.content()

    await page.fill("#api-key", stack.operator_key)
    await page.click("#signin-button")
    await expect(page.locator(f'#recent-calls tr[data-call-id="{call_id}"]')).to_be_visible()
    await expect(error).to_be_hidden()

    await page.click("#signout")
    await expect(page.locator("#signin")).to_be_visible()
    assert await page.locator("tr[data-call-id]").count() == 0
    assert await page.evaluate("sessionStorage.getItem('callwright.apiKey')") is None
    assert [e for e in browser.errors if "status of 401" not in e] == []


async def test_server_without_operator_access_says_how_to_set_it_up(browser: Browser):
    app = create_app(load_settings(acs_connection_string=None, redis_url=None, operator_api_keys=""))
    async with serve_asgi(app, free_port()) as url:
        page = browser.page
        await page.goto(f"{url}/")
        await expect(page.locator("#signin-error")).to_contain_text("set OPERATOR_API_KEYS")
        await expect(page.locator("#main")).to_be_hidden()


async def test_pushed_updates_and_a_reply_cut_before_its_first_word(browser: Browser):
    """A transcript line added on the server appears without the page asking (the live stream pushes it),
    and a reply the caller cut before hearing any of it reads as such instead of an empty bubble."""
    key = new_key()
    app = create_app(
        load_settings(acs_connection_string=None, redis_url=None, operator_api_keys=f"operator:{hash_key(key)}")
    )
    async with serve_asgi(app, free_port()) as url:
        call_id = str(uuid.uuid4())
        record = await ensure_call(app.state, call_id, direction="inbound", mode="media", caller="4:+15551230001")
        record.state = "connected"
        record.memo.append_history("assistant", "Thank you for calling.", agent="front_desk")
        record.memo.append_history("user", "What are your opening hours?")
        record.memo.append_history("assistant", "", agent="front_desk", interrupted=True, full_text="We are open")
        page = browser.page
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        await page.set_viewport_size({"width": 390, "height": 844})
        await sign_in(browser, url, key)
        row = page.locator(f'#active-calls tr[data-call-id="{call_id}"]')
        await row.get_by_role("button", name="Show call").click()
        cut = page.locator("#transcript .role-assistant.cut")
        await expect(cut.locator(".content")).to_have_text("(cut off before any of it was heard)")
        await expect(cut.locator(".cut-mark")).to_have_count(0)
        await expect(page.locator("#live")).to_have_text("Live")

        requests.clear()
        record.memo.append_history("user", "Where is your office?")
        await expect(page.locator("#transcript .role-user .content").last).to_have_text("Where is your office?")
        app.state.calls.finish(call_id, reason="caller hung up")
        await expect(page.locator(f'#recent-calls tr[data-call-id="{call_id}"] .state')).to_have_text("disconnected")
        await expect(page.locator("#d-state")).to_contain_text("caller hung up")
        # Pushed, not polled: the lists were never asked for; only the changed call's detail was read.
        assert not [u for u in requests if u.endswith("/api/v1/calls")], requests
        assert any(u.endswith(f"/api/v1/calls/{call_id}") for u in requests)
        widths = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1]
        # Without ACS the server is not ready: /ready answers 503, which the badge shows.
        assert [e for e in browser.errors if "status of 401" not in e and "status of 503" not in e] == []
