"""A sparse n-gram's next-token distributions assembled in NumPy: sampling an adapted model without torch.

An adapted list's model (namesmith.adaptation.adapt: a `SparseNGram` over the catalogue's prior, drawing only
the list's own letters) is too large a Markov chain to save ready to sample (a 40-name list of Latin names
reaches 130,000 of the prior's 190,000 contexts: over 100 MB of tables). So its rows are assembled when a
name needs them, from the model's own tensors, by the rule of `BackoffTable.add_rows` and
`SparseNGram.next_token_probs` (namesmith.models.backoff_table, namesmith.models.sparse_ngram), written
again here in NumPy: each stored suffix of the history gives its α's, weighted by the γ's of the longer
stored suffixes; what they leave goes to the base; tables chain over the mixture of components, a class
table rescales each class's share, and the rows are restricted to the tokens a sampler may draw (an
adapted model's own letters, as `OwnLetters` restricts them). The arrays are those the weights file holds,
named as `SparseNGram.weights()` names them, so a model directory needs nothing saved beside them.
tests/models/test_sparse_rows.py checks these rows against the torch model's to 1e-6.

This module imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from namesmith.core.errors import CheckpointError
from namesmith.core.vocab import BOUNDARY, Vocab

TABLE_FIELDS = ("keys", "backoff", "to_base", "offsets", "next", "alpha")  # as namesmith.models.backoff_table's
ROW_CELLS = 1 << 21  # (rows, V) cells assembled at once: each float32 buffer stays within 8 MB


def own_letters(vocab: Vocab, alphabet: str) -> np.ndarray:
    """(V,) bool: the tokens a model adapted to a list draws: the end and the list's own letters."""
    allowed = np.zeros(vocab.size, dtype=bool)
    allowed[BOUNDARY] = True
    allowed[[vocab.stoi[c] for c in set(alphabet) if c in vocab.stoi]] = True
    return allowed


def suffix_keys(contexts: np.ndarray, base: int) -> np.ndarray:
    """(N, K+1) keys of the suffixes of length 0..K of contexts (N, K), the empty one first (as torch's)."""
    K = contexts.shape[1]
    digits = (contexts[:, ::-1].astype(np.int64) + 1) * base ** np.arange(K, dtype=np.int64)
    return np.concatenate([np.zeros((len(contexts), 1), np.int64), np.cumsum(digits, 1)], 1)


class TableRows:
    """One `BackoffTable` in NumPy: its arrays, and the rows it assembles over a base."""

    def __init__(self, arrays: dict[str, np.ndarray], width: int, where: str):
        self.keys, self.backoff, self.to_base, self.offsets, self.next, self.alpha = (arrays[f] for f in TABLE_FIELDS)
        self.width = width  # the tokens of its rows (V, or the classes of a class table)
        _check(self, where)
        R, V = len(self.keys), width
        self.whole = (len(self.next) == R * V and not self.backoff.any() and not self.to_base.any()
                      and bool((self.next.reshape(R, V) == np.arange(V)).all()))
        # the α's after the empty context (row 0) and after each one-token context (row t + 1), dense
        short = int(np.searchsorted(self.keys, V + 1))  # keys 0..V come first, and so do their entries
        end = int(self.offsets[short])
        dense = np.zeros((V + 1, V), np.float32)
        np.add.at(dense, (np.repeat(self.keys[:short], np.diff(self.offsets[: short + 1])), self.next[:end]),
                  self.alpha[:end])
        self.alpha0, self.alpha1 = dense[0], dense[1:]

    def add_rows(self, out: np.ndarray, keys: np.ndarray, last: np.ndarray | None) -> np.ndarray:
        """`BackoffTable.add_rows`: the rows (N, V) over the base rows `out`, for histories given by their suffix
        keys (N, L), shortest first, and latest tokens (N,); normalised."""
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = self.keys[pos] == keys
        N, L = keys.shape
        if self.whole:  # every context holds its whole row: the longest stored context's
            longest = (found * np.arange(1, L + 1)).argmax(-1)
            rows = self.alpha.reshape(-1, self.width)[pos[np.arange(N), longest]]
            return rows / rows.sum(-1, keepdims=True)
        one = np.float32(1)
        gamma = np.where(found, self.backoff[pos], one)  # unseen contexts pass everything down
        weight_below = np.cumprod(gamma[:, ::-1], -1)[:, ::-1]  # (N, L): product of γ over this suffix and longer
        weight = np.where(found, np.concatenate([weight_below[:, 1:], np.ones((N, 1), np.float32)], -1),
                          np.float32(0))
        direct = (weight * np.where(found, self.to_base[pos], np.float32(0))).sum(-1)
        out *= (weight_below[:, 0] + direct)[:, None]  # the base: what the stored suffixes left it
        out += weight[:, :1] * self.alpha0
        if L > 1:
            out += weight[:, 1:2] * self.alpha1[last]
        rows, level = np.nonzero(found[:, 2:])  # longer stored contexts: their few α's scattered in
        ctx = pos[:, 2:][rows, level]
        starts, lengths = self.offsets[ctx], self.offsets[ctx + 1] - self.offsets[ctx]
        entry = np.repeat(np.arange(len(ctx)), lengths)
        gram = starts[entry] + np.arange(len(entry)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        np.add.at(out, (rows[entry], self.next[gram]), weight[:, 2:][rows, level][entry] * self.alpha[gram])
        return out / out.sum(-1, keepdims=True)


def _check(table: TableRows, where: str) -> None:
    """Refuse arrays that would index out of bounds or make no distribution (CheckpointError)."""
    keys, offsets, nxt, alpha = table.keys, table.offsets, table.next, table.alpha
    R, M = len(keys), len(nxt)
    ok = (keys.dtype == np.int64 and keys.ndim == 1 and R > 0 and keys[0] == 0 and bool((np.diff(keys) > 0).all())
          and all(a.dtype == np.float32 and a.shape == (R,) and bool(((a >= 0) & (a <= 1 + 1e-4)).all())
                  for a in (table.backoff, table.to_base))
          and offsets.dtype == np.int64 and offsets.shape == (R + 1,) and offsets[0] == 0 and offsets[-1] == M
          and bool((np.diff(offsets) >= 0).all()) and nxt.dtype == np.int32 and alpha.shape == (M,)
          and alpha.dtype == np.float32 and bool(np.isfinite(alpha).all())
          and (M == 0 or (int(nxt.min()) >= 0 and int(nxt.max()) < table.width and float(alpha.min()) >= 0)))
    if not ok:
        raise CheckpointError(f"{where}: not a well-formed back-off table over {table.width} tokens")


class SparseRows:
    """A `SparseNGram`'s next-token rows in NumPy, restricted to the tokens `allowed` (None: all)."""

    def __init__(self, arrays: dict[str, np.ndarray], config: dict[str, Any], vocab_size: int,
                 allowed: np.ndarray | None = None, where: str = "sparse-ngram"):
        self.vocab_size, self.allowed = vocab_size, allowed
        self.context_size = int(config["order"]) - 1
        self.base = vocab_size + 1
        try:
            self.tables = [TableRows(_fields(arrays, f"tables.{i}."), vocab_size, f"{where}: table {i}")
                           for i in range(int(config["tables"]))]
            self.components = [TableRows(_fields(arrays, f"components.{i}."), vocab_size, f"{where}: component {i}")
                               for i in range(int(config["components"]))]
            self.mixture = arrays["mixture"]
            self.class_of, self.classes = None, None
            if int(config.get("classes", 0)):
                self.class_of = arrays["class_of"]
                self.classes = TableRows(_fields(arrays, "classes."), int(config["classes"]), f"{where}: classes")
        except KeyError as e:
            raise CheckpointError(f"{where}: no tensor {e.args[0]!r}") from None
        if (self.mixture.shape != (len(self.components),) or self.mixture.dtype != np.float32
                or (self.class_of is not None and (self.class_of.shape != (vocab_size,) or self.class_of.min() < 0
                                                   or self.class_of.max() >= self.classes.width))
                or (allowed is not None and (allowed.shape != (vocab_size,) or not allowed[BOUNDARY]))):
            raise CheckpointError(f"{where}: the mixture, classes or letters do not fit {vocab_size} tokens")

    def probs(self, contexts: np.ndarray) -> np.ndarray:
        """(N, V) float32 P(next | the last order-1 tokens) for contexts (N, order-1), as the torch model gives them
        (then restricted to the allowed tokens), assembled ROW_CELLS at a time."""
        at_once = max(1, ROW_CELLS // self.vocab_size)
        parts = [self._rows(contexts[i : i + at_once]) for i in range(0, len(contexts), at_once)]
        return np.concatenate(parts) if parts else np.zeros((0, self.vocab_size), np.float32)

    def _rows(self, contexts: np.ndarray) -> np.ndarray:
        keys = suffix_keys(contexts, self.base)
        last = contexts[:, -1] if self.context_size else None
        rows = np.zeros((len(contexts), self.vocab_size), np.float32)
        for weight, table in zip(self.mixture, self.components):  # the mixture, each over the uniform base
            if weight > 0:
                rows += weight * table.add_rows(np.full_like(rows, 1.0 / self.vocab_size), keys, last)
        for table in reversed(self.tables):  # each table sits on the one after it, the last on the mixture
            rows = table.add_rows(rows, keys, last)
        if self.classes is not None:
            rows = self._by_class(rows, self.class_of[contexts])
        if self.allowed is not None:
            rows = np.where(self.allowed, rows, np.float32(0))
            rows /= rows.sum(-1, keepdims=True)
        return rows

    def _by_class(self, rows: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """`SparseNGram.by_class`: each class's share of the rows replaced by the class table's."""
        C = self.classes.width
        shares = np.zeros((len(rows), C), np.float32)
        np.add.at(shares.T, self.class_of, rows.T)
        wanted = self.classes.add_rows(shares.copy(), suffix_keys(classes, C + 1),
                                       classes[:, -1] if self.context_size else None)
        rows = rows * (wanted / np.maximum(shares, np.float32(1e-30)))[:, self.class_of]
        return rows / rows.sum(-1, keepdims=True)


def _fields(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {name: arrays[prefix + name] for name in TABLE_FIELDS}


def as_arrays(tensors: dict[str, Any]) -> dict[str, np.ndarray]:
    """NumPy views of a model's CPU tensors (its `weights()`), named as the weights file names them."""
    return {name: tensor.detach().cpu().numpy() for name, tensor in tensors.items()}
