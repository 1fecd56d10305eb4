"""Drawing names in NumPy: a batch of draws and its decoding, and the samplers that need no model at hand.

A batch holds a (names × longest name) token buffer, so a batch of names that may be long holds fewer
names: `batch_limit` keeps every buffer under `MAX_BATCH_TOKENS` tokens. Names are decoded to strings
in one `bytes.decode`, without a Python loop per character.

Two samplers run on tables alone, every name advancing one character per step:

- `TableSampler`, for first-order Markov models (the bigram models): the (V, V) transition table
  becomes alias tables once (Walker 1977, "An efficient method for generating discrete random
  variables with general distributions"; Vose 1991), so drawing the next character of every name is
  a handful of O(1) array operations.
- `ChainSampler`, for any finite Markov chain (the n-gram's stored context rows, KenLM's "longest
  match"; see `CharModel.markov_chain`): next-token CDFs (S, V) and next states (S, V) in
  `ChainTables`, made from the model's own chain by namesmith.generation.sample, one inverse-CDF lookup
  per name and step.
- `RowSampler`, for a model whose next token depends on its last K tokens but whose chain is too large to
  build (an adapted list's sparse n-gram): the row of each distinct context is assembled in NumPy when a
  step needs it (namesmith.models.sparse_rows), then the same inverse-CDF lookup.

This module imports no torch: tables saved beside a count model sample without it (docs/startup.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from namesmith.core.clock import now
from namesmith.core.vocab import BOUNDARY, Vocab

CHUNK = 1 << 16  # names drawn together at most
MAX_BATCH_TOKENS = 1 << 24  # (names × longest name) tokens in one batch's buffer at most, for any max length


def batch_limit(max_length: int) -> int:
    """The most names one batch may draw when each may be `max_length` characters long (at least 1)."""
    return max(1, min(CHUNK, MAX_BATCH_TOKENS // (max_length + 1)))


def token_dtype(vocab_size: int) -> type:
    """The narrowest integer type that holds every token id."""
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32


@dataclass
class Batch:
    """One batch of draws: the names that ended within the length guard, and which draws they are."""

    names: list[str]  # in draw order
    finished: np.ndarray  # (batch,) bool, in draw order: True for the draws that became `names`
    rejected: np.ndarray | None = None  # (batch,) bool: draws the sampler itself dropped (namesmith.generation.guided)
    effective_sample_size: float | None = None  # of a weighted sampler's draws (namesmith.generation.guided)
    # per parameter, (batch,) bool: `rejected` draws the sampler turned away for that parameter's filter
    # (namesmith.generation.draw_pool: `sounds_like`), counted as the search loop's own filters' are
    turned_away: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        """Draws that reached the length guard without ending (dropped)."""
        dropped = 0 if self.rejected is None else int(self.rejected.sum())
        return len(self.finished) - len(self.names) - dropped


def _codec(vocab: Vocab) -> tuple[np.ndarray, str]:
    """Token → code point lookup (the boundary becomes "\\n") in the narrowest dtype, and its codec."""
    codes = [ord("\n")] + [ord(c) for c in vocab.chars]
    if max(codes) < 0x100:
        return np.array(codes, dtype=np.uint8), "latin-1"
    if max(codes) < 0x10000:  # surrogates never reach a vocabulary (data.parse_words drops them)
        return np.array(codes, dtype="<u2"), "utf-16-le"
    return np.array(codes, dtype="<u4"), "utf-32-le"


def _join_split(tokens: np.ndarray, keep: np.ndarray, vocab: Vocab) -> list[str]:
    """Strings from the tokens where `keep` is set; each boundary token ends one string."""
    lut, codec = _codec(vocab)
    chosen = tokens[keep]
    if codec == "latin-1" and len(lut) <= 256:  # one byte per token: bytes.translate maps them
        text = chosen.astype(np.uint8, copy=False).tobytes().translate(lut.tobytes().ljust(256, b"\0"))
    else:
        text = lut[chosen].tobytes()
    return text.decode(codec).split("\n")[:-1]


def decode_batch(tokens: np.ndarray, lengths: np.ndarray, vocab: Vocab) -> list[str]:
    """Names from a (B, L) token array and their lengths, without a Python loop per character."""
    if len(lengths) == 0:
        return []
    padded = np.concatenate([tokens, np.zeros((len(lengths), 1), tokens.dtype)], 1)  # (B, L+1)
    padded[np.arange(len(lengths)), lengths] = BOUNDARY  # one end token closes each name
    keep = np.arange(padded.shape[1])[None, :] <= lengths[:, None]
    return _join_split(padded, keep, vocab)


def finish_batch(tokens: np.ndarray, lengths: np.ndarray, vocab: Vocab, prefix: str) -> Batch:
    """The Batch of a sampler's (B, room) tokens and lengths (-1: did not end within the room)."""
    finished = lengths >= 0
    names = decode_batch(tokens[finished], lengths[finished], vocab)
    return Batch([prefix + name for name in names] if prefix else names, finished)


def alias_tables(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables of each row of `probs` (R, V): draw k uniformly, keep it with
    probability accept[r, k], else take alias[r, k]. Exact up to float64 rounding.
    """
    rows, size = probs.shape
    accept = np.zeros((rows, size))
    alias = np.zeros((rows, size), dtype=np.int64)
    for r in range(rows):
        p = probs[r] / probs[r].sum() * size
        small = [k for k in range(size) if p[k] < 1]
        large = [k for k in range(size) if p[k] >= 1]
        accept[r], alias[r] = 1.0, np.arange(size)
        while small and large:
            s, g = small.pop(), large.pop()
            accept[r, s], alias[r, s] = p[s], g
            p[g] -= 1 - p[s]
            (small if p[g] < 1 else large).append(g)
        for k in small + large:  # rounding leftovers keep themselves, never an impossible token
            if probs[r, k] <= 0:
                accept[r, k], alias[r, k] = 0.0, int(probs[r].argmax())
    return accept, alias


class TableSampler:
    """First-order Markov models: every name advances one character per step in NumPy.

    Memory per step is O(batch); the token buffer is (batch, max_length + 1) small integers.
    """

    def __init__(self, probs: np.ndarray, vocab: Vocab, prefix: str, max_length: int, seed: int):
        self.vocab, self.prefix, self.max_length = vocab, prefix, max_length
        self.size = probs.shape[0]
        accept, alias = alias_tables(probs)
        self.accept, self.alias = accept.ravel(), alias.ravel()  # cell = previous * V + k
        self.dtype = token_dtype(self.size)
        self.rng = np.random.default_rng(seed)

    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names (None: the deadline passed first; the batch is dropped)."""
        prefix = self.vocab.encode(self.prefix)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, room + 1), dtype=self.dtype)  # zeros after the end = boundary
        lengths = np.full(batch, -1, dtype=np.intp)  # -1: not finished yet
        rows = np.arange(batch)  # the unfinished names
        prev = np.full(batch, prefix[-1] if prefix else BOUNDARY, dtype=np.intp)
        for t in range(room + 1):
            if deadline is not None and now() > deadline:
                return None
            x = self.rng.random(len(rows))
            x *= self.size
            k = x.astype(np.intp)  # uniform column, and x - k a fresh uniform in [0, 1)
            x -= k
            cell = prev * self.size + k
            nxt = np.where(x < self.accept[cell], k, self.alias[cell])  # (n,)
            ended = nxt == BOUNDARY
            if ended.any():
                lengths[rows[ended]] = t
                going = ~ended
                rows, nxt = rows[going], nxt[going]
            if t == room or len(rows) == 0:
                break
            tokens[rows, t] = nxt
            prev = nxt
        finished = lengths >= 0
        if not finished.all():
            tokens, lengths = tokens[finished], lengths[finished]
        keep = tokens != BOUNDARY
        keep[np.arange(len(lengths)), lengths] = True  # the end token separates the names
        names = _join_split(tokens, keep, self.vocab)
        return Batch([self.prefix + name for name in names] if self.prefix else names, finished)


MAX_CHAIN_BYTES = 48 << 20  # a chain's tables (8 bytes per state and token) saved or built at most: the
# built-in set's order-6 n-gram is 13.6 MB, us's 28.8 MB; larger chains sample through the model (torch)


@dataclass(frozen=True)
class ChainTables:
    """A finite Markov chain ready to sample: in state s the next token is the first c with cdf[s, c] > u,
    u uniform in [0, cdf[s, -1]), and the state becomes next_state[s, c]."""

    cdf: np.ndarray  # (S, V) float32: cumulative next-token probabilities (unnormalised is fine)
    next_state: np.ndarray  # (S, V) int32
    start: int  # the state after the boundary that starts every name

    @classmethod
    def of(cls, probs: np.ndarray, next_state: np.ndarray, start: int) -> ChainTables:
        """From next-token probabilities (S, V) (after temperature, top-k, top-p) and next states (S, V)."""
        return cls(np.cumsum(probs, axis=1, dtype=np.float32), np.ascontiguousarray(next_state, dtype=np.int32),
                   int(start))

    @property
    def nbytes(self) -> int:
        return self.cdf.nbytes + self.next_state.nbytes

    def state_after(self, tokens: list[int]) -> int:
        state = self.start
        for t in tokens:
            state = int(self.next_state[state, t])
        return state


def chain_bytes(states: int, vocab_size: int) -> int:
    """The bytes of a chain's tables: float32 CDF and int32 next state per (state, token)."""
    return 8 * states * vocab_size


def inverse_cdf_draws(rng: np.random.Generator, vocab: Vocab, prefix: str, max_length: int, deadline: float | None,
                      state: np.ndarray, row_cdf: Callable[[np.ndarray], np.ndarray],
                      advance: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Batch | None:
    """Names drawn one token at a time by inverse CDF, a name per row of `state` (each name's state after
    `prefix`): `row_cdf(state)` gives the (n, V) cumulative next-token weights of n states, `advance(state, next)`
    their states after those tokens. None: the deadline passed first (the batch is dropped)."""
    room = max_length - len(vocab.encode(prefix))  # characters still allowed after the prefix
    batch = len(state)
    tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(vocab.size))
    lengths = np.full(batch, -1, dtype=np.int64)  # -1: did not end within the room
    rows = np.arange(batch)  # the output row of each name still going
    for t in range(room + 1):
        if deadline is not None and now() > deadline:
            return None
        cdf = row_cdf(state)  # (n, V)
        u = rng.random(len(rows), dtype=np.float32)[:, None] * cdf[:, -1:]
        nxt = np.minimum((cdf <= u).sum(1), cdf.shape[1] - 1)  # searchsorted(right=True), row by row
        ended = nxt == BOUNDARY
        lengths[rows[ended]] = t
        going = np.flatnonzero(~ended)
        if t == room or len(going) == 0:
            break
        rows, nxt, state = rows[going], nxt[going], state[going]
        tokens[rows, t] = nxt
        state = advance(state, nxt)
    return finish_batch(tokens, lengths, vocab, prefix)


class ChainSampler:
    """Draws names from `ChainTables` in NumPy; the same seed draws the same names."""

    def __init__(self, tables: ChainTables, vocab: Vocab, prefix: str, max_length: int, seed: int):
        self.tables, self.vocab, self.prefix, self.max_length = tables, vocab, prefix, max_length
        self.rng = np.random.default_rng(seed)

    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names (None: the deadline passed first; the batch is dropped)."""
        cdf, next_state = self.tables.cdf, self.tables.next_state
        state = np.full(batch, self.tables.state_after(self.vocab.encode(self.prefix)), dtype=np.int64)
        return inverse_cdf_draws(self.rng, self.vocab, self.prefix, self.max_length, deadline, state,
                                 lambda state: cdf[state], lambda state, nxt: next_state[state, nxt])


class ContextRows(Protocol):
    """Next-token rows assembled on demand (namesmith.models.sparse_rows.SparseRows)."""

    context_size: int  # K: the next token depends on the last K tokens
    base: int  # V + 1: token t is digit t + 1 of a context's key

    def probs(self, contexts: np.ndarray) -> np.ndarray: ...  # (N, K) contexts -> (N, V) float32 rows


class RowSampler:
    """Draws names from `ContextRows` in NumPy, each step assembling the row of each distinct context once and
    drawing by inverse CDF as `ChainSampler` does; the same seed draws the same names."""

    def __init__(self, rows: ContextRows, vocab: Vocab, prefix: str, max_length: int, seed: int):
        self.rows, self.vocab, self.prefix, self.max_length = rows, vocab, prefix, max_length
        self.rng = np.random.default_rng(seed)

    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names (None: the deadline passed first; the batch is dropped)."""
        prefix, K = self.vocab.encode(self.prefix), self.rows.context_size
        place = self.rows.base ** np.arange(K - 1, -1, -1, dtype=np.int64)  # the latest token least significant
        start = ([BOUNDARY] * K + prefix)[len(prefix) :]  # the last K tokens: boundaries before a name, then its prefix
        window = np.tile(np.array(start, dtype=np.int64), (batch, 1))  # (n, K): each name's state

        def row_cdf(window: np.ndarray) -> np.ndarray:  # each distinct context's row assembled once
            _, first, inverse = np.unique((window + 1) @ place, return_index=True, return_inverse=True)
            return np.cumsum(self.rows.probs(window[first]), axis=1, dtype=np.float32)[inverse.ravel()]

        def advance(window: np.ndarray, nxt: np.ndarray) -> np.ndarray:
            return np.concatenate([window[:, 1:], nxt[:, None]], 1) if K else window

        return inverse_cdf_draws(self.rng, self.vocab, self.prefix, self.max_length, deadline, window, row_cdf,
                                 advance)
