"""The API documentation at /docs: Swagger UI over the app's OpenAPI schema, served from this machine.

FastAPI's own /docs page loads Swagger UI from a CDN, so it is blank offline (and the page's footer
links there). Here the page loads the copy of Swagger UI (Apache-2.0) that the `fastapi-offline`
package (MIT) ships, from /docs/assets, under a content-security policy that allows nothing from
elsewhere: no CDN, no validator badge, no fonts.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline  # the serve extra's: without it `namesmith serve` says to install the extra
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"  # swagger-ui-bundle.js, swagger-ui.css, favicon.png


def assets() -> Path:
    """The folder of Swagger UI's files in the installed fastapi-offline package."""
    return Path(fastapi_offline.__file__).parent / "static"


def content_policy(html: str) -> str:
    """A CSP allowing this server's files and the page's own inline script (by its hash) only.

    Swagger UI sets style attributes as it draws, hence 'unsafe-inline' for styles (scripts stay hashed)."""
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in inline)
    return (f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def add_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs and its files at /docs/assets (the app is made with docs_url=None)."""
    page = get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
                               swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
                               swagger_ui_parameters={"validatorUrl": None})  # its badge would call swagger.io
    html = page.body.decode()
    headers = {"Content-Security-Policy": content_policy(html), "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}

    @app.get(DOCS_URL, include_in_schema=False)
    def docs() -> Response:
        return HTMLResponse(html, headers=headers)

    app.mount(ASSETS_URL, StaticFiles(directory=assets()), name="docs-assets")
