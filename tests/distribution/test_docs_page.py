"""/docs is served from the installed swagger-ui-bundle: every script and stylesheet comes from the server."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx

from callwright.app import create_app
from callwright.config import load_settings
from support.servers import running_app


async def test_docs_page_loads_its_assets_from_the_server_itself() -> None:
    settings = load_settings(stt_engine="instant", tts_engine="instant", stt_pool_warm=0, tts_pool_warm=0)
    async with running_app(create_app(settings)) as url, httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{url}/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)['"]""", page.text)
        refs += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)  # the OpenAPI document SwaggerUIBundle loads
        assert any(r.endswith(".js") for r in refs) and any(r.endswith(".css") for r in refs), refs
        for ref in refs:
            absolute = urljoin(f"{url}/docs", ref)
            assert urlsplit(absolute).netloc == urlsplit(url).netloc, f"{ref} is not served by the server"
            resp = await http.get(absolute)
            assert resp.status_code == 200, (ref, resp.status_code)
            if ref.endswith(".js"):
                assert "javascript" in resp.headers["content-type"] and "SwaggerUIBundle" in resp.text
            if ref.endswith(".css"):
                assert resp.headers["content-type"].startswith("text/css") and ".swagger-ui" in resp.text
        assert (await http.get(f"{url}/openapi.json")).json()["info"]["title"] == "Callwright"
        # Only the page's own assets: nothing else from the package folder, no path tricks.
        for probe in ("index.html", "..%2F..%2F__init__.py", "swagger-ui.js.map"):
            assert (await http.get(f"{url}/docs/assets/{probe}")).status_code == 404
        assert (await http.get(f"{url}/redoc")).status_code == 404  # ReDoc would come from a CDN


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip


async def test_docs_page_renders_in_chromium_with_every_other_host_blocked() -> None:
    """Offline, as on a machine without internet: any request off the server is refused and recorded."""
    import shutil

    import pytest

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (./run.sh test does)")
    from playwright.async_api import async_playwright, expect

    settings = load_settings(stt_engine="instant", tts_engine="instant", stt_pool_warm=0, tts_pool_warm=0)
    async with running_app(create_app(settings)) as url, async_playwright() as pw:
        host = urlsplit(url).netloc
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            page.set_default_timeout(30_000)
            elsewhere: list[str] = []

            async def only_the_server(route, request) -> None:  # type: ignore[no-untyped-def]
                if urlsplit(request.url).netloc == host:
                    await route.continue_()
                else:
                    elsewhere.append(request.url)
                    await route.abort()

            await page.route("**/*", only_the_server)
            await page.goto(f"{url}/docs")
            await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Callwright")
            await expect(page.locator(".opblock").first).to_be_visible()  # the operations, from /openapi.json
            assert elsewhere == []
        finally:
            await chromium.close()
