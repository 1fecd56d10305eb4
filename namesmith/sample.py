"""Sampling names from any model, all names of a batch advancing together.

Each step asks the model for the next-token logits of every unfinished name (`CharModel.step`),
draws one token per name by inverse-CDF lookup (`searchsorted` on the cumulative distribution),
and drops the names that drew the end token. First-order Markov models (the bigram models)
take a shortcut in NumPy: the (V, V) transition table (after temperature/top-k/top-p) becomes
alias tables once (Walker 1977, "An efficient method for generating discrete random variables
with general distributions"; Vose 1991), so drawing the next character of every name is a
handful of O(1) array operations, and names are decoded to strings in one `bytes.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from namesmith.errors import ConfigError
from namesmith.models.base import CharModel
from namesmith.vocab import BOUNDARY, Vocab

CHUNK = 1 << 16  # names sampled together at most, which bounds memory for any -n
COMPACT_BELOW = 0.75  # drop finished names from the batch once fewer than this share are going


@dataclass(frozen=True)
class SampleConfig:
    """How to draw names; validated when built."""

    num: int = 20
    seed: int | None = None  # None: a fresh random seed each run
    temperature: float = 1.0  # < 1 sharpens towards the likeliest names, > 1 flattens
    top_k: int | None = None  # keep only the k likeliest next characters
    top_p: float | None = None  # keep the smallest set of next characters with this much probability
    starts_with: str = ""  # the chain is conditioned on this prefix, not filtered after
    max_length: int | None = None  # longest name; None: the data's longest name × 2 (at least 32)

    def __post_init__(self) -> None:
        if self.num < 0:
            raise ConfigError(f"-n/--num must not be negative, got {self.num}")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top-k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(f"--max-length must be at least 1, got {self.max_length}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed must be between 0 and 2**63 - 1, got {self.seed}")


@dataclass
class Samples:
    """Sampled names, plus how many hit the length guard before ending (they are dropped)."""

    names: list[str]
    unfinished: int = 0


def next_token_probs(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Probabilities (..., V) after temperature, top-k and top-p."""
    logits = logits.float() / config.temperature
    if config.top_k is not None and config.top_k < logits.size(-1):
        kth = torch.topk(logits, config.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.top_p is not None and config.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # drop a token when the tokens more likely than it already reach top_p
        drop_sorted = sorted_probs.cumsum(-1) - sorted_probs >= config.top_p
        probs = probs.masked_fill(drop_sorted.scatter(-1, order, drop_sorted), 0.0)
    return probs


def draw(cdf: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of an (unnormalised) cumulative distribution (B, V), by inverse CDF."""
    u = torch.rand(cdf.size(0), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


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


class _TableSampler:
    """First-order Markov models: every name advances one character per step in NumPy.

    Memory per step is O(batch); the token buffer is (batch, max_length + 1) small integers.
    """

    def __init__(self, probs: np.ndarray, vocab: Vocab, config: SampleConfig, max_length: int):
        self.vocab, self.config, self.max_length = vocab, config, max_length
        self.size = probs.shape[0]
        accept, alias = alias_tables(probs)
        self.accept, self.alias = accept.ravel(), alias.ravel()  # cell = previous * V + k
        self.dtype = np.uint8 if self.size <= 256 else np.int32

    def run(self, batch: int, rng: np.random.Generator) -> tuple[list[str], int]:
        prefix = self.vocab.encode(self.config.starts_with)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, room + 1), dtype=self.dtype)  # zeros after the end = boundary
        lengths = np.full(batch, -1, dtype=np.intp)  # -1: not finished yet
        rows = np.arange(batch)  # the unfinished names
        prev = np.full(batch, prefix[-1] if prefix else BOUNDARY, dtype=np.intp)
        for t in range(room + 1):
            x = rng.random(len(rows))
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
        done = lengths >= 0
        unfinished = batch - int(done.sum())
        if unfinished:
            tokens, lengths = tokens[done], lengths[done]
        keep = tokens != BOUNDARY
        keep[np.arange(len(lengths)), lengths] = True  # the end token separates the names
        names = _join_split(tokens, keep, self.vocab)
        if self.config.starts_with:
            names = [self.config.starts_with + name for name in names]
        return names, unfinished


class _Sampler:
    """Any model: the batch loop over `CharModel.step`, in torch on the model's device."""

    def __init__(self, model: CharModel, vocab: Vocab, config: SampleConfig, max_length: int):
        self.model, self.vocab, self.config = model, vocab, config
        self.max_length = max_length

    def first(self, batch: int, prefix: list[int]):  # noqa: ANN202
        """State and next-token CDF after the boundary and the forced prefix."""
        model = self.model
        token = torch.full((batch,), BOUNDARY, dtype=torch.long, device=model.device)
        state = model.init_state(batch)
        for t in [BOUNDARY, *prefix][:-1]:
            _, state = model.step(state, token.fill_(t))
        logits, state = model.step(state, token.fill_(([BOUNDARY, *prefix])[-1]))
        return state, next_token_probs(logits, self.config).cumsum(1)

    def next(self, state, token: torch.Tensor):  # noqa: ANN001, ANN202
        logits, state = self.model.step(state, token)
        return state, next_token_probs(logits, self.config).cumsum(1)

    @torch.inference_mode()
    def run(self, batch: int, generator: torch.Generator) -> tuple[list[str], int]:
        prefix = self.vocab.encode(self.config.starts_with)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, max(room, 0)), dtype=np.int64)
        lengths = np.full(batch, -1, dtype=np.int64)  # -1: not finished yet
        rows = torch.arange(batch)  # the output row of each slot of the batch
        alive = torch.ones(batch, dtype=torch.bool)  # slots whose name is still going
        state, cdf = self.first(batch, prefix)
        for t in range(room + 1):
            nxt = draw(cdf, generator).cpu()
            ended = alive & (nxt == BOUNDARY)
            lengths[rows[ended].numpy()] = t
            alive &= ~ended
            n_alive = int(alive.sum())
            if t == room or n_alive == 0:
                break
            tokens[rows[alive].numpy(), t] = nxt[alive].numpy()
            # Finished names leave the batch, but lazily: compacting the state (a copy of every
            # key/value cache, say) each time one name ends would cost more than carrying a few
            # finished slots along. Their draws are ignored.
            if n_alive <= COMPACT_BELOW * len(alive):
                keep = alive.nonzero().squeeze(1)
                rows, nxt, alive = rows[keep], nxt[keep], alive[keep]
                state = self.model.select_state(state, keep.to(self.model.device))
            state, cdf = self.next(state, nxt.to(self.model.device))
        done = lengths >= 0
        names = decode_batch(tokens[done], lengths[done], self.vocab)
        return [self.config.starts_with + name for name in names], int((~done).sum())


def _table_probs(model: CharModel, config: SampleConfig) -> np.ndarray | None:
    """The (V, V) next-token table of a first-order model after temperature/top-k/top-p, else None."""
    transition_probs = getattr(model, "transition_probs", None)
    if transition_probs is None or model.context_size != 1:
        return None
    with torch.inference_mode():
        return next_token_probs(transition_probs().clamp_min(0).log(), config).double().cpu().numpy()


def sample(model: CharModel, vocab: Vocab, config: SampleConfig = SampleConfig(),
           max_word_length: int = 16) -> Samples:
    """Draw `config.num` names (fewer if some hit the length guard; see `Samples.unfinished`).

    `max_word_length` is the longest training name; the default length guard is twice that.
    """
    unknown = vocab.unknown_chars(config.starts_with)
    if unknown:
        raise ConfigError(f"--starts-with {config.starts_with!r}: {''.join(unknown)!r} not in the model's vocabulary")
    max_length = config.max_length or max(2 * max_word_length, 32)
    if model.max_length is not None:
        max_length = min(max_length, model.max_length - 1)  # the boundary takes one position
    if len(config.starts_with) > max_length:
        raise ConfigError(f"--starts-with is {len(config.starts_with)} characters; the longest name allowed is "
                          f"{max_length}")
    seed = config.seed if config.seed is not None else int(torch.randint(0, 2**62, ()).item())
    was_training = model.training
    model.eval()
    table = _table_probs(model, config)
    if table is not None:
        sampler, generator = _TableSampler(table, vocab, config, max_length), np.random.default_rng(seed)
    else:
        sampler = _Sampler(model, vocab, config, max_length)
        generator = torch.Generator(device=model.device).manual_seed(seed)
    names: list[str] = []
    unfinished = 0
    for start in range(0, config.num, CHUNK):
        batch_names, batch_unfinished = sampler.run(min(CHUNK, config.num - start), generator)
        names += batch_names
        unfinished += batch_unfinished
    model.train(was_training)
    return Samples(names, unfinished)
