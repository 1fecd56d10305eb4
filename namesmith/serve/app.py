"""The FastAPI app: the JSON API under /api/v1, the page at /, OpenAPI at /docs.

Safe by default: requests name models by id only (never a path), every request is bounded by the
server's `Limits`, errors are JSON `{"error": message, "field": name}` with no traceback or file
path (422 for a request that does not validate, 400 for constraints no name can meet, 404 for an
unknown model, 413 for an oversized body, 401 for a missing or wrong API key, 503 when every
generation slot stays busy for the time budget, and 503 with Retry-After for a model still being
built or loaded: no request waits for one), and the page is
served with a strict content-security policy (its own files only: no CDN, nothing inline).
"""

import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import namesmith.serve.service as service
from namesmith.core.errors import ConfigError, NamesmithError
from namesmith.core.version import __version__
from namesmith.namemodel import NameModel
from namesmith.serve.adapted import AdaptedModels, Busy, StillAdapting
from namesmith.serve.build import BuildLimits
from namesmith.serve.docs import add_docs
from namesmith.serve.limits import CLIENT, Limits, Slots
from namesmith.serve.registry import (
    ID_PATTERN,
    ModelEntry,
    ModelRegistry,
    NotReady,
    model_labels,
    public_info,
    scrub,
)
from namesmith.serve.schemas import (
    ClassifyResponse,
    ErrorResponse,
    GenerateResponse,
    ModelDetail,
    ModelList,
    ScoreResponse,
    ServerInfo,
    SimilarityResponse,
    request_models,
)
from namesmith.serve.trend import trend_router

log = logging.getLogger("namesmith")

API_KEY_HEADER = "X-API-Key"
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is a 413, by its Content-Length or as it arrives."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            response = JSONResponse({"error": f"the request body is over the server's limit of {self.max_bytes} "
                                              f"bytes (max_body_bytes)", "field": None}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # FastAPI re-raises HTTPException while reading the body
                raise HTTPException(413, f"the request body is over the server's limit of {self.max_bytes} bytes "
                                         f"(max_body_bytes)")
            return message

        await self.app(scope, limited, send)


class NoSniff:
    """ASGI middleware: every response says its content type is to be believed (no MIME sniffing), and the
    request's work knows its client's address (CLIENT: the slots queue clients fairly)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        CLIENT.set(scope["client"][0] if scope.get("client") else "")

        async def send_nosniff(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_nosniff)


def _where(loc: tuple) -> list:
    """A pydantic error location without its first part (body, path, query or header)."""
    return list(loc[1:]) if loc and loc[0] in ("body", "path", "query", "header") else list(loc)


def _field(loc: tuple) -> str | None:
    """The request field at fault, from a pydantic error location ("body", "contains", 0) → "contains"."""
    parts = _where(loc)
    return str(parts[0]) if parts and isinstance(parts[0], str) else None


def _validation_message(error: dict) -> str:
    field = ".".join(str(p) for p in _where(tuple(error["loc"])))
    message = "unknown field (not part of this request)" if error["type"] == "extra_forbidden" else error["msg"]
    return f"{field}: {message}" if field else message


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
    registry = registry or ModelRegistry.builtin(limits=BuildLimits(limits.build_seconds, limits.build_memory_mb))
    default_model = default_model or ("us-ngram" if "us-ngram" in registry else next(iter(registry)).id)
    registry.get(default_model)
    requests = request_models(limits)
    hidden_paths = registry.paths()
    heatmaps: dict[str, bytes] = {}
    # bounds the CPU and memory of the requests' work; fair, first come first served; a fast lane for plain draws
    slots = Slots(limits.max_concurrent, reserved=limits.quick_slots)
    # adaptations hold a slot for seconds: they never take the last one, which keeps generate and score moving
    adapted = AdaptedModels(slots, limits.max_adapted_bytes, max_jobs=max(1, limits.max_concurrent - 1),
                            max_pending=4 * limits.max_concurrent)
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
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(NoSniff)

    def error(status: int, message: str, field: str | None = None) -> JSONResponse:
        return JSONResponse({"error": scrub(message, hidden_paths), "field": field}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request", "type": ""}
        return error(422, _validation_message(first), _field(tuple(first["loc"])))

    @app.exception_handler(NamesmithError)
    async def refused(request: Request, exc: NamesmithError) -> JSONResponse:
        field = getattr(exc, "field", None)
        return error(404 if field == "model_id" else 400, str(exc), field)

    @app.exception_handler(NotReady)
    async def not_ready(request: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"error": str(exc), "field": "model_id"}, status_code=503,
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse({"error": message, "field": None}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error serving %s", request.url.path)  # the server's log has the traceback
        return JSONResponse({"error": "internal error (the server's log has the details)", "field": None},
                            status_code=500)

    key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                              description="needed only when the server was started with --api-key")

    def check_key(request: Request, key: str | None = Depends(key_header)) -> None:
        bearer = request.headers.get("authorization", "")
        given = key or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"this server needs an API key: send it in the {API_KEY_HEADER} header",
                                headers={"WWW-Authenticate": "Bearer"})

    # the key check (and its entry in the OpenAPI schema) only when there is a key
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(check_key)] if api_key else [], responses=ERRORS)

    def summary(entry: ModelEntry, model: NameModel | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": entry.id, "source": entry.source, "dataset": entry.dataset,
                               "loaded": entry.loaded, "state": entry.state}
        model = model or entry.model
        if model is not None:
            info = public_info(model)
            labels = model_labels(model)
            out.update(model_type=info["model_type"], description=info.get("description"), labels=labels,
                       metrics=info.get("metrics") or {}, parameters=info.get("parameters"),
                       vocab=info.get("vocab"), casing=model.casing,
                       capabilities={"classify": bool(labels) and hasattr(model, "classify"), "heatmap": True,
                                     "adapt": service.can_adapt()})
        return out

    def model_for(model_id: str) -> tuple[NameModel, dict[str, list[str]]]:
        model = registry.get(model_id).get()
        return model, model_labels(model)

    model_path = {"pattern": ID_PATTERN}

    @api.get("", response_model=ServerInfo, summary="Server version, limits and whether a key is needed")
    def server_info() -> dict[str, Any]:
        listed = [entry.id for entry in registry]  # a built-in default that could not be built is not offered
        default = default_model if default_model in registry or not listed else listed[0]
        return {"version": __version__, "api_key_required": api_key is not None, "limits": limits.to_dict(),
                "default_model": default, "generate_options": [
                    field for field in requests.Generate.model_fields  # what a request here can ask for
                    if field != "sounds_like" or service.can_sound_out()],
                "trend": "/api/v1/trend" in app.openapi()["paths"]}  # built once, then kept by FastAPI

    @api.get("/models", response_model=ModelList, summary="The served models")
    def list_models() -> dict[str, Any]:
        return {"models": [summary(entry) for entry in registry]}

    @api.get("/models/{model_id}", response_model=ModelDetail,
             summary="One model: type, data, labels, metrics (503 while it is built or loaded)")
    def get_model(model_id: str = _path(model_path)) -> dict[str, Any]:
        entry = registry.get(model_id)
        model = entry.get()
        return {**summary(entry, model), "info": _jsonable(public_info(model))}

    def busy(what: str = f"{limits.max_concurrent} requests running") -> HTTPException:
        return HTTPException(503, f"the server is busy ({what}); try again shortly", headers={"Retry-After": "1"})

    def in_slot(work: Any, *args: Any, timeout: float = limits.time_budget, quick: bool = False) -> Any:
        """`work(*args)` in one of the slots (503 when none frees up within `timeout`); `quick` work (plain
        draws) may take one of the quick_slots too."""
        if timeout <= 0 or not slots.acquire(timeout=timeout, quick=quick):
            raise busy()
        try:
            return work(*args)
        finally:
            slots.release(quick=quick)

    # A generate request that sets no option but these asks for plain draws: quick work, whatever the others'
    # (options added later, new constraints among them, are not quick until listed here).
    draw_options = {"n", "seed", "temperature", "top_k", "top_p", "time_budget", "max_tries", "filter_offensive"}
    plain_request = {name: field.get_default(call_default_factory=True)
                     for name, field in requests.Generate.model_fields.items() if name not in draw_options}

    def generating(model: NameModel, options: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, Any]:
        quick = all(options[name] == default for name, default in plain_request.items())
        return in_slot(service.generate, model, options, limits, labels, quick=quick)

    @api.post("/models/{model_id}/generate", response_model=GenerateResponse,
              summary="Generate names meeting every constraint, with their scores",
              responses={503: {"model": ErrorResponse, "description": "every generation slot is busy"}})
    async def generate(body: requests.Generate, model_id: str = _path(model_path)) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            model, labels = model_for(model_id)
            return {"model": model_id, **generating(model, body.model_dump(), labels)}

        # the busiest endpoint: one trip to a worker thread (a plain `def` endpoint takes two, the second
        # to check its response)
        return await run_in_threadpool(work)

    @api.post("/models/{model_id}/more-like-these", response_model=GenerateResponse,
              summary="Names in the style of a short list (the model adapted to it)",
              responses={503: {"model": ErrorResponse, "description": "every generation slot is busy"}})
    def more_like_these(body: requests.MoreLikeThese, model_id: str = _path(model_path)) -> dict[str, Any]:
        model, labels = model_for(model_id)
        if not service.can_adapt():
            raise HTTPException(404, "more like these is not available: this namesmith cannot adapt models")
        options = body.model_dump()
        where = options["where"]  # the names are of these labels: the shortlist pulls the model of them
        key = (model_id, tuple(sorted(set(options.pop("words")))),
               tuple(sorted((label, str(values)) for label, values in where.items())))
        # the adaptation and the generation share the request's budget, each in a slot
        budget = min(options["time_budget"] or limits.time_budget, limits.time_budget)
        deadline = time.monotonic() + budget
        try:
            tuned = adapted.get(key, lambda: model.more_like(list(key[1]), where=where or None), timeout=budget)
        except Busy as e:
            raise busy(str(e)) from None
        except StillAdapting:
            return {"model": model_id, **service.adapting(options["n"], len(key[1]), budget, options["seed"])}
        left = deadline - time.monotonic()
        if left < 0.25 * budget:  # adapted just in time, too late to search: the next request finds it ready
            return {"model": model_id, **service.adapting(options["n"], len(key[1]), budget, options["seed"])}
        options["time_budget"] = left
        return {"model": model_id, **in_slot(service.generate, tuned, options, limits, labels, timeout=left)}

    @api.post("/models/{model_id}/score", response_model=ScoreResponse, summary="Score and rank names")
    def score(body: requests.Score, model_id: str = _path(model_path)) -> dict[str, Any]:
        model, labels = model_for(model_id)
        return {"model": model_id, "scores": in_slot(service.score, model, body.names, labels, body.where, body.sort)}

    @api.post("/models/{model_id}/classify", response_model=ClassifyResponse,
              summary="P(label value | name) for each label of a conditional model")
    def classify(body: requests.Classify, model_id: str = _path(model_path)) -> dict[str, Any]:
        model, labels = model_for(model_id)
        return {"model": model_id, "results": in_slot(service.classify, model, body.names, labels)}

    @api.get("/models/{model_id}/heatmap.png", summary="P(next | previous) as a PNG heat map",
             responses={200: {"content": {"image/png": {}}, "description": "the heat map"}},
             response_class=Response)
    def heatmap(model_id: str = _path(model_path)) -> Response:
        model, _ = model_for(model_id)
        if model_id not in heatmaps:
            heatmaps[model_id] = in_slot(service.heatmap_png, model)
        return Response(heatmaps[model_id], media_type="image/png",
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @api.post("/similarity", response_model=SimilarityResponse,
              summary="Damerau-Levenshtein similarity of names to a target name")
    def similarity(body: requests.Similarity) -> dict[str, Any]:
        return {"target": body.target, "results": service.similarity(body.target, body.names)}

    api.include_router(trend_router(limits))
    app.include_router(api)
    add_docs(app)

    static = Path(str(resources.files("namesmith.serve") / "static"))

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", PageFiles(directory=static), name="static")
    return app


class PageFiles(StaticFiles):
    """The page's files, with the page's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


def _path(extra: dict) -> Any:
    from fastapi import Path as PathParam

    return PathParam(..., **extra, description="a model id from /api/v1/models")


def _jsonable(value: Any) -> Any:
    """Plain JSON values (numpy numbers to floats, infinities to strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        return service.finite(float(number)) if isinstance(number, float) else number
    return value
