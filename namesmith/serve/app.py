"""The FastAPI app: the JSON API under /api/v1, the page at /, OpenAPI at /docs.

Safe by default: requests name models by id only (never a path), every request is bounded by the
server's `Limits`, errors are JSON `{"error": message, "field": name}` with no traceback or file
path (422 for a request that does not validate, 400 for constraints no name can meet, 404 for an
unknown model, 413 for an oversized body, 401 for a missing or wrong API key, 503 when every
generation slot stays busy for the time budget, and 503 with Retry-After for a model still being
built or loaded: no request waits for one), and the page is
served with a strict content-security policy (its own files only: no CDN, nothing inline).
"""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from namesmith.core.errors import ConfigError
from namesmith.core.version import __version__
from namesmith.namemodel import NameModel
from namesmith.serve.build import BuildLimits
from namesmith.serve.deps import Server, check_key
from namesmith.serve.docs import add_docs
from namesmith.serve.errors import ERRORS, add_error_handlers
from namesmith.serve.limits import Limits
from namesmith.serve.middleware import BodyLimit, NoSniff
from namesmith.serve.registry import ModelRegistry
from namesmith.serve.routers.generate import generate_router
from namesmith.serve.routers.models import models_router
from namesmith.serve.routers.names import names_router
from namesmith.serve.schemas import request_models
from namesmith.serve.trend import trend_router
from namesmith.serve.variants import variants_router

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(registry: ModelRegistry | None = None, *, limits: Limits | None = None,
               api_key: str | None = None, default_model: str | None = None) -> FastAPI:
    """The app serving `registry` (by default, one n-gram per built-in data set, built in the background).

    The registry's models not yet ready are prepared from now on (`ModelRegistry.start`); stopping the
    app stops that at once.

    `api_key`: when set, every /api request needs it in the X-API-Key header (or as a Bearer token).
    """
    if api_key is not None and not api_key.strip():
        raise ConfigError("api_key is empty: an empty key would let every request in", field="api_key")
    limits = limits or Limits()
    registry = registry or ModelRegistry.builtin(limits=BuildLimits(
        limits.build_seconds, limits.build_memory_mb, limits.server_memory_mb))
    default_model = default_model or ("us-ngram" if "us-ngram" in registry else next(iter(registry)).id)
    registry.get(default_model)
    requests = request_models(limits)
    server = Server(registry, limits, requests, default_model, api_key)
    NameModel.limit_tables(builders=limits.table_builders, table_bytes=limits.table_bytes,
                           cache_bytes=limits.table_cache_bytes, build_seconds=limits.table_build_seconds)
    registry.start()
    # each generated name comes back with its facts from the catalogue: read it now, not in the first request
    threading.Thread(target=NameModel.read_catalogue, name="namesmith-catalogue", daemon=True).start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        registry.close()  # Ctrl-C or SIGTERM: a model being built is not waited for

    app = FastAPI(title="namesmith", version=__version__, summary="Generate, steer, score and compare names.",
                  description="A JSON API over namesmith's character models. Errors are "
                              "`{\"error\": message, \"field\": name}`.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)  # /docs: namesmith.serve.docs, offline
    app.state.server = server
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(NoSniff)
    add_error_handlers(app, registry.paths())
    # the key check (and its entry in the OpenAPI schema) only when there is a key
    key = [Depends(check_key)] if api_key else []
    for router in (models_router(), generate_router(requests), names_router(requests), trend_router(limits),
                   variants_router(limits)):
        app.include_router(router, prefix="/api/v1", dependencies=key, responses=ERRORS)
    add_docs(app)
    add_page(app)
    return app


def add_page(app: FastAPI) -> None:
    """The page at / and its files at /static, with a strict content-security policy."""
    static = Path(str(resources.files("namesmith.serve") / "static"))

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", PageFiles(directory=static), name="static")


class PageFiles(StaticFiles):
    """The page's files, with the page's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response
