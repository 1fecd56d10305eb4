"""The JSON API's requests and responses, as pydantic models (the OpenAPI schema at /docs is built from them).

Requests forbid unknown fields and take values strictly (a number sent as a string is a 422, not a
guess). Their bounds come from the server's `Limits`, so request models are made per app by
`request_models(limits)`; responses do not depend on the limits and are plain classes. The generate
request is made from `GenerateConfig`'s fields: their names, defaults, bounds, choices and help
(`generate_fields`), narrowed by the limits; tests/generation/test_generate_options.py checks they agree.
"""

import math
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, create_model

from namesmith.choosing.syllables import MAX_SYLLABLES, SYLLABLES_PATTERN
from namesmith.generation.config import GenerateConfig
from namesmith.serve.limits import Limits

Number = float | Literal["inf", "-inf"]  # JSON has no infinity: a name of probability 0 has log_prob "-inf"


def _whole(value: object) -> object:
    """2.0 is an integer in JSON Schema: take it as 2 (and leave "2", True and 2.5 to be refused)."""
    return int(value) if type(value) is float and value.is_integer() else value


def whole(lo: int, hi: int) -> object:
    """An integer field of a request, from `lo` to `hi`."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_whole)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- responses ----------------------------------------------------------------------------------
class ErrorResponse(BaseModel):
    """Every error: one line for a person, and the request field at fault when there is one."""

    error: str
    field: str | None = None


class Capabilities(BaseModel):
    classify: bool  # the model is conditional: names can be classified by its labels
    heatmap: bool  # a P(next | previous) heat map can be drawn (the model's own table or its data's)
    adapt: bool  # "more like these": the model can be adapted to a short list of names


class ModelSummary(BaseModel):
    id: str
    source: str  # "data set us" or "model directory NAME"
    dataset: str | None  # the built-in data set it was trained on, for the default models
    loaded: bool  # False until ready (the default models are built or loaded in the background at start)
    state: Literal["ready", "queued", "building", "loading"] = "ready"  # requests to a model not ready get 503
    model_type: str | None = None
    description: str | None = None
    labels: dict[str, list[str]] = {}  # {label: [values]} of a conditional model
    metrics: dict[str, dict[str, float | int | None]] = {}  # split → {nll, perplexity, n_words, n_chars}
    parameters: int | None = None
    vocab: str | None = None  # the characters the model knows
    casing: str | None = None  # how names are printed: lower, title, upper or exact
    capabilities: Capabilities | None = None


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    info: dict  # everything `NameModel.info()` says (configs, data record, history), file paths removed


class ServerInfo(BaseModel):
    name: Literal["namesmith"] = "namesmith"
    version: str
    api: Literal["v1"] = "v1"
    api_key_required: bool
    limits: dict[str, int | float]
    default_model: str
    generate_options: list[str] = []  # the generate request's fields: the page offers the inputs this server takes
    trend: bool = False  # GET /api/v1/trend answers a name's counts by decade (the page draws them)


class Popularity(BaseModel):
    """A name's best-known use in the catalogue (namesmith.choosing.popularity): its births in one sex and decade."""

    count: int
    rank: int  # 1 = the most given name of that sex and decade
    sex: str
    decade: str
    source: str  # the catalogue set: us or israel
    per_million: float  # births per million of that sex and decade


class NameResult(BaseModel):
    name: str
    log_prob: Number | None = None  # total log-probability in nats, end token included
    nll_per_char: Number | None = None  # lower is more name-like
    percentile: float | None = None  # % of training names at most as name-like
    error: str | None = None  # why the name has no score (a character the model does not know)
    syllables: int | None = None  # namesmith.choosing.syllables.count_syllables (None: a name not in the Latin script)


class SurnameFit(BaseModel):
    score: float  # 0 (poor) to 1 (no fault found): namesmith.choosing.surname
    reasons: list[str]  # each finding in words: rhythm, a clash of sounds, alliteration, initials, length


class GeneratedName(NameResult):
    """A generated name: its score, and what a person choosing it wants to know (namesmith.choosing.facts)."""

    known: bool | None = None  # in any built-in list (real), or not (new)
    popularity: Popularity | None = None  # None: no counted use (a new name, or one of a list without counts)
    nicknames: list[str] = []
    surname_fit: SurnameFit | None = None  # only when the request gave a surname (names then come best first)


class GenerationStats(BaseModel):
    requested: int
    found: int
    tries: int
    acceptance: float | None
    seconds: float
    method: str  # exact, guided, rejection, pooled (rejection over the draws made once) or plain
    complete: bool
    stop_reason: str | None  # max-tries or time-budget when the search stopped early
    unfinished: int = 0  # draws that reached the length guard without ending (dropped)
    max_len: int | None = None  # the length guard in force
    rejected: dict[str, int] = {}  # draws turned away by each filter of choosing a name (popularity, ...)


class NoveltySummary(BaseModel):
    total: int
    in_train: int | None
    in_heldout: int | None
    new: int | None
    unavailable: str | None


class GenerateResponse(BaseModel):
    model: str
    seed: int  # the seed used (drawn by the server when the request gave none): same seed, same names
    names: list[GeneratedName]
    complete: bool
    message: str | None  # why fewer names than asked for came back, as the CLI says it
    generation: GenerationStats
    summary: NoveltySummary
    offensive_hidden: int  # names drawn but not shown because they hold an offensive word


class TrendResponse(BaseModel):
    name: str
    known: bool  # in any built-in list (a name can be known without births: from a list without counts)
    series: list[Popularity]  # by source, sex, then decade; empty for a name with no births in the catalogue


class Variant(BaseModel):
    name: str  # as the catalogue spells it
    births: int  # in the us catalogue, 1880-2017, both sexes
    keys: list[str]  # its Double Metaphone keys


class VariantsResponse(BaseModel):
    name: str
    keys: list[str]  # the name's Double Metaphone keys
    variants: list[Variant]  # closest first: the same sound, then the closest spelling, then the better-known name


class ScoreResponse(BaseModel):
    model: str
    scores: list[NameResult]


class Classification(BaseModel):
    name: str
    labels: dict[str, dict[str, float]] = {}  # {label: {value: probability}}; {} when there is an error
    error: str | None = None  # why this name has no labels (as the score's: a character the model does not know)


class ClassifyResponse(BaseModel):
    model: str
    results: list[Classification]


class Similarity(BaseModel):
    name: str
    similarity: float  # 1 - Damerau-Levenshtein distance / the longer length (case-insensitive)
    distance: int  # Damerau-Levenshtein edits (insert, delete, substitute, swap neighbours)


class SimilarityResponse(BaseModel):
    target: str
    results: list[Similarity]


# --- requests (bounded by the server's limits) ------------------------------------------------------
API_NAMES = {"num": "n"}  # GenerateConfig fields the API names otherwise (the page's share links say n)
LEAST = {"num": 1}  # a request asks for at least one name
DEFAULTS = {"filter_offensive": True}  # a public page hides offensive names unless the request asks otherwise
# the request's text fields are as long as a pattern at most (max_pattern_length), these as long as a name
NAME_FIELDS = {"sounds_like": "max_name_length"}


def _limit_of(name: str, limits: Limits) -> float | None:
    """The server's own bound on a GenerateConfig field (below the config's), or None."""
    return {"num": limits.max_names, "min_len": limits.max_name_length, "max_len": limits.max_name_length,
            "max_tries": limits.max_tries, "time_budget": limits.time_budget}.get(name)


def generate_fields(limits: Limits, pattern: Any, where: Any) -> dict[str, tuple[Any, Any]]:
    """The generate request's fields, for `create_model`: one per GenerateConfig field (its type from the
    field's, its default (or DEFAULTS'), bounds, choices and help from its `Option`, bounds narrowed by
    `limits`), then `where` (NameModel.generate's conditions)."""
    out: dict[str, tuple[Any, Any]] = {}
    for f in fields(GenerateConfig):
        how, kind = f.metadata["option"], str(f.type).split("|")[0].strip()
        optional = f.default is None
        lo = max(how.lo, LEAST.get(f.name, how.lo)) if how.lo is not None else None
        cap = _limit_of(f.name, limits)
        hi = how.hi if cap is None else cap if how.hi is None else min(how.hi, cap)
        described = {"description": how.help}
        if f.name == "syllables":  # "2-3" or 2: read by namesmith.choosing.syllables.parse_syllables
            value: Any = Annotated[str, StringConstraints(max_length=16, pattern=SYLLABLES_PATTERN)] | \
                whole(1, MAX_SYLLABLES)
        elif kind == "bool":
            value = bool
        elif kind == "int":
            value = whole(int(lo or 0), int(hi if hi is not None else 2**63 - 1))
        elif kind == "float":
            value = float
            described.update({"ge": lo, "le": hi, "gt": 0 if how.positive else None})
        elif how.choices is not None:
            value = Literal[how.choices]
        elif kind.startswith("tuple"):
            value = list[pattern]
            described["max_length"] = limits.max_patterns
        else:  # text
            value = str
            described["max_length"] = min(how.max_length or math.inf,
                                          getattr(limits, NAME_FIELDS.get(f.name, "max_pattern_length")))
        if optional:
            value = value | None
        default = list(f.default) if isinstance(f.default, tuple) else DEFAULTS.get(f.name, f.default)
        out[API_NAMES.get(f.name, f.name)] = (value, Field(default, **{k: v for k, v in described.items()
                                                                        if v is not None}))
    out["where"] = (where, Field({}))
    return out

@dataclass(frozen=True)
class RequestModels:
    Generate: type[BaseModel]
    MoreLikeThese: type[BaseModel]
    Score: type[BaseModel]
    Classify: type[BaseModel]
    Similarity: type[BaseModel]


def request_models(limits: Limits) -> RequestModels:
    """The request models of a server with these limits."""
    Pattern = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_pattern_length)]
    Name = Annotated[str, StringConstraints(max_length=limits.max_name_length)]
    Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
    Where = Annotated[dict[Label, Label], Field(max_length=16, description="{label: value} of a conditional model")]

    GenerateRequest = create_model("GenerateRequest", __base__=Strict, __doc__="Every option of `namesmith sample` "
                                   "(GenerateConfig's fields); names come back with their scores.",
                                   **generate_fields(limits, Pattern, Where))

    class MoreLikeTheseRequest(GenerateRequest):
        """Names in the style of `words` (the shortlist): the model adapted to them, then generate."""

        words: list[Annotated[Name, StringConstraints(min_length=1)]] = Field(min_length=1,
                                                                               max_length=limits.max_adapt_words)

    class ScoreRequest(Strict):
        names: list[Name] = Field(min_length=1, max_length=limits.max_score_names)
        where: Where = {}
        sort: bool = Field(True, description="most name-like first; names without a score last")

    class ClassifyRequest(Strict):
        names: list[Name] = Field(min_length=1, max_length=limits.max_score_names)

    class SimilarityRequest(Strict):
        target: Name
        names: list[Name] = Field(min_length=1, max_length=limits.max_score_names)
    return RequestModels(GenerateRequest, MoreLikeTheseRequest, ScoreRequest, ClassifyRequest, SimilarityRequest)
