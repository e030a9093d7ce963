"""``/docs``: Swagger UI from the installed swagger-ui-bundle package, not a CDN.

FastAPI's own ``/docs`` page loads its JavaScript and CSS from cdn.jsdelivr.net, so it is blank on a
machine without internet access (and leaks every visit to a third party). The app is created with
``docs_url=None, redoc_url=None`` and this router serves the page and its assets itself. The page holds
no data; calls made from it need the operator credentials as any client does.

The packaged Swagger UI (4.15) refuses OpenAPI 3.1 documents ("does not specify a valid version field"),
and FastAPI writes 3.1. The page therefore reads ``/docs/openapi.json``: the same document labelled 3.0.3,
which Swagger UI 4 renders (the 3.1 schema forms FastAPI emits, such as ``anyOf`` with ``null``, display
as expected). ``/openapi.json`` stays the exact 3.1 document for client generators.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

router = APIRouter(include_in_schema=False)

ASSETS_PREFIX = "/docs/assets"
SWAGGER_UI_OPENAPI_VERSION = "3.0.3"
# Only what the page uses: a name outside this set is a 404 whatever it looks like (no path traversal).
_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}


def _assets_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    return get_swagger_ui_html(
        openapi_url=f"{root}/docs/openapi.json",
        title=f"{request.app.title} — API",
        swagger_js_url=f"{root}{ASSETS_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_PREFIX}/favicon-32x32.png",
    )


@router.get("/docs/openapi.json")
async def openapi_for_swagger_ui(request: Request) -> JSONResponse:
    return JSONResponse({**request.app.openapi(), "openapi": SWAGGER_UI_OPENAPI_VERSION})


@router.get(ASSETS_PREFIX + "/{name}")
async def swagger_asset(name: str) -> FileResponse:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail="not found")
    path = _assets_dir() / name
    if not path.is_file():  # a broken install: say what is missing rather than 500
        raise HTTPException(status_code=404, detail=f"{name} is missing from the swagger-ui-bundle package")
    # The bundle's version is part of its install path: an upgrade changes files only with the package.
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
