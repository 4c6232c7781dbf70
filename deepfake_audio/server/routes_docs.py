"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets shipped in the package.

FastAPI's own pages load their scripts, styles, fonts and favicons from CDNs and are
blank without network access; these load everything from ``/docs-assets/``
(vendored files, see ``docs_assets/README.md`` for versions and licences).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PATH = "/docs-assets"
ASSETS_DIR = Path(__file__).parent / "docs_assets"

#: Everything from this server. ReDoc's menu always shows Redocly's logo from a CDN; this
#: keeps the browser from fetching it (the image hides itself when it cannot load).
#: Inline scripts/styles: FastAPI's page starts Swagger UI inline, both inject styles.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline';"
                           " style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
                           " worker-src 'self' blob:; connect-src 'self'")

router = APIRouter(include_in_schema=False)


def docs_assets() -> StaticFiles:
    """The Swagger UI and ReDoc files, to mount at :data:`ASSETS_PATH`."""
    return StaticFiles(directory=ASSETS_DIR)


def _asset(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_PATH}/{name}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return _local_only(get_swagger_ui_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} – Swagger UI",
        swagger_js_url=_asset(request, "swagger-ui-bundle.js"),
        swagger_css_url=_asset(request, "swagger-ui.css"),
        swagger_favicon_url=_asset(request, "favicon-32x32.png"),
        # No validator badge: it would send the schema's URL to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None}))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return _local_only(get_redoc_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} – ReDoc",
        redoc_js_url=_asset(request, "redoc.standalone.js"),
        redoc_favicon_url=_asset(request, "favicon-32x32.png"), with_google_fonts=False))
