"""The app's ASGI middleware: a bound on request bodies, and headers every response carries."""

from typing import Any

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from namesmith.serve.limits import CLIENT


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
