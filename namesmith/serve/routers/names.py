"""POST /api/v1/models/{id}/score, /classify and /api/v1/similarity, GET /api/v1/models/{id}/heatmap.png:
what a model (or plain edit distance) says of given names."""

from typing import Any  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import APIRouter
from fastapi.responses import Response

import namesmith.serve.service as service
from namesmith.serve.deps import ServerState, model_id_path
from namesmith.serve.schemas import ClassifyResponse, RequestModels, ScoreResponse, SimilarityResponse


def names_router(requests: RequestModels) -> APIRouter:
    """The router of a server whose requests are bounded as `requests` say (namesmith.serve.schemas)."""
    router = APIRouter()

    @router.post("/models/{model_id}/score", response_model=ScoreResponse, summary="Score and rank names")
    def score(body: requests.Score, state: ServerState, model_id: str = model_id_path()) -> dict[str, Any]:
        model, labels = state.model_for(model_id)
        return {"model": model_id,
                "scores": state.in_slot(service.score, model, body.names, labels, body.where, body.sort)}

    @router.post("/models/{model_id}/classify", response_model=ClassifyResponse,
                 summary="P(label value | name) for each label of a conditional model")
    def classify(body: requests.Classify, state: ServerState,
                 model_id: str = model_id_path()) -> dict[str, Any]:
        model, labels = state.model_for(model_id)
        return {"model": model_id, "results": state.in_slot(service.classify, model, body.names, labels)}

    @router.get("/models/{model_id}/heatmap.png", summary="P(next | previous) as a PNG heat map",
                responses={200: {"content": {"image/png": {}}, "description": "the heat map"}},
                response_class=Response)
    def heatmap(state: ServerState, model_id: str = model_id_path()) -> Response:
        model, _ = state.model_for(model_id)
        if model_id not in state.heatmaps:
            state.heatmaps[model_id] = state.in_slot(service.heatmap_png, model)
        return Response(state.heatmaps[model_id], media_type="image/png",
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @router.post("/similarity", response_model=SimilarityResponse,
                 summary="Damerau-Levenshtein similarity of names to a target name")
    def similarity(body: requests.Similarity) -> dict[str, Any]:
        return {"target": body.target, "results": service.similarity(body.target, body.names)}

    return router
