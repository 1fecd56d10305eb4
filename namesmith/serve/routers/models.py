"""GET /api/v1, /api/v1/models and /api/v1/models/{id}: the server, and the models it serves."""

from typing import Any  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import APIRouter, Request

import namesmith.serve.service as service
from namesmith.core.version import __version__
from namesmith.serve.deps import ServerState, model_id_path
from namesmith.serve.registry import public_info
from namesmith.serve.schemas import ModelDetail, ModelList, ServerInfo


def models_router() -> APIRouter:
    router = APIRouter()

    @router.get("", response_model=ServerInfo, summary="Server version, limits and whether a key is needed")
    def server_info(request: Request, state: ServerState) -> dict[str, Any]:
        listed = [entry.id for entry in state.registry]  # a built-in default that could not be built is not offered
        default = state.default_model if state.default_model in state.registry or not listed else listed[0]
        return {"version": __version__, "api_key_required": state.api_key is not None,
                "limits": state.limits.to_dict(), "default_model": default, "generate_options": [
                    field for field in state.requests.Generate.model_fields  # what a request here can ask for
                    if field != "sounds_like" or service.can_sound_out()],
                "trend": "/api/v1/trend" in request.app.openapi()["paths"]}  # built once, then kept by FastAPI

    @router.get("/models", response_model=ModelList, summary="The served models")
    def list_models(state: ServerState) -> dict[str, Any]:
        return {"models": [state.summary(entry) for entry in state.registry]}

    @router.get("/models/{model_id}", response_model=ModelDetail,
                summary="One model: type, data, labels, metrics (503 while it is built or loaded)")
    def get_model(state: ServerState, model_id: str = model_id_path()) -> dict[str, Any]:
        entry = state.registry.get(model_id)
        model = entry.get()
        return {**state.summary(entry, model), "info": jsonable(public_info(model))}

    return router


def jsonable(value: Any) -> Any:
    """Plain JSON values (numpy numbers to floats, infinities to strings)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        return service.finite(float(number)) if isinstance(number, float) else number
    return value
