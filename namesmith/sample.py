"""Sampling names from any model, all names of a batch advancing together.

Each step asks the model for the next-token logits of every unfinished name (`CharModel.step`),
draws one token per name by inverse-CDF lookup (`searchsorted` on the cumulative distribution),
and drops the names that drew the end token. First-order Markov models (the bigram models)
take a shortcut: their whole cumulative table is built once, so a step is one gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from namesmith.errors import ConfigError
from namesmith.models.base import CharModel
from namesmith.vocab import BOUNDARY, Vocab

CHUNK = 1 << 16  # names sampled together at most, which bounds memory for any -n


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


def decode_batch(tokens: np.ndarray, lengths: np.ndarray, vocab: Vocab) -> list[str]:
    """Names from a (B, L) token array and their lengths, without a Python loop per character."""
    if len(lengths) == 0:
        return []
    codepoints = np.array([ord("\n")] + [ord(c) for c in vocab.chars], dtype=np.uint32)[tokens]
    width = tokens.shape[1]
    keep = np.arange(width)[None, :] < lengths[:, None]
    rows = np.concatenate([np.where(keep, codepoints, 0), np.full((len(lengths), 1), ord("\n"), np.uint32)], 1)
    flat = rows[np.concatenate([keep, np.ones((len(lengths), 1), bool)], 1)]
    return flat.astype("<u4").tobytes().decode("utf-32-le").split("\n")[:-1]


class _Sampler:
    """Runs the batch loop for one model and one SampleConfig."""

    def __init__(self, model: CharModel, vocab: Vocab, config: SampleConfig, max_length: int):
        self.model, self.vocab, self.config = model, vocab, config
        self.max_length = max_length
        self.table_cdf = None
        transition_probs = getattr(model, "transition_probs", None)
        if transition_probs is not None and model.context_size == 1:
            with torch.inference_mode():
                probs = next_token_probs(transition_probs().clamp_min(0).log(), config)
                self.table_cdf = probs.cumsum(1)  # (V, V): row = previous token

    def first(self, batch: int, prefix: list[int]):  # noqa: ANN202
        """State and next-token CDF after the boundary and the forced prefix."""
        model = self.model
        token = torch.full((batch,), BOUNDARY, dtype=torch.long, device=model.device)
        if self.table_cdf is not None:
            last = prefix[-1] if prefix else BOUNDARY
            return None, self.table_cdf[torch.full_like(token, last)]
        state = model.init_state(batch)
        for t in [BOUNDARY, *prefix][:-1]:
            _, state = model.step(state, token.fill_(t))
        logits, state = model.step(state, token.fill_(([BOUNDARY, *prefix])[-1]))
        return state, next_token_probs(logits, self.config).cumsum(1)

    def next(self, state, token: torch.Tensor):  # noqa: ANN001, ANN202
        if self.table_cdf is not None:
            return None, self.table_cdf[token]
        logits, state = self.model.step(state, token)
        return state, next_token_probs(logits, self.config).cumsum(1)

    @torch.inference_mode()
    def run(self, batch: int, generator: torch.Generator) -> tuple[list[str], int]:
        prefix = self.vocab.encode(self.config.starts_with)
        room = self.max_length - len(prefix)  # characters still allowed after the prefix
        tokens = np.zeros((batch, max(room, 0)), dtype=np.int64)
        lengths = np.full(batch, -1, dtype=np.int64)  # -1: not finished yet
        active = torch.arange(batch)
        state, cdf = self.first(batch, prefix)
        for t in range(room + 1):
            nxt = draw(cdf, generator)
            ended = nxt == BOUNDARY
            ended_rows = active[ended.cpu()]
            lengths[ended_rows.numpy()] = t
            going = (~ended).nonzero().squeeze(1)
            if t == room or len(going) == 0:
                break
            active = active[going.cpu()]
            nxt = nxt[going]
            tokens[active.numpy(), t] = nxt.cpu().numpy()
            if self.table_cdf is None:
                state = self.model.select_state(state, going)
            state, cdf = self.next(state, nxt)
        done = lengths >= 0
        names = decode_batch(tokens[done], lengths[done], self.vocab)
        return [self.config.starts_with + name for name in names], int((~done).sum())


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
    generator = torch.Generator(device=model.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    sampler = _Sampler(model, vocab, config, max_length)
    names: list[str] = []
    unfinished = 0
    for start in range(0, config.num, CHUNK):
        batch_names, batch_unfinished = sampler.run(min(CHUNK, config.num - start), generator)
        names += batch_names
        unfinished += batch_unfinished
    model.train(was_training)
    return Samples(names, unfinished)
