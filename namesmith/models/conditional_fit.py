"""Fitting a conditional count model (namesmith.models.conditional_counts): its counts, discounts and θ.

The weights θ are fitted to the likelihood of held-out *training* names, as the n-gram's
discounts are tuned: every 10th distinct training name is held out, each component is counted on
the rest, and θ[node] maximises the likelihood of the node's held-out rows (convex; BFGS), with a
pull of PRIOR_TOKENS tokens towards equal weights (a node without held-out names keeps them).
Then every component is counted on all training rows. A rare combination thus leans on its
marginals and the pooled model; a large one on itself.

The pieces: `held_out_rows`, `count_combinations`, `label_nodes`, `node_discounts`, `build_component`,
`fit_log_linear`; `fit_nodes` runs them and gives the model its buffers (`Fitted`), which `fitted_problem`
checks when a saved model is loaded.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import torch

from namesmith.core.config import TrainConfig
from namesmith.core.minimize import minimize
from namesmith.core.progress import Phase
from namesmith.data.ngram_keys import gram_tokens, grams_follow_one_another, suffix_keys, whole_grams
from namesmith.models.base import CharModel, ngram_windows
from namesmith.models.bigram import BigramCounts, BigramLinear
from namesmith.models.conditioned import log_probs_after
from namesmith.models.kneser_ney import DISCOUNT_LIMITS, MIN_TUNING_WORDS
from namesmith.models.ngram import NGram
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.models.weighted_kn import (
    WeightedCounts,
    estimated_discounts,
    fit_tables,
    low_order_rows,
    orders,
    sparse_table,
    tune_discounts,
)

HELD_OUT_EVERY = 10  # every 10th distinct training name is held out to fit θ (and tune discounts)
MIN_HELD_OUT_NAMES = 20  # with fewer distinct training names nothing is held out: θ is uniform
PRIOR_TOKENS = 10.0  # pull of the equal-weights prior on a node's mixture weights, in held-out tokens
MAX_WEIGHT = 20.0  # mixture weights are kept within ±MAX_WEIGHT
LOW_ORDER_CELLS = 1 << 20  # nodes × rows × V of the lowest orders' rows saved (8 MB of float64) at most
ROW_CELLS = 1 << 22  # rows × V of log-probabilities built at a time when fitting θ (16 MB of float32)


class Fitted(NamedTuple):
    """What fitting gives a conditional count model: its buffers (see `ConditionalCounts.__init__`), and
    whether its components are held sparsely."""

    combo_codes: torch.Tensor
    combo_offsets: torch.Tensor
    gram_keys: torch.Tensor
    gram_counts: torch.Tensor
    node_codes: torch.Tensor
    node_weights: torch.Tensor
    node_discounts: torch.Tensor
    node_low_probs: torch.Tensor
    sparse: bool


def is_ancestor(ancestor: tuple[int, ...], node: tuple[int, ...], unknown: tuple[int, ...]) -> bool:
    """Whether `ancestor` is `node` with some of its labels unknown (the root is every node's ancestor)."""
    return all(a in (u, n) for a, n, u in zip(ancestor, node, unknown))


def count_rows(order: int, vocab_size: int, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor
               ) -> WeightedCounts:
    """The order-N n-grams of these rows, each occurrence weighing its row's weight (rows of weight 0 skipped)."""
    keep = weights > 0
    x, y, weights = x[keep], y[keep], weights[keep]
    if not len(x):
        return WeightedCounts.empty(order, vocab_size)
    row_of_target = (y >= 0).nonzero()[:, 0]  # the row of each target, in the order ngram_windows lists them
    keys = suffix_keys(ngram_windows(x, y, order), vocab_size + 1)[:, -1]
    return WeightedCounts.of(order, vocab_size, keys, weights[row_of_target], len(x))


def count_combinations(model: CharModel, corpus: Any
                       ) -> tuple[torch.Tensor, list[WeightedCounts], list[WeightedCounts]]:
    """(C, k) the full combinations of the training rows of `corpus`, and each one's n-gram counts: of all its
    rows, and of its held-out rows. `model` is the `ConditionalCounts` being fitted."""
    x, y = corpus.word_tensors("train")
    codes = corpus.codes["train"]
    weights = torch.from_numpy(corpus.weights["train"])
    held = held_out_rows(corpus.words("train"))
    starts, combo_of = torch.unique(model.condition.start_tokens(codes, model.vocab_size), return_inverse=True)
    combos = model.condition.codes_of(starts, model.vocab_size)  # (C, k) the full combinations present
    all_counts, held_counts = [], []
    for c in range(len(combos)):
        rows = combo_of == c
        all_counts.append(count_rows(model.order, model.vocab_size, x[rows], y[rows], weights[rows]))
        held_counts.append(count_rows(model.order, model.vocab_size, x[rows & held], y[rows & held],
                                      weights[rows & held]))
    return combos, all_counts, held_counts


def fit_nodes(model: CharModel, corpus: Any) -> Fitted:
    """Count each full combination, fit each node's discounts and θ on held-out training names, keep the counts.
    `model` is the `ConditionalCounts` being fitted: its condition, sizes and `build_component`."""
    combos, all_counts, held_counts = count_combinations(model, corpus)
    empty = WeightedCounts.empty(model.order, model.vocab_size)
    unknown = model.condition.unknown()
    nodes = label_nodes(combos, unknown)  # (S, k), the root first
    S = len(nodes)
    node_list = [tuple(n) for n in nodes.tolist()]
    members = [[c for c, combo in enumerate(combos.tolist()) if is_ancestor(node, tuple(combo), unknown)]
               for node in node_list]
    ancestors = [[a for a in range(S) if is_ancestor(node_list[a], node_list[n], unknown)] for n in range(S)]
    node_held = [merge_counts([held_counts[c] for c in members[n]], empty) for n in range(S)]
    sparse = model.too_large_for_tables(merge_counts(all_counts, empty))
    discounts = torch.zeros(S, model.order, 3)
    # the rows of the orders every n-gram's counts feed (orders 1-3 while they fit): classifying a few names
    # then reduces only the few n-grams of the names' longer contexts (`CountsIndex.rows`)
    B, V = model.base, model.vocab_size
    levels = 3 if S * B * B * V <= LOW_ORDER_CELLS else 2
    keep_low = model.component_type == "ngram" and not sparse and S * B**(levels - 1) * V <= LOW_ORDER_CELLS
    low_probs = torch.zeros(S if keep_low else 0, B ** (levels - 1), V, dtype=torch.float64)
    rest_models: dict[int, CharModel] = {}  # each node's component counted without the held-out names
    phase = Phase("counting the label combinations", S, "combinations")
    for a in range(S):
        phase.advance()
        all_a = merge_counts([all_counts[c] for c in members[a]], empty)
        rest_a = all_a.without(node_held[a])
        discounts[a] = node_discounts(model, all_a, rest_a, node_held[a])
        if keep_low:
            low_probs[a] = low_order_rows(all_a, discounts[a].double(), levels)
        if len(rest_a.keys):  # else every name of this node is held out: it cannot predict them (weight 0)
            rest_models[a] = build_component(model, rest_a, discounts[a], sparse)
    weights_matrix = torch.zeros(S, S)
    weights_matrix[0, 0] = 1.0  # the root is its own component
    phase = Phase("fitting the mixture weights", S - 1, "combinations")
    for n in range(1, S):  # node by node: only one node's held-out rows (M_node, V) are held at a time
        phase.advance()
        held = node_held[n].keys
        log_probs = [context_log_probs(model, rest_models[a], held) if a in rest_models and len(held) else None
                     for a in ancestors[n]]
        weights_matrix[n, ancestors[n]] = fit_log_linear(log_probs, held % model.base - 1,
                                                         node_held[n].counts).float()
    del rest_models
    return Fitted(combos, torch.tensor([0, *itertools.accumulate(len(c.keys) for c in all_counts)]),
                  torch.cat([c.keys for c in all_counts]), torch.cat([c.counts for c in all_counts]),
                  nodes, weights_matrix, discounts, low_probs, sparse)


def build_component(model: CharModel, counts: WeightedCounts, discounts: torch.Tensor, sparse: bool) -> CharModel:
    """A fitted component model of `model`'s base type from counts (n-gram: with these discounts; `sparse`: held
    sparsely)."""
    V = model.vocab_size
    if model.component_type == "ngram" and sparse:
        return SparseNGram.from_tables(V, model.order, [], [sparse_table(counts, discounts.double())]).eval()
    if model.component_type == "ngram":
        return fit_tables(NGram(V, model.component_config), counts, discounts.double()).eval()
    pairs = torch.zeros(V * V, dtype=torch.float64)
    B = model.base
    pairs.index_add_(0, (counts.keys // B - 1) * V + counts.keys % B - 1, counts.counts)
    pairs = pairs.view(V, V)
    if model.component_type == "bigram-counts":
        component = BigramCounts(V, model.component_config)
        component.fit_pair_counts(pairs.float())
    else:
        component = BigramLinear(V, model.component_config)
        settings = dict(model.config.train_config or {})
        component.fit_pair_counts(pairs.numpy(), TrainConfig(**{**settings, "device": "cpu"}))
    return component.eval()


def node_discounts(model: CharModel, all_counts: WeightedCounts, rest: WeightedCounts, held: WeightedCounts
                   ) -> torch.Tensor:
    """(N, 3) discounts of a node's n-gram component: tuned on its held-out names where it has enough."""
    if model.component_type != "ngram" or not len(all_counts.keys):
        return torch.zeros(model.order, 3)
    method = model.component_config.discount
    if method == "tuned" and all_counts.n_words >= MIN_TUNING_WORDS and len(held.keys) and len(rest.keys):
        return tune_discounts(rest, held, minimize).float()
    return estimated_discounts(orders(all_counts)[1], method).float()


@torch.no_grad()
def context_log_probs(model: CharModel, component: CharModel, keys: torch.Tensor) -> torch.Tensor:
    """(M, V) log P(· | context) under `component` of the context of each order-N n-gram key (float32)."""
    out = []
    chunk = max(1, ROW_CELLS // model.vocab_size)
    for i in range(0, len(keys), chunk):
        contexts, _ = gram_tokens(keys[i : i + chunk], model.base, model.context_size)  # (M, K)
        out.append(torch.log_softmax(log_probs_after(component, contexts).float(), -1))
    return torch.cat(out) if out else torch.zeros(0, model.vocab_size)


def held_out_rows(words: list[str]) -> torch.Tensor:
    """(N,) bool: the rows of every 10th distinct name (in order of first appearance), if there are enough."""
    first: dict[str, int] = {}
    index = [first.setdefault(w, len(first)) for w in words]
    if len(first) < MIN_HELD_OUT_NAMES:
        return torch.zeros(len(words), dtype=torch.bool)
    return torch.tensor(index, dtype=torch.long) % HELD_OUT_EVERY == 0


def label_nodes(combos: torch.Tensor, unknown: tuple[int, ...]) -> torch.Tensor:
    """(S, k) every projection of the full combinations onto a subset of the labels; the root first."""
    k = len(unknown)
    seen: dict[tuple[int, ...], None] = {}
    for size in range(k + 1):  # the root, then one fixed label, two, ...
        for fixed in itertools.combinations(range(k), size):
            for combo in combos.tolist():
                node = tuple(combo[j] if j in fixed else unknown[j] for j in range(k))
                seen.setdefault(node, None)
    if not seen:
        seen[tuple(unknown)] = None
    return torch.tensor(list(seen), dtype=torch.long).view(len(seen), k)


def merge_counts(parts: list[WeightedCounts], empty: WeightedCounts) -> WeightedCounts:
    parts = [p for p in parts if len(p.keys)]
    if not parts:
        return empty
    return parts[0].merge(*parts[1:]) if len(parts) > 1 else parts[0]


def fit_log_linear(log_probs: list[torch.Tensor | None], targets: torch.Tensor, weights: torch.Tensor
                   ) -> torch.Tensor:
    """Weights θ of the log-linear mixture log P ∝ Σ_a θ_a log P_a maximising the weighted likelihood of
    held-out n-grams (`targets` after the contexts whose rows are `log_probs[a]`, (M, V) each).

    The negative log-likelihood is convex in θ (a log-sum-exp of linear functions minus a linear
    one), so BFGS finds its minimum. A penalty of PRIOR_TOKENS pseudo-tokens pulls θ towards equal
    weights summing to 1 (the geometric mean), which a node without held-out rows keeps. A
    component that could not be counted without the held-out names (None) gets weight 0.
    """
    A = len(log_probs)
    usable = [a for a, lp in enumerate(log_probs) if lp is not None]
    theta = torch.zeros(A, dtype=torch.float64)
    if not usable:
        theta[:] = 1.0 / A
        return theta
    prior = torch.full((len(usable),), 1.0 / len(usable), dtype=torch.float64)
    if not len(targets):
        theta[usable] = prior
        return theta
    L = torch.stack([log_probs[a] for a in usable]).double()  # (A', M, V)
    target_log_probs = L.gather(2, targets.view(1, -1, 1).expand(len(usable), -1, 1)).squeeze(2)  # (A', M)
    w = weights.double() / weights.double().sum()
    strength = PRIOR_TOKENS / float(weights.double().sum())

    def loss_and_grad(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.detach().requires_grad_()
        with torch.enable_grad():
            mixed = torch.einsum("a,amv->mv", t, L)
            nll = -(w * (t @ target_log_probs - torch.logsumexp(mixed, 1))).sum()
            loss = nll + strength * ((t - prior) ** 2).sum()
            (grad,) = torch.autograd.grad(loss, t)
        return loss.detach(), grad

    theta[usable] = minimize(loss_and_grad, prior.clone()).clamp(-MAX_WEIGHT, MAX_WEIGHT)
    return theta


def fitted_problem(model: CharModel, t: dict[str, torch.Tensor], low: torch.Tensor) -> str | None:
    """What is wrong with the fitted buffers `t` (and the low-order rows `low`) of a saved conditional count
    model, if anything: sizes, ranges, and keys that are not whole n-grams of this vocabulary."""
    V = model.vocab_size
    k, N = len(model.condition), model.order
    C, S, M = len(t["combo_codes"]), len(t["node_codes"]), len(t["gram_keys"])
    radix = torch.tensor(model.condition.radix)
    integer = all(t[n].dtype == torch.long for n in ("combo_codes", "combo_offsets", "gram_keys", "node_codes"))
    problem = None
    if not integer:
        problem = "keys and codes must be int64"
    elif t["combo_codes"].shape != (C, k) or t["node_codes"].shape != (S, k) or S == 0:
        problem = f"label codes do not fit the {k} conditioned labels"
    elif bool((t["combo_codes"] < 0).any() or (t["combo_codes"] >= radix - 1).any()
              or (t["node_codes"] < 0).any() or (t["node_codes"] >= radix).any()):
        problem = "label codes out of range"
    elif (t["combo_offsets"].shape != (C + 1,) or t["combo_offsets"][0] != 0 or t["combo_offsets"][-1] != M
          or bool((t["combo_offsets"][1:] < t["combo_offsets"][:-1]).any())):
        problem = "combination offsets are inconsistent with the n-gram counts"
    elif (t["gram_counts"].shape != (M,) or not t["gram_counts"].is_floating_point()
          or not bool(torch.isfinite(t["gram_counts"]).all()) or bool((t["gram_counts"] <= 0).any())
          or not whole_grams(t["gram_keys"], model.base, N)
          or not grams_follow_one_another(t["gram_keys"], t["combo_offsets"], model.base, N)):
        problem = (f"n-gram keys or counts are not those of order-{N} n-grams over {model.vocab_size} tokens "
                   "(was the vocabulary edited?)")
    elif (t["node_weights"].shape != (S, S) or not bool(torch.isfinite(t["node_weights"]).all())
          or not bool((t["node_weights"].abs() <= MAX_WEIGHT).all())):
        problem = f"mixture weights must be (nodes, nodes), finite, at most {MAX_WEIGHT} in size"
    elif t["node_discounts"].shape != (S, N, 3) or bool((t["node_discounts"] < 0).any()
                                                          or (t["node_discounts"] > DISCOUNT_LIMITS.float()).any()):
        problem = "discounts out of range"
    elif tuple(t["node_codes"][0].tolist()) != model.condition.unknown():
        problem = "the first node must be the root (every label unknown)"
    elif low.dtype != torch.float64 or low.dim() != 3 or low.shape[1:] not in ((V + 1, V), ((V + 1)**2, V)) \
            or len(low) not in (0, S) or not bool(((low >= 0) & (low <= 1)).all()) \
            or not bool(((low.sum(-1) - 1).abs() < 1e-6).all()):
        problem = f"low-order rows must be (nodes, {V + 1} or {(V + 1)**2}, {V}) float64 distributions, or none"
    return problem
