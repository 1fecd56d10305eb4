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

The weights θ are fitted to the likelihood of held-out *training* names (namesmith.models.conditional_fit).

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

Classifying a few names reads each node's rows at the names' own positions off the stored counts
(namesmith.models.conditional_rows), with the same posteriors as the components' tables give.

Each occurrence of an n-gram counts its row's training weight (namesmith.data.labelled, namesmith.data.tables.weights).

Large vocabularies: where the pooled model's table would pass DENSE_CELLS, components are sparse
Kneser-Ney models and `given(where)` mixes rows when asked (namesmith.models.conditioned).
"""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from namesmith.core.conditional import Condition, Where, check_guidance
from namesmith.core.errors import CheckpointError, ConfigError, DataError
from namesmith.core.history import TrainHistory
from namesmith.core.vocab import BOUNDARY
from namesmith.models.base import CharModel, Shapes, Sizes, State, context_windows, dim
from namesmith.models.bigram import BigramConfig, BigramCounts, BigramCountsConfig, BigramLinear
from namesmith.models.conditional_fit import build_component, fit_nodes, fitted_problem, is_ancestor, merge_counts
from namesmith.models.conditional_rows import CountsIndex, combination_log_likelihoods
from namesmith.models.conditioned import (
    BigramTableModel,
    ConditionedNGram,
    log_probs_after,
    model_bytes,
)
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import mean_nll
from namesmith.models.weighted_kn import (
    WeightedCounts,
    context_count,
)

CACHE_SIZE = 8  # aligned tables and conditioned models kept in memory
KEPT_BYTES = 512 << 20  # components kept for good for classification (us: 45 nodes, ~200 MB)
# Component models kept in memory (at least one): scoring a batch of rows of many label combinations
# uses each combination's ancestors, so they are kept by size rather than by number (all 45 of `us`).
COMPONENT_CACHE_BYTES = 256 << 20
# Components and conditioned models keep whole (contexts, V) tables up to this many cells (64 MB); past
# it (a vocabulary of many scripts: `world`, 150,000 contexts × 1,004 characters) they are sparse
# back-off tables whose rows are assembled when asked for (namesmith.models.conditioned).
DENSE_CELLS = 1 << 24
# The component types, with the class that fits each and its config class.
COMPONENTS: dict[str, tuple[type[CharModel], type]] = {
    "bigram-counts": (BigramCounts, BigramCountsConfig),
    "bigram": (BigramLinear, BigramConfig),
    "ngram": (NGram, NGramConfig),
}


@dataclass(frozen=True)
class ConditionalCountsConfig:
    """The component type and config, the condition (labels and priors), and the bigram's descent settings."""

    model_type: str
    model: dict[str, Any]
    condition: dict[str, Any]
    train_config: dict[str, Any] | None = None  # `bigram` components: the resolved TrainConfig of their descent


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
        self.kept: dict[int, CharModel] = {}
        self._kept_bytes = 0
        self._sparse: bool | None = None  # see `sparse`
        self._component_bytes: dict[int, int] = {}
        self._counts_index: CountsIndex | None = None  # see `combination_log_likelihoods`

    @property
    def sparse(self) -> bool:
        """Whether components and conditioned models are held sparsely (namesmith.models.conditioned)."""
        if self._sparse is None:
            self._sparse = self.too_large_for_tables(self.node_counts(0))
        return self._sparse

    def too_large_for_tables(self, root_counts: WeightedCounts) -> bool:
        """Whether the pooled n-gram of these counts would have more than DENSE_CELLS contexts × tokens."""
        return self.component_type == "ngram" and context_count(root_counts) * self.vocab_size > DENSE_CELLS

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
        if not corpus.words("train"):
            raise DataError("no training words to fit on (the training part of the split is empty)")
        fitted = fit_nodes(self, corpus)
        self.combo_codes, self.combo_offsets = fitted.combo_codes, fitted.combo_offsets
        self.gram_keys, self.gram_counts = fitted.gram_keys, fitted.gram_counts
        self.node_codes, self.node_weights, self.node_discounts = (fitted.node_codes, fitted.node_weights,
                                                                   fitted.node_discounts)
        self.node_low_probs = fitted.node_low_probs
        self._index_nodes()
        self._sparse = fitted.sparse

        history = TrainHistory(steps=1)  # the training loss is evaluated with the other parts, once
        metrics = {}
        history.seconds = time.perf_counter() - start
        if corpus.words("val"):
            metrics["val_loss"] = self._nll(corpus, "val")
            history.val_loss.append((1, history.seconds, metrics["val_loss"]))
        if callback:
            callback(1, 1, metrics)
        return history

    # --- components and conditioned models ----------------------------------------------------------
    def node_counts(self, node: int) -> WeightedCounts:
        """The n-gram counts of one node's rows: those of every full combination it is an ancestor of."""
        combos = [c for c, combo in enumerate(self.combo_codes.tolist())
                  if is_ancestor(tuple(self.node_codes[node].tolist()), tuple(combo), self.condition.unknown())]
        offsets = self.combo_offsets.tolist()
        parts = [WeightedCounts(self.order, self.vocab_size, self.gram_keys[offsets[c]:offsets[c + 1]],
                                self.gram_counts[offsets[c]:offsets[c + 1]], 0) for c in combos]
        return merge_counts(parts, WeightedCounts.empty(self.order, self.vocab_size))

    def component(self, node: int = 0) -> CharModel:
        """The fitted component model of one node (0: the root, the pooled model), cached."""
        if node in self._components:
            self._components.move_to_end(node)
            return self._components[node]
        if not len(self.gram_keys):
            raise ConfigError("this conditional model has not been fitted", field="model")
        model = build_component(self, self.node_counts(node), self.node_discounts[node].cpu(), self.sparse)
        model = model.to(self.device)
        self._components[node] = model
        self._component_bytes[node] = model_bytes(model)
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

    def mixture_parts(self, codes: tuple[int, ...]) -> list[tuple[int, float]]:
        """(component, weight θ) of the log-linear mixture of one combination of codes."""
        node = self._node_of.get(codes)
        if node is not None:
            weights = self.node_weights[node]
            return [(a, float(weights[a])) for a in weights.nonzero().squeeze(1).tolist()]
        # a combination no training row has: its ancestors that exist, in equal parts
        unknown = self.condition.unknown()
        present = [a for a, c in enumerate(self.node_codes.tolist()) if is_ancestor(tuple(c), codes, unknown)]
        return [(a, 1.0 / len(present)) for a in present]

    def _component_rows(self, node: int, contexts: torch.Tensor) -> torch.Tensor:
        """(N, V) log-probabilities (float32) of a node's component after full contexts (N, K): the rows
        `_aligned` holds for them, built for these contexts alone."""
        if self.component_type != "ngram":
            return self._aligned(node)[contexts[:, -1]]
        return log_probs_after(self.component(node), contexts).float()

    def _node_mixture(self, codes: tuple[int, ...], rows: Any) -> torch.Tensor:
        """(R, V) log P(next | context, node) (float32) of the log-linear mixture of one combination of codes,
        at the contexts whose component log-probabilities `rows(node)` gives."""
        parts = self.mixture_parts(codes)
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

    def counts_rows(self, nodes: list[int], x: torch.Tensor) -> dict[int, torch.Tensor]:
        """`CountsIndex.rows` of these nodes at every position of `x`, the index built once."""
        if self._counts_index is None:
            self._counts_index = CountsIndex(self)
        return self._counts_index.rows(self, nodes, x)

    def kept_component(self, node: int) -> CharModel:
        """`component(node)`, kept for good while the kept ones stay within KEPT_BYTES (classification
        asks for every node at every call: rebuilding them each time cost seconds a call)."""
        if node in self.kept:
            return self.kept[node]
        model = self.component(node)
        size = model_bytes(model)
        if self._kept_bytes + size <= KEPT_BYTES:
            self.kept[node], self._kept_bytes = model, self._kept_bytes + size
        return model

    def keep_component_tables(self) -> None:
        """Build every node's component table and keep it (within KEPT_BYTES): classification then reads rows off
        the tables, faster per call than off the counts once they are built (a server's warm-up)."""
        for node in range(len(self.node_codes)):
            self.kept_component(node)

    def combination_log_likelihoods(self, x: torch.Tensor, y: torch.Tensor,
                                    combinations: list[tuple[int, ...]]) -> torch.Tensor:
        """(B, C) log P(word | combination) (float64) of `encode_words` rows under each combination of codes.

        What scoring each word under `given_codes([c])` gives, without building a (contexts, V) table
        per combination: each component scores the words' own positions once, and each combination mixes
        those rows (what classification needs, for tens of combinations at a time).
        """
        return combination_log_likelihoods(self, x, y, combinations)

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
        contexts = context_windows(idx, self.context_size)  # (B, T, K)
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
        problem = fitted_problem(self, t, low)
        if problem:
            raise CheckpointError(f"conditional-counts weights: {problem}")
        for name in names:
            setattr(self, name, t[name].to(self.device, torch.float64 if name == "gram_counts" else t[name].dtype))
        self.node_low_probs = low.to(self.device)
        self._index_nodes()
