"""Steerable generation: constraints, novelty, dedupe and a budget, for every model type.

Two ways to make every printed name satisfy the constraints:

- Exact conditioning, for models whose next-token distribution depends on a bounded context
  of k tokens with few enough contexts (bigram: k = 1, V states; n-gram: V^k states). Such a
  model is a finite Markov chain. The constraints `--ends-with`, `--contains`, `--excludes`
  and the length limits form a finite automaton (one Knuth–Morris–Pratt matcher per pattern,
  their product explored from the start state). On the product chain (automaton state q,
  context s, length ℓ), the backward messages of a hidden Markov model (Rabiner 1989)

      β_ℓ(q, s) = P(end | s)·[q accepts, ℓ ≥ min_len] + Σ_c P(c | s)·β_{ℓ+1}(δ(q, c), s·c)

  are the probabilities of finishing validly, with β_{max_len+1} = 0. Drawing each next token
  from P(c | s)·β_{ℓ+1}(...) (normalised) samples exactly from the model conditioned on the
  constraints, with no rejected draws. P is the sampling distribution itself (after
  temperature, top-k and top-p), so conditioning composes with them.
- Rejection sampling for every other model (or `method="rejection"`): draw batches with
  `namesmith.sample.sample` (the prefix is still conditioned exactly), keep the names that
  pass, size the next batch from the acceptance rate so far.

`--regex`, `--novel` and `--unique` are always filters. A budget (`max_tries` names drawn,
`time_budget` seconds) ends any search; the result then says how many were found and the
acceptance rate. Constraints that are impossible before any sampling raise `ConfigError`.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from namesmith.data import Split
from namesmith.errors import ConfigError
from namesmith.models.base import CharModel
from namesmith.sample import CHUNK, SampleConfig, decode_batch, draw, next_token_probs, sample
from namesmith.vocab import BOUNDARY, Vocab

MAX_CHAIN_STATES = 20_000  # contexts (V^k) up to which a model counts as a finite Markov chain
MAX_AUTOMATON_STATES = 2_000  # product-automaton states up to which constraints are exact
MAX_TABLE = 1 << 24  # entries of the (length, q, s, V) sampling table, at most
MIN_BATCH = 256
DEFAULT_TRIES_PER_NAME = 100  # default --max-tries: this many per requested name, plus MIN_TRIES
MIN_TRIES = 100_000
METHODS = ("auto", "exact", "rejection")


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate; checks that need no model are done when it is built (`ConfigError`)."""

    num: int = 20
    seed: int | None = None
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    starts_with: str = ""  # exact: the chain is conditioned on the prefix
    ends_with: str = ""
    contains: tuple[str, ...] = ()  # every one of these substrings
    excludes: tuple[str, ...] = ()  # none of these substrings
    regex: str | None = None  # re.search on the whole name (anchor with ^ and $)
    min_len: int | None = None  # None: 1 (an empty name is never printed)
    max_len: int | None = None  # None: the sampler's guard (twice the longest training name, at least 32)
    novel: bool = False  # never a word of the training data (any split)
    unique: bool = False  # no name twice
    max_tries: int | None = None  # names drawn at most; None: 100 per requested name + 100,000
    time_budget: float | None = None  # seconds at most
    method: str = "auto"  # "exact" (fail if unavailable), "rejection", or "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "contains", tuple(self.contains))
        object.__setattr__(self, "excludes", tuple(self.excludes))
        self.sample_config(self.num, self.seed)  # validates num, seed, temperature, top-k, top-p, max_len
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.min_len is not None and self.min_len < 0:
            raise ConfigError(f"--min-len must not be negative, got {self.min_len}")
        if self.max_tries is not None and self.max_tries < 1:
            raise ConfigError(f"--max-tries must be at least 1, got {self.max_tries}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ConfigError(f"--time-budget must be positive, got {self.time_budget}")
        for option, patterns in (("--contains", self.contains), ("--excludes", self.excludes)):
            if any(p == "" for p in patterns):
                raise ConfigError(f"{option} needs a non-empty string")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as e:
                raise ConfigError(f"--regex {self.regex!r}: {e}") from None
        self._check_compatible()

    def _check_compatible(self) -> None:
        """Impossible combinations that need no model: lengths, prefix/suffix overlap, excludes."""
        lo, hi = self.min_len or 0, self.max_len
        if hi is not None and lo > hi:
            raise ConfigError(f"--min-len {lo} is greater than --max-len {hi}")
        for option, text in (("--starts-with", self.starts_with), ("--ends-with", self.ends_with),
                             *(("--contains", c) for c in self.contains)):
            if hi is not None and len(text) > hi:
                raise ConfigError(f"{option} {text!r} is {len(text)} characters; --max-len is {hi}")
            for bad in self.excludes:
                if bad in text:
                    raise ConfigError(f"{option} {text!r} contains {bad!r}, which --excludes forbids")
        p, s = self.starts_with, self.ends_with
        if p and s and hi is not None:
            # a name of length n starts with p and ends with s iff they agree where they overlap
            lengths = range(max(len(p), len(s), lo), hi + 1)
            if not any(n >= len(p) + len(s) or p[n - len(s):] == s[: len(p) + len(s) - n] for n in lengths):
                raise ConfigError(f"no name of at most {hi} characters starts with {p!r} and ends with {s!r}")

    @property
    def structural(self) -> bool:
        """Whether there are constraints the plain sampler cannot satisfy by itself."""
        return bool(self.ends_with or self.contains or self.excludes or self.min_len)

    def sample_config(self, num: int, seed: int | None = None) -> SampleConfig:
        return SampleConfig(num=num, seed=seed, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                            starts_with=self.starts_with, max_length=self.max_len)


@dataclass
class Generation:
    """Names found, and how hard they were to find."""

    names: list[str]
    requested: int
    tries: int  # names drawn, the rejected and the unfinished included
    seconds: float
    method: str  # "exact", "rejection" or "plain"
    stop_reason: str | None = None  # None when every requested name was found; else "max-tries" or "time-budget"

    @property
    def complete(self) -> bool:
        return self.stop_reason is None

    @property
    def acceptance(self) -> float | None:
        return len(self.names) / self.tries if self.tries else None

    def message(self) -> str:
        rate = "n/a" if self.acceptance is None else f"{100 * self.acceptance:.3g}%"
        text = (f"found {len(self.names)} of {self.requested} names in {self.tries:,} tries "
                f"({self.seconds:.2f} s, acceptance {rate}, {self.method} sampling)")
        if self.stop_reason:
            what = "--max-tries" if self.stop_reason == "max-tries" else "--time-budget"
            text += (f"; stopped at the {what} limit: the constraints are impossible or too rare under this "
                     f"model; loosen them or raise {what}")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "found": len(self.names), "tries": self.tries,
                "acceptance": self.acceptance, "seconds": self.seconds, "method": self.method,
                "complete": self.complete, "stop_reason": self.stop_reason}


# --- the constraints as a finite automaton ----------------------------------------------------
def kmp_automaton(pattern: list[int], vocab_size: int) -> np.ndarray:
    """(len+1, V) transitions of the Knuth–Morris–Pratt matcher: state j = longest suffix of the
    text so far that is a prefix of `pattern`; column 0 (the boundary) is unused."""
    n = len(pattern)
    fail = [0] * n  # prefix function
    for i in range(1, n):
        j = fail[i - 1]
        while j and pattern[i] != pattern[j]:
            j = fail[j - 1]
        fail[i] = j + (pattern[i] == pattern[j])
    table = np.zeros((n + 1, vocab_size), dtype=np.int64)
    for j in range(n + 1):
        for c in range(1, vocab_size):
            if j < n and pattern[j] == c:
                table[j, c] = j + 1
            else:
                table[j, c] = 0 if j == 0 else table[fail[j - 1], c]
    return table


@dataclass
class Automaton:
    """Deterministic automaton of the constraints: delta (Q, V), accept (Q,), start state."""

    delta: torch.Tensor
    accept: torch.Tensor
    start: int


def build_automaton(vocab: Vocab, config: GenerateConfig,
                    max_states: int = MAX_AUTOMATON_STATES) -> Automaton | None:
    """Product of one KMP matcher per pattern, reachable states only (None: more than max_states).

    The prefix is fed through it, so the start state already accounts for `starts_with`.
    """
    V = vocab.size
    ends = vocab.encode(config.ends_with)
    contains = [vocab.encode(c) for c in config.contains]
    excludes = [vocab.encode(e) for e in config.excludes if not vocab.unknown_chars(e)]  # others never occur
    patterns = [ends, *contains, *excludes]
    tables = [kmp_automaton(p, V) for p in patterns]
    n_contains = len(contains)
    dead = (-1,)

    def step(state: tuple, c: int) -> tuple:
        if state == dead:
            return dead
        new = []
        for i, (j, table, p) in enumerate(zip(state, tables, patterns)):
            if 1 <= i <= n_contains and j == len(p):
                new.append(j)  # found once is found for good
                continue
            j = int(table[j, c])
            if i > n_contains and j == len(p):
                return dead
            new.append(j)
        return tuple(new)

    start = tuple(0 for _ in patterns)
    for c in vocab.encode(config.starts_with):
        start = step(start, c)
    index = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    for state in order:  # breadth-first; `order` grows as states are found
        row = [index[state]]  # column 0: unused, stay
        for c in range(1, V):
            nxt = step(state, c)
            if nxt not in index:
                if len(index) >= max_states:
                    return None
                index[nxt] = len(order)
                order.append(nxt)
            row.append(index[nxt])
        rows.append(row)
    accept = [s != dead and s[0] == len(ends) and all(s[1 + i] == len(contains[i]) for i in range(n_contains))
              for s in order]
    return Automaton(torch.tensor(rows, dtype=torch.long), torch.tensor(accept), 0)


# --- the model as a finite Markov chain --------------------------------------------------------
@dataclass
class MarkovChain:
    """A bounded-context model: state = the last k tokens (base-V digits, oldest first)."""

    probs: torch.Tensor  # (S, V) float64 sampling distribution of the next token per context
    next_state: torch.Tensor  # (S, V) long: the context after appending a token
    k: int

    def state_of(self, tokens: list[int]) -> int:
        """The context after the boundary and `tokens` (left-padded with boundaries)."""
        V = self.probs.size(1)
        context = ([BOUNDARY] * self.k + [BOUNDARY, *tokens])[len(tokens) + 1:] if self.k else []
        return sum(t * V ** (self.k - 1 - i) for i, t in enumerate(context))


@torch.inference_mode()
def markov_chain(model: CharModel, vocab_size: int, sample_config: SampleConfig,
                 max_states: int = MAX_CHAIN_STATES) -> MarkovChain | None:
    """The model's next-token table over every context, if its context is bounded and small."""
    k = model.context_size
    if k is None or vocab_size**k > max_states:
        return None
    V, S = vocab_size, vocab_size**k
    transition_probs = getattr(model, "transition_probs", None)
    if k == 1 and transition_probs is not None:
        logits = transition_probs().clamp_min(0).log()  # as the sampler's table fast path
    else:
        digits = torch.arange(S).unsqueeze(1) // V ** torch.arange(k - 1, -1, -1) % V if k else None
        contexts = digits if k else torch.zeros(1, 1, dtype=torch.long)  # (S, k)
        logits = torch.cat([model(contexts[i:i + 4096].to(model.device))[:, -1].float().cpu()
                            for i in range(0, S, 4096)])
    probs = next_token_probs(logits.cpu(), sample_config).double()
    next_state = (torch.arange(S).unsqueeze(1) * V + torch.arange(V)) % S  # (S, V)
    return MarkovChain(probs, next_state, k)


class ExactSampler:
    """Samples the chain conditioned on the automaton accepting and min_len ≤ length ≤ max_len."""

    def __init__(self, chain: MarkovChain, automaton: Automaton, vocab: Vocab, prefix: str, max_len: int,
                 min_len: int = 0):
        self.chain, self.automaton, self.vocab = chain, automaton, vocab
        self.prefix, self.max_len, self.min_len = prefix, max_len, min_len
        # cdf: (max_len - |prefix| + 1, Q*S, V) float32, rows normalised; p_valid: the probability,
        # under the model, that a name with this prefix satisfies the constraints
        self.cdf, self.p_valid = self._tables()

    @staticmethod
    def table_size(chain: MarkovChain, automaton: Automaton, prefix_len: int, max_len: int) -> int:
        return (max_len - prefix_len + 1) * automaton.delta.size(0) * chain.probs.numel()

    def _tables(self) -> tuple[torch.Tensor, float]:
        P, NS = self.chain.probs, self.chain.next_state  # (S, V)
        delta, accept = self.automaton.delta, self.automaton.accept.double()  # (Q, V), (Q,)
        Q, (S, V) = delta.size(0), P.shape
        p0 = len(self.prefix)
        min_len = self.min_len
        beta = torch.zeros(Q, S, dtype=torch.float64)  # β_{ℓ+1}; zero beyond max_len
        cdfs = []
        for length in range(self.max_len, p0 - 1, -1):
            # weights (Q, S, V) of each next token: continue (c ≥ 1) into β_{ℓ+1}, or end here
            flat = beta.view(-1)[delta.unsqueeze(1) * S + NS.unsqueeze(0)]  # β_{ℓ+1}(δ(q, c), s·c)
            w = P.unsqueeze(0) * flat
            w[..., BOUNDARY] = P[:, BOUNDARY].unsqueeze(0) * accept.unsqueeze(1) * (length >= min_len)
            beta = w.sum(-1)  # β_ℓ (Q, S)
            cdf = w.cumsum(-1)
            cdfs.append((cdf / cdf[..., -1:].clamp_min(1e-300)).float().view(Q * S, V))
        cdfs.reverse()
        start = self.automaton.start * S + self.chain.state_of(self.vocab.encode(self.prefix))
        return torch.stack(cdfs), float(beta.view(-1)[start])

    @torch.inference_mode()
    def run(self, batch: int, generator: torch.Generator) -> list[str]:
        S, V = self.chain.probs.shape
        # one combined state z = q·S + s per row; step_table[z, c] is the state after token c
        step_table = (self.automaton.delta.unsqueeze(1) * S + self.chain.next_state.unsqueeze(0)).view(-1)
        room = self.max_len - len(self.prefix)
        tokens = np.zeros((batch, max(room, 0)), dtype=np.int64)
        lengths = np.full(batch, -1, dtype=np.int64)
        active = torch.arange(batch)
        z0 = self.automaton.start * S + self.chain.state_of(self.vocab.encode(self.prefix))
        z = torch.full((batch,), z0, dtype=torch.long)
        for t in range(room + 1):
            nxt = draw(self.cdf[t].index_select(0, z), generator)  # index_select: much faster than [z]
            ended = nxt == BOUNDARY
            lengths[active[ended].numpy()] = t
            going = (~ended).nonzero().squeeze(1)
            if len(going) == 0:
                break
            active, nxt, z = active[going], nxt[going], z[going]
            tokens[active.numpy(), t] = nxt.numpy()
            z = step_table.index_select(0, z * V + nxt)
        assert (lengths >= 0).all(), "the last step can only end the name"
        return [self.prefix + name for name in decode_batch(tokens, lengths, self.vocab)]


# --- the search loop ----------------------------------------------------------------------------
def _check_vocab(vocab: Vocab, config: GenerateConfig) -> None:
    for option, text in (("--starts-with", config.starts_with), ("--ends-with", config.ends_with),
                         *(("--contains", c) for c in config.contains)):
        unknown = vocab.unknown_chars(text)
        if unknown:
            raise ConfigError(f"{option} {text!r}: {''.join(unknown)!r} not in the model's vocabulary, "
                              "so no name can satisfy it")


def resolve_max_len(model: CharModel, config: GenerateConfig, max_word_length: int) -> int:
    """The longest name allowed: --max-len, else the sampler's guard; capped by the model's limit."""
    max_len = config.max_len or max(2 * max_word_length, 32)
    if model.max_length is not None:
        max_len = min(max_len, model.max_length - 1)
    return max_len


def exact_sampler(model: CharModel, vocab: Vocab, config: GenerateConfig,
                  max_word_length: int = 16) -> ExactSampler | None:
    """The exact sampler for this model and these constraints, or None if the model is not a
    small finite chain or the constraints' automaton or table would be too big."""
    chain = markov_chain(model, vocab.size, config.sample_config(1))
    if chain is None:
        return None
    automaton = build_automaton(vocab, config)
    max_len = resolve_max_len(model, config, max_word_length)
    if automaton is None or ExactSampler.table_size(chain, automaton, len(config.starts_with), max_len) > MAX_TABLE:
        return None
    return ExactSampler(chain, automaton, vocab, config.starts_with, max_len, max(config.min_len or 0, 1))


def _filter(config: GenerateConfig, exact: bool, known: Collection[str] | None) -> Any:
    """The per-name test of the constraints the sampler did not already enforce (None: no test)."""
    checks = []
    if not exact:
        lo = max(config.min_len or 0, 1)
        checks.append(lambda n: len(n) >= lo)
        if config.ends_with:
            checks.append(lambda n: n.endswith(config.ends_with))
        for c in config.contains:
            checks.append(lambda n, c=c: c in n)
        for e in config.excludes:
            checks.append(lambda n, e=e: e not in n)
    if config.regex is not None:
        search = re.compile(config.regex).search
        checks.append(lambda n: search(n) is not None)
    if config.novel:
        checks.append(lambda n: n not in known)
    if not checks:
        return None
    return lambda n: all(check(n) for check in checks)


def generate(model: CharModel, vocab: Vocab, config: GenerateConfig = GenerateConfig(), *,
             max_word_length: int = 16, known_words: Collection[str] | None = None) -> Generation:
    """Draw `config.num` names that satisfy every constraint, within the budget.

    `known_words` are the training data's words (all splits), needed for `novel`.
    `max_word_length` is the longest training name (the default length guard is twice that).
    """
    start_time = time.perf_counter()
    _check_vocab(vocab, config)
    if config.novel and known_words is None:
        raise ConfigError("--novel needs the training word list (pass --data with the list the model was trained on)")
    known = known_words if known_words is None or isinstance(known_words, (set, frozenset)) else set(known_words)
    was_training = model.training
    model.eval()
    try:
        exact = None
        if config.method == "exact" or (config.method == "auto" and config.structural):
            exact = exact_sampler(model, vocab, config, max_word_length)
            if exact is None and config.method == "exact":
                raise ConfigError(f"exact conditioning needs a model with a small bounded context and small "
                                  f"constraint automaton; a {model.model_type} model here needs rejection sampling")
            if exact is not None and exact.p_valid <= 0:
                raise ConfigError("no name satisfies these constraints with non-zero probability under this model "
                                  "(at this temperature, top-k and top-p)")
        method = "exact" if exact else ("rejection" if config.structural or config.regex else "plain")
        accept = _filter(config, exact is not None, known)
        max_tries = config.max_tries or DEFAULT_TRIES_PER_NAME * config.num + MIN_TRIES
        seed = config.seed if config.seed is not None else int(torch.randint(0, 2**62, ()).item())
        generator = torch.Generator().manual_seed(seed)
        seeds = np.random.default_rng(seed)
        names: list[str] = []
        seen: set[str] = set()
        tries = 0
        stop_reason = None
        while len(names) < config.num:
            if tries >= max_tries:
                stop_reason = "max-tries"
                break
            if config.time_budget is not None and time.perf_counter() - start_time > config.time_budget:
                stop_reason = "time-budget"
                break
            need = config.num - len(names)
            rate = (len(names) + 1) / (tries + 1) if tries else 1.0
            batch = min(CHUNK, max_tries - tries, max(MIN_BATCH, math.ceil(1.1 * need / rate)))
            if exact is not None:
                drawn = exact.run(batch, generator)
            else:
                drawn = sample(model, vocab, config.sample_config(batch, int(seeds.integers(2**62))),
                               max_word_length).names
            examined = 0  # tries count the names looked at, so the acceptance rate is fair
            if accept is None and not config.unique:  # nothing to filter
                examined = min(len(drawn), config.num - len(names))
                names += drawn[:examined]
                drawn = []
            for name in drawn:
                examined += 1
                if (accept is None or accept(name)) and not (config.unique and name in seen):
                    names.append(name)
                    seen.add(name)
                    if len(names) == config.num:
                        break
            tries += examined if len(names) == config.num else batch  # unfinished names were tries too
    finally:
        model.train(was_training)
    return Generation(names, config.num, tries, time.perf_counter() - start_time, method, stop_reason)


# --- where the names come from -------------------------------------------------------------------
@dataclass
class NoveltySummary:
    """Of the generated names, how many are training, held-out, or new words (makemore's check)."""

    total: int
    in_train: int | None = None
    in_heldout: int | None = None
    new: int | None = None
    unavailable: str | None = None  # why the training words could not be read

    def line(self) -> str:
        if self.unavailable is not None:
            return f"{self.total} names (training data not available: {self.unavailable})"
        return (f"{self.total} names: {self.in_train} in train, {self.in_heldout} in validation/test, "
                f"{self.new} new")

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "in_train": self.in_train, "in_heldout": self.in_heldout, "new": self.new,
                "unavailable": self.unavailable}


def novelty_summary(names: list[str], split: Split | None, unavailable: str | None = None) -> NoveltySummary:
    """Count names found in the train split, in validation/test (only), and nowhere."""
    if split is None:
        return NoveltySummary(len(names), unavailable=unavailable or "unknown")
    train = set(split.train)
    heldout = set(itertools.chain(split.val, split.test)) - train
    in_train = sum(n in train for n in names)
    in_heldout = sum(n in heldout for n in names)
    return NoveltySummary(len(names), in_train, in_heldout, len(names) - in_train - in_heldout)
