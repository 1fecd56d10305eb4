"""What the server does with a model, apart from HTTP: generate (hiding offensive names), score,
classify, compare names by similarity, draw the heat map, adapt to a shortlist.

Every function takes the request's options and a shared, read-only `NameModel`; each generate call
gets its own seed (drawn from the OS when the request has none, and returned), so concurrent
requests share no random state and the same seed gives the same names.
"""

from __future__ import annotations

import functools
import inspect
import math
import secrets
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rapidfuzz.distance import DamerauLevenshtein

from namesmith.choosing.facts import fit_order
from namesmith.choosing.phonetic import SoundIndex, catalogue_births, phonetic_keys
from namesmith.choosing.syllables import count_syllables
from namesmith.core.casing import fold
from namesmith.core.errors import ConfigError
from namesmith.data.offensive import default_filter
from namesmith.generation.config import MAX_SEED
from namesmith.generation.generate import Generation
from namesmith.generation.novelty import NoveltySummary
from namesmith.namemodel import NameModel
from namesmith.serve.limits import Limits

MAX_ROUNDS = 8  # generate calls per request when offensive names were hidden and more are needed
HEATMAP_CHARS = 40  # a heat map of a larger vocabulary shows its most frequent characters only
_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot is not thread-safe
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (train set, held-out set) or why not


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


def round_seed(seed: int, k: int) -> int:
    """The seed of the k-th generate call of one request (k = 0: the request's own)."""
    return seed if k == 0 else (seed + k * 0x9E3779B97F4A7C15) % (MAX_SEED + 1)


def novelty(model: NameModel, names: Sequence[str]) -> NoveltySummary:
    """How many of `names` are training, held-out or new words (the word sets built once per model)."""
    if model not in _SPLITS:
        split, why = model.training_split()
        _SPLITS[model] = why if split is None else (frozenset(split.train),
                                                      frozenset(split.val + split.test) - frozenset(split.train))
    sets = _SPLITS[model]
    if isinstance(sets, str):
        return NoveltySummary(len(names), unavailable=sets)
    train, heldout = sets
    words = fold(list(names), model.casing)  # as the training words are kept (lowercased for most models)
    in_train, in_heldout = sum(n in train for n in words), sum(n in heldout for n in words)
    return NoveltySummary(len(names), in_train, in_heldout, len(names) - in_train - in_heldout)


def finite(x: float | None) -> float | str | None:
    return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def generate(model: NameModel, options: dict[str, Any], limits: Limits, labels: dict[str, list[str]],
             hide: Callable[[str], bool] | None = None) -> dict[str, Any]:
    """Names meeting every constraint, with their scores; offensive ones hidden unless asked not to.

    `options` are the generate request's fields. Hidden names are replaced by drawing again (with
    seeds derived from the request's), within the same time budget.
    """
    options = dict(options)
    n, where = options.pop("n"), options.pop("where")
    if options.pop("filter_offensive") and hide is None:
        hide = default_filter().is_offensive
    seed = options.pop("seed")
    seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
    budget = min(options.pop("time_budget") or limits.time_budget, limits.time_budget)
    max_tries = options.pop("max_tries")
    conditions = condition(model, labels, where, "generate")
    start = time.perf_counter()
    names: list[str] = []
    hidden = tries = unfinished = 0
    rejected: dict[str, int] = {}
    stop_reason = max_len = None
    method = "plain"
    for k in range(MAX_ROUNDS):
        left = budget - (time.perf_counter() - start)
        if left <= 0:
            stop_reason = "time-budget"
            break
        tries_left = None if max_tries is None else max_tries - tries
        if tries_left is not None and tries_left < 1:
            stop_reason = "max-tries"
            break
        found = model.generate(n - len(names), seed=round_seed(seed, k), time_budget=left, max_tries=tries_left,
                               **options, **conditions)
        tries, unfinished = tries + found.stats.tries, unfinished + found.stats.unfinished
        for field, count in found.stats.rejected.items():
            rejected[field] = rejected.get(field, 0) + count
        method, max_len = found.stats.method, found.stats.max_len
        for name in found.names:
            if hide is not None and hide(name):
                hidden += 1
            elif not (options["unique"] and name in names):
                names.append(name)
        stop_reason = found.stats.stop_reason
        if len(names) >= n or stop_reason is not None:
            break
    else:
        stop_reason = stop_reason or "max-tries"
    stats = Generation(names, n, found=len(names), tries=tries, seconds=time.perf_counter() - start, method=method,
                       stop_reason=None if len(names) >= n else (stop_reason or "time-budget"),
                       unfinished=unfinished, max_len=max_len, rejected=rejected)
    if options.get("sounds_like"):  # the closest first: same sound, then spelling, then the better-known name
        order = {name: i for i, name in enumerate(SoundIndex(names, catalogue_births()).rank(options["sounds_like"],
                                                                                            len(names)))}
        names.sort(key=lambda name: order.get(name, len(order)))
    scores = model.score(names, **condition(model, labels, where, "score")) if names else []
    facts = model.facts(names, surname=options["surname"], alliteration=options["alliteration"]) if names else []
    results = [{**score_dict(s), **f.to_dict()} for s, f in zip(scores, facts)]
    if options["surname"] is not None:
        results = [results[i] for i in fit_order(facts)]
    return {"seed": seed, "names": results,
            "complete": stats.complete,
            "message": None if stats.complete else stats.message(), "generation": stats.to_dict(),
            "summary": novelty(model, names).to_dict(), "offensive_hidden": hidden}


def adapting(n: int, words: int, seconds: float, seed: int | None) -> dict[str, Any]:
    """The generate answer of a "more like these" request whose adaptation outlasted its time budget: no names
    yet (as when a search runs out of its budget), the adaptation going on for the next request."""
    stats = Generation([], n, seconds=seconds, method="adapting", stop_reason="time-budget")
    return {"seed": secrets.randbelow(MAX_SEED + 1) if seed is None else seed, "names": [], "complete": False,
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
