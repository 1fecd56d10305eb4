"""Scoring names: how name-like is a string under a model?

A name's score is its log-probability under the model, end token included, as in the
lecture series' evaluation: log P(name) = Σ_t log P(c_t | c_<t) + log P(end | name). Totals
favour short names, so names are compared by the mean negative log-likelihood per character
(the end token counted as a character), and placed among the training names by percentile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from namesmith.core.vocab import UnknownPolicy, Vocab
from namesmith.models.base import CharModel
from namesmith.models.nll import nll_per_char, word_log_probs

MAX_REFERENCE = 20_000  # reference words scored for percentiles at most (a fixed sample of more)


@dataclass(frozen=True)
class NameScore:
    """One name's score; `error` says why it has none (log_prob is then None)."""

    name: str
    log_prob: float | None = None  # total, in nats; -inf when the model gives it probability 0
    nll_per_char: float | None = None  # -log_prob / (len(name) + 1)
    percentile: float | None = None  # % of training names at most as name-like (higher: more name-like)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        def finite(x: float | None) -> float | str | None:  # JSON has no infinity
            return x if x is None or math.isfinite(x) else ("inf" if x > 0 else "-inf")

        return {"name": self.name, "log_prob": finite(self.log_prob), "nll_per_char": finite(self.nll_per_char),
                "percentile": self.percentile, "error": self.error}


def reference_scores(model: CharModel, words: Sequence[str], vocab: Vocab) -> np.ndarray:
    """Sorted NLL per character of reference (training) words, for percentiles.

    Of more than MAX_REFERENCE words, a fixed random sample of that many (seed 0): a percentile
    then has a standard error of at most 0.35 points, and the first score of a network trained on
    hundreds of thousands of names takes a second instead of tens (a server's first request)."""
    usable = [words[i] for i in vocab.readable(words, "drop")[0]]
    if len(usable) > MAX_REFERENCE:
        keep = np.sort(np.random.default_rng(0).choice(len(usable), MAX_REFERENCE, replace=False))
        usable = [usable[i] for i in keep]
    return np.sort(nll_per_char(word_log_probs(model, usable, vocab), usable))


def percentiles(reference: np.ndarray | None, nlls: np.ndarray) -> np.ndarray | None:
    """% of the reference NLLs per character (sorted) at least each of `nlls`: how many training names
    are at most as name-like; None without a reference."""
    if reference is None or not len(reference):
        return None
    return 100.0 * (len(reference) - np.searchsorted(reference, nlls, side="left")) / len(reference)


def percentile(reference: np.ndarray | None, nll: float) -> float | None:
    """`percentiles` of one NLL per character."""
    ranks = percentiles(reference, np.array([nll]))
    return None if ranks is None else float(ranks[0])


def score_names(model: CharModel, vocab: Vocab, names: Sequence[str], reference: np.ndarray | None = None, *,
                unknown: UnknownPolicy = "fail",
                fallback: Callable[[list[str]], torch.Tensor] | None = None) -> list[NameScore]:
    """Score each name. A name holding a character outside the vocabulary (or empty) follows the policy
    `unknown` (`Vocab.readable`): "fail" (the default) gives it an `error` instead of a score, so one such name
    never fails the batch; "raise" raises; "drop" leaves it out; "fallback" scores it with `fallback`, the
    log-probabilities of such names under a model with an open vocabulary (namesmith.adaptation.adapt).

    `reference` is `reference_scores(...)` of the training names; without it percentiles are None.
    """
    if unknown == "fallback" and fallback is None:
        raise ValueError("unknown='fallback' needs the fallback that scores names outside the vocabulary")
    kept, problems = vocab.readable(names, unknown)
    opened = {i for i in kept if vocab.unknown_chars(names[i])}  # only under "fallback"
    known = [i for i in kept if i not in opened]
    log_probs = np.zeros(len(names))
    if known:
        log_probs[known] = word_log_probs(model, [names[i] for i in known], vocab).numpy()
    if opened:
        log_probs[sorted(opened)] = np.asarray(fallback([names[i] for i in sorted(opened)]), dtype=np.float64)
    nlls = nll_per_char(log_probs[kept], [names[i] for i in kept])
    ranks = percentiles(reference, nlls)
    pcts = [None] * len(kept) if ranks is None else ranks.tolist()
    scores = {i: NameScore(names[i], lp, nll, pct)
              for i, lp, nll, pct in zip(kept, log_probs[kept].tolist(), nlls.tolist(), pcts)}
    return [scores.get(i) or NameScore(names[i], error=problems[i]) for i in range(len(names))
            if i in scores or i in problems]


def rank(scores: Sequence[NameScore]) -> list[NameScore]:
    """From most to least name-like (lowest NLL per character first); unscorable names last."""
    return sorted(scores, key=lambda s: (s.error is not None, math.inf if s.nll_per_char is None else s.nll_per_char))


def format_scores(scores: Sequence[NameScore]) -> str:
    """A text table: name, log-probability, NLL per character, percentile among training names."""
    width = max([len(s.name) for s in scores] + [4])
    lines = [f"{'name':<{width}}  {'log-prob':>9}  {'nll/char':>8}  {'percentile':>10}"]
    for s in scores:
        if s.error is not None:
            lines.append(f"{s.name:<{width}}  error: {s.error}")
            continue
        pct = "n/a" if s.percentile is None else f"{s.percentile:.1f}"
        lines.append(f"{s.name:<{width}}  {s.log_prob:>9.3f}  {s.nll_per_char:>8.4f}  {pct:>10}")
    return "\n".join(lines)
