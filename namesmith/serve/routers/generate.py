"""POST /api/v1/models/{id}/generate and /more-like-these: names meeting every constraint, with their scores."""

from typing import Any  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import namesmith.serve.service as service
from namesmith.core.clock import now
from namesmith.serve.adapted import Busy, StillAdapting
from namesmith.serve.deps import Server, ServerState, model_id_path
from namesmith.serve.schemas import ErrorResponse, GenerateResponse, RequestModels

BUSY = {503: {"model": ErrorResponse, "description": "every generation slot is busy"}}


def generate_router(requests: RequestModels) -> APIRouter:
    """The router of a server whose requests are bounded as `requests` say (namesmith.serve.schemas)."""
    router = APIRouter()

    @router.post("/models/{model_id}/generate", response_model=GenerateResponse,
                 summary="Generate names meeting every constraint, with their scores", responses=BUSY)
    async def generate(body: requests.Generate, state: ServerState,
                       model_id: str = model_id_path()) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            model, labels = state.model_for(model_id)
            return {"model": model_id, **state.generating(model, body.model_dump(), labels)}

        # the busiest endpoint: one trip to a worker thread (a plain `def` endpoint takes two, the second
        # to check its response)
        return await run_in_threadpool(work)

    @router.post("/models/{model_id}/more-like-these", response_model=GenerateResponse,
                 summary="Names in the style of a short list (the model adapted to it)", responses=BUSY)
    def more_like_these(body: requests.MoreLikeThese, state: ServerState,
                        model_id: str = model_id_path()) -> dict[str, Any]:
        return {"model": model_id, **more_like(state, model_id, body.model_dump())}

    return router


def more_like(state: Server, model_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """Names in the style of `options["words"]`: the model adapted to them (cached; adapted in the background
    when that outlasts the request), then generate, both within the request's budget."""
    model, labels = state.model_for(model_id)
    if not service.can_adapt():
        raise HTTPException(404, "more like these is not available: this namesmith cannot adapt models")
    limits = state.limits
    where = options["where"]  # the names are of these labels: the shortlist pulls the model of them
    key = (model_id, tuple(sorted(set(options.pop("words")))),
           tuple(sorted((label, str(values)) for label, values in where.items())))
    # the adaptation and the generation share the request's budget, each in a slot
    budget = min(options["time_budget"] or limits.time_budget, limits.time_budget)
    deadline = now() + budget
    try:
        tuned = state.adapted.get(key, lambda: model.more_like(list(key[1]), where=where or None), timeout=budget)
    except Busy as e:
        raise state.busy(str(e)) from None
    except StillAdapting:
        return service.adapting(options["n"], len(key[1]), budget, options["seed"])
    left = deadline - now()
    if left < 0.25 * budget:  # adapted just in time, too late to search: the next request finds it ready
        return service.adapting(options["n"], len(key[1]), budget, options["seed"])
    options["time_budget"] = left
    return state.in_slot(service.generate, tuned, options, limits, labels, timeout=left)
