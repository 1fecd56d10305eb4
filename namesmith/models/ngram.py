"""Character n-gram with interpolated modified Kneser-Ney smoothing (Chen & Goodman 1998).

An order-N model predicts the next token from the previous N-1 tokens; the start of a name is
left-padded with N-1 boundary tokens (0), as everywhere in namesmith. Counts of long contexts
are sparse, so each order interpolates with the next lower one (Kneser & Ney 1995; Chen &
Goodman, "An empirical study of smoothing techniques for language modeling", 1998):

    P_k(w | h) = max(c_k(h w) - D_k(c_k(h w)), 0) / c_k(h)  +  γ_k(h) · P_{k-1}(w | h[1:])
    γ_k(h)     = (D1·N1(h•) + D2·N2(h•) + D3+·N3+(h•)) / c_k(h)    (exactly the mass discounted)

- c_N are raw counts, lower orders use *continuation* counts (c_k(g) = |{x : x g was seen}|), and
  the discounts D1, D2, D3+ of each order come from the counts-of-counts or are tuned on held-out
  words (`discount`: "tuned", the default, "modified-kn", "kn" or a fixed number):
  namesmith.models.kneser_ney says how, and why.
- P_0 is uniform over all V tokens, the end token (0) included: token 0 is a valid *next* token
  (it ends the name), so every name has probability > 0. A context h never seen at order k
  passes straight through: P_k(w | h) = P_{k-1}(w | h[1:]).

Training is counting with tensor ops: every n-gram becomes an int64 key whose digits, base V+1,
are its tokens + 1 (so keys of different lengths never collide), counted with `torch.unique`.
Fitting is count → merge counts → fit from counts: `count` gives the raw top-order counts of some
words (`NGramCounts`), counts of disjoint word sets `merge` exactly, and `fit_counts` derives the
lower orders and the tables from the merged counts alone. So a word list counted in shards, in
worker processes or on the ranks of `torch.distributed` (`namesmith.data.counting.count_ngrams_file`)
gives the same tables, bit for bit, as `fit` on the same words in memory.
The fitted model stores, for every context seen at any order, the full distribution of the next
token (log-probabilities (R, V)) under the sorted context keys (R,). A lookup is one
`searchsorted` for all suffixes of a context at once: the longest suffix seen gives the exact
interpolated distribution, since unseen contexts back off with weight 1. Sampling keeps that row
as its state (KenLM's "longest match" state), so a step is one gather in an (R, V) table of
transitions, built the first time a fitted model samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from namesmith.core.errors import CheckpointError, ConfigError, DataError
from namesmith.core.history import TrainHistory
from namesmith.data.ngram_keys import (
    DEFAULT_ORDER,
    NGramCounts,
    check_order,
    check_order_value,
    default_order,
    distinct_contexts,
    find_sorted,
    held_out_every,
    longest_match_transitions,
    suffix_keys,
)
from namesmith.models.base import (
    CharModel,
    Shapes,
    Sizes,
    State,
    boundary_context,
    check_config,
    context_windows,
    dim,
    ngram_windows,
)
from namesmith.models.kneser_ney import DISCOUNT_METHODS, continuation_counts, fitted_discounts, interpolation
from namesmith.models.nll import counted_grams_nll

EVAL_CHUNK = 1 << 18  # distinct n-grams scored at a time by `nll_counts` (bounds its memory)
ROW_CHUNK = 1 << 16  # contexts whose distributions are built at a time when fitting (bounds its memory)


@dataclass(frozen=True)
class NGramConfig:
    order: int = DEFAULT_ORDER  # the next token depends on the previous order-1 tokens
    discount: str | float = "tuned"  # "tuned", "modified-kn", "kn", or a fixed discount in [0, 1]

    def __post_init__(self) -> None:
        check_order_value(self.order)
        message = (f"discount must be one of {', '.join(DISCOUNT_METHODS)} or a number in [0, 1], "
                   f"got {self.discount!r}")
        discount = self.discount
        if isinstance(discount, str) and discount not in DISCOUNT_METHODS:
            try:
                discount = float(discount)  # "0.75" from a command line or a JSON file
            except ValueError:
                raise ConfigError(message, field="discount") from None
        if not isinstance(discount, str):
            check_config(isinstance(discount, (int, float)) and not isinstance(discount, bool)
                         and 0 <= discount <= 1, message)
            discount = float(discount)
        object.__setattr__(self, "discount", discount)


class NGram(CharModel):
    """Interpolated (modified) Kneser-Ney character n-gram, fitted by counting."""

    model_type: ClassVar[str] = "ngram"
    config_class: ClassVar[type] = NGramConfig
    default_train_config: ClassVar[dict[str, Any]] = {}
    counts_only: ClassVar[bool] = True

    @classmethod
    def make_config(cls, overrides: dict[str, Any], corpus: Any = None) -> NGramConfig:
        """The config for `overrides`; unless they set the order, the default one that fits the corpus' vocabulary."""
        if "order" not in overrides and corpus is not None:
            overrides = {**overrides, "order": default_order(corpus.vocab.size)}
        return NGramConfig(**overrides)

    def __init__(self, vocab_size: int, config: NGramConfig | None = None):
        super().__init__(vocab_size, config or NGramConfig())
        order = self.config.order
        self.base = vocab_size + 1  # token t is digit t+1 of a key, so digit 0 means "no token"
        check_order(order, vocab_size)
        # Before fitting there is only the empty context, with the uniform distribution.
        self.register_buffer("context_keys", torch.zeros(1, dtype=torch.long))  # (R,) sorted
        self.register_buffer("next_token_logprobs", torch.full((1, vocab_size), -math.log(vocab_size)))  # (R, V)
        # (N, 3) D1, D2, D3+ per order, for the record (float32: MPS has no float64)
        self.register_buffer("discounts", torch.zeros(order, 3))
        self._transition_cache: tuple[torch.Tensor, torch.Tensor] | None = None  # see `_transitions`

    @property
    def context_size(self) -> int:
        return self.config.order - 1

    # --- lookup -----------------------------------------------------------------------------
    def _rows(self, contexts: torch.Tensor) -> torch.Tensor:
        """Rows of `next_token_logprobs` for contexts (..., L ≤ K): those of their longest seen suffixes."""
        suffixes = suffix_keys(contexts, self.base)  # (..., L+1)
        pos, found = find_sorted(self.context_keys, suffixes)  # the empty suffix (key 0) is always found
        lengths = torch.arange(suffixes.size(-1), device=contexts.device)
        longest = torch.where(found, lengths, 0).amax(-1, keepdim=True)
        return pos.gather(-1, longest).squeeze(-1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.next_token_logprobs[self._rows(context_windows(idx, self.context_size))]  # (B, T, V)

    # --- incremental generation: the state is a row, as KenLM's state is its longest match ---
    def _transitions(self) -> torch.Tensor:
        """(R, V) the row after token w follows row r's context (`longest_match_transitions`: the longest seen
        suffix of (history + w) is the longest seen suffix of (r's context + w)), built on first use after fitting."""
        cache = self._transition_cache
        if cache is not None and cache[0] is self.context_keys:
            return cache[1]
        table = longest_match_transitions(self.context_keys, self.base, self.context_size, self.vocab_size)
        self._transition_cache = (self.context_keys, table)
        return table

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The model as a finite Markov chain over its rows (for exact conditioning, namesmith.generation.exact):
        next-token log-probabilities (R, V), the next row (R, V), and the row after the boundary that
        starts a name."""
        start = self._transitions()[self.init_state(1), 0]  # token 0: the boundary
        return self.next_token_logprobs, self._transitions(), int(start)

    def chain_states(self) -> int:
        return self.next_token_logprobs.size(0)  # one state per stored row

    def init_state(self, batch_size: int) -> State:
        """(B,) the row of the boundary padding, before the boundary token that starts a name."""
        K = self.context_size
        start = self._rows(boundary_context(1, K - 1, self.device))[0] if K > 0 else 0
        return torch.full((batch_size,), int(start), dtype=torch.long, device=self.device)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        state = self._transitions()[state, token]  # (B,)
        return self.next_token_logprobs[state], state  # (B, V), (B,)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean negative log-likelihood per target token of `encode_words` tensors (end tokens included)."""
        x, y = x.to(self.device), y.to(self.device)
        mask = y >= 0
        if not mask.any():
            return float("nan")
        rows = self._rows(context_windows(x, self.context_size)[mask])
        return -self.next_token_logprobs[rows, y[mask]].cpu().double().mean().item()

    # --- fitting: count, merge counts, fit from counts -----------------------------------------
    def fit(self, corpus: Any, config: Any, callback: Any = None, *, resume: dict | None = None,
            on_checkpoint: Any = None) -> TrainHistory:
        """Count the train split and fit from the counts (closed form: nothing to resume or checkpoint).

        For "tuned" discounts every 10th training word (in the order of the training list; see
        `held_out_every`) is also counted alone, as the held-out words the discounts are tuned on
        (see `fit_counts`).
        """
        start = time.perf_counter()
        assert corpus.vocab.size == self.vocab_size, "corpus and model vocabularies differ"
        x, y = (t.cpu() for t in corpus.tensors("train"))
        every = held_out_every(len(x))
        held_out = self.count(x[::every], y[::every]) if self.config.discount == "tuned" else None
        self.fit_counts(self.count(x, y), held_out)

        history = TrainHistory(steps=1)
        metrics = {"loss": self.nll(x, y)}
        history.train_loss.append((1, metrics["loss"]))
        history.seconds = time.perf_counter() - start
        if corpus.words("val"):
            metrics["val_loss"] = self.nll(*corpus.tensors("val"))
            history.val_loss.append((1, history.seconds, metrics["val_loss"]))
        if callback:
            callback(1, 1, metrics)
        return history

    def count(self, x: torch.Tensor, y: torch.Tensor) -> NGramCounts:
        """Raw counts of the order-N n-grams of `encode_words` tensors: one n-gram per target token."""
        windows = ngram_windows(x.cpu(), y.cpu(), self.config.order)
        keys, counts = torch.unique(suffix_keys(windows, self.base)[:, -1], return_counts=True)
        return NGramCounts(self.config.order, self.vocab_size, keys, counts, len(x))

    def fit_counts(self, train: NGramCounts, held_out: NGramCounts | None = None) -> None:
        """Fit the tables from the raw counts of the training words, however they were counted and merged.

        The result depends on the counts alone, so counts merged from shards, processes or ranks
        give the same tables, bit for bit, as counting every word in one go. With discount "tuned",
        `held_out` counts the subset of the training words to tune on (every 10th training word:
        `fit` and the streamed counting hold out the same ones); the discounts are tuned under a
        model counted on the rest, then used with all of `train`. Without it, or with fewer than
        MIN_TUNING_WORDS training words, the formulas set the discounts.
        """
        for counts in (train, held_out):
            if counts is not None and (counts.order, counts.vocab_size) != (self.config.order, self.vocab_size):
                raise ValueError(f"counts of order {counts.order} over {counts.vocab_size} tokens do not fit an "
                                 f"order-{self.config.order} n-gram over {self.vocab_size} tokens")
        if not len(train.keys):
            raise DataError("no training words to fit the n-gram on (the training part of the split is empty)")
        keys_by_order, counts_by_order = continuation_counts(train)
        discounts = fitted_discounts(train, held_out, self.config.discount, counts_by_order)
        keys, logprobs = self._distributions(keys_by_order, counts_by_order, discounts)
        self.context_keys = keys.to(self.device)
        self.next_token_logprobs = logprobs.to(self.device)
        self.discounts = discounts.to(self.device, torch.float32)

    @torch.no_grad()
    def nll_counts(self, counts: NGramCounts) -> float:
        """Mean negative log-likelihood per token of the words `counts` counted (as `nll` of their tensors).

        Each distinct n-gram is scored once and weighted by its count, so a word list of any size
        is evaluated from its counts (a streamed validation or test part).
        """
        def log_probs(contexts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return self.next_token_logprobs[self._rows(contexts), targets].cpu().double()

        return counted_grams_nll(counts, self.base, self.context_size, log_probs, EVAL_CHUNK, self.device)

    def _distributions(self, keys_by_order: list[torch.Tensor], counts_by_order: list[torch.Tensor],
                       discounts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Context keys (R,) and next-token log-probabilities (R, V) of every context seen, all orders.

        Built a chunk of contexts at a time into the (R, V) float32 table, in float64; an order's
        float64 probabilities are kept whole only while the next order needs them (its parents).
        """
        V, B, N = self.vocab_size, self.base, self.config.order
        logprobs = torch.empty(sum(distinct_contexts(keys, B) for keys in keys_by_order), V)  # (R, V), order by order
        row, all_context_keys = 0, []
        lower_keys = torch.zeros(1, dtype=torch.long)  # order 0: the empty context, uniform
        lower_probs = torch.full((1, V), 1.0 / V, dtype=torch.float64)
        for k, (keys, counts) in enumerate(zip(keys_by_order, counts_by_order), start=1):
            target = keys % B - 1
            # each k-gram's share α and each context's γ(h), the mass discounted (contexts: k-1 tokens)
            context_keys, context_of, share, backoff_weight, _ = interpolation(keys, counts, discounts[k - 1], B)
            all_context_keys.append(context_keys)
            # the lower order's context is this one without its first (oldest) token
            parent = torch.searchsorted(lower_keys, context_keys % B ** max(k - 2, 0))
            probs = torch.empty(len(context_keys), V, dtype=torch.float64) if k < N else None
            # keys are sorted, so each chunk of contexts has a contiguous run of n-grams
            starts = torch.arange(0, len(context_keys) + ROW_CHUNK, ROW_CHUNK).clamp_(max=len(context_keys))
            grams = torch.searchsorted(context_of, starts).tolist()
            for (c0, c1), (g0, g1) in zip(zip(starts.tolist(), starts[1:].tolist()), zip(grams, grams[1:])):
                chunk = lower_probs[parent[c0:c1]]  # (c, V)
                chunk *= backoff_weight[c0:c1, None]
                chunk[context_of[g0:g1] - c0, target[g0:g1]] += share[g0:g1]
                logprobs[row + c0 : row + c1] = chunk.log()  # float64 logs, stored as float32
                if probs is not None:
                    probs[c0:c1] = chunk
            row += len(context_keys)
            lower_keys, lower_probs = context_keys, probs
        # keys of contexts of j tokens lie in [B^(j-1), B^j), so concatenating by order keeps them sorted
        return torch.cat(all_context_keys), logprobs

    # --- saving -----------------------------------------------------------------------------
    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        c = NGramConfig(**config)
        yield "order", c.order, dim(shapes, "discounts", 0)
        yield "vocabulary size", vocab_size, dim(shapes, "next_token_logprobs", 1)

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what `weights()` saved: table sizes depend on the data, so any consistent size is accepted."""
        names = ("context_keys", "next_token_logprobs", "discounts")
        if set(tensors) != set(names):
            raise CheckpointError(f"weights do not match ngram: expected {list(names)}, got {sorted(tensors)}")
        keys, logprobs, discounts = (tensors[name] for name in names)
        V, N = self.vocab_size, self.config.order
        problem = None
        if keys.dtype != torch.long or keys.dim() != 1 or len(keys) == 0:
            problem = f"context_keys must be a non-empty int64 vector, got {keys.dtype} {tuple(keys.shape)}"
        elif not logprobs.is_floating_point() or tuple(logprobs.shape) != (len(keys), V):
            problem = (f"next_token_logprobs has shape {tuple(logprobs.shape)}, expected ({len(keys)}, {V}) "
                       "(vocabulary mismatch?)")
        elif tuple(discounts.shape) != (N, 3):
            problem = f"discounts has shape {tuple(discounts.shape)}, expected ({N}, 3) (order mismatch?)"
        elif keys[0] != 0 or not bool((keys[1:] > keys[:-1]).all()) or keys[-1] >= self.base ** (N - 1):
            problem = f"context_keys are not the sorted keys of contexts of at most {N - 1} tokens (order mismatch?)"
        elif not bool((logprobs.double().logsumexp(1).abs() < 1e-3).all()):
            problem = "next_token_logprobs rows are not normalised distributions"
        if problem:
            raise CheckpointError(f"ngram weights: {problem}")
        self.context_keys = keys.to(self.device)
        self.next_token_logprobs = logprobs.to(self.device, torch.float32)
        self.discounts = discounts.to(self.device, torch.float32)
