"""Whole-name calibration: a model's names tilted towards the training list's lengths and endings.

Character models get each next character right and the whole name wrong: the order-6 n-gram of
names.txt draws three times too many names of three characters or fewer. Rosenfeld, Chen & Zhu
(2001), "Whole-sentence exponential language models", fix such a model P with global features
f of the whole sentence:

    P'(x) = P(x) · exp(λ·f(x)) / Z,    Z = Σ_x P(x) · exp(λ·f(x)) = E_P[exp(λ·f)]

Here f is one-hot: the name's length (lengths 0..L-1 each, L and longer pooled) and, optionally,
its last character at its length (lengths 0..E-1 each, E and longer pooled). λ·f(x) depends on
the cell (min(|x|, T), last token) only (T = max(L, E); the empty name's last token is the
boundary), so this module keeps λ·f - log Z as one (T+1, V) table, `log_weights`, and
everything a model needs to be tilted is its distribution over those cells
(namesmith.training.calibrate fits λ from it). A name's calibrated log-probability is its model
log-probability plus its cell's entry: one addition per name (namesmith.scoring.evaluate).

Sampling stays exact: a finite Markov chain's states each know their last token, so the weight
becomes a weight on ending in a state at a length (`chain_end_log_weights`), which the exact
sampler's backward pass folds in as it does min_len; any other sampler's draws are kept with
probability exp(λ·f(x) - log Z - bound) (`tilted_draws`: rejection sampling, whose cost is known
because the features are bounded: 1/acceptance ≤ exp(bound)).

A conditional model (namesmith.models.conditional_counts) samples and scores with the model of a label
node (sex=F; sex=F and decade=1950s; the root, every label marginalised): `LabelCalibrations` holds a
tilt per node, each fitted to its own model and its own training names, so P'(x | node) is normalised
node by node and Bayes' rule over nodes (namesmith.scoring.classify) compares normalised likelihoods.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesmith.core.errors import CheckpointError
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.generation.draws import Batch

if TYPE_CHECKING:
    import torch

FEATURES = ("length", "length+end")  # what a calibration's features are


@dataclass(frozen=True)
class Calibration:
    """The tilt exp(λ·f(x)) / Z of a model's names (see the module docstring)."""

    length_weights: tuple[float, ...]  # (L + 1,): λ of lengths 0..L-1, then of L and longer
    end_weights: tuple[tuple[float, ...], ...]  # (E + 1, V): λ of (length, last token), or () for none
    log_z: float  # log E_P[exp(λ·f)]
    log_z_error: float = 0.0  # its standard error (0 where it is exact)
    method: str = "exact"  # "exact" (dynamic programming over the model's chain) or "sampled" (its draws)
    sigma2: float = 1.0  # the Gaussian prior's variance of each λ, chosen on validation

    @property
    def features(self) -> str:
        return "length+end" if self.end_weights else "length"

    @functools.cached_property
    def log_weight_table(self) -> np.ndarray:
        """(T + 1, V) float64: λ·f - log Z of a name of length min(ℓ, T) ending in each token (NumPy: a
        calibrated count model samples without torch, docs/startup.md)."""
        lengths = np.array(self.length_weights, dtype=np.float64)
        ends = np.array(self.end_weights, dtype=np.float64) if self.end_weights else np.zeros((1, 1))
        T = max(len(lengths), len(ends)) - 1
        ell = np.arange(T + 1)
        table = lengths[np.minimum(ell, len(lengths) - 1)][:, None] + ends[np.minimum(ell, len(ends) - 1)]
        return np.broadcast_to(table, (T + 1, ends.shape[1] if self.end_weights else 1)) - self.log_z

    @functools.cached_property
    def log_weights(self) -> torch.Tensor:
        """`log_weight_table` as a tensor."""
        import torch

        return torch.from_numpy(self.log_weight_table)

    @property
    def longest_cell(self) -> int:
        """T: names of this length or longer share their cells."""
        return self.log_weight_table.shape[0] - 1

    @functools.cached_property
    def bound(self) -> float:
        """The largest λ·f - log Z of any name (rejection keeps a draw with exp(its own - bound))."""
        return float(self.log_weight_table.max())

    def cell_log_weights(self, lengths: torch.Tensor, last_tokens: torch.Tensor) -> torch.Tensor:
        """λ·f - log Z of names with these lengths and last tokens (both (N,) long)."""
        table = self.log_weights
        return table[lengths.clamp(max=self.longest_cell), last_tokens.clamp(max=table.size(1) - 1)]

    def counted_log_weight(self, cells: torch.Tensor | np.ndarray) -> float:
        """Σ λ·f - log Z over words counted by cell: `cells` (ℓ, V) the words by length (that many or more in the
        last row, at least T) and last token."""
        T, counts = self.longest_cell, np.asarray(cells, dtype=np.float64)
        folded = np.concatenate([counts[:T], counts[T:].sum(0, keepdims=True)])
        return float((folded * self.log_weight_table).sum())  # a length-only tilt's one column: the same for any token

    def word_tilts(self, words: Sequence[str], vocab: Vocab) -> np.ndarray:
        """λ·f(x) - log Z of each word, float64 (N,): what calibration adds to its log-probability."""
        table = self.log_weight_table
        lengths = np.minimum(np.array([len(w) for w in words], dtype=np.intp), self.longest_cell)
        last = np.array([vocab.stoi.get(w[-1], BOUNDARY) if w else BOUNDARY for w in words], dtype=np.intp)
        return table[lengths, np.minimum(last, table.shape[1] - 1)]

    def word_log_weights(self, words: Sequence[str], vocab: Vocab) -> torch.Tensor:
        """`word_tilts` as a tensor."""
        import torch

        return torch.from_numpy(self.word_tilts(words, vocab))

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "length_weights": list(self.length_weights),
                "end_weights": [list(row) for row in self.end_weights], "log_z": self.log_z,
                "log_z_error": self.log_z_error, "method": self.method, "sigma2": self.sigma2}

    @classmethod
    def from_dict(cls, record: Any, vocab_size: int) -> Calibration:
        """A saved calibration, checked (CheckpointError says what is wrong)."""
        try:
            lengths = tuple(float(w) for w in record["length_weights"])
            ends = tuple(tuple(float(w) for w in row) for row in record["end_weights"])
            calibration = cls(lengths, ends, float(record["log_z"]), float(record.get("log_z_error", 0.0)),
                              str(record.get("method", "exact")), float(record.get("sigma2", 1.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"the calibration entry is malformed ({e})") from None
        if not lengths or any(len(row) != vocab_size for row in ends):
            raise CheckpointError(f"the calibration entry does not fit a vocabulary of {vocab_size} tokens")
        if not all(math.isfinite(w) for w in (*lengths, *(w for row in ends for w in row), calibration.log_z)):
            raise CheckpointError("the calibration entry holds a value that is not finite")
        return calibration


@dataclass(frozen=True)
class LabelCalibrations:
    """A conditional model's tilt of each label node it calibrated, by the node's label codes (a value index
    per label, the label's unknown code where the node leaves it out); a node without one is untilted."""

    nodes: dict[tuple[int, ...], Calibration]

    def of(self, codes: tuple[int, ...]) -> Calibration | None:
        return self.nodes.get(tuple(codes))

    def row_log_weights(self, codes: torch.Tensor, words: Sequence[str], vocab: Vocab) -> torch.Tensor:
        """λ·f(x) - log Z of each row's word under its own node's tilt (codes (N, k)), 0 for a node without
        one: what calibration adds to a labelled row's log-probability (float64 (N,))."""
        import torch

        out = torch.zeros(len(words), dtype=torch.float64)
        groups, group_of = torch.unique(codes.cpu(), dim=0, return_inverse=True)
        for g, node in enumerate(groups.tolist()):
            calibration = self.of(tuple(node))
            if calibration is not None:
                rows = (group_of == g).nonzero().squeeze(1)
                out[rows] = calibration.word_log_weights([words[i] for i in rows.tolist()], vocab)
        return out

    def combination_log_weights(self, words: Sequence[str], vocab: Vocab,
                                combinations: Sequence[tuple[int, ...]]) -> np.ndarray:
        """(N, C) λ·f - log Z of each word under each combination's tilt (0 for one without), float64."""
        out = np.zeros((len(words), len(combinations)))
        for c, codes in enumerate(combinations):
            calibration = self.of(codes)
            if calibration is not None:
                out[:, c] = calibration.word_tilts(words, vocab)
        return out

    def to_dict(self, condition: Any) -> dict[str, Any]:
        """Each node by its `where` ({} for the root): readable, and independent of the codes' order."""
        return {"nodes": [{"where": condition.where_of(codes), **calibration.to_dict()}
                          for codes, calibration in self.nodes.items()]}

    @classmethod
    def from_dict(cls, record: Any, vocab_size: int, condition: Any) -> LabelCalibrations:
        """Saved label calibrations, checked against the model's labels (CheckpointError says what is wrong)."""
        if not isinstance(record, dict) or not isinstance(record.get("nodes"), list):
            raise CheckpointError("the label calibration entry needs a list of nodes")
        nodes = {}
        for entry in record["nodes"]:
            where = entry.get("where") if isinstance(entry, dict) else None
            if not isinstance(where, dict) or not all(isinstance(v, str) for v in where.values()) or any(
                    label not in condition.labels or value not in condition.labels[label]
                    for label, value in where.items()):
                raise CheckpointError(f"the label calibration entry names a node the model's labels lack: "
                                      f"{where!r:.80}")
            nodes[condition.where_codes(where)[0]] = Calibration.from_dict(entry, vocab_size)
        return cls(nodes)


def word_cells(words: Sequence[str], vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """Each word's length and last token ((N,) long each): the boundary for the empty word, and for a
    character outside the vocabulary (an adapted model's open vocabulary: no end weight of its own)."""
    import torch

    lengths = torch.tensor([len(w) for w in words], dtype=torch.long)
    last = torch.tensor([vocab.stoi.get(w[-1], BOUNDARY) if w else BOUNDARY for w in words], dtype=torch.long)
    return lengths, last


def last_tokens(next_state: torch.Tensor, possible: torch.Tensor, start: int) -> torch.Tensor | None:
    """The token every step into each state of a chain is taken by ((S,) long; the boundary for the start
    state and states never entered), or None when some state is entered by two different tokens."""
    import torch

    S, V = next_state.shape
    tokens = torch.arange(V).expand(S, V)
    moves = possible.clone()
    moves[:, BOUNDARY] = False
    into, by = next_state[moves], tokens[moves]
    lowest = torch.full((S,), V, dtype=torch.long).scatter_reduce(0, into, by, "amin")
    highest = torch.full((S,), -1, dtype=torch.long).scatter_reduce(0, into, by, "amax")
    entered = highest >= 0
    if (lowest[entered] != highest[entered]).any() or (entered[start] and int(highest[start]) != BOUNDARY):
        return None
    return torch.where(entered, highest, torch.full_like(highest, BOUNDARY))


def chain_end_log_weights(calibration: Calibration, next_state: torch.Tensor, probs: torch.Tensor,
                          start: int) -> torch.Tensor | None:
    """(T + 1, S) float64: λ·f - log Z of a name that ends in chain state s at length min(ℓ, T) (None: some
    state does not know its last token, so the tilt is no weight on states)."""
    last = last_tokens(next_state, probs > 0, start)
    if last is None:
        return None
    return calibration.log_weights[:, last.clamp(max=calibration.log_weights.size(1) - 1)]


def tilted_draws(run: Callable[[int, float | None], Batch | None], calibration: Calibration, vocab: Vocab,
                 seed: int) -> Callable[[int, float | None], Batch | None]:
    """A sampler of the calibrated model from one of the model's own: each draw x is kept with probability
    exp(λ·f(x) - log Z - bound), the others are marked `rejected` (rejection sampling: exact). Since
    E_P[exp(λ·f - log Z)] = 1, it keeps exp(-bound) of the draws on average; the search loop sizes its
    batches by the acceptance it sees, as for any filter, and its draws count against --max-tries."""
    generator = np.random.default_rng(seed)

    def tilted(size: int, deadline: float | None) -> Batch | None:
        drawn = run(size, deadline)
        if drawn is None or not drawn.names:
            return drawn
        keep = np.log(generator.random(len(drawn.names))) < (
            calibration.word_tilts(drawn.names, vocab) - calibration.bound)
        finished = drawn.finished.copy()
        rejected = np.zeros(len(finished), dtype=bool) if drawn.rejected is None else drawn.rejected.copy()
        rows = np.flatnonzero(finished)
        finished[rows[~keep]], rejected[rows[~keep]] = False, True
        return Batch([name for name, k in zip(drawn.names, keep) if k], finished, rejected,
                     drawn.effective_sample_size)

    return tilted
