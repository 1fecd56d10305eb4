"""Fitting whole-name calibration (namesmith.generation.calibration) to a trained model and its word list.

The features f (length; last character at its length) depend on a name's cell (min(|x|, T), last
token) only, so the model enters the fit through its distribution over cells, m(cell):

- Markov models (bigram, n-gram, conditional given its labels, adapted, small window models):
  exactly, by dynamic programming over (state, length) on the model's chain. The forward messages
  α_ℓ(s) = P(the name is still going in state s after ℓ tokens) give
  m(ℓ, c) = Σ_s α_{ℓ-1}(s) · P(c | s) · P(end | s·c) (where each state knows the token that led into it,
  Σ over the states s entered by c of α_ℓ(s) · P(end | s)), one O(S·V) step per length, until the mass
  still going is below `DP_TOLERANCE` past the longest cell T. That mass, whose lengths are all in the
  longest cells, is split among their last tokens as the last step's endings were: the length features
  stay exact, and the end features of lengths ≥ T are off by at most DP_TOLERANCE, far less in practice,
  since the tail's endings settle to one shape (a chain's quasi-stationary distribution): on `us` stopping
  at 1e-3 rather than 1e-6 moves no cell by more than 2e-7 and takes 21 steps instead of 36.
- Other models (networks, chains too large for the DP): self-normalised importance sampling from
  the model's own draws (m estimated by the draws' cells; Z = E_P[exp(λ·f)] by their mean, with its
  standard error by the delta method).

λ maximises the training names' log-likelihood under the tilted model, Σ λ·f(x) - N log Z(λ), with
a Gaussian prior (Chen & Rosenfeld 2000) of variance σ² on each λ: at the optimum the model's
expected features match the training list's up to the prior's pull (moment matching). Z is a sum
over the (T+1, V) cells, so each Newton step is exact and costs microseconds. The features and σ²
are chosen on the validation split: `--calibrate auto` keeps a calibration only where it lowers the
validation NLL.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from namesmith.core.clock import now
from namesmith.core.config import CALIBRATIONS
from namesmith.core.errors import ConfigError
from namesmith.core.progress import Phase
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.generation.calibration import FEATURES, Calibration, last_tokens, word_cells
from namesmith.generation.config import GenerateConfig
from namesmith.generation.exact import MarkovChain, markov_chain
from namesmith.generation.sample import plain_sampler
from namesmith.models.base import CharModel
from namesmith.models.nll import eval_mode, mean_nll_per_char, word_log_probs

log = logging.getLogger(__name__)

DP_TOLERANCE = 1e-3  # the DP stops when the mass of names longer than the step, past the longest cell T, is below this
MAX_DP_STEPS = 512  # lengths the DP follows at most; a chain whose names run longer is sampled instead
MAX_DP_CELLS = 1 << 24  # states × vocabulary of a chain the DP takes on (one step is O(S·V))
DP_TIME_BUDGET = 120.0  # seconds the DP may take before the model is sampled instead
DRAWS = 50_000  # a network's own draws for the importance-sampling estimate
DRAW_BATCH = 4096  # names drawn at a time (a sparse n-gram's 4,096: about 2 s of CPU)
SAMPLE_TIME_BUDGET = 300.0  # seconds of drawing at most (fewer draws then, and a larger standard error)
SIGMA2 = (0.1, 0.3, 1.0, 3.0, 30.0)  # the prior variances tried on validation
# A sampled model tries the end feature only with this many draws per (length, last token) cell of it at least: a
# cell no draw reached counts nothing towards the estimate of Z, so its λ buys validation likelihood that the tilted
# model does not have (`world`'s root, 13 × 1,004 cells from 24,576 draws: validation NLL 2.308 -> 2.090 "gained",
# against 2.287 with the length alone). names.txt's networks have 13 × 27 cells, 142 draws each. And any one weight
# (a length, or a length and last token) whose cells the draws reached fewer times than this stays 0: the draws say
# nothing of the model's mass there, so its fitted λ (the training count × σ² where no draw came) would buy
# validation likelihood that the true Z takes back (a product of two LSTMs: validation 1.8806 -> 1.8736 at σ²=30,
# against 1.8792 at σ²=0.3, with log Z underestimated).
MIN_DRAWS_PER_CELL = 20
MIN_VALIDATION = 100  # auto calibrates only where the validation split has at least this many words
# Plain draws of a calibrated model are kept with probability exp(λ·f - log Z - bound) (rejection sampling,
# namesmith.generation.calibration.tilted_draws), exp(-bound) of them on average: a candidate that would keep fewer
# than this share is not chosen, since one cell the model rarely reaches can take a large λ that buys validation
# likelihood while it makes every name cost thousands of draws (a product of three networks chose length+end at
# σ²=30 and its calibrated draws came back nearly empty within --max-tries).
MIN_ACCEPTANCE = 0.02
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


def counted_length_bins(length_counts: np.ndarray) -> int:
    """`length_bins` of words counted by length (`length_counts[ℓ]`: the words of length ℓ; the last entry, at least
    MAX_LENGTH_BINS - 2, may hold longer ones too): the same quantile, NumPy's linear interpolation between ranks."""
    below = np.cumsum(length_counts)
    if not below[-1]:
        return length_bins([])
    rank = (below[-1] - 1) * LENGTH_QUANTILE
    low = int(np.searchsorted(below, int(rank), side="right"))  # the length of the word of that rank
    high = int(np.searchsorted(below, int(rank) + 1, side="right")) if rank > int(rank) else low
    return int(min(low + (rank - int(rank)) * (high - low) + 2, MAX_LENGTH_BINS))


# --- the model's distribution over cells ---------------------------------------------------------
# The moves of the last chain's states sorted by the state they lead to (next_state, order, row starts):
# the label nodes of a conditional model share one (their models' states are the root's contexts).
_moves_by_target: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []


def chain_flow(chain: MarkovChain) -> torch.Tensor:
    """(S, S) sparse CSR: entry (s', s) is P(the next token leads from state s to s'), the end excluded, so
    that α_{ℓ+1} = flow @ α_ℓ (one pass over the S·(V-1) moves; twice as fast as scattering them)."""
    probs, next_state = chain.probs, chain.next_state
    S, V = probs.shape
    if not _moves_by_target or _moves_by_target[0][0] is not next_state:
        targets = next_state[:, 1:].reshape(-1)
        rows = torch.zeros(S + 1, dtype=torch.long)
        rows[1:] = torch.bincount(targets, minlength=S).cumsum(0)
        _moves_by_target[:] = [(next_state, torch.argsort(targets, stable=True), rows)]
    _, order, rows = _moves_by_target[0]
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is all this uses
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(rows, order // (V - 1), probs[:, 1:].reshape(-1)[order], (S, S),
                                       check_invariants=False)


_state_last_tokens: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (next_state, its states' last tokens)


def state_last_tokens(chain: MarkovChain) -> torch.Tensor | None:
    """(S,) the token that leads into each state of the chain (`last_tokens`, every move counted), cached for
    the last chain's transitions (a conditional model's label nodes share them); None where a state is entered
    by two different tokens."""
    if not _state_last_tokens or _state_last_tokens[0][0] is not chain.next_state:
        every_move = torch.ones(chain.next_state.shape, dtype=torch.bool)
        _state_last_tokens[:] = [(chain.next_state, last_tokens(chain.next_state, every_move, chain.start))]
    return _state_last_tokens[0][1]


@torch.no_grad()
def chain_cells(chain: MarkovChain, T: int, deadline: float | None = None) -> torch.Tensor | None:
    """(T + 1, V) float64: P(a name's length is min(ℓ, T) and it ends in token c) under the chain, exactly
    (None: its names run past MAX_DP_STEPS, or the deadline passed).

    Where each state knows the token that led into it (an n-gram's contexts, a bigram's last token), a name
    of ℓ tokens ending in state s ends in that token, so one step's endings are a bincount of α_ℓ(s)·P(end | s)
    over the states' last tokens: O(S), beside the flow's O(S·V) product (other chains sum
    α_{ℓ-1}(s)·P(c | s)·P(end | s·c), a second O(S·V) product)."""
    probs, next_state = chain.probs, chain.next_state
    S, V = probs.shape
    ends = probs[:, BOUNDARY]  # P(end | s)
    last = state_last_tokens(chain)
    end_after = None if last is not None else probs[:, 1:] * ends[next_state[:, 1:]]  # (S, V-1): P(c, then end | s)
    cells = torch.zeros(T + 1, V, dtype=torch.float64)
    cells[0, BOUNDARY] = ends[chain.start]  # the empty name
    alpha = torch.zeros(S, dtype=torch.float64)
    alpha[chain.start] = 1.0
    flow = chain_flow(chain)
    phase = Phase("calibration: following the model's chain", MAX_DP_STEPS, "lengths at most")
    for length in range(1, MAX_DP_STEPS + 1):
        if deadline is not None and now() > deadline:
            return None
        phase.advance()
        if last is None:
            ending = torch.cat([torch.zeros(1, dtype=torch.float64), alpha @ end_after])
            alpha = flow @ alpha
        else:
            alpha = flow @ alpha
            ending = torch.bincount(last, alpha * ends, minlength=V)
        cells[min(length, T)] += ending
        going = float(alpha.sum() - ending.sum())  # the mass of names longer than `length`
        if going < DP_TOLERANCE and (length >= T or going <= 0.0):
            if going > 0 and float(ending.sum()) > 0:  # longer names: their last tokens as these ended
                cells[T] += going * ending / ending.sum()
            return cells / cells.sum()
    return None


@torch.no_grad()
def sampled_cells(model: CharModel, vocab: Vocab, T: int, max_len: int, seed: int, draws: int = DRAWS,
                  time_budget: float = SAMPLE_TIME_BUDGET) -> tuple[torch.Tensor, int]:
    """(T + 1, V) float64: the share of the model's own draws in each cell, and the number of draws (names
    reaching the length guard count as ending there, in the longest cells)."""
    sampler = plain_sampler(model, vocab, prefix="", max_length=max_len, seed=seed)
    counts = torch.zeros(T + 1, vocab.size, dtype=torch.float64)
    deadline, done = now() + time_budget, 0
    phase = Phase("calibration: drawing the model's names", draws, "names")
    with eval_mode(model):
        while done < draws and now() < deadline:
            batch = sampler.run(min(DRAW_BATCH, draws - done), deadline)
            if batch is None:
                break
            phase.advance(len(batch.finished))
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
            exact = chain_cells(chain, T, now() + DP_TIME_BUDGET)
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


def cell_counts(words: Sequence[str], vocab: Vocab, T: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(T + 1, V) float64: the training weight of the words in each cell (1 each without `weights`)."""
    lengths, last = word_cells(words, vocab)
    weights = torch.ones(len(lengths), dtype=torch.float64) if weights is None else weights.double()
    counts = torch.zeros(T + 1, vocab.size, dtype=torch.float64)
    counts.index_put_((lengths.clamp(max=T), last), weights, accumulate=True)
    return counts


def fit_calibration(cells: CellDistribution, train_words: Sequence[str], vocab: Vocab, features: str,
                    sigma2: float, L: int, E: int = END_BINS, weights: torch.Tensor | None = None) -> Calibration:
    """λ of `features` maximising the training words' likelihood under the tilted model, with a Gaussian
    prior of variance `sigma2` on each λ (regularised moment matching); `weights`: each word's training
    weight (a table's rows, as the model counted them), 1 each by default."""
    counts = cell_counts(train_words, vocab, cells.probs.size(0) - 1, weights)
    return fit_calibrations([cells], counts.unsqueeze(0), features, sigma2, L, E)[0]


def fit_calibrations(cells: Sequence[CellDistribution], counts: torch.Tensor, features: str, sigma2: float,
                     L: int, E: int = END_BINS) -> list[Calibration]:
    """`fit_calibration` of K models at once (the label nodes of a conditional model): their cells and their
    training words' `cell_counts` (K, T + 1, V). The K objectives are independent and each is solved by Newton's
    method in one batched pass (`_newton`)."""
    assert features in FEATURES
    K, T1, V = counts.shape
    E = min(E, L)
    groups = _feature_index(features, L, E, T1 - 1, V)
    index = torch.stack([i for i, _ in groups], -1).view(T1 * V, -1)  # each cell's feature in each group
    index = index + torch.tensor([0] + [size for _, size in groups[:-1]]).cumsum(0)  # into one vector of D
    fitted = torch.cat([sampled_weights(cells, i, size) for i, size in groups], 1)  # (K, D): 1 for a λ fitted
    log_m = torch.stack([c.probs for c in cells]).clamp_min(1e-300).log().view(K, -1)  # (K, cells)
    n = counts.sum((1, 2)).clamp_min(1.0)  # (K,)
    lam = _newton(index, groups[0][1], log_m, counts.view(K, -1) / n[:, None], fitted, 1.0 / (sigma2 * n))
    out = []
    g = lam[:, index].sum(-1).view(K, T1, V)
    for k, cell in enumerate(cells):
        log_z = float(torch.logsumexp(log_m[k] + g[k].view(-1), 0))
        error = 0.0
        if cell.method == "sampled":  # delta method: sd(exp g) / (sqrt(n) · mean(exp g))
            w = (g[k] - g[k].max()).exp()
            mean, second = float((cell.probs * w).sum()), float((cell.probs * w**2).sum())
            error = math.sqrt(max(second - mean**2, 0.0) / max(cell.draws, 1)) / mean
        weights = lam[k].split([size for _, size in groups])
        length_weights = tuple(weights[0].tolist())
        end_weights = tuple(tuple(row) for row in weights[1].view(E + 1, V).tolist()) if len(weights) > 1 else ()
        out.append(Calibration(length_weights, end_weights, log_z, error, cell.method, sigma2))
    return out


NEWTON_STEPS = 100  # Newton's method on these smooth convex objectives converges in about 10
NEWTON_DECREMENT = 1e-20  # half the Newton decrement at which λ is taken as the optimum (J within this of its minimum)


def _newton(index: torch.Tensor, La: int, log_m: torch.Tensor, data: torch.Tensor, fitted: torch.Tensor,
            ridge: torch.Tensor) -> torch.Tensor:
    """λ (K, D) minimising, for each k, J(λ) = -E_data[f]·λ + log Σ_cells m·exp(λ·f) + ridge·|λ|²/2 over the λ
    `fitted` marks (the others stay 0): the per-word objective of `fit_calibration` (data: the training words'
    shares of the cells; ridge: 1 / (σ² N)). Each cell has one length feature (the first La λ) and at most one end
    feature (the rest), 1 at its `index` (cells, groups), 0 elsewhere. J is strictly convex with gradient
    E_p[f] - E_data[f] + ridge·λ and Hessian Cov_p[f] + ridge·I (p: the tilted model's cells), both exact sums over
    the cells, so Newton's method with a backtracking line search reaches the optimum to rounding in about 10
    steps (L-BFGS took about 130). `_newton_step` solves with that Hessian's structure in O(D·La²)."""
    K, D = fitted.shape
    lam = torch.zeros(K, D, dtype=torch.float64)
    flat = index.T.reshape(-1)

    def by_feature(weight: torch.Tensor) -> torch.Tensor:  # (K, cells) -> (K, D): Σ over the cells having each f
        return torch.zeros(K, D, dtype=torch.float64).index_add_(1, flat, weight.repeat(1, index.size(1)))

    target = by_feature(data)

    def objective(lam: torch.Tensor) -> torch.Tensor:
        return -(target * lam).sum(1) + torch.logsumexp(log_m + lam[:, index].sum(-1), 1) + ridge * (lam**2).sum(1) / 2

    value = objective(lam)
    done = torch.zeros(K, dtype=torch.bool)  # each k whose λ is at its optimum to rounding: its λ stays
    for _ in range(NEWTON_STEPS):
        p = torch.softmax(log_m + lam[:, index].sum(-1), 1)  # (K, cells)
        mean = by_feature(p)
        grad = (mean - target + ridge[:, None] * lam) * fitted
        joint = None  # (K, La, D - La): p of the cells having each length feature and each end feature
        if index.size(1) > 1:
            joint = torch.zeros(K, La * (D - La), dtype=torch.float64).index_add_(
                1, index[:, 0] * (D - La) + index[:, 1] - La, p).view(K, La, D - La)
        step = _newton_step(mean, joint, fitted, ridge, grad)
        decrement = ((grad * step).sum(1) / 2).masked_fill(done, 0.0)
        if float(decrement.max()) < NEWTON_DECREMENT:
            break
        t = (~done).double()
        for _ in range(60):  # halve the step of each k whose objective it does not lower enough (Armijo)
            trial = objective(lam - t[:, None] * step)
            short = trial > value - 1e-4 * t * 2 * decrement
            if not bool(short.any()):
                break
            t = torch.where(short, t / 2, t)
        lam = lam - t[:, None] * step
        lowered = objective(lam)
        # a step that left J where it was: what gradient is left is rounding (3,300 objectives for nothing in one fit)
        done |= lowered >= value
        value = lowered
        if bool(done.all()):
            break
    return lam


def _newton_step(mean: torch.Tensor, joint: torch.Tensor | None, fitted: torch.Tensor, ridge: torch.Tensor,
                 grad: torch.Tensor) -> torch.Tensor:
    """H⁻¹·grad for H = Cov_p[f] + ridge·I over the fitted features (identity on the others), without forming H:
    Cov_p[f] = B - μμᵀ where B, the second moments, is diagonal within the length block and within the end block
    (a cell has one feature of each) and the cells' joint p between them. B is solved by the Schur complement of its
    diagonal end block (an La x La system) and μμᵀ by Sherman-Morrison."""
    La = joint.size(1) if joint is not None else mean.size(1)
    mu = mean * fitted
    diag = torch.where(fitted > 0, mean + ridge[:, None], 1.0)
    if joint is not None:
        joint = joint * fitted[:, :La, None] * fitted[:, None, La:]

    def solve_b(y: torch.Tensor) -> torch.Tensor:  # (K, D, R) -> B⁻¹ y
        if joint is None:
            return y / diag[:, :, None]
        y_a, y_c = y[:, :La], y[:, La:]
        c = diag[:, La:, None]
        schur = torch.diag_embed(diag[:, :La]) - joint @ (joint.transpose(1, 2) / c)
        x_a = torch.linalg.solve(schur, y_a - joint @ (y_c / c))
        return torch.cat([x_a, (y_c - joint.transpose(1, 2) @ x_a) / c], 1)

    both = solve_b(torch.stack([grad, mu], -1))
    x, u = both[..., 0], both[..., 1]  # B⁻¹ grad, B⁻¹ μ
    return x + u * ((mu * x).sum(1) / (1 - (mu * u).sum(1)))[:, None]


def sampled_weights(cells: Sequence[CellDistribution], index: torch.Tensor, size: int) -> torch.Tensor:
    """(K, size) float64: 1 for each weight of a feature group (`index`: each cell's weight) that is fitted, 0 for
    one a sampled model's draws reached fewer than MIN_DRAWS_PER_CELL times (it stays 0); an exact model fits all."""
    out = torch.ones(len(cells), size, dtype=torch.float64)
    for k, cell in enumerate(cells):
        if cell.method == "sampled":
            reached = torch.zeros(size, dtype=torch.float64).index_add_(0, index.reshape(-1),
                                                                        (cell.probs * cell.draws).reshape(-1))
            out[k] = (reached >= MIN_DRAWS_PER_CELL - 1e-6).double()  # counts held as shares × draws
    return out


def calibrate(model: CharModel, vocab: Vocab, train_words: Sequence[str], val_words: Sequence[str], *,
              choice: str = "auto", max_len: int, seed: int = 1337, weights: torch.Tensor | None = None
              ) -> tuple[Calibration | None, CalibrationReport]:
    """The calibration `choice` asks for ("none", "length" or "auto": the best of no calibration, the length
    and the length and end features on the validation words; without validation words, none), fitted to the
    training words (a choice on fewer than MIN_VALIDATION words would be noise: auto keeps none there), each
    weighing its training weight (`weights`; 1 each by default). The model is not changed: the caller sets
    `model.calibration`."""
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

    def val_nll(calibration: Calibration | None) -> float:
        tilt = 0.0 if calibration is None else calibration.word_log_weights(val_words, vocab)
        return mean_nll_per_char(val_base + tilt, val_words)

    candidates: dict[str, Calibration | None] = {}
    end_cells = (min(END_BINS, L) + 1) * vocab.size
    few_draws = cells.method == "sampled" and cells.draws < MIN_DRAWS_PER_CELL * end_cells
    for features in (("length",) if choice == "length" or few_draws else FEATURES):
        for sigma2 in SIGMA2:
            candidates[f"{features} σ²={sigma2:g}"] = fit_calibration(cells, train_words, vocab, features, sigma2, L,
                                                                      weights=weights)
    if val_base is None:  # "length" without validation words: the middle prior
        best = candidates[f"length σ²={SIGMA2[2]:g}"]
        return best, CalibrationReport("length", cells.method, note=cells.note)
    if choice == "auto":
        candidates["none"] = None
    key, scores, costly = choose(candidates, val_nll)
    note = "; ".join(filter(None, [cells.note, few_draws and f"the length alone: {cells.draws:,} draws, fewer than "
                                   f"{MIN_DRAWS_PER_CELL} for each of the end feature's {end_cells:,} cells", costly]))
    return candidates[key], CalibrationReport(key, cells.method, scores, note)


def calibrate_counted(model: CharModel, vocab: Vocab, train_cells: torch.Tensor, val_cells: torch.Tensor,
                      val_log_prob: float, val_tokens: int, *, choice: str = "auto", max_len: int, seed: int = 1337
                      ) -> tuple[Calibration | None, CalibrationReport]:
    """`calibrate` from words counted by cell, not held: a streamed list (namesmith.data.counting tallies its words
    by length and last token, `NGramFileCounts.cells`). `train_cells`, `val_cells`: (ℓ, V) words by length (that
    many or more in the last row, at least MAX_LENGTH_BINS) and last token; `val_log_prob`: the validation words'
    total log-probability under the model, uncalibrated, and `val_tokens` their tokens (Σ len + 1). The features
    depend on a word's cell alone, so the fit and the validation NLL of each candidate are those `calibrate` finds
    from the words themselves."""
    if choice not in CALIBRATIONS:
        raise ConfigError(f"calibrate must be one of {', '.join(CALIBRATIONS)}; got {choice!r}", field="calibrate")
    n_train, n_val = int(train_cells.sum()), int(val_cells.sum())
    if choice == "none" or not n_train:
        return None, CalibrationReport("none", "", note="" if choice == "none" else "no training words")
    if choice == "auto" and n_val < MIN_VALIDATION:
        return None, CalibrationReport("none", "", note=f"{n_val} validation words, fewer than {MIN_VALIDATION} to "
                                                        f"choose by")
    assert train_cells.size(0) > MAX_LENGTH_BINS
    L = counted_length_bins(train_cells.sum(1).numpy())
    T = max(L, END_BINS)
    saved, model.calibration = model.calibration, None  # the model's own distribution, untilted
    try:
        cells = model_cells(model, vocab, T, max_len, seed)
    finally:
        model.calibration = saved

    def folded(counts: torch.Tensor) -> torch.Tensor:  # (T + 1, V): lengths T and longer in the last row
        return torch.cat([counts[:T], counts[T:].sum(0, keepdim=True)]).double()

    train = folded(train_cells)

    def val_nll(calibration: Calibration | None) -> float:
        tilt = 0.0 if calibration is None else calibration.counted_log_weight(val_cells)
        return -(val_log_prob + tilt) / val_tokens

    candidates: dict[str, Calibration | None] = {}
    for features in (("length",) if choice == "length" else FEATURES):
        for sigma2 in SIGMA2:
            candidates[f"{features} σ²={sigma2:g}"] = fit_calibrations([cells], train.unsqueeze(0), features,
                                                                       sigma2, L)[0]
    if not n_val:  # "length" without validation words: the middle prior
        return candidates[f"length σ²={SIGMA2[2]:g}"], CalibrationReport("length", cells.method, note=cells.note)
    if choice == "auto":
        candidates["none"] = None
    key, scores, costly = choose(candidates, val_nll)
    return candidates[key], CalibrationReport(key, cells.method, scores, "; ".join(filter(None, [cells.note, costly])))


def choose(candidates: dict[str, Calibration | None], val_nll: Callable[[Calibration | None], float]
           ) -> tuple[str, dict[str, float], str]:
    """The candidate of lowest validation NLL among those whose draws rejection keeps at least MIN_ACCEPTANCE of
    (the least costly one where none does), every candidate's validation NLL ("none" too, for the record) and a
    note naming those left out for their cost."""
    scores = {key: val_nll(c) for key, c in candidates.items()}
    cheap = [key for key, c in candidates.items() if c is None or math.exp(-c.bound) >= MIN_ACCEPTANCE]
    key = min(cheap, key=scores.get) if cheap else min(candidates, key=lambda k: candidates[k].bound)
    scores.setdefault("none", val_nll(None))
    costly = [k for k in candidates if k not in cheap]
    note = costly and (f"not chosen, as sampling would keep fewer than {MIN_ACCEPTANCE:.0%} of draws: "
                       + ", ".join(costly))
    return key, scores, note or ""
