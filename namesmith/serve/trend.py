"""GET /api/v1/trend: a name's births, rank and share by decade, from the catalogue (namesmith.choosing.popularity).

Read-only and cheap (a dict lookup once the catalogue is read, which the app does at start), so it
takes no generation slot. The name is bounded by the server's `max_name_length`.
"""

from typing import Annotated, Any, Literal  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import APIRouter, Query

from namesmith.choosing.popularity import is_known, trend
from namesmith.core.errors import ConfigError
from namesmith.serve.deps import name_query
from namesmith.serve.limits import Limits
from namesmith.serve.schemas import TrendResponse


def trend_router(limits: Limits) -> APIRouter:
    router = APIRouter()
    NameQuery = name_query(limits)  # the `name` parameter, one definition for trend and variants

    @router.get("/trend", response_model=TrendResponse,
                summary="A name's births and rank by decade and sex (US 1880-2017, Israel 1949-2024)")
    def name_trend(name: NameQuery,
                   sex: Annotated[Literal["F", "M"] | None, Query(description="only this sex")] = None,
                   ) -> dict[str, Any]:
        if not name.strip():
            raise ConfigError("name is empty", field="name")
        return {"name": name, "known": is_known(name), "series": [use.to_dict() for use in trend(name, sex)]}

    return router
