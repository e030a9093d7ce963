"""The operator web UI: one static page (place calls, watch live calls and transcripts, hang up, search the
recent calls, read a finished call's latencies, barge-ins, tool calls and handoffs, play its recording).

The files ship inside the package (``callwright/web``) and are found through importlib.resources, so the
page works the same from a checkout and from an installed wheel. Only the listed files are served, which
keeps path handling out of the picture entirely.

The files are public — they hold no data. Every call, transcript and metric comes from the operator API,
which needs a credential; the page asks for an API key and sends it as a header (see app.js) — also for
its live updates (:mod:`callwright.api.live`, pushed over Server-Sent Events) and for the recording, which
it fetches into a ``blob:`` URL (hence ``media-src blob:`` below) because ``<audio src>`` cannot send one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from callwright.api import live

router = APIRouter(include_in_schema=False)
# The page's live updates (/api/v1/live, an operator route) come with the page: including the UI router
# includes them, and their lifespan builds app.state.feed when the app's own lifespan did not.
router.include_router(live.router)

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Everything the page needs comes from this server; API data is rendered as text, never as markup.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; media-src 'self' blob:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def web_dir() -> Path:
    return Path(str(resources.files("callwright").joinpath("web")))


def _serve(name: str) -> FileResponse:
    media_type = _FILES.get(name)
    path = web_dir() / name
    if media_type is None or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no UI file {name}")
    return FileResponse(path, media_type=media_type, headers=_HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _serve("index.html")


@router.get("/ui/{name}")
async def ui_file(name: str) -> FileResponse:
    return _serve(name)
