"""What the server does with a model, apart from HTTP: generate (one `NameModel.generate` call, offensive
names hidden by its `filter_offensive`), score, classify, compare names by similarity, draw the heat map,
adapt to a shortlist.

Every function takes the request's options and a shared, read-only `NameModel`; each generate call
gets its own seed (drawn from the OS when the request has none, and returned), so concurrent
requests share no random state and the same seed gives the same names.
"""

from __future__ import annotations

import functools
import inspect
import math
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rapidfuzz.distance import DamerauLevenshtein

from namesmith.choosing.facts import fit_order
from namesmith.choosing.phonetic import SoundIndex, catalogue_births, phonetic_keys
from namesmith.choosing.syllables import count_syllables
from namesmith.core.errors import ConfigError
from namesmith.generation.config import asked, fresh_seed
from namesmith.generation.novelty import NoveltySummary
from namesmith.generation.result import Generation
from namesmith.namemodel import NameModel
from namesmith.serve.limits import Limits

HEATMAP_CHARS = 40  # a heat map of a larger vocabulary shows its most frequent characters only
_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot is not thread-safe


def supports(model: NameModel, method: str, parameter: str) -> bool:
    """Whether `model.method` takes `parameter` (conditional options arrive with conditional models)."""
    function = getattr(type(model), method, None)
    return function is not None and parameter in _parameters(function)


@functools.cache
def _parameters(function: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters)


def condition(model: NameModel, labels: dict[str, list[str]], where: dict[str, str], method: str) -> dict[str, Any]:
    """The `where=` keyword for `model.method`, or nothing when there are no conditions."""
    if not where:
        return {}
    if not labels or not supports(model, method, "where"):
        raise ConfigError("where: this model has no labels to condition on (it is not a conditional model)",
                          field="where")
    return {"where": dict(where)}


def finite(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def generate(model: NameModel, options: dict[str, Any], limits: Limits, labels: dict[str, list[str]]) -> dict[str, Any]:
    """Names meeting every constraint, with their scores: one `NameModel.generate` call (offensive names hidden
    by its `filter_offensive`), within the server's time budget, with a seed drawn when the request has none.

    `options` are the generate request's fields (GenerateConfig's, `n` for `num`, and `where`).
    """
    options = dict(options)
    n, where = options.pop("n"), options.pop("where")
    seed = options.pop("seed")
    seed = fresh_seed() if seed is None else seed
    options["time_budget"] = min(options["time_budget"] or limits.time_budget, limits.time_budget)
    found = model.generate(n, seed=seed, **options, **condition(model, labels, where, "generate"))
    names, stats = found.names, found.stats
    if options.get("sounds_like"):  # the closest first: same sound, then spelling, then the better-known name
        order = {name: i for i, name in enumerate(SoundIndex(names, catalogue_births()).rank(options["sounds_like"],
                                                                                            len(names)))}
        names = sorted(names, key=lambda name: order.get(name, len(order)))
    scores = model.score(names, **condition(model, labels, where, "score")) if names else []
    surname = asked(options["surname"])  # "" as GenerateConfig reads it: none
    facts = model.facts(names, surname=surname, alliteration=options["alliteration"]) if names else []
    results = [{**score_dict(s), **f.to_dict()} for s, f in zip(scores, facts)]
    if surname is not None:
        results = [results[i] for i in fit_order(facts)]
    return {"seed": seed, "names": results, "complete": stats.complete,
            "message": None if stats.complete else stats.message(), "generation": stats.to_dict(),
            "summary": found.novelty.to_dict(), "offensive_hidden": stats.rejected.get("filter_offensive", 0)}


def adapting(n: int, words: int, seconds: float, seed: int | None) -> dict[str, Any]:
    """The generate answer of a "more like these" request whose adaptation outlasted its time budget: no names
    yet (as when a search runs out of its budget), the adaptation going on for the next request."""
    stats = Generation([], n, seconds=seconds, method="adapting", stop_reason="time-budget")
    return {"seed": fresh_seed() if seed is None else seed, "names": [], "complete": False,
            "message": f"found 0 of {n} names: adapting the model to these {words} names takes longer than the "
                       f"time budget; it goes on: ask again in a few seconds", "generation": stats.to_dict(),
            "summary": NoveltySummary(0).to_dict(), "offensive_hidden": 0}


def score_dict(score: Any) -> dict[str, Any]:
    d = score.to_dict()
    return {"name": d["name"], "log_prob": finite(score.log_prob), "nll_per_char": finite(score.nll_per_char),
            "percentile": None if score.percentile is None else float(score.percentile), "error": d["error"],
            "syllables": count_syllables(d["name"])}


def score(model: NameModel, names: Sequence[str], labels: dict[str, list[str]], where: dict[str, str],
          sort: bool) -> list[dict[str, Any]]:
    """Each name's score; ranked most name-like first (unscorable names last) when `sort`."""
    scores = model.score(list(names), **condition(model, labels, where, "score"))
    if sort:
        scores = sorted(scores, key=lambda s: (s.error is not None, math.inf if s.nll_per_char is None
                                               else s.nll_per_char))
    return [score_dict(s) for s in scores]


def classify(model: NameModel, names: Sequence[str], labels: dict[str, list[str]]) -> list[dict[str, Any]]:
    """P(value | name) for each label of a conditional model; a name it cannot read gets an `error`."""
    if not labels or not hasattr(model, "classify"):
        raise ConfigError("this model has no labels to classify by (it is not a conditional model)")
    return [{**r.to_dict(), "labels": r.labels or {}} for r in model.classify(list(names))]


def similarity(target: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Damerau-Levenshtein distance (with swaps of neighbours) of each name to `target`, case-insensitive."""
    t = target.casefold()
    return [{"name": name, "distance": int(DamerauLevenshtein.distance(t, name.casefold())),
             "similarity": float(DamerauLevenshtein.normalized_similarity(t, name.casefold()))} for name in names]


def heatmap(model: NameModel) -> tuple[torch.Tensor, list[str], str]:
    """P(next | previous): the model's own table, or for other models the training names' (pair counts).

    A vocabulary of more than HEATMAP_CHARS characters is cut to the most frequent ones.
    """
    try:
        table, what = model.transition_table(), f"{model.describe()}: P(next | previous)"
        counts = None
    except ConfigError:
        counts = model.pair_counts().double()
        table = counts / counts.sum(1, keepdim=True).clamp(min=1)
        what = "training names: P(next | previous)"
    labels = [model.vocab.label(i) for i in range(model.vocab.size)]
    if len(labels) > HEATMAP_CHARS:
        frequency = counts.sum(0) if counts is not None else model.pair_counts().double().sum(0)
        keep = sorted({0, *frequency.argsort(descending=True)[: HEATMAP_CHARS - 1].tolist()})
        index = torch.tensor(keep)
        table, labels = table[index][:, index], [labels[i] for i in keep]
        what += f" ({HEATMAP_CHARS} most frequent characters)"
    return table, labels, what


def heatmap_png(model: NameModel) -> bytes:
    """The heat map as PNG bytes (drawn by namesmith.scoring.plot)."""
    from namesmith.scoring.plot import plot_heatmap  # matplotlib: imported on first use only

    table, labels, title = heatmap(model)
    with _PLOT_LOCK, tempfile.TemporaryDirectory() as folder:
        path = plot_heatmap(table.float(), labels, Path(folder) / "heatmap.png", title=title)
        return path.read_bytes()


def can_sound_out() -> bool:
    """Whether this install can answer `sounds_like` (its phonetic keys come from an optional extra)."""
    try:
        phonetic_keys("a")
    except ConfigError:
        return False
    return True


def can_adapt() -> bool:
    """Whether this namesmith can adapt a model to a short list ("more like these", NameModel.adapt)."""
    return callable(getattr(NameModel, "adapt", None))
