"""Fitting whole-name calibration (namesmith.calibration) to a trained model and its word list.

The features f (length; last character at its length) depend on a name's cell (min(|x|, T), last
token) only, so the model enters the fit through its distribution over cells, m(cell):

- Markov models (bigram, n-gram, conditional given its labels, adapted, small window models):
  exactly, by dynamic programming over (state, length) on the model's chain. The forward messages
  α_ℓ(s) = P(the name is still going in state s after ℓ tokens) give
  m(ℓ, c) = Σ_s α_{ℓ-1}(s) · P(c | s) · P(end | s·c), one O(S·V) step per length, until the mass
  still going is below `DP_TOLERANCE`.
- Other models (networks, chains too large for the DP): self-normalised importance sampling from
  the model's own draws (m estimated by the draws' cells; Z = E_P[exp(λ·f)] by their mean, with its
  standard error by the delta method).

λ maximises the training names' log-likelihood under the tilted model, Σ λ·f(x) - N log Z(λ), with
a Gaussian prior (Chen & Rosenfeld 2000) of variance σ² on each λ: at the optimum the model's
expected features match the training list's up to the prior's pull (moment matching). Z is a sum
over the (T+1, V) cells, so each L-BFGS step is exact and costs microseconds. The features and σ²
are chosen on the validation split: `--calibrate auto` keeps a calibration only where it lowers the
validation NLL.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from namesmith.calibration import FEATURES, Calibration, word_cells
from namesmith.config import CALIBRATIONS
from namesmith.errors import ConfigError
from namesmith.evaluate import eval_mode, word_log_probs
from namesmith.generate import GenerateConfig, MarkovChain, markov_chain
from namesmith.models.base import CharModel
from namesmith.sample import plain_sampler
from namesmith.vocab import BOUNDARY, Vocab

log = logging.getLogger(__name__)

DP_TOLERANCE = 1e-12  # the DP stops when the mass of names still going is below this
MAX_DP_STEPS = 512  # lengths the DP follows at most; a chain whose names run longer is sampled instead
MAX_DP_CELLS = 1 << 24  # states × vocabulary of a chain the DP takes on (one step is O(S·V))
DP_TIME_BUDGET = 120.0  # seconds the DP may take before the model is sampled instead
DRAWS = 50_000  # a network's own draws for the importance-sampling estimate
SAMPLE_TIME_BUDGET = 300.0  # seconds of drawing at most (fewer draws then, and a larger standard error)
SIGMA2 = (0.1, 0.3, 1.0, 3.0, 30.0)  # the prior variances tried on validation
MIN_VALIDATION = 100  # auto calibrates only where the validation split has at least this many words
LENGTH_QUANTILE = 0.995  # L: the training lengths' quantile past which lengths share one weight (at least 2 more)
MAX_LENGTH_BINS = 64
END_BINS = 12  # E: the end feature's lengths (fewer where L is smaller)


@dataclass
class CellDistribution:
    """A model's distribution over cells (min(length, T), last token), and how it was found."""

    probs: torch.Tensor  # (T + 1, V) float64, sums to 1
    method: str  # "exact" or "sampled"
    draws: int = 0  # of a sampled estimate
    note: str = ""  # why the model was sampled rather than followed exactly


@dataclass
class CalibrationReport:
    """What `calibrate` tried and chose: validation NLL per character of each candidate."""

    choice: str
    method: str
    validation: dict[str, float] = field(default_factory=dict)  # candidate -> validation NLL per character
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"choice": self.choice, "method": self.method, "validation": self.validation, "note": self.note}


def length_bins(words: Sequence[str]) -> int:
    """L: lengths below it each get a weight, longer ones share one (the training lengths' LENGTH_QUANTILE)."""
    lengths = np.array([len(w) for w in words]) if words else np.zeros(1)
    return int(min(np.quantile(lengths, LENGTH_QUANTILE) + 2, MAX_LENGTH_BINS))


# --- the model's distribution over cells ---------------------------------------------------------
@torch.no_grad()
def chain_cells(chain: MarkovChain, T: int, deadline: float | None = None) -> torch.Tensor | None:
    """(T + 1, V) float64: P(a name's length is min(ℓ, T) and it ends in token c) under the chain, exactly
    (None: its names run past MAX_DP_STEPS, or the deadline passed)."""
    probs, next_state = chain.probs, chain.next_state
    S, V = probs.shape
    ends = probs[:, BOUNDARY]  # P(end | s)
    end_after = probs[:, 1:] * ends[next_state[:, 1:]]  # (S, V-1): P(c, then end | s)
    cells = torch.zeros(T + 1, V, dtype=torch.float64)
    cells[0, BOUNDARY] = ends[chain.start]  # the empty name
    alpha = torch.zeros(S, dtype=torch.float64)
    alpha[chain.start] = 1.0
    targets = next_state[:, 1:].reshape(-1)
    for length in range(1, MAX_DP_STEPS + 1):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        cells[min(length, T), 1:] += alpha @ end_after
        flow = (alpha.unsqueeze(1) * probs[:, 1:]).reshape(-1)
        alpha = torch.zeros(S, dtype=torch.float64).index_add_(0, targets, flow)
        if float(alpha.sum()) < DP_TOLERANCE:
            return cells / cells.sum()
    return None


@torch.no_grad()
def sampled_cells(model: CharModel, vocab: Vocab, T: int, max_len: int, seed: int, draws: int = DRAWS,
                  time_budget: float = SAMPLE_TIME_BUDGET) -> tuple[torch.Tensor, int]:
    """(T + 1, V) float64: the share of the model's own draws in each cell, and the number of draws (names
    reaching the length guard count as ending there, in the longest cells)."""
    sampler = plain_sampler(model, vocab, prefix="", max_length=max_len, seed=seed)
    counts = torch.zeros(T + 1, vocab.size, dtype=torch.float64)
    deadline, done = time.perf_counter() + time_budget, 0
    with eval_mode(model):
        while done < draws and time.perf_counter() < deadline:
            batch = sampler.run(min(4096, draws - done), deadline)
            if batch is None:
                break
            lengths, last = word_cells(batch.names, vocab)
            counts.index_put_((lengths.clamp(max=T), last), torch.ones(len(lengths), dtype=torch.float64),
                              accumulate=True)
            counts[T, BOUNDARY] += batch.unfinished
            done += len(batch.finished)
    if not done:
        raise ConfigError("calibrate: the model drew no names within the time budget", field="calibrate")
    return counts / done, done


def model_cells(model: CharModel, vocab: Vocab, T: int, max_len: int, seed: int) -> CellDistribution:
    """The model's distribution over cells: exact where it is a Markov chain the DP can follow, else sampled."""
    chain = markov_chain(model, vocab.size, GenerateConfig())
    note = "not a finite Markov chain"
    if chain is not None:
        S, V = chain.probs.shape
        if S * V <= MAX_DP_CELLS:
            exact = chain_cells(chain, T, time.perf_counter() + DP_TIME_BUDGET)
            if exact is not None:
                return CellDistribution(exact, "exact")
            note = "its names run too long for the DP"
        else:
            note = f"its chain has {S:,} states, too many for the DP"
    probs, n = sampled_cells(model, vocab, T, max_len, seed, DRAWS)
    log.info(f"calibration: {note}; the model's cells estimated from {n:,} of its draws")
    return CellDistribution(probs, "sampled", n, note)


# --- fitting λ -------------------------------------------------------------------------------------
def _feature_index(features: str, L: int, E: int, T: int, V: int) -> list[tuple[torch.Tensor, int]]:
    """Per feature group, the index (T + 1, V) of each cell's λ in the group, and the group's size."""
    ell = torch.arange(T + 1).unsqueeze(1).expand(T + 1, V)
    groups = [(ell.clamp(max=L), L + 1)]
    if features == "length+end":
        groups.append((ell.clamp(max=E) * V + torch.arange(V), (E + 1) * V))
    return groups


def fit_calibration(cells: CellDistribution, train_words: Sequence[str], vocab: Vocab, features: str,
                    sigma2: float, L: int, E: int = END_BINS) -> Calibration:
    """λ of `features` maximising the training words' likelihood under the tilted model, with a Gaussian
    prior of variance `sigma2` on each λ (regularised moment matching)."""
    assert features in FEATURES
    T1, V = cells.probs.shape
    E = min(E, L)
    groups = _feature_index(features, L, E, T1 - 1, V)
    lengths, last = word_cells(train_words, vocab)
    counts = torch.zeros(T1, V, dtype=torch.float64)
    counts.index_put_((lengths.clamp(max=T1 - 1), last), torch.ones(len(lengths), dtype=torch.float64),
                      accumulate=True)
    n = max(len(train_words), 1)
    log_m = cells.probs.clamp_min(1e-300).log()
    lambdas = [torch.zeros(size, dtype=torch.float64, requires_grad=True) for _, size in groups]

    def tilt() -> torch.Tensor:
        return sum(lam[index] for lam, (index, _) in zip(lambdas, groups))  # (T + 1, V)

    def loss() -> torch.Tensor:
        g = tilt()
        log_z = torch.logsumexp((log_m + g).view(-1), 0)
        prior = sum((lam**2).sum() for lam in lambdas) / (2 * sigma2)
        return (-(counts * g).sum() + n * log_z + prior) / n

    optimiser = torch.optim.LBFGS(lambdas, max_iter=200, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = loss()
        value.backward()
        return value

    optimiser.step(closure)
    with torch.no_grad():
        g = tilt()
        log_z = float(torch.logsumexp((log_m + g).view(-1), 0))
        error = 0.0
        if cells.method == "sampled":  # delta method: sd(exp g) / (sqrt(n) · mean(exp g))
            w = (g - g.max()).exp()
            mean, second = float((cells.probs * w).sum()), float((cells.probs * w**2).sum())
            error = math.sqrt(max(second - mean**2, 0.0) / max(cells.draws, 1)) / mean
    length_weights = tuple(lambdas[0].detach().tolist())
    end_weights = tuple(tuple(row) for row in lambdas[1].detach().view(E + 1, V).tolist()) if len(lambdas) > 1 else ()
    return Calibration(length_weights, end_weights, log_z, error, cells.method, sigma2)


def calibrate(model: CharModel, vocab: Vocab, train_words: Sequence[str], val_words: Sequence[str], *,
              choice: str = "auto", max_len: int, seed: int = 1337) -> tuple[Calibration | None, CalibrationReport]:
    """The calibration `choice` asks for ("none", "length" or "auto": the best of no calibration, the length
    and the length and end features on the validation words; without validation words, none), fitted to the
    training words (a choice on fewer than MIN_VALIDATION words would be noise: auto keeps none there). The
    model is not changed: the caller sets `model.calibration`."""
    if choice not in CALIBRATIONS:
        raise ConfigError(f"calibrate must be one of {', '.join(CALIBRATIONS)}; got {choice!r}", field="calibrate")
    if choice == "none" or not train_words:
        return None, CalibrationReport("none", "", note="" if choice == "none" else "no training words")
    if choice == "auto" and len(val_words) < MIN_VALIDATION:
        return None, CalibrationReport("none", "", note=f"{len(val_words)} validation words, fewer than "
                                                        f"{MIN_VALIDATION} to choose by")
    saved, model.calibration = model.calibration, None  # the model's own distribution, untilted
    try:
        L = length_bins(train_words)
        cells = model_cells(model, vocab, max(L, END_BINS), max_len, seed)
        val_base = word_log_probs(model, list(val_words), vocab) if val_words else None
    finally:
        model.calibration = saved
    n_chars = sum(len(w) + 1 for w in val_words)

    def val_nll(calibration: Calibration | None) -> float:
        tilt = 0.0 if calibration is None else calibration.word_log_weights(val_words, vocab)
        return float(-(val_base + tilt).sum()) / n_chars

    candidates: dict[str, Calibration | None] = {}
    for features in (("length",) if choice == "length" else FEATURES):
        for sigma2 in SIGMA2:
            candidates[f"{features} σ²={sigma2:g}"] = fit_calibration(cells, train_words, vocab, features, sigma2, L)
    if val_base is None:  # "length" without validation words: the middle prior
        best = candidates[f"length σ²={SIGMA2[2]:g}"]
        return best, CalibrationReport("length", cells.method, note=cells.note)
    if choice == "auto":
        candidates["none"] = None
    scores = {key: val_nll(c) for key, c in candidates.items()}
    key = min(scores, key=scores.get)
    scores.setdefault("none", val_nll(None))  # for the record
    return candidates[key], CalibrationReport(key, cells.method, scores, cells.note)
