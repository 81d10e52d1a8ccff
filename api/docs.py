"""`/docs` (Swagger UI) and `/redoc`, from the assets the `fastapi-offline` wheel ships:
both pages work on a machine with no internet, where FastAPI's defaults load from a CDN.
Redoc's bundle also shows Redocly's logo from their CDN; it is served here with our own
icon in its place, so neither page loads anything from outside."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).with_name("static")
PREFIX = "/static/docs"
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS = f"{PREFIX}/redoc.local.js"


def install(app: FastAPI) -> None:
    bundle = (
        (ASSETS / "redoc.standalone.js").read_text().replace(REDOCLY_LOGO, f"{PREFIX}/favicon.png")
    )

    @app.get(REDOC_JS, include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            bundle,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=86400"},
        )

    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="escalator · API",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="escalator · API reference",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=f"{PREFIX}/favicon.png",
            with_google_fonts=False,
        )
