"""Plain sampling from any model, all names of a batch advancing together.

This is the bottom layer of `namesmith.generation.generate`: it draws names from the model's own
distribution (after temperature, top-k and top-p), conditioned only on a prefix, and drops the
names that reach the length guard without ending. Constraints and budgets live in
`namesmith.generation.generate` (the one config in `namesmith.generation.config`), which calls the samplers made here.

Each step asks the model for the next-token logits of every unfinished name (`CharModel.step`),
draws one token per name by inverse-CDF lookup (`searchsorted` on the cumulative distribution),
and drops the names that drew the end token. First-order Markov models (the bigram models)
take a shortcut in NumPy: the (V, V) transition table (after temperature/top-k/top-p) becomes
alias tables once (Walker 1977, "An efficient method for generating discrete random variables
with general distributions"; Vose 1991), so drawing the next character of every name is a
handful of O(1) array operations, and names are decoded to strings in one `bytes.decode`.

Memory: a batch holds a (names × longest name) token buffer, so a batch of names that may be
long holds fewer names: `batch_limit` keeps every buffer under `MAX_BATCH_TOKENS` tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.models.base import CharModel

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
    # (namesmith.generation.sound_draws: `sounds_like`), counted as the search loop's own filters' are
    turned_away: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def unfinished(self) -> int:
        """Draws that reached the length guard without ending (dropped)."""
        dropped = 0 if self.rejected is None else int(self.rejected.sum())
        return len(self.finished) - len(self.names) - dropped


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """Probabilities (..., V) after temperature, top-k and top-p (the kept mass is renormalised
    by the sampler's inverse CDF, so top-p rows may sum to less than 1)."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the tokens more likely than it already reach top_p
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= top_p
        probs = probs.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)
    return probs


def draw(cdf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of an (unnormalised) cumulative distribution (B, V), by inverse CDF."""
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


def draw_numpy(cdf: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """`draw` for a float32 NumPy CDF: the same uniforms, the same indices, a fraction of the calls' cost
    (for the small batches of a request)."""
    u = torch.rand(len(cdf), 1, generator=generator).numpy() * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(1), cdf.shape[1] - 1)  # searchsorted(right=True), row by row


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
            if deadline is not None and time.perf_counter() > deadline:
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


class ModelSampler:
    """Any model: the batch loop over `CharModel.step`, in torch on the model's device.

    Names that share a prefix share one state (a trie of prefixes): every name starts from the
    one state after the boundary and the prefix, and each step feeds the model once per distinct
    (state, next token) pair, not once per name. All 65,536 names of a batch read the boundary
    once, then at most V states, V² ...; on names.txt a batch of 65,536 names costs the network
    about 2.5 state steps per name instead of 7, and each name still draws from its own prefix's
    distribution, so the names are distributed exactly as before. Each step gives every distinct
    (state, next token) pair a fresh slot (`select_state` with the parent slots, repeated where a
    prefix branches); a model makes that cheap by sharing what siblings share (the Transformer's
    keys and values of the prefix, the recurrent models' projection of the parent's state).
    """

    def __init__(self, model: CharModel, vocab: Vocab, prefix: str, max_length: int, seed: int,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None):
        self.model, self.vocab, self.prefix, self.max_length = model, vocab, prefix, max_length
        self.decoding = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        self.generator = torch.Generator(device=model.device).manual_seed(seed)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return next_token_probs(logits, **self.decoding)

    def first(self, prefix: list[int]):  # noqa: ANN202
        """The one state, and its next-token probabilities (1, V), after the boundary and the forced prefix."""
        model = self.model
        state = model.init_state(1)
        for t in [BOUNDARY, *prefix]:
            logits, state = model.step(state, torch.tensor([t], device=model.device))
        return state, self._probs(logits)

    def advance(self, state, slot: torch.Tensor, token: torch.Tensor, n_slots: int):  # noqa: ANN001, ANN202
        """Feed each going name's token to its state slot.

        Returns the new state, its next-token probabilities (slots, V), each name's new slot, and
        for each new slot the old slot it continues and the token it was fed: what a caller
        carrying its own data per slot needs. `n_slots` (the old state's slots) is for subclasses.
        """
        V = self.vocab.size
        children, child = torch.unique(slot * V + token, return_inverse=True)  # sorted by parent slot
        parents, tokens = children // V, children % V
        # one fresh slot per distinct (prefix, token): finished names' slots leave, branching ones are copied
        logits, state = self.model.step(self.model.select_state(state, parents), tokens)
        return state, self._probs(logits), child, parents, tokens

    @torch.inference_mode()
    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names (None: the deadline passed first; the batch is dropped)."""
        device = self.model.device
        prefix = self.vocab.encode(self.prefix)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(self.vocab.size))
        lengths = np.full(batch, -1, dtype=np.int64)  # -1: not finished yet
        rows = torch.arange(batch)  # the output row of each name still going
        slot = torch.zeros(batch, dtype=torch.long, device=device)  # its state slot
        state, probs = self.first(prefix)
        for t in range(room + 1):
            if deadline is not None and time.perf_counter() > deadline:
                return None
            nxt = draw(probs.cumsum(1).index_select(0, slot), self.generator)
            ended = (nxt == BOUNDARY).cpu()
            lengths[rows[ended].numpy()] = t
            going = (~ended).nonzero().squeeze(1)
            if t == room or len(going) == 0:
                break
            rows, going = rows[going], going.to(device)
            nxt, slot = nxt[going], slot[going]
            tokens[rows.numpy(), t] = nxt.cpu().numpy()
            state, probs, slot, _, _ = self.advance(state, slot, nxt, len(probs))
        return finish_batch(tokens, lengths, self.vocab, self.prefix)


def _table_probs(model: CharModel, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray | None:
    """The (V, V) next-token table of a first-order model after temperature/top-k/top-p, else None."""
    table = model.transition_table()
    if table is None or model.context_size != 1:
        return None
    with torch.inference_mode():
        logits = table.clamp_min(0).log()
        return next_token_probs(logits, temperature, top_k, top_p).double().cpu().numpy()


def plain_sampler(model: CharModel, vocab: Vocab, *, prefix: str, max_length: int, seed: int,
                  temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> TableSampler | ModelSampler:
    """The fastest sampler of the model's names that start with `prefix` and have at most
    `max_length` characters (the caller checks the prefix fits and is in the vocabulary).
    Its `run(batch, deadline)` draws one batch; the model should be in eval mode."""
    table = _table_probs(model, temperature, top_k, top_p)
    if table is not None:
        return TableSampler(table, vocab, prefix, max_length, seed)
    return ModelSampler(model, vocab, prefix, max_length, seed, temperature, top_k, top_p)
