"""The list's counts over the background: the adapted n-gram's table, its weights chosen by cross-validation.

Step 2 of adapting an n-gram (namesmith.adaptation.adapt):

*How does the list differ?* The list's counts sit on top of that background as a hierarchical
Dirichlet / Pitman-Yor-style smoother (MacKay & Peto 1995; Teh 2006), the background's
prediction at the full context taking the place of the uniform distribution at the bottom:

    P_(-1)(w | h) = P_background(w | h)
    P_j(w | h) = (max(c(h_j w) - D_j, 0) + (D_j · u(h_j) + β_j) · B_j(w | h)) / (c(h_j) + β_j)
    B_j(w | h) = ρ_j · P_(j-1)(w | h) + (1 - ρ_j) · P_background(w | h)

for j = 0 .. order-1, where h_j is the last j tokens of the history, c are the list's counts
(continuation counts below the longest level, as Kneser-Ney's), u(h_j) the number of distinct
tokens seen after h_j in the list, and a context the list never saw passes P_(j-1) through. A
large strength β_j trusts what is below, a small one the list; the share ρ_j says whether what
is below is the list's shorter context (which knows the list, but not where in the name it is)
or the background at the full context. The 3·order weights (D_j, β_j, ρ_j) are chosen by
**cross-validation on the list itself**: leave-one-out for lists of at most `LOO_BELOW` names,
else `FOLDS`-fold; every held-out token is predicted from the counts of the other folds (the
counts of every fold are computed at once, from differences) and the weights minimise their
total negative log-likelihood. A level at which fewer than `MIN_EVIDENCE` held-out tokens had
their context seen in the other folds cannot be validated, so it and the levels above it are
left out.

The mixture of step 1 is then fitted again, to the list's tokens as the adapted model predicts
them held out: a held-out token's probability is a + b · P_background(w | h), a and b set by the
other folds' counts and the weights, so it is a mixture of the components' a + b · P_c and EM
fits the weights to it; the list's weights are then chosen again over the new mixture
(`MIXTURE_REFITS` times). The mixture so serves the tokens that the list's table leaves to the
background, not those it predicts already.

The held-out predictions that chose the weights are optimistic (with 30 names, leave-one-out
may set a level to trust the list entirely), so how far to trust the table is chosen by **nested
cross-validation**: the folds are grouped into `OUTER_FOLDS` outer folds; the weights are chosen
again without each (by cross-validation on the others), its tokens predicted with them, and the
model is λ · P_table + (1 - λ) · P_background, λ fitted to those honest predictions. The table
is the mean (bagging) of the tables with the whole list's weights and with each outer fit's.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import torch

from namesmith.adaptation.background import EM_STEPS, fit_mixture
from namesmith.data.ngram_keys import suffix_keys
from namesmith.models.backoff_table import BackoffTable

log = logging.getLogger("namesmith")

LOO_BELOW = 100  # lists of at most this many names are cross-validated leave-one-out
FOLDS = 10  # else k-fold with this many folds
STRENGTH_RANGE = (0.01, 1e6)  # β: from "trust the list" to "trust what is below" (bounded: the search stays finite)
MIN_EVIDENCE = 10  # held-out tokens whose context was seen, for a level's weights to be validated
MIXTURE_REFITS = 1  # times the mixture is re-fitted to the held-out predictions of the adapted model
OUTER_FOLDS = 5  # nested cross-validation: groups of the list's folds that choose the table's share λ
BAGGING_CELLS = 1 << 21  # (context, token) cells the bagged table is assembled in at a time


# --- the n-gram: the list's counts over the background -----------------------------------------------
def word_folds(n_words: int, seed: int) -> tuple[torch.Tensor, int]:
    """Each word's fold: leave-one-out for short lists, else FOLDS folds (a seeded shuffle)."""
    k = n_words if n_words <= LOO_BELOW else FOLDS
    order = torch.randperm(n_words, generator=torch.Generator().manual_seed(seed))
    fold = torch.empty(n_words, dtype=torch.long)
    fold[order] = torch.arange(n_words) % k
    return fold, k


def _level_counts(gram_keys: torch.Tensor, base: int, fold_of: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """The distinct grams and contexts of one level (contexts of j tokens) and the grams' counts in
    each fold (k, G)."""
    grams, gram_of = torch.unique(gram_keys, return_inverse=True)
    contexts, context_of = torch.unique(gram_keys // base, return_inverse=True)
    per_fold = torch.zeros(k, len(grams)).index_put_((fold_of, gram_of), torch.ones(len(gram_keys)), accumulate=True)
    return {"grams": grams, "gram_of": gram_of, "contexts": contexts, "context_of": context_of,
            "gram_context": torch.searchsorted(contexts, grams // base), "total": per_fold.sum(0),
            "others": per_fold.sum(0) - per_fold}  # (k, G): counts of the other folds


def _continuation(level: dict[str, torch.Tensor], longer: dict[str, torch.Tensor], base: int, j: int) -> None:
    """Replace a level's counts by continuation counts (Kneser & Ney 1995): for each gram, the number
    of distinct tokens seen before it, i.e. of distinct grams one level up that end with it."""
    suffix = torch.searchsorted(level["grams"], longer["grams"] % base ** (j + 1))
    level["others"] = torch.zeros_like(level["others"]).index_add_(1, suffix, (longer["others"] > 0).float())
    level["total"] = torch.zeros_like(level["total"]).index_add_(0, suffix, (longer["total"] > 0).float())


def _features(level: dict[str, torch.Tensor], fold_of: torch.Tensor) -> dict[str, torch.Tensor]:
    """For each token: c(h w), c(h) and u(h) (distinct tokens after h) of the *other* folds (`held_*`),
    and for the distinct grams and contexts those of the whole list (`all_*`)."""
    others, total, gram_context = level["others"], level["total"], level["gram_context"]
    k, C = others.size(0), len(level["contexts"])
    context_others = torch.zeros(k, C).index_add_(1, gram_context, others)
    types_others = torch.zeros(k, C).index_add_(1, gram_context, (others > 0).float())
    gram_of, context_of = level["gram_of"], level["context_of"]
    features = {"held_gram": others[fold_of, gram_of], "held_context": context_others[fold_of, context_of],
                "held_types": types_others[fold_of, context_of], "all_gram": total,
                "all_context": torch.zeros(C).index_add_(0, gram_context, total),
                "all_types": torch.zeros(C).index_add_(0, gram_context, (total > 0).float())}
    return {**{name: t.double() for name, t in features.items()},
            **{name: level[name] for name in ("grams", "contexts", "gram_context")}}


def _adapted_prob(background_prob: torch.Tensor, levels: list[dict[str, torch.Tensor]], discounts: torch.Tensor,
                  strengths: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """P of each held-out token: the recursion of the module docstring on the other folds' counts."""
    prob = background_prob
    for j, level in enumerate(levels):  # shortest first
        d, b, rho = discounts[j], strengths[j], shares[j]
        below = rho * prob + (1 - rho) * background_prob
        mixed = ((level["held_gram"] - d).clamp(min=0) + (d * level["held_types"] + b) * below) / (
            level["held_context"] + b)
        prob = torch.where(level["held_context"] > 0, mixed, prob)
    return prob


def level_weights(theta: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per level, a discount D in (0, 1), a strength β in STRENGTH_RANGE and a share ρ in (0, 1) from
    3n unbounded parameters."""
    low, high = (math.log(v) for v in STRENGTH_RANGE)
    return theta[:n].sigmoid(), (low + (high - low) * theta[n : 2 * n].sigmoid()).exp(), theta[2 * n :].sigmoid()


def _held_out_nll(background_prob: torch.Tensor, levels: list[dict[str, torch.Tensor]], n: int,
                  theta: torch.Tensor) -> torch.Tensor:
    """The mean NLL of the held-out tokens under the weights `theta` (what cross-validation minimises)."""
    return -_adapted_prob(background_prob, levels, *level_weights(theta, n)).log().mean()


def minimise(loss_of: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, steps: int = 300,
             lr: float = 0.2) -> torch.Tensor:
    """The parameters (a few) minimising a smooth loss: Adam (Kingma & Ba 2015) with a cosine-decayed
    step, written out because torch.optim's classes import torch._dynamo on first use, which takes
    seconds, longer than the whole adaptation. Keeps the best parameters seen."""
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    best, best_loss = theta.clone(), math.inf
    for t in range(1, steps + 1):
        theta = theta.detach().requires_grad_()
        with torch.enable_grad():
            loss = loss_of(theta)
            (grad,) = torch.autograd.grad(loss, theta)
        if loss.item() < best_loss:
            best, best_loss = theta.detach().clone(), loss.item()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        step = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        theta = theta.detach() - step * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + 1e-8)
    return best


def list_levels(windows: torch.Tensor, fold_of: torch.Tensor, k: int, base: int,
                max_levels: int | None = None) -> list[dict[str, torch.Tensor]]:
    """The list's counts, level by level (contexts of 0, 1, ... tokens), for the whole list and for
    each token without its fold (see `_features`); levels with too little held-out evidence
    (MIN_EVIDENCE) and those above them are left out, or all beyond `max_levels`. Below the longest
    level the counts are continuation counts, as Kneser-Ney's."""
    order = windows.size(1)
    gram_keys = suffix_keys(windows, base)[:, 1:]  # column j: j context tokens
    counts = []
    for j in range(order if max_levels is None else min(order, max_levels)):
        level = _level_counts(gram_keys[:, j], base, fold_of, k)
        if max_levels is None and int((_features(level, fold_of)["held_context"] > 0).sum()) < MIN_EVIDENCE:
            break  # nothing to validate this level's weights on: it and longer contexts are left out
        counts.append(level)
    for j in range(len(counts) - 2, -1, -1):
        _continuation(counts[j], _level_counts(gram_keys[:, j + 1], base, fold_of, k), base, j)
    return [_features(level, fold_of) for level in counts]


def fit_list_table(windows: torch.Tensor, fold_of: torch.Tensor, k: int, component_probs: torch.Tensor,
                   mixture: torch.Tensor, base: int
                   ) -> tuple[BackoffTable, torch.Tensor, dict[str, Any], tuple[torch.Tensor, float]]:
    """The list's table (see the module docstring), its weights chosen by cross-validation, and the
    background's mixture weights re-fitted for what that table leaves to the background.

    `windows` (M, order) are the list's n-grams, `fold_of` (M,) the fold of each one's word (k
    folds), `component_probs` (M, C) each target's probability under each mixture component and
    `mixture` (C,) their weights as fitted to the tokens alone (`fit_mixture`), `base` the key
    base (V + 1). A held-out token's probability under the adapted model is a + b · P_background,
    a and b set by the other folds' counts and the weights, so it is a mixture of the components'
    a + b · P_c: EM fits the weights to those held-out predictions (`MIXTURE_REFITS` times, the
    list's weights fitted again after each), so the mixture serves the tokens the list's table does
    not already predict. The table's share λ and the weights it averages come from
    `nested_cross_validation`. Returns the table, the mixture, a record of the cross-validation
    (folds, weights, λ, held-out NLL per character of the adapted model, nested and not, and of the
    re-weighed background alone), and the whole list's weights (θ) with λ (`held_out_class_shares`).
    """
    levels = list_levels(windows, fold_of, k, base)
    n = len(levels)
    theta = torch.zeros(3 * n, dtype=torch.float64)
    background_prob = component_probs @ mixture
    for refit in range(MIXTURE_REFITS + 1):
        if n:  # else no level could be validated: the list's table stays empty, the background alone
            theta = minimise(functools.partial(_held_out_nll, background_prob, levels, n), theta)
        if refit == MIXTURE_REFITS or not n or len(mixture) == 1:
            break
        with torch.no_grad():  # the held-out probability as a + b · P_background
            weights, zeros = level_weights(theta, n), torch.zeros(len(windows), dtype=torch.float64)
            offset = _adapted_prob(zeros, levels, *weights)
            slope = _adapted_prob(zeros + 1, levels, *weights) - offset
        mixture = fit_mixture(offset.unsqueeze(1) + slope.unsqueeze(1) * component_probs)
        background_prob = component_probs @ mixture
    share, nested_nll, thetas = nested_cross_validation(windows, fold_of, k, background_prob, n, base)
    with torch.no_grad():
        discounts, strengths, shares = level_weights(theta, n)
        cv_nll = _held_out_nll(background_prob, levels, n, theta).item()
        tables = [backoff_table(levels, *level_weights(t, n), base) for t in [theta, *thetas]]
        table = _bagged_table(tables, base, share)
    record = {"folds": k, "levels": n, "table_share": round(share, 4), "nested_cv_nll": round(nested_nll, 4),
              "discounts": [round(v, 4) for v in discounts.tolist()],
              "strengths": [round(v, 4) for v in strengths.tolist()],
              "shares": [round(v, 4) for v in shares.tolist()], "cv_nll": round(cv_nll, 4),
              "cv_nll_background": round(-background_prob.log().mean().item(), 4), "tokens": len(windows)}
    return table, mixture, record, (theta, share)


def nested_cross_validation(windows: torch.Tensor, fold_of: torch.Tensor, k: int, background_prob: torch.Tensor,
                            n: int, base: int) -> tuple[float, float, list[torch.Tensor]]:
    """The table's share λ (the adapted model is λ · P_table + (1 - λ) · P_background), chosen by nested
    cross-validation. The list's folds are grouped into OUTER_FOLDS outer folds; for each, the table's
    weights are chosen by cross-validation on the other outer folds (on their own folds), and its
    tokens are predicted from the other outer folds' counts with those weights. Unlike the predictions
    that chose the weights, these are honest, so λ, fitted to them by EM, says how far the table is to
    be trusted. Returns λ, the held-out NLL per token at λ, and the weights (θ) fitted without each
    outer fold (averaged in the table: `_bagged_table`)."""
    if not n:  # no level validated: no table to share in, the background alone
        return 1.0, -background_prob.log().mean().item(), []
    outer_k = min(OUTER_FOLDS, k)
    outer_of = fold_of % outer_k  # folds are a seeded shuffle of the words: so are their groups
    outer = list_levels(windows, outer_of, outer_k, base, max_levels=n)
    table_prob = torch.zeros_like(background_prob)
    thetas = []
    for o in range(outer_k):
        inner = outer_of != o
        inner_fold = torch.unique(fold_of[inner], return_inverse=True)[1]
        levels = list_levels(windows[inner], inner_fold, int(inner_fold.max()) + 1, base, max_levels=n)
        theta = minimise(functools.partial(_held_out_nll, background_prob[inner], levels, n),
                         torch.zeros(3 * n, dtype=torch.float64))
        thetas.append(theta)
        with torch.no_grad():
            table_prob[~inner] = _adapted_prob(background_prob, outer, *level_weights(theta, n))[~inner]
    share = 0.5  # (1 is a fixed point of EM)
    for _ in range(EM_STEPS):
        mixed = share * table_prob + (1 - share) * background_prob
        share = (share * table_prob / mixed).mean().item()
    nll = -(share * table_prob + (1 - share) * background_prob).log().mean().item()
    return share, nll, thetas


def _bagged_table(tables: list[BackoffTable], base: int, share: float) -> BackoffTable:
    """One table predicting λ · (the mean of `tables`) + (1 - λ) · P_background, λ = `share`. The tables
    store the same contexts with other weights (the whole list's fit and those without each outer
    fold: averaging them, as bagging does (Breiman 1996), tames a weight that one fit set to "trust the
    list entirely"). A mean of back-off chains is no back-off chain, so each stored context holds its
    whole distribution, affine in the background's: a + b · P_background (α = a, to_base = b, back-off
    weight 0). The next token still depends on the longest stored suffix of the history only."""
    if len(tables) == 1 and share == 1.0:  # nothing to average or share (no level was validated, say)
        return tables[0]
    keys = tables[0].keys
    V = base - 1
    length = torch.zeros_like(keys)
    rest = keys.clone()
    while bool((rest > 0).any()):
        length += (rest > 0).long()
        rest //= base
    lengths = torch.arange(int(length.max()) + 1)
    rows_at_once = max(1, BAGGING_CELLS // V)  # (rows, V) at a time: memory bounded whatever the vocabulary
    slope = torch.zeros(len(keys), dtype=torch.float64)
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (row, token, a) where a > 0
    for start in range(0, len(keys), rows_at_once):
        part, part_length = keys[start : start + rows_at_once], length[start : start + rows_at_once]
        suffixes = torch.where(lengths <= part_length.unsqueeze(1), part.unsqueeze(1) % base**lengths, -1)
        last = (part % base - 1).clamp(min=0)
        uniform, first = torch.full((len(part), V), 1.0 / V), torch.zeros(len(part), V)
        first[:, 0] = 1.0
        offset = torch.zeros(len(part), V, dtype=torch.float64)
        for table in tables:  # each row over two bases: a + b / V, and a + b · [w = 0] (a exactly, but at 0)
            on_uniform = table.add_rows(uniform.clone(), suffixes, last).double()
            on_first = table.add_rows(first.clone(), suffixes, last).double()
            b = (on_first[:, 0] - on_uniform[:, 0]) / (1 - 1 / V)
            on_first[:, 0] -= b
            offset += on_first.clamp(min=0)
            slope[start : start + len(part)] += b
        offset *= share / len(tables)
        row, token = (offset > 1e-9).nonzero(as_tuple=True)
        entries.append((row + start, token, offset[row, token]))
    slope = share * slope / len(tables) + (1 - share)
    row, token, a = (torch.cat(column) for column in zip(*entries))
    return BackoffTable.from_parts(keys, torch.zeros(len(keys)), keys[row] * base + token + 1, a,
                                   base, slope)


def backoff_table(levels: list[dict[str, torch.Tensor]], discounts: torch.Tensor, strengths: torch.Tensor,
           shares: torch.Tensor, base: int) -> BackoffTable:
    """The list's table from the whole list's counts and the chosen weights."""
    keys, backoff, to_base, gram_keys, alpha = [], [], [], [], []
    for j, level in enumerate(levels):  # contexts of j tokens: keys stay sorted level after level
        d, b, rho, total = discounts[j], strengths[j], shares[j], level["all_context"]
        left = (d * level["all_types"] + b) / (total + b)  # the mass the list leaves to what is below it
        keys.append(level["contexts"])
        backoff.append(left * rho if j else left)  # the shortest context's "shorter" is the background
        to_base.append(left * (1 - rho) if j else torch.zeros_like(left))
        gram_keys.append(level["grams"])
        alpha.append((level["all_gram"] - d).clamp(min=0) / (total[level["gram_context"]] + b))
    if not levels:  # no level validated: the empty context passes everything to the background
        return BackoffTable()
    return BackoffTable.from_parts(torch.cat(keys), torch.cat(backoff), torch.cat(gram_keys), torch.cat(alpha), base,
                                   torch.cat(to_base))
