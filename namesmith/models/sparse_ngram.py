"""A character n-gram stored sparsely: for large vocabularies, and for a small list over a prior.

`namesmith.models.ngram` keeps, for every context it saw, the whole next-token distribution: an
(R, V) table. That is fast and fine for one alphabet, but the catalogue's names (namesmith.adaptation.prior)
hold about 1,000 characters in 20 scripts and 290,000 contexts of up to 5 characters: 290,000 ×
1,000 floats would be more than a gigabyte. Interpolated Kneser-Ney has a sparse form: a context costs
one back-off weight plus one weight per token seen after it (namesmith.models.backoff_table's
`BackoffTable`), and the distribution after any history is assembled when it is asked for.

A `SparseNGram` is tables chained over a mixture of tables:

- the *components*, each a table over the uniform distribution of the V tokens (the end token
  included, so no name has probability 0), mixed with fixed weights. One component is a plain
  Kneser-Ney n-gram; the catalogue prior (namesmith.adaptation.prior) has one of all
  its names and one per group of names, weighted 1, 0, ... until a list re-weighs them;
- the *tables*, each sitting on the distribution of the next one, the last on the mixture:
  namesmith.adaptation.adapt puts the table of a small list's counts there (its weights chosen by
  cross-validation), and "more like these" another one on top.

- optionally a *class table* on top (`by_class`): each token has a class (an adapted list's: the
  end token, or the script of a character), and a back-off table over sequences of classes says how
  the next token's class is distributed after the classes of the context; each class's share of the
  rows below is scaled to it. So a model of 2-character Chinese names can know that a name ends after
  two characters, whichever they are.

Each table's rows are renormalised, so a prior restricted to fewer characters (namesmith.adaptation.adapt drops
the scripts a list does not use) is still a distribution. Whatever the tables, the next token
depends on the last order-1 tokens only, through the longest of them that some table stores (and
their classes): the model is a finite Markov chain over its stored contexts, or over the reachable
pairs (stored context, classes of the last order-1 tokens) with a class table (`markov_chain`), so
exact constraints (namesmith.generation.exact) apply where the chain is small enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from namesmith.core.errors import CheckpointError
from namesmith.data.ngram_keys import DEFAULT_ORDER, check_order, find_sorted, longest_match_transitions, suffix_keys
from namesmith.models.backoff_table import (
    ROWS_CHUNK,
    TABLE_FIELDS,
    TOKEN_CHUNK,
    BackoffTable,
    rows_at_once,
)
from namesmith.models.base import (
    CharModel,
    Shapes,
    Sizes,
    State,
    boundary_context,
    check_config,
    context_windows,
    count_numbered,
    dim,
)
from namesmith.models.nll import counted_grams_nll
from namesmith.models.sparse_rows import SparseRows, as_arrays

MAX_CHAIN_CELLS = 1 << 23  # states × tokens up to which the model gives itself as a Markov chain


@dataclass(frozen=True)
class SparseNGramConfig:
    order: int = DEFAULT_ORDER  # the next token depends on the previous order-1 tokens
    tables: int = 0  # back-off tables chained over the mixture (an adapted model's lists)
    components: int = 1  # back-off tables mixed at the bottom (1: a plain n-gram; the prior has one per name group)
    classes: int = 0  # token classes of the class table on top (0: none; an adapted list's scripts and the end)

    def __post_init__(self) -> None:
        check_config(isinstance(self.order, int) and not isinstance(self.order, bool) and self.order >= 1,
                     f"--order must be an integer of at least 1, got {self.order!r}")
        for name, least in (("tables", 0), ("components", 1), ("classes", 0)):
            value = getattr(self, name)
            check_config(isinstance(value, int) and not isinstance(value, bool) and value >= least,
                         f"{name} must be an integer of at least {least}, got {value!r}")


class SparseNGram(CharModel):
    """A chain of sparse back-off tables over a uniform base (see the module docstring)."""

    model_type: ClassVar[str] = "sparse-ngram"
    config_class: ClassVar[type] = SparseNGramConfig
    counts_only: ClassVar[bool] = True
    wrapper: ClassVar[bool] = True  # built by adaptation.prior and adaptation.adapt, not trained with --model

    def __init__(self, vocab_size: int, config: SparseNGramConfig | None = None):
        super().__init__(vocab_size, config or SparseNGramConfig())
        self.base = vocab_size + 1
        check_order(self.config.order, vocab_size)
        self.tables = nn.ModuleList(BackoffTable() for _ in range(self.config.tables))
        self.components = nn.ModuleList(BackoffTable() for _ in range(self.config.components))
        self.register_buffer("mixture", torch.full((self.config.components,), 1.0 / self.config.components))
        self.classes: BackoffTable | None = None
        if self.config.classes:
            self.register_buffer("class_of", torch.zeros(vocab_size, dtype=torch.long))  # (V,) each token's class
            self.classes = BackoffTable()  # over the classes: tokens are classes, contexts class sequences
        self._chain_cache: list | None = None  # see `markov_chain`
        self._rows_cache: tuple | None = None  # see `numpy_rows`

    @classmethod
    def from_tables(cls, vocab_size: int, order: int, tables: list[BackoffTable], components: list[BackoffTable],
                    mixture: torch.Tensor | None = None,
                    classes: tuple[torch.Tensor, BackoffTable] | None = None) -> SparseNGram:
        """A model of `tables` chained over the mixture of `components` (weights `mixture`; default:
        equal), and `classes` on top: (each token's class (V,), the table over class sequences)."""
        n_classes = int(classes[0].max()) + 1 if classes is not None else 0
        model = cls(vocab_size, SparseNGramConfig(order=order, tables=len(tables), components=len(components),
                                                  classes=n_classes))
        model.tables, model.components = nn.ModuleList(tables), nn.ModuleList(components)
        if mixture is not None:
            model.mixture = mixture.to(torch.float32)
        if classes is not None:
            model.class_of, model.classes = classes[0].to(torch.long), classes[1]
        return model

    @property
    def context_size(self) -> int:
        return self.config.order - 1

    # --- the distributions ------------------------------------------------------------------
    def next_token_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """(N, V) P(next | the last order-1 tokens) for contexts (N, order-1)."""
        out, at_once = [], rows_at_once(self.vocab_size)
        for i in range(0, len(contexts), at_once):
            chunk = contexts[i : i + at_once]
            rows = self._probs(suffix_keys(chunk, self.base), chunk[:, -1] if self.context_size else None)
            out.append(rows if self.classes is None else self.by_class(rows, self.class_of[chunk]))
        return torch.cat(out) if out else torch.zeros(0, self.vocab_size, device=contexts.device)

    def _probs(self, keys: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
        """(N, V) the distributions after histories given by their suffix keys (N, L) and latest tokens."""
        rows = self.mixture_probs(keys, last)
        for table in reversed(self.tables):  # each table sits on the one after it, the last on the mixture
            rows = table.add_rows(rows, keys, last)
        return rows

    def by_class(self, rows: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """`rows` (N, V) with each class's share replaced by the class table's: P(w | h) · P_class(class
        of w | classes of h) / P(class of w | h), where the class table, given the classes of the
        context's tokens (N, order-1), smooths towards P(class | h), the rows' own share of each class."""
        class_of = self.class_of
        shares = torch.zeros(len(rows), self.config.classes, device=rows.device).index_add_(1, class_of, rows)
        wanted = self.classes.add_rows(shares.clone(), suffix_keys(classes, self.config.classes + 1),
                                       classes[:, -1] if self.context_size else None)
        rows = rows * (wanted / shares.clamp(min=1e-30))[:, class_of]
        return rows / rows.sum(-1, keepdim=True)

    def mixture_probs(self, keys: torch.Tensor, last: torch.Tensor | None) -> torch.Tensor:
        """(N, V) the mixture of the components' distributions, each over the uniform base."""
        rows = torch.zeros(len(keys), self.vocab_size, device=keys.device)
        for weight, table in zip(self.mixture.tolist(), self.components):
            if weight > 0:
                uniform = torch.full_like(rows, 1.0 / self.vocab_size)
                rows.add_(table.add_rows(uniform, keys, last), alpha=weight)
        return rows

    @torch.no_grad()
    def nll_counts(self, counts: Any) -> float:
        """Mean negative log-likelihood per token of the words some `NGramCounts` counted (as the dense
        n-gram's `nll_counts`): each distinct n-gram scored once, weighted by its count. A plain
        Kneser-Ney table (what a long list is fitted as) scores each n-gram's own token only
        (`BackoffTable.token_probs`), not its whole row: 18M distinct n-grams in seconds, not minutes."""
        plain = not len(self.tables) and len(self.components) == 1 and self.classes is None

        def log_probs(contexts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            if plain:
                probs = self.components[0].token_probs(suffix_keys(contexts, self.base), targets, self.vocab_size)
            else:
                probs = self.next_token_probs(contexts).gather(1, targets.unsqueeze(1)).squeeze(1)
            return probs.double().log().cpu()

        chunk = TOKEN_CHUNK if plain else max(1, ROWS_CHUNK * 64 // self.vocab_size)
        return counted_grams_nll(counts, self.base, self.context_size, log_probs, chunk, self.device)

    def numpy_rows(self, allowed: np.ndarray | None = None) -> SparseRows:
        """Its rows in NumPy (namesmith.models.sparse_rows), restricted to the tokens `allowed` (None: all), made of
        its own tensors; kept until the tables change."""
        buffers, letters = list(self.buffers()), None if allowed is None else allowed.tobytes()
        kept = self._rows_cache
        if (kept is None or kept[0] != letters or len(kept[1]) != len(buffers)
                or any(a is not b for a, b in zip(kept[1], buffers))):
            rows = SparseRows(as_arrays(self.state_dict()), self.config_dict(), self.vocab_size, allowed)
            kept = self._rows_cache = (letters, buffers, rows)
        return kept[2]

    # --- the model as a finite Markov chain (exact constraints: namesmith.generation.exact) ---------------
    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The model as a finite Markov chain over its stored contexts, or None when that chain would
        have more than MAX_CHAIN_CELLS states × tokens (namesmith.generation.generate then samples and filters).

        The state is the longest suffix of the history that any table stores. Every table's own
        longest stored suffix of the history is a suffix of it (a shorter stored suffix is stored in
        the union too), so the state fixes the next-token distribution, and the state after token c
        is the longest stored suffix of (state, c): that one token longer if stored, else the
        parent's (the state without its oldest token) transition, since the stored contexts are
        closed under taking suffixes. Built by context length, as the dense n-gram's transitions.
        With a class table, the state is a pair (`_class_chain`).
        """
        largest = max(len(t.keys) for t in (*self.tables, *self.components))  # the union has at least as many
        if largest * self.vocab_size > MAX_CHAIN_CELLS or len(self._states()) * self.vocab_size > MAX_CHAIN_CELLS:
            return None  # (a long list's 9M contexts: their union is not built for nothing when it is saved)
        return self._chain() if self.classes is None else self._class_chain()

    def _class_chain(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """The chain of a model with a class table: its state is the pair (the tables' state, the
        classes of the last order-1 tokens), which fixes the rows and the class table's context. Only
        the pairs reachable from the start of a name are built (None: more than MAX_CHAIN_CELLS cells)."""
        if self._chain_cache[3] is not None:
            return self._chain_cache[3] or None  # False: too many pairs
        log_probs, next_state, start = self._chain()
        C, K, V, device = self.config.classes, self.context_size, self.vocab_size, log_probs.device
        Q = C**K  # class contexts: the latest token's class the least significant digit
        if len(log_probs) * Q >= 1 << 62:  # pair codes would not fit int64 (a long order, many scripts)
            self._chain_cache[3] = False
            return None

        def after(pairs: torch.Tensor) -> torch.Tensor:
            """(P, V) the pair after each token: the tables' next state, the classes shifted by the token's."""
            return next_state[pairs // Q] * Q + ((pairs % Q * C).unsqueeze(1) + self.class_of) % Q

        codes = frontier = torch.tensor([start * Q], device=device)  # the start: K boundaries, class 0
        while len(frontier):
            successors = torch.unique(after(frontier)[:, 1:])  # the end token leads nowhere
            frontier = successors[~torch.isin(successors, codes)]
            codes = torch.unique(torch.cat([codes, frontier]))
            if len(codes) * V > MAX_CHAIN_CELLS:
                self._chain_cache[3] = False
                return None
        classes = codes.unsqueeze(1) // C ** torch.arange(K - 1, -1, -1, device=device) % C  # (P, K), oldest first
        at_once = rows_at_once(V)
        rows = torch.cat([self.by_class(log_probs[codes[i : i + at_once] // Q].exp(), classes[i : i + at_once])
                          for i in range(0, len(codes), at_once)])
        pair_next = torch.searchsorted(codes, after(codes).clamp(max=int(codes[-1])))
        pair_next[:, 0] = 0  # after the end token: never read
        chain = (rows.log(), pair_next, int(torch.searchsorted(codes, torch.tensor(start * Q, device=device))))
        self._chain_cache[3] = chain
        return chain

    def _states(self) -> torch.Tensor:
        """Sorted keys of every context stored in any table or component (kept until the tables change)."""
        keys = [t.keys for t in (*self.tables, *self.components)]
        cache = self._chain_cache
        if cache is None or len(cache[0]) != len(keys) or any(a is not b for a, b in zip(cache[0], keys)):
            self._chain_cache = cache = [keys, torch.unique(torch.cat(keys)), None, None]
        return cache[1]

    def _chain(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(log-probabilities (S, V), next state (S, V), the state after the boundary starting a name)."""
        states = self._states()
        if self._chain_cache[2] is not None:
            return self._chain_cache[2]
        B, K, V, S = self.base, self.context_size, self.vocab_size, len(states)
        device = states.device
        length = torch.zeros(S, dtype=torch.long, device=device)  # tokens in each state
        rest = states.clone()
        while bool((rest > 0).any()):
            length += (rest > 0).long()
            rest //= B
        lengths = torch.arange(K + 1, device=device)
        place = B ** lengths  # the suffix of i tokens of a key is key % B^i
        keys = torch.where(lengths <= length.unsqueeze(1), states.unsqueeze(1) % place, -1)  # (S, K+1): -1 never found
        last = (states % B - 1).clamp(min=0)
        at_once = rows_at_once(V)
        log_probs = torch.cat([self._probs(keys[i : i + at_once], last[i : i + at_once]).log()
                               for i in range(0, S, at_once)])
        next_state = longest_match_transitions(states, B, K, V)
        boundary = suffix_keys(boundary_context(1, K, device), B)  # K boundary tokens before a name
        pos, found = find_sorted(states, boundary)
        before = int(pos[0, int(torch.where(found[0], lengths, 0).max())])
        chain = (log_probs, next_state, int(next_state[before, 0]))
        self._chain_cache[2] = chain
        return chain

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        contexts = context_windows(idx, self.context_size)  # (B, T, K)
        probs = self.next_token_probs(contexts.reshape(idx.numel(), contexts.size(-1)))
        return probs.log().view(*idx.shape, self.vocab_size)  # (B, T, V) log-probabilities

    def init_state(self, batch_size: int) -> State:
        return boundary_context(batch_size, self.context_size, self.device)  # (B, K): the last K tokens

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        window = torch.cat([state[:, 1:], token.view(-1, 1)], 1) if self.context_size else state
        return self.next_token_probs(window).log(), window

    # --- saving -----------------------------------------------------------------------------
    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        """The counts of tables and components, and the vocabulary where a class table holds one class per
        token (contexts and tokens are values, not shapes: `BackoffTable.check` bounds them by the vocabulary)."""
        c = SparseNGramConfig(**config)
        yield "tables", c.tables, count_numbered(shapes, "tables.", ".keys")
        yield "components", c.components, count_numbered(shapes, "components.", ".keys")
        yield "components", c.components, dim(shapes, "mixture", 0)
        yield "class table", c.classes > 0, "class_of" in shapes
        if c.classes:
            yield "vocabulary size", vocab_size, dim(shapes, "class_of", 0)

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what `weights()` saved: table sizes depend on the data, so any consistent size is accepted."""
        groups = [("tables", self.tables), ("components", self.components)]
        expected = {f"{group}.{i}.{name}" for group, tables in groups for i in range(len(tables))
                    for name in TABLE_FIELDS} | {"mixture"}
        if self.classes is not None:
            expected |= {"class_of"} | {f"classes.{name}" for name in TABLE_FIELDS}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise CheckpointError(f"weights do not match sparse-ngram with {self.config.tables} table(s) and "
                                  f"{self.config.components} component(s): {len(missing)} missing "
                                  f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}), {len(extra)} "
                                  f"unexpected ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
        mixture = tensors["mixture"]
        if (tuple(mixture.shape) != (self.config.components,) or not mixture.is_floating_point()
                or float(mixture.min()) < 0 or abs(float(mixture.sum()) - 1) > 1e-3):
            raise CheckpointError("sparse-ngram mixture weights must be one non-negative weight per component, "
                                  "adding up to 1")
        for group, tables in groups:
            for i, table in enumerate(tables):
                if tensors[f"{group}.{i}.next"].dtype != torch.int32:
                    raise CheckpointError(f"sparse-ngram {group} {i}: next must be int32")
                table.set(*(tensors[f"{group}.{i}.{name}"] for name in TABLE_FIELDS))
                table.check(self.vocab_size, self.config.order, f"sparse-ngram {group} {i}")
        self.mixture = mixture.to(self.device, torch.float32)
        if self.classes is not None:
            class_of, C = tensors["class_of"], self.config.classes
            if (class_of.dtype != torch.long or tuple(class_of.shape) != (self.vocab_size,) or int(class_of[0]) != 0
                    or int(class_of.min()) < 0 or int(class_of.max()) >= C):
                raise CheckpointError(f"sparse-ngram class_of must give each of the {self.vocab_size} tokens a class "
                                      f"in [0, {C}), the end token class 0")
            if tensors["classes.next"].dtype != torch.int32:
                raise CheckpointError("sparse-ngram classes: next must be int32")
            self.class_of = class_of.to(self.device)
            self.classes.set(*(tensors[f"classes.{name}"] for name in TABLE_FIELDS))
            self.classes.check(C, self.config.order, "sparse-ngram classes")
