"""Every error of the API as JSON `{"error": message, "field": name}`: one line for a person, no traceback or
file path (422 for a request that does not validate, 400 for a namesmith error, 404 for an unknown model,
503 with Retry-After for a model not ready, 500 for a bug, whose traceback goes to the server's log)."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from namesmith.core.errors import NamesmithError
from namesmith.serve.registry import NotReady, scrub
from namesmith.serve.schemas import ErrorResponse

log = logging.getLogger("namesmith")
ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)}


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


def add_error_handlers(app: FastAPI, hidden_paths: list[str]) -> None:
    """Answer every error of `app` as JSON, with the served models' paths (`hidden_paths`) scrubbed from it."""

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
