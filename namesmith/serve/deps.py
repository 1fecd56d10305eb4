"""What the endpoints share, as FastAPI dependencies: the server's state (models, limits, slots) and the API key.

One `Server` per app, made by `create_app` and kept in `app.state`; an endpoint asks for it with
`Depends(server)`. It bounds the requests' work (`in_slot`: fair slots, 503 when none frees up)
and turns a registry entry into the summary the API shows.
"""

import hmac
from typing import Annotated, Any  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

import namesmith.serve.service as service
from namesmith.namemodel import NameModel
from namesmith.serve.adapted import AdaptedModels
from namesmith.serve.limits import Limits, Slots
from namesmith.serve.registry import ID_PATTERN, ModelEntry, ModelRegistry, model_labels, public_info
from namesmith.serve.schemas import RequestModels

API_KEY_HEADER = "X-API-Key"
# a generate request that sets no option but these asks for plain draws: quick work, whatever the others'
# (options added later, new constraints among them, are not quick until listed here)
DRAW_OPTIONS = {"n", "seed", "temperature", "top_k", "top_p", "time_budget", "max_tries", "filter_offensive"}


def name_query(limits: Limits) -> Any:
    """The `name` query parameter of the endpoints that look one name up (trend, variants): 1 to the server's
    `max_name_length` characters."""
    return Annotated[str, Query(min_length=1, max_length=limits.max_name_length, description="a name, in any case")]


class Server:
    """The state every request of one app shares."""

    def __init__(self, registry: ModelRegistry, limits: Limits, requests: RequestModels, default_model: str,
                 api_key: str | None):
        self.registry, self.limits, self.requests = registry, limits, requests
        self.default_model, self.api_key = default_model, api_key
        self.heatmaps: dict[str, bytes] = {}
        # bounds the CPU and memory of the requests' work; fair, first come first served; a fast lane for plain
        # draws
        self.slots = Slots(limits.max_concurrent, reserved=limits.quick_slots)
        # adaptations hold a slot for seconds: they never take the last one, which keeps generate and score moving
        self.adapted = AdaptedModels(self.slots, limits.max_adapted_bytes, max_jobs=max(1, limits.max_concurrent - 1),
                                     max_pending=4 * limits.max_concurrent)
        self.plain_request = {name: field.get_default(call_default_factory=True)
                              for name, field in requests.Generate.model_fields.items() if name not in DRAW_OPTIONS}

    def summary(self, entry: ModelEntry, model: NameModel | None = None) -> dict[str, Any]:
        """A served model as /api/v1/models lists it."""
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

    def model_for(self, model_id: str) -> tuple[NameModel, dict[str, list[str]]]:
        """The model of `model_id` and its labels (404 for an unknown id, 503 for one not ready)."""
        model = self.registry.get(model_id).get()
        return model, model_labels(model)

    def busy(self, what: str | None = None) -> HTTPException:
        what = what or f"{self.limits.max_concurrent} requests running"
        return HTTPException(503, f"the server is busy ({what}); try again shortly", headers={"Retry-After": "1"})

    def in_slot(self, work: Any, *args: Any, timeout: float | None = None, quick: bool = False) -> Any:
        """`work(*args)` in one of the slots (503 when none frees up within `timeout`, by default the time
        budget); `quick` work (plain draws) may take one of the quick_slots too."""
        timeout = self.limits.time_budget if timeout is None else timeout
        if timeout <= 0 or not self.slots.acquire(timeout=timeout, quick=quick):
            raise self.busy()
        try:
            return work(*args)
        finally:
            self.slots.release(quick=quick)

    def generating(self, model: NameModel, options: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, Any]:
        """A generate request's answer, in a slot (a quick one for plain draws)."""
        quick = all(options[name] == default for name, default in self.plain_request.items())
        return self.in_slot(service.generate, model, options, self.limits, labels, quick=quick)


async def server(request: Request) -> Server:
    """The app's `Server` (an async dependency: it runs on the event loop, no trip to a worker thread)."""
    return request.app.state.server


ServerState = Annotated[Server, Depends(server)]  # an endpoint's parameter: the app's `Server`
key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                          description="needed only when the server was started with --api-key")


def check_key(request: Request, key: str | None = Depends(key_header)) -> None:
    """401 unless the request carries the server's key, in the X-API-Key header or as a Bearer token."""
    bearer = request.headers.get("authorization", "")
    given = key or (bearer[7:] if bearer.lower().startswith("bearer ") else "")
    if not hmac.compare_digest(given.encode(), request.app.state.server.api_key.encode()):
        raise HTTPException(401, f"this server needs an API key: send it in the {API_KEY_HEADER} header",
                            headers={"WWW-Authenticate": "Bearer"})


def model_id_path() -> Any:
    """The {model_id} of a path: an id of the registry (never a file path)."""
    from fastapi import Path as PathParam

    return PathParam(..., pattern=ID_PATTERN, description="a model id from /api/v1/models")
