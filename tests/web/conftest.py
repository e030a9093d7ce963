"""The web UI in a real browser (Debian's chromium via Playwright) against the server and the ACS emulator."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from callwright.localstack import LocalStack, local_stack

CHROMIUM = "/usr/bin/chromium"
# Playwright's own browser download is not used: the system chromium is launched directly, with
# everything that would phone home turned off.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The page's tests play the call recording without a click.
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class Browser:
    page: Any
    errors: list[str] = field(default_factory=list)


async def sign_in(browser: Browser, url: str, key: str) -> None:
    """Open the page, sign in with ``key`` and wait for the call lists. The probe before sign-in draws
    a 401 that Chromium logs as a console error; that one is expected and dropped here."""
    from playwright.async_api import expect

    page = browser.page
    await page.goto(f"{url}/")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#main")).to_be_hidden()
    await page.fill("#api-key", key)
    await page.click("#signin-button")
    await expect(page.locator("#main")).to_be_visible()
    await expect(page.locator("#signin")).to_be_hidden()
    browser.errors[:] = [e for e in browser.errors if "status of 401" not in e]


def _console(out: Browser, msg: Any) -> None:
    if msg.type != "error":
        return
    where = (msg.location or {}).get("url", "")
    # A server without the post-call record answers its URL with 404 and the page does without it
    # (asked at most twice per call); Chromium still logs each such fetch as a console error.
    if "status of 404" in msg.text and where.endswith("/record"):
        return
    out.errors.append(f"{msg.text} [{where}]" if where else msg.text)


@pytest.fixture
async def stack() -> AsyncIterator[LocalStack]:
    async with local_stack(stt_pool_warm=1, tts_pool_warm=1, stt_pool_size=2, tts_pool_size=2) as s:
        yield s


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (./run.sh test does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await chromium.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(30_000)
            out = Browser(page=page)
            page.on("console", lambda msg: _console(out, msg))
            page.on("pageerror", lambda exc: out.errors.append(str(exc)))
            yield out
        finally:
            await chromium.close()
