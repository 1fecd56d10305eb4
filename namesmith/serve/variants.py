"""GET /api/v1/variants: the catalogue's known names that sound like a name, closest first (choosing.phonetic).

Spelling variants of a known name (Aiden: Aidan, Ayden, Aden ...), or the known names near a new one. A lookup
in the catalogue's index by Double Metaphone key (built once, at the server's start), so it takes no generation
slot. Needs the phonetic extra: without it the answer is a 400 saying so in one line.
"""

from typing import Annotated, Any  # no `from __future__ import annotations`: FastAPI reads these

from fastapi import APIRouter, Query

from namesmith.choosing.phonetic import phonetic_keys, spelling_variants
from namesmith.core.errors import ConfigError
from namesmith.serve.deps import name_query
from namesmith.serve.limits import Limits
from namesmith.serve.schemas import VariantsResponse

MAX_VARIANTS = 50  # variants one request may ask for


def variants_router(limits: Limits) -> APIRouter:
    router = APIRouter()
    NameQuery = name_query(limits)  # the `name` parameter, one definition for trend and variants

    @router.get("/variants", response_model=VariantsResponse,
                summary="Known names that sound like a name, closest first (spelling variants)")
    def name_variants(name: NameQuery,
                      n: Annotated[int, Query(ge=1, le=MAX_VARIANTS, description="how many, at most")] = 10,
                      ) -> dict[str, Any]:
        keys = phonetic_keys(name)
        if not keys:
            raise ConfigError(f"name {name[:40]!r}: no letters to sound out", field="name")
        return {"name": name, "keys": list(keys), "variants": [v.to_dict() for v in spelling_variants(name, n)]}

    return router
