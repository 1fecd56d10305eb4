"""Conditional count models: a bigram or n-gram per label combination, combined with its marginals.

P(name | sex=F, decade=1950s) from counts alone. Counting the names of one combination gives a
model that knows that combination well but is sparse (a rare combination has few names);
counting every name gives the pooled model, dense but blind to labels. Between the two lie the
models of the partial combinations (sex=F in every decade, 1950s of either sex). So every
*node* — every combination of values of a subset of the conditioned labels that occurs in the
training rows, from the root (no label: the pooled model) to the full combinations — gets a
component model of the base type (`bigram-counts`, `bigram` or `ngram`) counted on its rows, and
a node's model is the log-linear interpolation (Klakow 1998) of the components of its ancestors,
itself and the root included:

    log P(c | h, node) = Σ_a θ[node, a] · log P_a(c | h) - log Z(h)

a weighted product of experts (Hinton 2002), as namesmith.models.ngram_mix combines a network
with an n-gram. Against a linear interpolation Σ_a λ_a P_a it fits held-out names as well, and
it keeps the node's character: a next character has to be likely under the node's own model to
be likely under the mixture, so names generated for sex=M are names of boys, where a linear
mixture lets the pooled model add a share of girls' endings at every step (on `us`, of the
generated names that exist, 64% were boys' names with linear weights fitted by EM).

The weights θ are fitted to the likelihood of held-out *training* names, as the n-gram's
discounts are tuned: every 10th distinct training name is held out, each component is counted on
the rest, and θ[node] maximises the likelihood of the node's held-out rows (convex; BFGS), with a
pull of PRIOR_TOKENS tokens towards equal weights (a node without held-out names keeps them).
Then every component is counted on all training rows. A rare combination thus leans on its
marginals and the pooled model; a large one on itself.

A mixture of n-gram models of one order is again an n-gram model of that order, so `given(where)`
is a plain, fitted `NGram` (or a bigram table) — a finite Markov chain on which the sampler's
exact constraints stay exact, that scores, evaluates and samples like any model:

- its contexts are the pooled model's (every context of every component is one of them), and
  each context's row mixes the components' rows for their longest suffixes of it, which is
  exactly what the components predict for any history that ends in it;
- a label left out is marginalised: the request's node is the partial combination (sex=F alone);
- several values (unisex: sex=F and sex=M) multiply their nodes' distributions at every step
  and renormalise (see namesmith.core.conditional).

A combination of values that no training row has mixes those of its ancestors that exist, in
equal parts.

Stored: the counts (order-N n-grams, each weighing its row's weight: `WeightedCounts`) of each full
combination, each node's discounts (n-gram components) and θ. Components are rebuilt from the
counts when first needed (a few hundredths of a second each) and cached; so a checkpoint holds
counts rather than one table per node (for `us`, 2 sexes × 14 decades, 6-grams: 45 nodes, 12 MB).

Classifying a name needs every node's distributions at the name's own positions only. Building the 45
components of `us` for it took 3 s of CPU on every `namesmith classify`. So each node also keeps the rows
of its lowest orders (contexts of up to 2 tokens, while they fit in LOW_ORDER_CELLS): those rows need
the continuation counts of every n-gram. The rows of a name's longer contexts come from the few stored
n-grams that end in those contexts (`_rows_from_counts`, every node at once). They are computed as the
component's table computes them, so classification gives the same posteriors whichever path it takes.
A model saved without these rows classifies from its tables.

Each occurrence of an n-gram counts its row's training weight (namesmith.data.labelled, namesmith.data.tables.weights).

Large vocabularies. A table of names in many scripts (`world`: 1,004 characters, 150,000 contexts)
would need 600 MB for one dense (contexts, V) table, and one per label combination asked for: the
built-in `world` set once took 11 GB and 20 minutes to train. So where the pooled model's table would
pass DENSE_CELLS, every component is the same Kneser-Ney model held sparsely (a back-off weight per
context and an α per n-gram seen: namesmith.models.sparse_ngram), and `given(where)` is a
`ConditionedNGram` that mixes the rows of the contexts it is asked about, when asked. Scoring and
evaluation (`forward`) always mix only the rows of the contexts at hand, whatever the size. The
conditioned models of a large vocabulary are then no finite Markov chain that exact constraints could
use: generation samples and filters instead (namesmith.generation.generate).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch

from namesmith.core.conditional import Condition, Where, check_guidance
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError, DataError
from namesmith.core.history import TrainHistory
from namesmith.core.minimize import minimize
from namesmith.core.progress import Phase
from namesmith.core.vocab import BOUNDARY
from namesmith.models.base import CharModel, Shapes, Sizes, State, boundary_context, dim
from namesmith.models.bigram import BigramConfig, BigramCounts, BigramCountsConfig, BigramLinear, BigramTable
from namesmith.models.ngram import DISCOUNT_LIMITS, MIN_TUNING_WORDS, NGram, NGramConfig
from namesmith.models.nll import mean_nll, target_log_probs
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.models.weighted_kn import (
    WeightedCounts,
    context_count,
    estimated_discounts,
    fit_tables,
    low_order_rows,
    order_counts,
    orders,
    rows_after,
    sparse_table,
    tune_discounts,
)

HELD_OUT_EVERY = 10  # every 10th distinct training name is held out to fit θ (and tune discounts)
MIN_HELD_OUT_NAMES = 20  # with fewer distinct training names nothing is held out: θ is uniform
PRIOR_TOKENS = 10.0  # pull of the equal-weights prior on a node's mixture weights, in held-out tokens
MAX_WEIGHT = 20.0  # mixture weights are kept within ±MAX_WEIGHT
CACHE_SIZE = 8  # aligned tables and conditioned models kept in memory
KEPT_BYTES = 512 << 20  # components kept for good for classification (us: 45 nodes, ~200 MB)
CLASSIFY_CHUNK_BYTES = 64 << 20  # per-position rows of every component held at once when classifying
# Classifying a few names reads their rows off the counts (`_rows_from_counts`) rather than building every
# component's table (us: 45 tables, 3 s); past this many names the tables pay for themselves.
FEW_NAMES = 64
LOW_ORDER_CELLS = 1 << 20  # nodes × rows × V of the lowest orders' rows saved (8 MB of float64) at most
# Component models kept in memory (at least one): scoring a batch of rows of many label combinations
# uses each combination's ancestors, so they are kept by size rather than by number (all 45 of `us`).
COMPONENT_CACHE_BYTES = 256 << 20
ROW_CELLS = 1 << 22  # rows × V of log-probabilities built at a time when fitting θ (16 MB of float32)
# Components and conditioned models keep whole (contexts, V) tables up to this many cells (64 MB); past
# it (a vocabulary of many scripts: `world`, 150,000 contexts × 1,004 characters) they are sparse
# back-off tables whose rows are assembled when asked for (see "Large vocabularies" above).
DENSE_CELLS = 1 << 24
# The component types, with the class that fits each and its config class.
COMPONENTS: dict[str, tuple[type[CharModel], type]] = {
    "bigram-counts": (BigramCounts, BigramCountsConfig),
    "bigram": (BigramLinear, BigramConfig),
    "ngram": (NGram, NGramConfig),
}


class _NearestIndex(NamedTuple):
    """The stored n-grams sorted by their tokens before the last, read nearest first as digits (`nearest`),
    and their positions in the stored order (`order`): the n-grams whose last tokens follow a context are then
    one range (`ConditionalCounts._rows_from_counts`)."""

    nearest: torch.Tensor
    order: torch.Tensor


@dataclass(frozen=True)
class ConditionalCountsConfig:
    """The component type and config, the condition (labels and priors), and the bigram's descent settings."""

    model_type: str
    model: dict[str, Any]
    condition: dict[str, Any]
    train_config: dict[str, Any] | None = None  # `bigram` components: the resolved TrainConfig of their descent


class BigramTableModel(BigramTable):
    """A fixed (V, V) table of log P(next | previous): a conditioned bigram (never saved by itself)."""

    model_type: ClassVar[str] = "bigram-table"
    config_class: ClassVar[type] = dict
    table_name: ClassVar[str] = "table"
    counts_only: ClassVar[bool] = True

    def __init__(self, log_probs: torch.Tensor):
        super().__init__(log_probs.shape[0], {})
        self.register_buffer("table", log_probs.float())

    def log_probs(self) -> torch.Tensor:
        return self.table

    def config_dict(self) -> dict[str, Any]:
        return {}


class ConditionalCounts(CharModel):
    """A count model per node of the label combinations, mixed log-linearly (see the module docstring)."""

    model_type: ClassVar[str] = "conditional-counts"
    config_class: ClassVar[type] = ConditionalCountsConfig
    wrapper: ClassVar[bool] = True  # built by namesmith.training.train around a count model type, not by --model
    counts_only: ClassVar[bool] = True

    def __init__(self, vocab_size: int, config: ConditionalCountsConfig):
        super().__init__(vocab_size, config)
        if config.model_type not in COMPONENTS:
            raise ConfigError(f"conditional count models are built on {', '.join(COMPONENTS)}, "
                              f"not {config.model_type}", field="model")
        component_class, component_config = COMPONENTS[config.model_type]
        self.component_class = component_class
        self.component_config = component_config(**config.model)
        self.condition = Condition.from_dict(config.condition)
        self.order = self.component_config.order if config.model_type == "ngram" else 2
        self.base = vocab_size + 1
        k = len(self.condition)
        self.register_buffer("combo_codes", torch.zeros(0, k, dtype=torch.long))  # (C, k) full combinations
        self.register_buffer("combo_offsets", torch.zeros(1, dtype=torch.long))  # (C+1,) into gram_keys
        self.register_buffer("gram_keys", torch.zeros(0, dtype=torch.long))  # (M,) sorted within each combination
        self.register_buffer("gram_counts", torch.zeros(0, dtype=torch.float64))  # (M,) > 0: summed row weights
        self.register_buffer("node_codes", torch.tensor([self.condition.unknown()], dtype=torch.long).view(1, k))
        self.register_buffer("node_weights", torch.ones(1, 1))  # (S, S): θ[node, component]
        self.register_buffer("node_discounts", torch.zeros(1, self.order, 3))  # (S, N, 3) n-gram components
        # (S, B^(L-1), V) float64: each node's rows after the contexts of fewer than L tokens, L = 2 or 3
        # (`low_order_rows`), or none (0 nodes: not saved by older versions, a large vocabulary, bigram components)
        self.register_buffer("node_low_probs", torch.zeros(0, vocab_size + 1, vocab_size, dtype=torch.float64))
        self._index_nodes()
        self.label_calibrations = None  # generation.calibration.LabelCalibrations: see `set_label_calibrations`
        self._components: OrderedDict[int, CharModel] = OrderedDict()
        self._aligned_probs: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._given: OrderedDict[tuple, CharModel] = OrderedDict()

    @property
    def context_size(self) -> int:
        return self.order - 1

    def train_defaults(self, config: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.component_class.train_defaults(config)  # the seed bigram's descent schedule, for one

    @property
    def component_type(self) -> str:
        return self.config.model_type

    def _index_nodes(self) -> None:
        self._node_of = {tuple(c): i for i, c in enumerate(self.node_codes.tolist())}
        self._components, self._aligned_probs, self._given = OrderedDict(), OrderedDict(), OrderedDict()
        self._kept: dict[int, CharModel] = {}
        self._kept_bytes = 0
        self._sparse: bool | None = None  # see `sparse`
        self._component_bytes: dict[int, int] = {}
        self._member: torch.Tensor | None = None  # see `_members`
        self._index: _NearestIndex | None = None  # see `_counts_index`
        self._combo_of: torch.Tensor | None = None  # (M,) the combination of each stored n-gram

    @property
    def sparse(self) -> bool:
        """Whether components and conditioned models are held sparsely (see "Large vocabularies" above)."""
        if self._sparse is None:
            self._sparse = self._too_large_for_tables(self._node_counts(0))
        return self._sparse

    def _too_large_for_tables(self, root_counts: WeightedCounts) -> bool:
        """Whether the pooled n-gram of these counts would have more than DENSE_CELLS contexts × tokens."""
        return self.component_type == "ngram" and context_count(root_counts) * self.vocab_size > DENSE_CELLS

    def _is_ancestor(self, ancestor: tuple[int, ...], node: tuple[int, ...]) -> bool:
        unknown = self.condition.unknown()
        return all(a in (u, n) for a, n, u in zip(ancestor, node, unknown))

    # --- fitting -------------------------------------------------------------------------------
    def fit(self, corpus: Any, config: Any, callback: Any = None, *, resume: dict | None = None,
            on_checkpoint: Any = None) -> TrainHistory:
        """Count each full combination, fit the discounts and θ on held-out training names, keep the counts."""
        start = time.perf_counter()
        if self.component_type == "bigram":
            keys = ("max_steps", "learning_rate", "learning_rate_end", "weight_decay", "mode", "seed")
            self.config = ConditionalCountsConfig(self.config.model_type, self.config.model, self.config.condition,
                                                  {k: getattr(config, k) for k in keys})
            if config.mode != "full-batch":
                raise ConfigError(f"mode {config.mode}: a conditioned or weighted bigram trains full-batch from "
                                  "pair counts only (train with condition=() and weighting none for the seed's "
                                  "other loops)", field="mode")
        x, y = corpus.word_tensors("train")
        if len(x) == 0:
            raise DataError("no training words to fit on (the training part of the split is empty)")
        codes = corpus.codes["train"]
        weights = torch.from_numpy(corpus.weights["train"])
        held = _held_out_rows(corpus.words("train"))
        starts, combo_of = torch.unique(self.condition.start_tokens(codes, self.vocab_size), return_inverse=True)
        combos = self.condition.codes_of(starts, self.vocab_size)  # (C, k) the full combinations present
        all_counts, held_counts = [], []
        for c in range(len(combos)):
            rows = combo_of == c
            all_counts.append(self._count(x[rows], y[rows], weights[rows]))
            held_counts.append(self._count(x[rows & held], y[rows & held], weights[rows & held]))
        nodes = _nodes(combos, self.condition.unknown())  # (S, k), the root first
        S = len(nodes)
        node_list = [tuple(n) for n in nodes.tolist()]
        members = [[c for c, combo in enumerate(combos.tolist()) if self._is_ancestor(node, tuple(combo))]
                   for node in node_list]
        ancestors = [[a for a in range(S) if self._is_ancestor(node_list[a], node_list[n])] for n in range(S)]
        node_held = [_merge([held_counts[c] for c in members[n]], self._empty()) for n in range(S)]
        self._sparse = self._too_large_for_tables(_merge(all_counts, self._empty()))
        discounts = torch.zeros(S, self.order, 3)
        # the rows of the orders every n-gram's counts feed (orders 1-3 while they fit): classifying a few names
        # then reduces only the few n-grams of the names' longer contexts (`_rows_from_counts`)
        B, V = self.base, self.vocab_size
        levels = 3 if S * B * B * V <= LOW_ORDER_CELLS else 2
        keep_low = self.component_type == "ngram" and not self._sparse and S * B**(levels - 1) * V <= LOW_ORDER_CELLS
        low_probs = torch.zeros(S if keep_low else 0, B ** (levels - 1), V, dtype=torch.float64)
        rest_models: dict[int, CharModel] = {}  # each node's component counted without the held-out names
        phase = Phase("counting the label combinations", S, "combinations")
        for a in range(S):
            phase.advance()
            all_a = _merge([all_counts[c] for c in members[a]], self._empty())
            rest_a = all_a.without(node_held[a])
            discounts[a] = self._discounts(all_a, rest_a, node_held[a])
            if keep_low:
                low_probs[a] = low_order_rows(all_a, discounts[a].double(), levels)
            if len(rest_a.keys):  # else every name of this node is held out: it cannot predict them (weight 0)
                rest_models[a] = self._component(rest_a, discounts[a])
        weights_matrix = torch.zeros(S, S)
        weights_matrix[0, 0] = 1.0  # the root is its own component
        phase = Phase("fitting the mixture weights", S - 1, "combinations")
        for n in range(1, S):  # node by node: only one node's held-out rows (M_node, V) are held at a time
            phase.advance()
            held = node_held[n].keys
            log_probs = [self._context_log_probs(rest_models[a], held) if a in rest_models and len(held) else None
                         for a in ancestors[n]]
            weights_matrix[n, ancestors[n]] = fit_log_linear(log_probs, held % self.base - 1,
                                                             node_held[n].counts).float()
        del rest_models
        self.combo_codes = combos
        self.combo_offsets = torch.tensor([0, *itertools.accumulate(len(c.keys) for c in all_counts)])
        self.gram_keys = torch.cat([c.keys for c in all_counts])
        self.gram_counts = torch.cat([c.counts for c in all_counts])
        self.node_codes, self.node_weights, self.node_discounts = nodes, weights_matrix, discounts
        self.node_low_probs = low_probs
        sparse = self._sparse
        self._index_nodes()
        self._sparse = sparse

        history = TrainHistory(steps=1)  # the training loss is evaluated with the other parts, once
        metrics = {}
        history.seconds = time.perf_counter() - start
        if corpus.words("val"):
            metrics["val_loss"] = self._nll(corpus, "val")
            history.val_loss.append((1, history.seconds, metrics["val_loss"]))
        if callback:
            callback(1, 1, metrics)
        return history

    def _empty(self) -> WeightedCounts:
        return WeightedCounts.empty(self.order, self.vocab_size)

    def _count(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> WeightedCounts:
        """The order-N n-grams of these rows, each occurrence weighing its row's weight (rows of weight 0 skipped)."""
        keep = weights > 0
        x, y, weights = x[keep], y[keep], weights[keep]
        if not len(x):
            return self._empty()
        template = NGram(self.vocab_size, NGramConfig(order=self.order))  # it turns rows into n-gram keys
        row_of_target = (y >= 0).nonzero()[:, 0]  # the row of each target, in the order _windows lists them
        keys = template._gram_keys(template._windows(x, y))[:, -1]
        return WeightedCounts.of(self.order, self.vocab_size, keys, weights[row_of_target], len(x))

    def _discounts(self, all_counts: WeightedCounts, rest: WeightedCounts, held: WeightedCounts) -> torch.Tensor:
        """(N, 3) discounts of a node's n-gram component: tuned on its held-out names where it has enough."""
        if self.component_type != "ngram" or not len(all_counts.keys):
            return torch.zeros(self.order, 3)
        method = self.component_config.discount
        if method == "tuned" and all_counts.n_words >= MIN_TUNING_WORDS and len(held.keys) and len(rest.keys):
            return tune_discounts(rest, held, minimize).float()
        return estimated_discounts(orders(all_counts)[1], method).float()

    def _component(self, counts: WeightedCounts, discounts: torch.Tensor) -> CharModel:
        """A fitted component model of the base type from counts (n-gram: with these discounts)."""
        V = self.vocab_size
        if self.component_type == "ngram" and self.sparse:
            return SparseNGram.from_tables(V, self.order, [], [sparse_table(counts, discounts.double())]).eval()
        if self.component_type == "ngram":
            return fit_tables(NGram(V, self.component_config), counts, discounts.double()).eval()
        pairs = torch.zeros(V * V, dtype=torch.float64)
        B = self.base
        pairs.index_add_(0, (counts.keys // B - 1) * V + counts.keys % B - 1, counts.counts)
        pairs = pairs.view(V, V)
        if self.component_type == "bigram-counts":
            model = BigramCounts(V, self.component_config)
            model.fit_pair_counts(pairs.float())
        else:
            model = BigramLinear(V, self.component_config)
            settings = dict(self.config.train_config or {})
            model.fit_pair_counts(pairs.numpy(), TrainConfig(**{**settings, "device": "cpu"}))
        return model.eval()

    @torch.no_grad()
    def _context_log_probs(self, model: CharModel, keys: torch.Tensor) -> torch.Tensor:
        """(M, V) log P(· | context) under `model` of the context of each order-N n-gram key (float32)."""
        B, K = self.base, self.context_size
        place = B ** torch.arange(K - 1, -1, -1)  # oldest context token first
        out = []
        chunk = max(1, ROW_CELLS // self.vocab_size)
        for i in range(0, len(keys), chunk):
            contexts = (keys[i : i + chunk, None] // B // place) % B - 1  # (M, K)
            out.append(torch.log_softmax(_log_probs_after(model, contexts).float(), -1))
        return torch.cat(out) if out else torch.zeros(0, self.vocab_size)

    # --- components and conditioned models ----------------------------------------------------------
    def _node_counts(self, node: int) -> WeightedCounts:
        combos = [c for c, combo in enumerate(self.combo_codes.tolist())
                  if self._is_ancestor(tuple(self.node_codes[node].tolist()), tuple(combo))]
        offsets = self.combo_offsets.tolist()
        parts = [WeightedCounts(self.order, self.vocab_size, self.gram_keys[offsets[c]:offsets[c + 1]],
                                self.gram_counts[offsets[c]:offsets[c + 1]], 0) for c in combos]
        return _merge(parts, self._empty())

    def component(self, node: int = 0) -> CharModel:
        """The fitted component model of one node (0: the root, the pooled model), cached."""
        if node in self._components:
            self._components.move_to_end(node)
            return self._components[node]
        if not len(self.gram_keys):
            raise ConfigError("this conditional model has not been fitted", field="model")
        model = self._component(self._node_counts(node), self.node_discounts[node].cpu()).to(self.device)
        self._components[node] = model
        self._component_bytes[node] = _model_bytes(model)
        while len(self._components) > 1 and sum(self._component_bytes[n] for n in self._components) \
                > COMPONENT_CACHE_BYTES:
            self._components.popitem(last=False)
        return model

    def _aligned(self, node: int) -> torch.Tensor:
        """(R, V) log-probabilities (float32) of a node's component for each context of the root model, cached."""
        cache = self._aligned_probs
        if node in cache:
            cache.move_to_end(node)
            return cache[node]
        model = self.component(node)
        if self.component_type != "ngram":
            probs = model.log_probs().float()
        elif node == 0:
            probs = model.next_token_logprobs
        else:
            K, B = self.context_size, self.base
            keys = self.component(0).context_keys
            place = B ** torch.arange(K - 1, -1, -1, device=keys.device)
            digits = (keys[:, None] // place) % B  # (R, K), 0 = no token (the context is shorter)
            # a shorter context is not a boundary-padded one: look each context up at its own length
            lengths = (digits > 0).sum(1)
            rows = torch.empty(len(keys), dtype=torch.long, device=keys.device)
            for length in range(K + 1):
                at = (lengths == length).nonzero().squeeze(1)
                if len(at):
                    rows[at] = model._rows(digits[at, K - length:] - 1)
            probs = model.next_token_logprobs[rows]
        cache[node] = probs
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return probs

    def _mixture_parts(self, codes: tuple[int, ...]) -> list[tuple[int, float]]:
        """(component, weight θ) of the log-linear mixture of one combination of codes."""
        node = self._node_of.get(codes)
        if node is not None:
            weights = self.node_weights[node]
            return [(a, float(weights[a])) for a in weights.nonzero().squeeze(1).tolist()]
        # a combination no training row has: its ancestors that exist, in equal parts
        present = [a for a, c in enumerate(self.node_codes.tolist()) if self._is_ancestor(tuple(c), codes)]
        return [(a, 1.0 / len(present)) for a in present]

    def _component_rows(self, node: int, contexts: torch.Tensor) -> torch.Tensor:
        """(N, V) log-probabilities (float32) of a node's component after full contexts (N, K): the rows
        `_aligned` holds for them, built for these contexts alone."""
        if self.component_type != "ngram":
            return self._aligned(node)[contexts[:, -1]]
        return _log_probs_after(self.component(node), contexts).float()

    def _node_mixture(self, codes: tuple[int, ...], rows: Any) -> torch.Tensor:
        """(R, V) log P(next | context, node) (float32) of the log-linear mixture of one combination of codes,
        at the contexts whose component log-probabilities `rows(node)` gives."""
        parts = self._mixture_parts(codes)
        if len(parts) == 1 and parts[0][1] == 1.0:
            return rows(parts[0][0])
        return torch.log_softmax(sum(w * rows(a) for a, w in parts), -1)

    def mixed(self, combinations: list[tuple[int, ...]], guidance: float, rows: Any) -> torch.Tensor:
        """log P(next | context, combinations) (float32), guided, at the contexts whose component
        log-probabilities `rows(node)` gives: every context of the pooled model (`_aligned`, a dense
        table) or the contexts at hand (`_component_rows`). The one rule for both."""
        logprobs = self._node_mixture(combinations[0], rows)
        if len(combinations) > 1:  # several values: multiply their distributions, then renormalise
            logprobs = torch.log_softmax(sum(self._node_mixture(c, rows) for c in combinations), -1)
        if guidance:  # P(c | h, where)^(1+g) / P(c | h)^g, renormalised
            logprobs = torch.log_softmax((1 + guidance) * logprobs - guidance * rows(0), -1)
        return logprobs

    def mixed_after(self, combinations: list[tuple[int, ...]], guidance: float, contexts: torch.Tensor
                    ) -> torch.Tensor:
        """(N, V) `mixed` after full contexts (N, K) only: each component's rows built once, for each distinct
        context (the rows of a batch of names share many: their starts, the padding after the shorter ones)."""
        place = self.base ** torch.arange(contexts.size(-1), device=contexts.device)
        distinct, inverse = torch.unique(((contexts + 1) * place).sum(-1), return_inverse=True)
        if len(distinct) < len(contexts):
            first = torch.zeros(len(distinct), dtype=torch.long, device=contexts.device)
            first.scatter_(0, inverse, torch.arange(len(contexts), device=contexts.device))
            return self.mixed_after(combinations, guidance, contexts[first])[inverse]
        built: dict[int, torch.Tensor] = {}

        def rows(node: int) -> torch.Tensor:
            if node not in built:
                built[node] = self._component_rows(node, contexts)
            return built[node]

        return self.mixed(combinations, guidance, rows)

    def _kept_component(self, node: int) -> CharModel:
        """`component(node)`, kept for good while the kept ones stay within KEPT_BYTES (classification
        asks for every node at every call: rebuilding them each time cost seconds a call)."""
        if node in self._kept:
            return self._kept[node]
        model = self.component(node)
        size = _model_bytes(model)
        if self._kept_bytes + size <= KEPT_BYTES:
            self._kept[node], self._kept_bytes = model, self._kept_bytes + size
        return model

    def keep_component_tables(self) -> None:
        """Build every node's component table and keep it (within KEPT_BYTES): classification then reads rows off
        the tables, faster per call than off the counts once they are built (a server's warm-up)."""
        for node in range(len(self.node_codes)):
            self._kept_component(node)

    def combination_log_likelihoods(self, x: torch.Tensor, y: torch.Tensor,
                                    combinations: list[tuple[int, ...]]) -> torch.Tensor:
        """(B, C) log P(word | combination) (float64) of `encode_words` rows under each combination of codes.

        What scoring each word under `given_codes([c])` gives, without building a (contexts, V) table
        per combination: each component scores the words' own positions once, and each combination mixes
        those rows (what classification needs, for tens of combinations at a time).
        """
        parts = [self._mixture_parts(codes) for codes in combinations]
        nodes = sorted({a for p in parts for a, _ in p})
        T = max(int((y >= 0).sum(1).max()) if len(y) else 1, 1)
        x, y = x[:, :T].to(self.device), y[:, :T].to(self.device)
        rows = max(1, CLASSIFY_CHUNK_BYTES // (4 * len(nodes) * T * self.vocab_size))  # bounds the (B, T, V) rows held
        from_counts = len(x) <= FEW_NAMES and len(self.node_low_probs) == len(self.node_codes) and \
            len(self.node_codes) * self.base**self.order < 1 << 62 and not all(a in self._kept for a in nodes)
        out = []
        for i in range(0, len(x), rows):
            xb, yb = x[i : i + rows], y[i : i + rows]
            with torch.no_grad():
                logp = self._rows_from_counts(nodes, xb) if from_counts else \
                    {a: self._kept_component(a)(xb).float() for a in nodes}
                logp = {a: torch.log_softmax(lp, -1) for a, lp in logp.items()}  # (B, T, V)
            columns = []
            for p in parts:
                mixed = logp[p[0][0]] if len(p) == 1 and p[0][1] == 1.0 else torch.log_softmax(
                    sum(w * logp[a] for a, w in p), -1)
                columns.append(target_log_probs(mixed, yb).double().sum(1))
            out.append(torch.stack(columns, 1))
        return torch.cat(out) if out else torch.zeros(0, len(combinations), dtype=torch.float64)

    def _rows_from_counts(self, nodes: list[int], x: torch.Tensor) -> dict[int, torch.Tensor]:
        """{node: (B, T, V) its component's log-probabilities (float32) at every position of `x`}, read off the
        counts: each node's saved rows of the two lowest orders, then, order by order, the Kneser-Ney rows of
        the positions' own contexts from the few n-grams that end in them (`rows_after`), every node at once
        (a key carries its node above its digits). Equal to the rows of the component's table
        (`component(node)(x)`, the same operations in the same order), without building it."""
        B, V, K, N = self.base, self.vocab_size, self.context_size, self.order
        windows = _live_windows(x, K).reshape(-1, K)  # (B·T, K), oldest token first
        distinct, inverse = torch.unique(((windows + 1) * B ** torch.arange(K - 1, -1, -1)).sum(-1),
                                         return_inverse=True)
        first = torch.zeros(len(distinct), dtype=torch.long).scatter_(0, inverse, torch.arange(len(windows)))
        windows = windows[first]  # (P, K): each distinct context once
        suffixes = torch.cat([windows.new_zeros(len(windows), 1),  # (P, K+1): keys of the last 0..K tokens
                              ((windows.flip(-1) + 1) * B ** torch.arange(K)).cumsum(-1)], -1)
        node_ids = torch.tensor(nodes)
        levels = 2 if self.node_low_probs.size(1) == B else 3  # the saved rows: contexts of fewer tokens than this
        rows = self.node_low_probs[node_ids[:, None], suffixes[None, :, min(K, levels - 1)]]  # (S', P, V) float64
        index = self._counts_index()
        member = self._members()[node_ids]  # (S', C) the combinations each node counts
        nearest = torch.zeros(len(windows), dtype=torch.long)  # the last k-1 tokens, latest most significant
        for k in range(2, N + 1):
            nearest = nearest * B + windows[:, K - k + 1] + 1
            if k <= levels:
                continue
            # every n-gram whose last k tokens follow one of these contexts: all that order k's counts of them
            # need; `index` holds the n-grams by their tokens before the last, nearest first, so they are ranges
            low = torch.unique(nearest) * B ** (N - k)
            starts, ends = (torch.searchsorted(index.nearest, bound) for bound in (low, low + B ** (N - k)))
            lengths = ends - starts
            at = torch.repeat_interleave(starts - torch.cumsum(lengths, 0) + lengths, lengths) + torch.arange(
                int(lengths.sum()))
            chosen = torch.sort(index.order[at]).values  # in stored order: sums add up as the tables' do
            pairs = member[:, self._combo_of[chosen]].nonzero()  # (node, n-gram), node by node
            node_of, gram = pairs[:, 0], chosen[pairs[:, 1]]
            merged = WeightedCounts.of(N, V, node_of * B**N + self.gram_keys[gram], self.gram_counts[gram], 0)
            keys, counts = order_counts(merged, k)
            discounts = self.node_discounts[node_ids, k - 1].double()[keys // B**k]  # (M, 3) each k-gram's node's
            contexts = torch.arange(len(nodes)).unsqueeze(1) * B ** (k - 1) + suffixes[:, k - 1]  # (S', P)
            rows = rows_after(keys, counts, discounts, contexts.reshape(-1), rows.reshape(-1, V), V).view(
                len(nodes), -1, V)
        logp = rows.log().float()[:, inverse].view(len(nodes), *x.shape, V)
        return {a: logp[i] for i, a in enumerate(nodes)}

    def _members(self) -> torch.Tensor:
        """(S, C) bool: which full combinations each node's component counts."""
        if self._member is None:
            self._member = torch.tensor([[self._is_ancestor(tuple(node), tuple(combo))
                                          for combo in self.combo_codes.tolist()] for node in self.node_codes.tolist()],
                                        dtype=torch.bool).view(len(self.node_codes), len(self.combo_codes))
        return self._member

    def _counts_index(self) -> _NearestIndex:
        """The stored n-grams ordered by their tokens before the last, nearest first (built once)."""
        if self._index is None:
            B, N = self.base, self.order
            nearest = torch.zeros_like(self.gram_keys)
            for i in range(1, N):  # the i-th token before the last becomes the i-th most significant digit
                nearest = nearest * B + self.gram_keys // B**i % B
            sorted_nearest, order = torch.sort(nearest)
            self._index = _NearestIndex(sorted_nearest, order)
            self._combo_of = torch.repeat_interleave(torch.arange(len(self.combo_codes)),
                                                     self.combo_offsets[1:] - self.combo_offsets[:-1])
        return self._index

    def set_label_calibrations(self, calibrations: Any) -> None:
        """Tilt each label node's names by its calibration (namesmith.generation.calibration.LabelCalibrations; None:
        untilted): the plain models `given` returns from now on carry their node's."""
        self.label_calibrations = calibrations
        self._given = OrderedDict()

    def given_codes(self, combinations: list[tuple[int, ...]], guidance: float = 0.0) -> CharModel:
        """The plain model of these code combinations (their product when several), guided, cached; one node
        asked unguided is tilted by its calibration where it has one (a product or a guided model is a
        distribution no calibration was fitted to)."""
        key = (tuple(sorted(combinations)), guidance)
        if key in self._given:
            self._given.move_to_end(key)
            return self._given[key]
        calibration = None
        if len(combinations) == 1 and not guidance and self.label_calibrations is not None:
            calibration = self.label_calibrations.of(combinations[0])
        if len(combinations) == 1 and combinations[0] == self.condition.unknown():
            model = self.component(0)  # no label asked: the pooled model itself (guidance changes nothing)
            if calibration is not None:  # a copy, tilted: the component itself stays what the mixtures use
                model = copy.copy(model)
        elif self.sparse:  # no whole table: rows are mixed when asked for
            model = ConditionedNGram(self, combinations, guidance)
        else:
            logprobs = self.mixed(combinations, guidance, self._aligned)
            if self.component_type == "ngram":
                root = self.component(0)
                model = NGram(self.vocab_size, self.component_config)
                model.context_keys = root.context_keys
                model.next_token_logprobs = logprobs.float()
                model.discounts = root.discounts
                # every conditioned model has the root's contexts, so its chain's transitions too: built once
                model._transition_cache = (root.context_keys, root._transitions())
            else:
                model = BigramTableModel(logprobs)
            model = model.to(self.device).eval()
        model.calibration = calibration
        self._given[key] = model
        if len(self._given) > CACHE_SIZE // 2:
            self._given.popitem(last=False)
        return model

    def given(self, where: Where | None = None, guidance: float = 0.0) -> CharModel:
        """The plain model P(name | where): an `NGram` (n-gram components) or a bigram table; with `guidance`,
        the guided one (namesmith.core.conditional)."""
        return self.given_codes(self.condition.where_codes(where), check_guidance(guidance))

    # --- the model interface: rows say their labels with their start token --------------------------
    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V); each row is conditioned on the labels its start token carries."""
        start = idx[:, 0].clamp(min=BOUNDARY)
        plain = start < self.vocab_size  # the boundary token: every label unknown
        start = torch.where(plain, self.condition.start_tokens(self._unknown_codes(1), self.vocab_size), start)
        idx = idx.clone()
        idx[:, 0] = BOUNDARY
        out = torch.empty(*idx.shape, self.vocab_size, device=idx.device)
        groups, group_of = torch.unique(start, return_inverse=True)
        # each group's rows are mixed for its own contexts alone: a whole (contexts, V) table per label
        # combination scored costs contexts × V each (minutes and gigabytes for a vocabulary of many scripts)
        contexts = _windows(idx, self.context_size)  # (B, T, K)
        for g, codes in enumerate(self.condition.codes_of(groups, self.vocab_size).tolist()):
            rows = (group_of == g).nonzero().squeeze(1)
            group_contexts = contexts[rows].reshape(-1, contexts.size(-1))
            out[rows] = self.mixed_after([tuple(codes)], 0.0, group_contexts).view(len(rows), idx.size(1), -1)
        return out

    def _unknown_codes(self, n: int) -> torch.Tensor:
        return torch.tensor([self.condition.unknown()], dtype=torch.long, device=self.device).expand(n, -1)

    def init_state(self, batch_size: int) -> State:
        return self.given().init_state(batch_size)  # the pooled model: every label marginalised

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self.given().step(state, token)

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return self.given().select_state(state, rows)

    def transition_table(self) -> torch.Tensor | None:
        return self.given().transition_table()

    def _nll(self, corpus: Any, part: str) -> float:
        x, y = corpus.tensors(part)
        order = torch.argsort(x[:, 0], stable=True)  # rows of one label combination together share contexts
        return mean_nll(self, x[order], y[order])

    # --- saving --------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        c = self.config
        return {"model_type": c.model_type, "model": dict(c.model), "condition": c.condition,
                "train_config": c.train_config}

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        """The labels and the order (the vocabulary is in the n-gram keys' values: `load_weights` checks it)."""
        c = ConditionalCountsConfig(**config)
        if c.model_type not in COMPONENTS:
            raise ValueError(f"conditional count models are built on {', '.join(COMPONENTS)}, not {c.model_type}")
        order = COMPONENTS[c.model_type][1](**c.model).order if c.model_type == "ngram" else 2
        k = len(Condition.from_dict(c.condition))
        yield "labels", k, dim(shapes, "combo_codes", 1)
        yield "labels", k, dim(shapes, "node_codes", 1)
        yield "order", order, dim(shapes, "node_discounts", 1)

    @classmethod
    def from_config_dict(cls, vocab_size: int, config: dict[str, Any]) -> ConditionalCounts:
        try:
            return cls(vocab_size, ConditionalCountsConfig(**config))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"malformed conditional-counts model config: {e}") from None

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what `weights()` saved: sizes depend on the data, so any consistent size is accepted."""
        names = ("combo_codes", "combo_offsets", "gram_keys", "gram_counts", "node_codes", "node_weights",
                 "node_discounts")
        if set(tensors) - {"node_low_probs"} != set(names):  # older versions saved no low-order rows
            raise CheckpointError(f"weights do not match conditional-counts: expected {list(names)}, "
                                  f"got {sorted(tensors)}")
        t = {name: tensors[name] for name in names}
        V = self.vocab_size
        low = tensors.get("node_low_probs", torch.zeros(0, V + 1, V, dtype=torch.float64))
        k, N = len(self.condition), self.order
        C, S, M = len(t["combo_codes"]), len(t["node_codes"]), len(t["gram_keys"])
        radix = torch.tensor(self.condition.radix)
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
              or not _whole_grams(t["gram_keys"], self.base, N)
              or not _grams_follow_one_another(t["gram_keys"], t["combo_offsets"], self.base, N)):
            problem = (f"n-gram keys or counts are not those of order-{N} n-grams over {self.vocab_size} tokens "
                       "(was the vocabulary edited?)")
        elif (t["node_weights"].shape != (S, S) or not bool(torch.isfinite(t["node_weights"]).all())
              or not bool((t["node_weights"].abs() <= MAX_WEIGHT).all())):
            problem = f"mixture weights must be (nodes, nodes), finite, at most {MAX_WEIGHT} in size"
        elif t["node_discounts"].shape != (S, N, 3) or bool((t["node_discounts"] < 0).any()
                                                              or (t["node_discounts"] > DISCOUNT_LIMITS.float()).any()):
            problem = "discounts out of range"
        elif tuple(t["node_codes"][0].tolist()) != self.condition.unknown():
            problem = "the first node must be the root (every label unknown)"
        elif low.dtype != torch.float64 or low.dim() != 3 or low.shape[1:] not in ((V + 1, V), ((V + 1)**2, V)) \
                or len(low) not in (0, S) or not bool(((low >= 0) & (low <= 1)).all()) \
                or not bool(((low.sum(-1) - 1).abs() < 1e-6).all()):
            problem = f"low-order rows must be (nodes, {V + 1} or {(V + 1)**2}, {V}) float64 distributions, or none"
        if problem:
            raise CheckpointError(f"conditional-counts weights: {problem}")
        for name in names:
            setattr(self, name, t[name].to(self.device, torch.float64 if name == "gram_counts" else t[name].dtype))
        self.node_low_probs = low.to(self.device)
        self._index_nodes()



def _whole_grams(keys: torch.Tensor, base: int, order: int) -> bool:
    """Whether every key holds exactly `order` tokens: `order` digits in base `base`, none of them 0 ("no token";
    a token t is digit t+1). The keys of a vocabulary edited to more characters are read in a larger base, in
    which they have fewer digits (20,000 more: a 3.4 GB table was built from them, then an IndexError)."""
    rest = keys
    for _ in range(order):
        if bool((rest % base == 0).any()):
            return False
        rest = rest // base
    return not bool(rest.any())


def _grams_follow_one_another(keys: torch.Tensor, offsets: torch.Tensor, base: int, order: int) -> bool:
    """Whether, in each combination, every n-gram that does not start with the boundary follows one that ends with
    its first order-1 tokens, as the n-grams of a name follow one another: keys read in another base (a vocabulary
    edited by a character or two) break this almost surely, where their digits alone may still look whole."""
    if order < 2:
        return True
    top = base ** (order - 1)  # the oldest token's place value
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        grams = keys[start:end]
        inner = grams[grams // top != BOUNDARY + 1]  # n-grams whose oldest token is a character
        if not bool(torch.isin(inner // base, grams % top).all()):  # its first order-1 tokens: some n-gram's last
            return False
    return True

class ConditionedNGram(CharModel):
    """P(name | labels) of a conditional n-gram over a large vocabulary (`ConditionalCounts.sparse`): its
    rows are mixed from the components' when asked for, as a dense conditioned model holds them all.
    Its state is the last order-1 tokens. Never saved by itself (its conditional model is)."""

    model_type: ClassVar[str] = "conditioned-ngram"
    config_class: ClassVar[type] = dict
    counts_only: ClassVar[bool] = True

    def __init__(self, conditional: ConditionalCounts, combinations: list[tuple[int, ...]], guidance: float):
        super().__init__(conditional.vocab_size, {})
        self._conditional = [conditional]  # a list, not a submodule: the conditional model is not part of this one
        self.combinations, self.guidance = list(combinations), guidance

    @property
    def context_size(self) -> int:
        return self._conditional[0].context_size

    @property
    def device(self) -> torch.device:
        return self._conditional[0].device

    def config_dict(self) -> dict[str, Any]:
        return {}

    def next_log_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """(N, V) log P(next | the full contexts (N, K), the labels)."""
        return self._conditional[0].mixed_after(self.combinations, self.guidance, contexts)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        contexts = _windows(idx, self.context_size)  # (B, T, K)
        return self.next_log_probs(contexts.reshape(-1, contexts.size(-1))).view(*idx.shape, self.vocab_size)

    def init_state(self, batch_size: int) -> State:
        return boundary_context(batch_size, self.context_size, self.device)  # (B, K): the last K tokens

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        window = torch.cat([state[:, 1:], token.view(-1, 1)], 1) if self.context_size else state
        return self.next_log_probs(window), window


def _model_bytes(model: CharModel) -> int:
    """The memory a component holds: its tensors, and a sparse one's (V + 1, V) table of the α's after
    the shortest contexts, built when first used (namesmith.models.sparse_ngram)."""
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if isinstance(model, SparseNGram):
        size += len(model.components) * (model.vocab_size + 1) * model.vocab_size * 4
    return size


def _windows(idx: torch.Tensor, K: int) -> torch.Tensor:
    """(B, T, K): the K tokens up to and including each position, left-padded with the boundary."""
    padded = torch.cat([boundary_context(len(idx), max(K - 1, 0), idx.device), idx], 1)  # (B, T+K-1)
    return padded.unsqueeze(-1)[..., :0] if K == 0 else padded.unfold(1, K, 1)


def _live_windows(idx: torch.Tensor, K: int) -> torch.Tensor:
    """`_windows`, but a position past the end of a name (a boundary after the first token: the padding
    of a batch of names) reads as the start of a name. Nothing is predicted there, and its rows are then
    built once per batch, not once per padded position (a third of the positions of a batch of names)."""
    windows = _windows(idx, K)
    ended = idx == BOUNDARY
    ended[:, 0] = False
    return torch.where(ended.unsqueeze(-1), torch.full_like(windows, BOUNDARY), windows)


def _log_probs_after(model: CharModel, contexts: torch.Tensor) -> torch.Tensor:
    """(N, V) the next-token log-probabilities (or a bigram's logits) of a component after full contexts
    (N, K), boundary-padded: one row each, not one per position of the context."""
    if isinstance(model, SparseNGram):
        return model.next_token_probs(contexts).log()
    if isinstance(model, NGram):
        return model.next_token_logprobs[model._rows(contexts)]
    return model(contexts)[:, -1]


def _held_out_rows(words: list[str]) -> torch.Tensor:
    """(N,) bool: the rows of every 10th distinct name (in order of first appearance), if there are enough."""
    first: dict[str, int] = {}
    index = [first.setdefault(w, len(first)) for w in words]
    if len(first) < MIN_HELD_OUT_NAMES:
        return torch.zeros(len(words), dtype=torch.bool)
    return torch.tensor(index, dtype=torch.long) % HELD_OUT_EVERY == 0


def _nodes(combos: torch.Tensor, unknown: tuple[int, ...]) -> torch.Tensor:
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


def _merge(parts: list[WeightedCounts], empty: WeightedCounts) -> WeightedCounts:
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
