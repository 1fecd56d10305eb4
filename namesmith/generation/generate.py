"""Steerable generation: constraints, novelty, dedupe and budgets, for every model type, streamed.

One config (`GenerateConfig`) says what to generate; `iter_generate` yields the names batch by
batch as they are found, and `generate` collects them. Two ways make every name satisfy the
constraints:

- Exact conditioning, for models with finitely many states whose next-token distribution
  depends on the state only: the bigram models (state = last token), the n-gram (state = the
  context row it stores, KenLM's "longest match": its back-off maps every longer history onto a
  stored row, and token c moves row r to `transitions[r, c]`), and window models (MLP, WaveNet)
  with at most `MAX_ENUMERATED_CONTEXTS` contexts V^k, tabulated once. Such a model is a finite
  Markov chain (the order-6 n-gram of the built-in list has 62,900 rows). The constraints
  `ends_with`, `contains`, `excludes` form a finite automaton (one Knuth–Morris–Pratt matcher
  per pattern, their product explored from the start state). On the product chain, restricted
  to the (automaton state q, chain state s) pairs reachable from the prefix by tokens of
  non-zero probability, the backward messages of a hidden Markov model (Rabiner 1989)

      β_ℓ(q, s) = P(end | s)·[q accepts, ℓ ≥ min_len] + Σ_c P(c | s)·β_{ℓ+1}(δ(q, c), s·c)

  are the probabilities of finishing validly from length ℓ, with β_{max_len+1} = 0. Drawing each
  next token from P(c | s)·β_{ℓ+1}(...) (normalised) samples exactly from the model conditioned
  on the constraints, with no rejected draws. The messages are computed in log space and shifted
  per step (their scale kept aside), so a 5,000-character minimum does not underflow them into
  "impossible". P is the sampling distribution itself (after temperature, top-k and top-p), so
  conditioning composes with them. (For that n-gram and `ends_with="ette"`, 59,498 (q, row)
  states are reachable and the tables take about half a second; then names cost microseconds.)
- Guided sampling (namesmith.generation.guided), for networks when the caller passes a `guide` (as
  `NameModel` does) or `method="guided"`: the network's draws steered by an n-gram's exact
  backward messages, every draw valid, importance weights corrected by rejection. "auto" guides
  while that keeps more names per draw than rejection would (`_GuidedWhileFaster`).
- Rejection sampling for every other model (or `method="rejection"`, or when the exact tables
  would pass the limits below): draw batches with `namesmith.generation.sample` (the prefix is still
  conditioned exactly), keep the names that pass, size the next batch from the acceptance rate.

`regex`, `novel` and `unique` are always filters. The regex runs on the `regex` engine (the
syntax and Unicode classes of Python's `re`, which backtracks too, but takes a timeout per match):
min(`REGEX_TIMEOUT`, the time left). A pattern that backtracks for longer than `REGEX_TIMEOUT`
on one name (nested repetition such as `(a|a)+b`) is a `ConfigError`, so no pattern holds a
request past its budget for long, and a request without a time budget still ends. The engine
counts the process's CPU time, so on a busy machine one match may run past the wall-clock budget
by up to `REGEX_TIMEOUT` × the load (and in a busy multi-threaded process it may stop sooner).
Compiling expands counted repetitions (`a{1000}` is 1,000 items), so `regex_size` bounds that
first: a count above `MAX_NAME_LENGTH`, or more than `MAX_REGEX_SIZE` items in all, is a `ConfigError`
(compiling the largest allowed takes about 0.07 s). A linear-time engine (RE2) was not used: its
`\\w`, `\\d`, `\\b` are ASCII-only, which would change what a pattern means for most of the world's names.

Budgets: `max_tries` (draws examined) and `time_budget` (seconds, checked between the steps of
every sampler, while building the exact tables and inside each regex match) end any search; the
result then says how many names were found, the acceptance rate, and how many draws reached the
length guard. Memory is bounded whatever the request: names are at most `MAX_NAME_LENGTH`
characters (longer `max_len`/`min_len` are refused), a batch's token buffer is at most
`namesmith.generation.sample.MAX_BATCH_TOKENS`, the exact tables at most `MAX_EXACT_CELLS`/`MAX_EXACT_TABLE`
entries (else rejection, or a `ConfigError` for `method="exact"`), and a process's builds and the
tables it keeps by `TableBudget` (builders, estimated bytes, seconds, bytes kept); `unique` keeps the
names found and `novel` the training words, nothing else grows with `num`. Constraints that are impossible
before any sampling raise `ConfigError`, whose `field` names the parameter at fault.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import regex as regex_engine
import torch

from namesmith.choosing.phonetic import phonetic_keys, sounds_alike
from namesmith.choosing.popularity import parse_popularity, popularity_index
from namesmith.choosing.surname import ALLITERATION, alliterates, check_surname
from namesmith.choosing.syllables import check_alphabet, count_syllables, parse_syllables, syllable_automaton
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.words import Split
from namesmith.generation.calibration import chain_end_log_weights, tilted_draws
from namesmith.generation.sample import (
    Batch,
    batch_limit,
    draw_numpy,
    finish_batch,
    next_token_probs,
    plain_sampler,
    token_dtype,
)
from namesmith.generation.sound_draws import SoundDraws
from namesmith.models.base import CharModel
from namesmith.models.nll import eval_mode

MAX_NAME_LENGTH = 10_000  # max_len and min_len at most: longer requests are refused, not attempted
GUARD_AT_LEAST = 32  # the default length guard is max(2 × the longest training name, this)
REGEX_TIMEOUT = 0.25  # CPU seconds one regex match may take; longer is a ConfigError (see the docstring)
MAX_REGEX_SIZE = 100_000  # items of a regex, its {m,n} counts expanded (`regex_size`): about 0.07 s, 25 MB to compile
MAX_ENUMERATED_CONTEXTS = 20_000  # window models: contexts (V^k) up to which the model is tabulated as a chain
MAX_AUTOMATON_STATES = 2_000  # states of the constraints' automaton, at most
MAX_EXACT_CELLS = 1 << 23  # reachable (automaton, chain) states × V, at most: the exact sampler's step table
MAX_EXACT_TABLE = 1 << 25  # (length, reachable state) log-messages kept (float32), at most
BUILD_CELLS = 1 << 21  # (state, token) cells the exact tables are built in at a time (the temporaries' size)
MAX_VISITED_FLAGS = 1 << 26  # (automaton × chain) states up to which the search for reachable ones flags each pair
PRECOMPUTE_CDFS = 1 << 22  # (length, state, token) entries up to which the sampling CDFs are tabulated
TABLE_BUILDERS = 2  # exact-table builds at once in a process, at most (more requests sample otherwise meanwhile)
TABLE_BYTES = 256 << 20  # estimated peak memory of one build (`exact_table_bytes`), at most: else sample otherwise
TABLE_CACHE_BYTES = 512 << 20  # bytes of built tables a process keeps, at most (the least recently used leave)
TABLE_BUILD_SECONDS = 30.0  # a background build taking longer is abandoned (its constraints then sampled otherwise)
EXACT_BUILD_SHARE = 0.5  # of the time budget, that method "auto" may spend building exact tables
GUIDE_BELOW = 0.05  # method "auto" guides a network when the n-gram gives valid names less probability than this
GUIDED_COST = 1.3  # a guided particle costs about this many plain draws (benchmarks/bench_generate.py: 1.0-1.3)
MIN_BATCH = 256  # the first batch (names come out at once), and the least a filtering search draws
BATCH_GROWTH = 16  # each batch may be this many times the previous one, up to the sampler's limit (few
# large batches: the model sampler shares the states of common prefixes, cheaper per name the more names share)
DEFAULT_TRIES_PER_NAME = 100  # default max_tries: this many per requested name, plus MIN_TRIES
MIN_TRIES = 100_000
METHODS = ("auto", "exact", "guided", "rejection")


# What `iter_generate` calls to steer a model that is not a finite chain (namesmith.generation.guided.Guide):
# guide(vocab, config, max_len, seed, deadline) -> a sampler with `run` and `twist` (its ExactSampler).
Guide = Callable[..., Any]


class _OutOfTime(Exception):
    """The time budget ended (inside a table build or a regex match)."""


class NotAvailable(Exception):
    """This sampling method is not available for this model and these constraints (the message says why)."""


# --- the one generation config ------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check(condition: bool, field: str, message: str) -> None:
    """Raise a ConfigError naming `field` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{field} {message}", field=field)


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate, for every model and every caller; validated when built (`ConfigError`,
    its `field` the parameter at fault)."""

    num: int = 20
    seed: int | None = None  # None: a fresh random seed each run
    temperature: float = 1.0  # < 1 sharpens towards the likeliest names, > 1 flattens
    top_k: int | None = None  # keep only the k likeliest next characters
    top_p: float | None = None  # keep the smallest set of next characters with this much probability
    starts_with: str = ""  # exact for every model: the chain is conditioned on the prefix
    ends_with: str = ""
    contains: tuple[str, ...] = ()  # every one of these substrings (a single string is one substring)
    excludes: tuple[str, ...] = ()  # none of these substrings
    regex: str | None = None  # `regex.search` on the whole name (anchor with ^ and $)
    min_len: int | None = None  # None: 1 (an empty name is never printed)
    max_len: int | None = None  # None: the length guard (see `length_limit`); at most MAX_NAME_LENGTH
    # (lo, hi): namesmith.choosing.syllables.count_syllables of every name in this range ("2-3", "2" and 2 are read too)
    syllables: SyllableRange | None = None
    sounds_like: str = ""  # names sharing a Double Metaphone key with this one (namesmith.choosing.phonetic; a filter)
    novel: bool = False  # never a word of the training data (any split)
    unique: bool = False  # no name twice
    max_tries: int | None = None  # draws examined at most; None: 100 per requested name + 100,000
    time_budget: float | None = None  # seconds at most
    method: str = "auto"  # "exact" (fail if unavailable), "rejection", or "auto"
    prior_letters: bool = False  # a model adapted to a list: draw its prior's letters too (NameModel.generate)
    # choosing a name (namesmith.choosing.popularity, namesmith.choosing.surname): filters of the search loop
    popularity: str | None = None  # "rare", "uncommon", "common", "top:N" or ranks "A-B" of the catalogue
    not_in_catalogue: bool = False  # never a name of any built-in list (namesmith.choosing.popularity.is_known)
    surname: str | None = None  # the names are scored against it (NameModel.facts), and `alliteration` filters
    alliteration: str = "any"  # with a surname: "want" keeps names that start with its sound, "avoid" drops them

    def __post_init__(self) -> None:
        for name in ("contains", "excludes"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        _check(_is_int(self.num), "num", f"must be an integer, got {self.num!r}")
        _check(self.num >= 0, "num", f"must not be negative, got {self.num}")
        if self.seed is not None:
            _check(_is_int(self.seed) and 0 <= self.seed < 2**63, "seed",
                   f"must be an integer between 0 and 2**63 - 1, got {self.seed!r}")
        _check(_is_number(self.temperature) and self.temperature > 0, "temperature",
               f"must be positive, got {self.temperature!r}")
        if self.top_k is not None:
            _check(_is_int(self.top_k) and self.top_k >= 1, "top_k", f"must be at least 1, got {self.top_k!r}")
        if self.top_p is not None:
            _check(_is_number(self.top_p) and 0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p!r}")
        for name in ("starts_with", "ends_with"):
            _check(isinstance(getattr(self, name), str), name, f"must be a string, got {getattr(self, name)!r}")
        for name in ("contains", "excludes"):
            patterns = getattr(self, name)
            _check(all(isinstance(p, str) and p for p in patterns), name,
                   f"needs non-empty strings, got {list(patterns)!r}")
        for name in ("min_len", "max_len"):
            value, least = getattr(self, name), 0 if name == "min_len" else 1
            if value is not None:
                _check(_is_int(value) and value >= least, name, f"must be at least {least}, got {value!r}")
                _check(value <= MAX_NAME_LENGTH, name,
                       f"must be at most {MAX_NAME_LENGTH:,} (MAX_NAME_LENGTH), got {value:,}")
        if self.syllables is not None:
            object.__setattr__(self, "syllables", parse_syllables(self.syllables))
        _check(isinstance(self.sounds_like, str), "sounds_like", f"must be a string, got {self.sounds_like!r}")
        if self.sounds_like and not phonetic_keys(self.sounds_like):
            raise ConfigError(f"sounds_like {self.sounds_like!r}: no letters to sound out", field="sounds_like")
        for name in ("novel", "unique", "prior_letters", "not_in_catalogue"):
            _check(isinstance(getattr(self, name), bool), name, f"must be true or false, got {getattr(self, name)!r}")
        if self.max_tries is not None:
            _check(_is_int(self.max_tries) and self.max_tries >= 1, "max_tries",
                   f"must be at least 1, got {self.max_tries!r}")
        if self.time_budget is not None:
            _check(_is_number(self.time_budget) and self.time_budget > 0, "time_budget",
                   f"must be positive, got {self.time_budget!r}")
        _check(self.method in METHODS, "method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.regex is not None:
            _check(isinstance(self.regex, str), "regex", f"must be a string, got {self.regex!r}")
            compile_regex(self.regex)
        check_lengths(self, self.max_len, "max_len")
        if self.popularity is not None:
            parse_popularity(self.popularity)
        if self.surname is not None:
            object.__setattr__(self, "surname", check_surname(self.surname))
        _check(self.alliteration in ALLITERATION, "alliteration",
               f"must be one of {', '.join(ALLITERATION)}, got {self.alliteration!r}")
        _check(self.alliteration == "any" or self.surname is not None, "alliteration",
               f"{self.alliteration!r} needs a surname to alliterate with")

    @property
    def structural(self) -> bool:
        """Whether there are constraints the plain sampler cannot satisfy by itself."""
        return bool(self.ends_with or self.contains or self.excludes or self.min_len or self.syllables)

    @property
    def decoding(self) -> dict[str, Any]:
        """How logits become the sampling distribution: temperature, top_k, top_p."""
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p}


SyllableRange = tuple[int, int]  # a GenerateConfig's `syllables`: (lowest, highest), both included
IGNORE_CASE = "(?i)"  # put before a user's regex for a model of lowercased names (NameModel)


def compile_regex(pattern: str) -> Any:
    """The compiled pattern, once `regex_size` has bounded what compiling it costs (`ConfigError` naming "regex")."""
    size = regex_size(pattern)
    if size > MAX_REGEX_SIZE:
        raise ConfigError(f"regex {_shown(pattern)}: expands to about {size:,} items, more than "
                          f"{MAX_REGEX_SIZE:,} (MAX_REGEX_SIZE); use fewer or smaller {{m,n}} "
                          "counts, or * and +", field="regex")
    try:
        return regex_engine.compile(pattern)
    except regex_engine.error as e:
        error = e
        try:  # the user's own pattern, so the message quotes what they wrote, at its positions
            regex_engine.compile(pattern.removeprefix(IGNORE_CASE))
        except regex_engine.error as own:
            error = own
        raise ConfigError(f"regex {_shown(pattern)}: {error}", field="regex") from None


def _shown(pattern: str) -> str:
    """The pattern as a message quotes it: as the user wrote it (without the IGNORE_CASE that NameModel puts
    before it), in full if short, else its start (a message stays one short line)."""
    pattern = pattern.removeprefix(IGNORE_CASE)
    return repr(pattern) if len(pattern) <= 80 else f"{pattern[:60]!r}... ({len(pattern):,} characters)"


_COUNTED = regex_engine.compile(r"\{([\d\s]*)(?:(,)([\d\s]*))?\}")  # {m}, {m,}, {,n}, {m,n} (verbose: {3 00})
_NAMED_ESCAPE = regex_engine.compile(r"\\[pPNx]\{[^}]*\}|\\.", regex_engine.DOTALL)  # \p{L}, \N{...}, \x{41}, \d


def regex_size(pattern: str) -> int:
    """An upper bound on the items of `pattern` once its counted repetitions are expanded, as the `regex`
    engine's compiler expands them: `a{1000}` is 1,000 items, `(?:a{300}){300}` 90,000. Compiling costs
    time and memory in proportion (about 0.7 s and 250 MB per million items), so a short pattern can ask
    for hours and gigabytes: `(?:a{30000}){30000}` is 19 characters. A count above MAX_NAME_LENGTH can
    never match a name and is refused as such (`ConfigError`).

    Every character counts as an item (more than the engine's, for classes and group syntax); `*`, `+`
    and `?` loop without expanding. Whitespace and `#` comments count, but never take the place of
    the item a count repeats, as in verbose mode (an over-estimate otherwise, never an under-estimate).
    """
    totals = [0]  # the items of each open group so far, the outermost first
    last = 0  # the items of the last atom or group: what a count after it repeats
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            escape = _NAMED_ESCAPE.match(pattern, i)
            i = escape.end() if escape else n
            last = 1
        elif ch == "[":  # a class is one item: skip to its closing bracket (one right after [ or [^ is literal)
            j = i + 1 + (pattern[i + 1:i + 2] == "^")
            j += pattern[j:j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i, last = j + 1, 1
        elif ch == "(":
            totals.append(0)
            i, last = i + 1, 0
            continue
        elif ch == ")" and len(totals) > 1:
            last = totals.pop() + 1
            totals[-1] += last
            i += 1
            continue
        elif ch == "{" and (counted := _COUNTED.match(pattern, i)) and counted.group().strip("{} \t\n\r\f\v"):
            low, comma, high = ("".join(part.split()) if part else part for part in counted.groups())
            count = max(int(low or 0), int(high or 0)) if comma and high else int(low or 0)
            if count > MAX_NAME_LENGTH:
                raise ConfigError(f"regex {_shown(pattern)}: the count {counted.group()} is more than "
                                  f"{MAX_NAME_LENGTH:,} (the longest name, MAX_NAME_LENGTH), so it "
                                  "can never match a name", field="regex")
            totals[-1] += last * (max(count, 1) - 1)
            last *= max(count, 1)
            i = counted.end()
            continue
        elif ch.isspace() or ch == "#":
            totals[-1] += 1
            i += 1
            continue  # verbose mode ignores it: a count after it repeats the item before
        else:
            i, last = i + 1, 1
        totals[-1] += 1
    return sum(totals)


def check_lengths(config: GenerateConfig, hi: int | None, limit: str) -> None:
    """Impossible combinations that need no model, for a longest name `hi` (None: no limit yet);
    `limit` names where `hi` comes from in messages ("max_len")."""
    lo = config.min_len or 0
    if hi is not None and lo > hi:
        raise ConfigError(f"min_len {lo} is greater than {limit} ({hi})", field="min_len")
    for name, text in (("starts_with", config.starts_with), ("ends_with", config.ends_with),
                       *(("contains", c) for c in config.contains)):
        if hi is not None and len(text) > hi:
            raise ConfigError(f"{name} {text!r} is {len(text)} characters, more than {limit} ({hi})", field=name)
        for bad in config.excludes:
            if bad in text:
                raise ConfigError(f"{name} {text!r} contains {bad!r}, which excludes forbids", field=name)
    p, s = config.starts_with, config.ends_with
    if p and s and hi is not None:
        # a name of length n starts with p and ends with s iff they agree where they overlap
        lengths = range(max(len(p), len(s), lo), hi + 1)
        if not any(n >= len(p) + len(s) or p[n - len(s):] == s[: len(p) + len(s) - n] for n in lengths):
            raise ConfigError(f"no name of at most {hi} characters starts with {p!r} and ends with {s!r}",
                              field="ends_with")


def length_limit(model: CharModel, max_len: int | None, max_word_length: int) -> int:
    """The longest name a generation allows: the one length guard of every path.

    `max_len` if given, else max(2 × the longest training name, 32) (at most MAX_NAME_LENGTH),
    and never more than the model can read (its `max_length` - 1: the boundary takes a position).
    """
    if max_len is None:
        max_len = min(max(2 * max_word_length, GUARD_AT_LEAST), MAX_NAME_LENGTH)
    if model.max_length is not None:
        max_len = min(max_len, model.max_length - 1)
    return max_len


# --- what a generation found --------------------------------------------------------------------
@dataclass
class Generation:
    """Names found, and how hard they were to find."""

    names: list[str]  # from `generate`; a stream's statistics keep none (its names were yielded)
    requested: int
    found: int = 0
    tries: int = 0  # draws examined, the rejected and the unfinished included
    seconds: float = 0.0
    method: str = "plain"  # "exact", "guided", "rejection" or "plain" (the method that ended the search)
    stop_reason: str | None = None  # None: every requested name was found; "max-tries", "time-budget", "closed"
    unfinished: int = 0  # draws that reached the length guard without ending (dropped, counted in tries)
    max_len: int | None = None  # the length guard in force (see `length_limit`)
    particles: int = 0  # guided sampling: draws made (see namesmith.generation.guided)
    effective_sample_size: float | None = None  # guided sampling: Kish's ESS of their importance weights
    # draws turned away by each filter of choosing a name (`choosing_filters`: popularity, not_in_catalogue, ...)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.stop_reason is None and self.found == self.requested

    @property
    def acceptance(self) -> float | None:
        return self.found / self.tries if self.tries else None

    def message(self, option: Callable[[str], str] = str) -> str:
        """One line on the search; `option` spells a parameter as the caller's user knows it
        (the CLI passes its flags)."""
        rate = "n/a" if self.acceptance is None else f"{100 * self.acceptance:.3g}%"
        text = (f"found {self.found} of {self.requested} names in {self.tries:,} tries "
                f"({self.seconds:.2f} s, acceptance {rate}, {self.method} sampling")
        if self.effective_sample_size is not None and self.method == "guided":
            text += f", effective sample size {self.effective_sample_size:,.0f} of {self.particles:,} particles"
        elif self.effective_sample_size is not None:  # "auto" guided first, then found rejection faster
            text += (f" after {self.particles:,} guided particles, effective sample size "
                     f"{self.effective_sample_size:,.0f}: rejection keeps more names per draw here")
        text += ")"
        if self.rejected:
            text += "; turned away: " + ", ".join(f"{n:,} by {option(f)}" for f, n in self.rejected.items())
        if self.stop_reason == "closed":
            text += "; stopped early by its caller"
        elif self.stop_reason:
            what = option("max_tries" if self.stop_reason == "max-tries" else "time_budget")
            text += (f"; stopped at the {what} limit: the constraints are impossible or too rare under this "
                     f"model; loosen them or raise {what}")
        return text

    def unfinished_message(self, option: Callable[[str], str] = str) -> str | None:
        """One line on the draws that hit the length guard, if any (None: there were none)."""
        if not self.unfinished:
            return None
        return (f"{self.unfinished:,} of {self.tries:,} draws reached the length limit ({option('max_len')} "
                f"{self.max_len}) without ending and were dropped")

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "found": self.found, "tries": self.tries,
                "acceptance": self.acceptance, "seconds": self.seconds, "method": self.method,
                "complete": self.complete, "stop_reason": self.stop_reason, "unfinished": self.unfinished,
                "max_len": self.max_len, "particles": self.particles,
                "effective_sample_size": self.effective_sample_size, "rejected": dict(self.rejected)}


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
    """Deterministic automaton of the constraints: delta (Q, V), accept (Q,), start state.

    delta is -1 where a token completes an excluded pattern: no valid name goes on from there.
    """

    delta: torch.Tensor
    accept: torch.Tensor
    start: int


def build_automaton(vocab: Vocab, config: GenerateConfig,
                    max_states: int = MAX_AUTOMATON_STATES) -> Automaton | None:
    """Product of one KMP matcher per pattern, and of the syllable counter's automaton for `syllables`
    (namesmith.choosing.syllables), reachable states only (None: more than max_states).

    The prefix is fed through it, so the start state already accounts for `starts_with`.
    """
    V = vocab.size
    ends = vocab.encode(config.ends_with)
    contains = [vocab.encode(c) for c in config.contains]
    excludes = [vocab.encode(e) for e in config.excludes if not vocab.unknown_chars(e)]  # others never occur
    patterns = [ends, *contains, *excludes]
    tables = [kmp_automaton(p, V) for p in patterns]
    n_contains = len(contains)
    syllables = None if config.syllables is None else syllable_automaton(vocab.chars, *config.syllables)

    def step(state: tuple, c: int) -> tuple | None:
        new = []
        if syllables is not None:  # the last component: the syllable counter's state
            x = int(syllables.step[state[-1], c])
            if x < 0:
                return None  # too many syllables already, or a letter of a script it does not count
            state, last = state[:-1], (x,)
        else:
            last = ()
        for i, (j, table, p) in enumerate(zip(state, tables, patterns)):
            if 1 <= i <= n_contains and j == len(p):
                new.append(j)  # found once is found for good
                continue
            j = int(table[j, c])
            if i > n_contains and j == len(p):
                return None  # an excluded pattern
            new.append(j)
        return (*new, *last)

    start: tuple | None = tuple(0 for _ in patterns) + ((0,) if syllables is not None else ())
    for c in vocab.encode(config.starts_with):
        start = step(start, c)
    assert start is not None, "check_lengths refuses a prefix with an excluded pattern"
    index = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    for state in order:  # breadth-first; `order` grows as states are found
        row = [-1]  # column 0: the end token, unused
        for c in range(1, V):
            nxt = step(state, c)
            if nxt is None:
                row.append(-1)
                continue
            if nxt not in index:
                if len(index) >= max_states:
                    return None
                index[nxt] = len(order)
                order.append(nxt)
            row.append(index[nxt])
        rows.append(row)
    accept = [s[0] == len(ends) and all(s[1 + i] == len(contains[i]) for i in range(n_contains))
              and (syllables is None or bool(syllables.accept[s[-1]])) for s in order]
    return Automaton(torch.tensor(rows, dtype=torch.long), torch.tensor(accept), 0)


# --- the model as a finite Markov chain --------------------------------------------------------
@dataclass
class MarkovChain:
    """A model with finitely many states: in state s the next token is c with probability
    probs[s, c], and the state becomes next_state[s, c]."""

    probs: torch.Tensor  # (S, V) float64 sampling distribution (after temperature, top-k, top-p)
    next_state: torch.Tensor  # (S, V) long
    start: int  # the state after the boundary token that starts every name
    # (T + 1, S) float64: log-weight of ending in state s at length min(ℓ, T), a calibrated model's tilt
    # (namesmith.generation.calibration); None: every ending weighs 1
    end_log_weights: torch.Tensor | None = None

    def state_after(self, tokens: list[int]) -> int:
        state = self.start
        for t in tokens:
            state = int(self.next_state[state, t])
        return state


@torch.inference_mode()
def markov_chain(model: CharModel, vocab_size: int, config: GenerateConfig) -> MarkovChain | None:
    """The model as a finite Markov chain, if it is one with few enough states (else None).

    A model that declares its chain (`CharModel.markov_chain`: the n-gram's stored context rows, a
    bigram's last token) is that chain; a window model's (context k) states are the V^k contexts,
    tabulated by running the model. A calibrated model's chain carries its tilt as weights on
    ending (`MarkovChain.end_log_weights`); None if its states do not know their last token.
    """
    V, k = vocab_size, model.context_size
    own_chain = model.markov_chain()
    if own_chain is not None:
        logits, next_state, start = own_chain
    elif k is not None and V**k <= MAX_ENUMERATED_CONTEXTS:
        S = V**k  # state = the last k tokens as base-V digits, oldest first; all boundaries at the start
        contexts = (torch.arange(S).unsqueeze(1) // V ** torch.arange(k - 1, -1, -1) % V) if k else \
            torch.zeros(1, 1, dtype=torch.long)  # (S, k)
        logits = torch.cat([model(contexts[i:i + 4096].to(model.device))[:, -1].float().cpu()
                            for i in range(0, S, 4096)])
        next_state, start = (torch.arange(S).unsqueeze(1) * V + torch.arange(V)) % S, 0
    else:
        return None
    probs = next_token_probs(logits.float().cpu(), **config.decoding).double()
    next_state = next_state.cpu().long()
    end_log_weights = None
    if model.calibration is not None:
        end_log_weights = chain_end_log_weights(model.calibration, next_state, probs, int(start))
        if end_log_weights is None:
            return None
    return MarkovChain(probs, next_state, int(start), end_log_weights)


def reachable_states(chain: MarkovChain, automaton: Automaton, start: tuple[int, int], max_states: int,
                     deadline: float | None = None,
                     clock: Callable[[], float] = time.perf_counter) -> torch.Tensor | None:
    """Sorted codes q·S + s of the (automaton, chain) states reachable from `start` by tokens of
    non-zero probability that no excluded pattern forbids (None: more than max_states). `_OutOfTime`
    once `deadline` (on `clock`) passes: with a syllable range, the order-6 n-gram has about 150,000
    such states, and the search took over a minute on a busy machine, past any time budget."""
    S = chain.probs.size(0)
    possible = chain.probs[:, 1:] > 0  # (S, V-1): the end token leads nowhere
    frontier = torch.tensor([start[0] * S + start[1]])
    # the states seen, as one flag per (q, s) pair where that fits (a lookup per step, where testing each level
    # against the sorted list of all states seen so far cost the order-6 n-gram's syllable ranges 18 s), else a list
    visited = torch.zeros(automaton.delta.size(0) * S, dtype=torch.bool) \
        if automaton.delta.size(0) * S <= MAX_VISITED_FLAGS else None
    seen = frontier
    if visited is not None:
        visited[frontier] = True
        level = torch.zeros_like(visited)
    found = 1
    while len(frontier):
        if deadline is not None and clock() > deadline:
            raise _OutOfTime
        q, s = frontier // S, frontier % S
        nq, ns = automaton.delta[q, 1:], chain.next_state[s, 1:]  # (F, V-1)
        nxt = (nq * S + ns)[(nq >= 0) & possible[s]]
        if visited is not None:  # the new states, each once, in order: flagged in a second map, then read off it
            fresh = nxt[~visited[nxt]]
            visited[fresh] = True
            level[fresh] = True
            frontier = level.nonzero().squeeze(1)
            level[frontier] = False
        else:
            nxt = torch.unique(nxt)
            frontier = nxt[~torch.isin(nxt, seen)]
            seen = torch.cat([seen, frontier])
        found += len(frontier)
        if found > max_states:
            return None
    return visited.nonzero().squeeze(1) if visited is not None else seen.sort().values


def _log_weights(log_probs: torch.Tensor, end: torch.Tensor, step: torch.Tensor, beta_next: torch.Tensor,
                 can_end: bool) -> torch.Tensor:
    """Log-weights (n, V) of the next token from n product states: token c ≥ 1 continues into
    β_{ℓ+1} of the state it leads to (`step`, the sentinel slot where it cannot); the end token
    ends here if the name may end (`end`: on β_{ℓ+1}'s scale, -inf where the automaton rejects)."""
    w = log_probs + beta_next.index_select(0, step.view(-1)).view_as(step)  # index_select: faster than [step]
    w[:, BOUNDARY] = end if can_end else -math.inf
    return w


def _normalised_cdf(log_weights: torch.Tensor) -> torch.Tensor:
    """Row-wise CDF (unnormalised is fine for `draw`) of log-weights; rows that are all -inf give 0s."""
    top = log_weights.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (log_weights - top).exp_().cumsum(1)


def exact_table_bytes(states: int, vocab_size: int, room: int, chain_states: int) -> int:
    """An upper estimate of the memory an `ExactSampler` takes at the peak of its build, for `states`
    reachable (automaton, chain) states, `room` + 1 lengths and a chain of `chain_states`: the tables it
    keeps (next state int64 and log-probabilities float32 per (state, token), β float32 per (length,
    state), the CDFs float32 where tabulated), the (state, token) int64/float64 arrays of building them,
    one block of `BUILD_CELLS` cells at a time (automaton and chain steps, their codes, the float64
    log-probabilities and log-weights), the (state,) vectors, and the chain's own (S, V) probabilities,
    next states and log-probabilities."""
    cells = states * vocab_size
    cdfs = 4 * (room + 1) * cells if (room + 1) * cells <= PRECOMPUTE_CDFS else 0
    kept = 12 * cells + 4 * (room + 2) * (states + 1) + cdfs
    building = 8 * 8 * min(cells, BUILD_CELLS) + 8 * 8 * states  # a block's (row, token) arrays; (state,) vectors
    return kept + building + 24 * chain_states * vocab_size


class ExactSampler:
    """Samples the chain conditioned on the automaton accepting and min_len ≤ length ≤ max_len."""

    def __init__(self, chain: MarkovChain, automaton: Automaton, vocab: Vocab, prefix: str, min_len: int,
                 max_len: int, seed: int, deadline: float | None = None, *, max_bytes: int | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        """`deadline` is on `clock`; `max_bytes` bounds `exact_table_bytes` (NotAvailable beyond it, before
        the tables are allocated)."""
        self.vocab, self.prefix, self.min_len, self.max_len = vocab, prefix, min_len, max_len
        S, V = chain.probs.shape
        self.p0 = len(prefix)
        room = max_len - self.p0
        if room < 0:
            raise NotAvailable("the prefix is longer than the longest name allowed")
        start = (automaton.start, chain.state_after(vocab.encode(prefix)))
        codes = reachable_states(chain, automaton, start, MAX_EXACT_CELLS // V, deadline, clock)
        if codes is None:
            raise NotAvailable(f"more than {MAX_EXACT_CELLS // V:,} (constraint, model) states "
                            "(namesmith.generation.generate.MAX_EXACT_CELLS)")
        N = len(codes)
        if (room + 2) * (N + 1) > MAX_EXACT_TABLE:
            raise NotAvailable(f"{N:,} states × {room + 1} lengths is more than {MAX_EXACT_TABLE:,} "
                            "(namesmith.generation.generate.MAX_EXACT_TABLE)")
        needed = exact_table_bytes(N, V, room, S)
        if max_bytes is not None and needed > max_bytes:
            raise NotAvailable(f"its tables would take about {needed / 1e6:,.0f} MB to build, more than the "
                               f"{max_bytes / 1e6:,.0f} MB one build may take (table_bytes)")
        q_of, s_of = codes // S, codes % S
        chain_log_probs = chain.probs.log()  # (S, V) float64
        self.step = torch.empty(N, V, dtype=torch.long)  # next product state
        self.log_probs = torch.empty(N, V)  # float32
        rows = max(1, BUILD_CELLS // V)
        for lo in range(0, N, rows):  # a block of rows at a time: the build's temporaries are a block's
            if deadline is not None and clock() > deadline:
                raise _OutOfTime
            q, s = q_of[lo:lo + rows], s_of[lo:lo + rows]
            nq, ns = automaton.delta[q], chain.next_state[s]  # (rows, V)
            targets = (nq * S + ns).clamp_min(0)
            step = torch.searchsorted(codes, targets).clamp_max(N - 1)
            log_probs = chain_log_probs[s]
            blocked = (nq < 0) | (log_probs == -math.inf)
            blocked[:, BOUNDARY] = True
            assert (codes[step] == targets)[~blocked].all(), "every possible step stays among the reachable states"
            step[blocked] = N  # the sentinel: the end token, impossible tokens, excluded patterns
            self.step[lo:lo + rows], self.log_probs[lo:lo + rows] = step, log_probs
        # end stays float64: it is shifted by log_scale
        end = torch.where(automaton.accept[q_of], chain_log_probs[s_of, BOUNDARY], -math.inf)  # (N,)
        self.z0 = int(torch.searchsorted(codes, torch.tensor(start[0] * S + start[1])))
        self.end = end
        # a calibrated chain's weights on ending, (T + 1, N): ending at length ℓ weighs row min(ℓ, T)
        self.end_weights = None if chain.end_log_weights is None else chain.end_log_weights[:, s_of]
        self.generator = torch.Generator().manual_seed(seed)
        self.shared: dict[str, Any] = {}  # derived tables, shared with the copies (see `with_sentinel`)
        self._backward(self.log_probs, end, room, deadline, clock)
        kept = [self.step, self.log_probs, self.end, self.beta, self.log_scale, *([self.cdf] if self.cdf is not None
                                                                                else [])]
        self.nbytes = sum(t.nbytes for t in kept) + self.step.nbytes  # and room for `with_sentinel`'s copy

    def _backward(self, log_probs: torch.Tensor, end: torch.Tensor, room: int, deadline: float | None,
                  clock: Callable[[], float] = time.perf_counter) -> None:
        """β̃ (room + 2, N + 1) float32: row t holds log β at length |prefix| + t, shifted so its
        largest entry is 0 (the shift in `log_scale`); the last row and column are the -inf sentinels."""
        N = len(end)
        self.beta = torch.full((room + 2, N + 1), -math.inf)
        self.log_scale = torch.zeros(room + 2, dtype=torch.float64)
        tabulate = (room + 1) * N * log_probs.size(1) <= PRECOMPUTE_CDFS
        self.cdf = torch.empty(room + 1, *log_probs.shape) if tabulate else None
        beta_next = torch.full((N + 1,), -math.inf, dtype=torch.float64)
        beta = torch.empty(N, dtype=torch.float64)
        rows = max(1, BUILD_CELLS // log_probs.size(1))
        for t in range(room, -1, -1):
            end = self.end_at(t) - self.log_scale[t + 1]  # relative to β_{ℓ+1}'s scale
            for lo in range(0, N, rows):  # a block of rows at a time: the temporaries are a block's
                if deadline is not None and clock() > deadline:
                    raise _OutOfTime
                w = _log_weights(log_probs[lo:lo + rows], end[lo:lo + rows], self.step[lo:lo + rows], beta_next,
                                 self.p0 + t >= self.min_len)
                beta[lo:lo + rows] = torch.logsumexp(w, 1)
                if self.cdf is not None:
                    self.cdf[t, lo:lo + rows] = _normalised_cdf(w).float()
            shift = float(beta.max())
            shift = shift if math.isfinite(shift) else 0.0
            beta_next[:N] = beta - shift
            self.beta[t, :N] = beta_next[:N].float()
            self.log_scale[t] = self.log_scale[t + 1] + shift

    def end_at(self, t: int) -> torch.Tensor:
        """(N,) float64: log P(end | state), weighted as a name of length |prefix| + t ends (calibration)."""
        if self.end_weights is None:
            return self.end
        return self.end + self.end_weights[min(self.p0 + t, self.end_weights.size(0) - 1)]

    def with_sentinel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` and `end` with a row for the sentinel state N (it leads to itself and never ends), for
        guided sampling; built once and shared by the copies a cache hands out."""
        if "sentinel" not in self.shared:
            N, V = self.step.shape
            self.shared["sentinel"] = (torch.cat([self.step, torch.full((1, V), N)]),
                                       torch.cat([self.end, torch.tensor([-math.inf], dtype=self.end.dtype)]))
        return self.shared["sentinel"]

    @property
    def log_p_valid(self) -> float:
        """log P(the model's name with this prefix satisfies the constraints)."""
        return float(self.beta[0, self.z0].double() + self.log_scale[0])

    @torch.inference_mode()
    def run(self, batch: int, deadline: float | None = None) -> Batch | None:
        """Draw `batch` names, every one valid (None: the deadline passed first).

        The loop runs in NumPy (a request's batch is small, and NumPy's calls cost a fraction of
        torch's); the uniforms come from the torch generator, so a seed draws what it always has."""
        room = self.max_len - self.p0
        tokens = np.zeros((batch, max(room, 0)), dtype=token_dtype(self.vocab.size))
        lengths = np.full(batch, -1, dtype=np.int64)
        active = np.arange(batch)
        z = np.full(batch, self.z0, dtype=np.int64)
        step, log_probs, beta = self.step.numpy(), self.log_probs.numpy(), self.beta.numpy()
        log_scale = self.log_scale.numpy()
        for t in range(room + 1):
            if deadline is not None and time.perf_counter() > deadline:
                return None
            if self.cdf is not None:
                cdf = self.cdf[t].numpy()[z]
            else:  # _log_weights and _normalised_cdf for these rows, in NumPy
                w = log_probs[z] + beta[t + 1][step[z]]
                w[:, BOUNDARY] = (self.end_at(t).numpy()[z] - log_scale[t + 1]).astype(np.float32) \
                    if self.p0 + t >= self.min_len else -np.inf
                top = w.max(1, keepdims=True)
                top[~np.isfinite(top)] = 0.0
                cdf = np.exp(w - top).cumsum(1)
            nxt = draw_numpy(cdf, self.generator)
            ended = nxt == BOUNDARY
            lengths[active[ended]] = t
            going = np.flatnonzero(~ended)
            if len(going) == 0:
                break
            active, nxt, z = active[going], nxt[going], z[going]
            tokens[active, t] = nxt
            z = step[z, nxt]
        assert (lengths >= 0).all(), "the last step can only end the name"
        return finish_batch(tokens, lengths, self.vocab, self.prefix)


class TableBudget:
    """What exact tables may take in one process: how many builds run at once (`builders`), how much memory
    one build may take (`table_bytes`, estimated by `exact_table_bytes` before anything is allocated), how
    long a background build may run (`build_seconds`; one its caller waits for ends with the caller's
    time budget, so a seed gives the same names on a slow machine), and how many bytes of built tables
    are kept (`cache_bytes`, least recently used first out, across every `ExactCache` that shares the
    budget: a server's models, their conditions and guides alike, since they share its memory).
    Unbounded, a server's background builds, one per new set of constraints, once took 117 threads and
    22.4 GB in 175 s (issue 31).

    A build that would pass `table_bytes` or `build_seconds` is "not available", and the constraints are
    sampled otherwise (rejection, or guided); while every builder is busy, a new request does the same
    without queueing a build. `clock` times the builds (tests pass their own).
    """

    def __init__(self, builders: int = TABLE_BUILDERS, table_bytes: int = TABLE_BYTES,
                 cache_bytes: int = TABLE_CACHE_BYTES, build_seconds: float = TABLE_BUILD_SECONDS,
                 clock: Callable[[], float] = time.perf_counter):
        self._changed = threading.Condition()  # guards everything below; notified when a builder is freed
        self._building = 0
        self._held: dict[tuple[int, tuple], tuple[ExactCache, int]] = {}  # (cache, key) -> bytes, oldest use first
        self.held_bytes = 0
        self.clock = clock
        self.builders, self.table_bytes, self.cache_bytes, self.build_seconds = 1, 1, 1, 1.0
        self.configure(builders=builders, table_bytes=table_bytes, cache_bytes=cache_bytes,
                       build_seconds=build_seconds)

    def configure(self, **limits: float) -> None:
        """Change some limits (`builders`, `table_bytes`, `cache_bytes`, `build_seconds`), as a server does at
        start; builds already running finish, and tables over the new `cache_bytes` leave at once."""
        for name, value in limits.items():
            _check(name in ("builders", "table_bytes", "cache_bytes", "build_seconds"), name, "is not a table limit")
            _check(_is_number(value) and value > 0 and (name == "build_seconds" or _is_int(value)), name,
                   f"must be a positive {'number' if name == 'build_seconds' else 'integer'}, got {value!r}")
        with self._changed:
            for name, value in limits.items():
                setattr(self, name, value)
            _check(self.cache_bytes >= self.table_bytes, "cache_bytes",
                   f"({self.cache_bytes:,}) must be at least table_bytes ({self.table_bytes:,}): a built table must "
                   "fit")
            self._changed.notify_all()
        self._evict()

    def start_build(self, timeout: float | None) -> bool:
        """Take a builder's place, waiting up to `timeout` seconds for one (0: no wait; None: as long as it
        takes); False if none came. `end_build` gives it back."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._building < self.builders, timeout):
                return False
            self._building += 1
            return True

    def end_build(self) -> None:
        with self._changed:
            self._building -= 1
            self._changed.notify()

    def kept(self, cache: ExactCache, key: tuple, nbytes: int) -> None:
        """`cache` keeps the entry `key` of `nbytes`: count it, and drop the least recently used over `cache_bytes`."""
        with self._changed:
            old = self._held.pop((id(cache), key), None)
            self.held_bytes += nbytes - (old[1] if old else 0)
            self._held[(id(cache), key)] = (cache, nbytes)
        self._evict()

    def used(self, cache: ExactCache, key: tuple) -> None:
        with self._changed:
            held = self._held.pop((id(cache), key), None)
            if held is not None:
                self._held[(id(cache), key)] = held  # most recently used last

    def dropped(self, cache: ExactCache, key: tuple) -> None:
        with self._changed:
            held = self._held.pop((id(cache), key), None)
            self.held_bytes -= held[1] if held else 0

    def _evict(self) -> None:
        leaving = []
        with self._changed:
            while self.held_bytes > self.cache_bytes and self._held:
                (_, key), (cache, nbytes) = next(iter(self._held.items()))
                del self._held[(id(cache), key)]
                self.held_bytes -= nbytes
                leaving.append((cache, key))
        for cache, key in leaving:  # outside this lock: a cache's lock is never taken while holding it
            cache.discard(key)


TABLES = TableBudget()  # the process's budget, shared by every cache unless given another (`NameModel.limit_tables`)


class ExactCache:
    """The exact samplers' tables of one trained model, reused across requests (a server's, say).

    Building the tables is most of the cost of a small request (about 0.5-1 s for the default
    n-gram and `ends_with="ette"`); they depend on the constraints, the decoding options and the
    length limit, not on the seed or the number of names. Each use gets a shallow copy with its own
    random generator, so concurrent requests share only read-only tables. The `size` most recently
    used entries are kept, and the process's tables within `budget` (`TableBudget`: builders, bytes,
    seconds); a model's answer "not exact here" is kept too. Only for models that no longer change
    (a cache outliving training would serve stale tables).

    With `background` (a long-running server), tables are built once per key in a daemon thread,
    whoever asks first (while the budget has a free builder): a request waits for them until its
    deadline and then samples otherwise, while the build goes on for the requests that come after;
    requests asking for tables being built wait for that build instead of starting their own (a
    burst of cold requests would otherwise build the same tables once each, every build starved of
    the CPU by the others, each given up at its deadline). Without it the asking thread builds them
    itself, within its deadline (a short-lived process would only be slowed by a build it does not
    wait for). A background cache also keeps the model's draws indexed by sound (`sound_draws`), built the
    same way.
    """

    def __init__(self, size: int = 8, background: bool = False, budget: TableBudget | None = None):
        self.size, self.background = size, background
        self.budget = budget if budget is not None else TABLES
        self._entries: dict[tuple, ExactSampler | SoundDraws | NotAvailable] = {}
        self._building: dict[tuple, threading.Event] = {}  # set when the key's build ends, built or not
        self._lock = threading.Lock()

    @staticmethod
    def key(config: GenerateConfig, max_len: int) -> tuple:
        return (config.starts_with, config.ends_with, config.contains, config.excludes, config.min_len,
                config.syllables, config.temperature, config.top_k, config.top_p, max_len)

    def get(self, key: tuple) -> ExactSampler | SoundDraws | NotAvailable | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._entries[key] = entry  # most recently used last
        if entry is not None:
            self.budget.used(self, key)
        return entry

    def put(self, key: tuple, entry: ExactSampler | SoundDraws | NotAvailable) -> None:
        leaving = []
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.size:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                leaving.append(oldest)
        for old in leaving:
            self.budget.dropped(self, old)
        self.budget.kept(self, key, entry.nbytes if isinstance(entry, (ExactSampler, SoundDraws)) else 1024)

    def discard(self, key: tuple) -> None:
        """Forget the entry `key` (the budget's memory is needed for others)."""
        with self._lock:
            self._entries.pop(key, None)

    def build_and_wait(self, key: tuple, build: Callable[[float], ExactSampler | SoundDraws],
                       deadline: float | None) -> ExactSampler | SoundDraws | NotAvailable | None:
        """The key's entry, built in a daemon thread by `build(deadline on the budget's clock)` (once per key,
        however many wait for it); None if it is not ready by `deadline` (the build goes on), if every
        builder of the budget is busy (no build is started), or if the build failed."""
        with self._lock:
            done = self._building.get(key)
            if done is None and key not in self._entries and self.budget.start_build(timeout=0):
                done = self._building[key] = threading.Event()
                threading.Thread(target=self._build, args=(key, build, done), name="namesmith-exact-tables",
                                 daemon=True).start()
        if done is not None:
            done.wait(None if deadline is None else max(0.0, deadline - time.perf_counter()))
        return self.get(key)

    def _build(self, key: tuple, build: Callable[[float], ExactSampler | SoundDraws], done: threading.Event) -> None:
        try:
            self.put(key, build(self.budget.clock() + self.budget.build_seconds))
        except NotAvailable as why:
            self.put(key, why)
        except _OutOfTime:
            self.put(key, _too_slow(self.budget))
        except Exception:  # noqa: BLE001 - a failed background build only means no cached tables
            pass
        finally:
            self.budget.end_build()
            with self._lock:
                self._building.pop(key, None)
            done.set()


def _too_slow(budget: TableBudget) -> NotAvailable:
    return NotAvailable(f"its tables take more than {budget.build_seconds:g} s to build (build_seconds)")


def exact_sampler(model: CharModel, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                  deadline: float | None = None, cache: ExactCache | None = None) -> ExactSampler:
    """The exact sampler for this model and these constraints, from `cache` when it holds them (or,
    for a background cache, once its build ends, if that is before `deadline`). Builds keep within
    the cache's `TableBudget` (the process's without a cache)."""
    key = ExactCache.key(config, max_len)
    budget = cache.budget if cache is not None else TABLES
    entry = cache.get(key) if cache is not None else None
    if entry is None and cache is not None and cache.background:
        entry = cache.build_and_wait(
            key, lambda until: _build_exact_sampler(model, vocab, config, max_len, seed, until, budget), deadline)
        if entry is None:
            raise _OutOfTime
    if entry is None:
        if not budget.start_build(None if deadline is None else max(0.0, deadline - time.perf_counter())):
            raise _OutOfTime  # every builder stayed busy until the deadline
        # the caller waits for this build, so its own deadline bounds it (`build_seconds` bounds the builds
        # that outlive their request); `_OutOfTime` passes up, and a later request may build them
        until = None if deadline is None else budget.clock() + deadline - time.perf_counter()  # on the budget's clock
        try:
            entry = _build_exact_sampler(model, vocab, config, max_len, seed, until, budget)
        except NotAvailable as why:
            entry = why
        finally:
            budget.end_build()
        if cache is not None:
            cache.put(key, entry)
    elif isinstance(entry, ExactSampler):
        entry = copy.copy(entry)  # the tables are shared and read-only; the generator is this request's
        entry.generator = torch.Generator().manual_seed(seed)
    if isinstance(entry, NotAvailable):
        # a fresh exception each time: raising the cached one again would chain every raise's traceback onto it,
        # keeping each request's frames alive (a server leaked about 15 KB per request that way)
        raise NotAvailable(*entry.args)
    return entry


def _build_exact_sampler(model: CharModel, vocab: Vocab, config: GenerateConfig, max_len: int, seed: int,
                         deadline: float | None = None, budget: TableBudget | None = None) -> ExactSampler:
    """The exact sampler for this model and these constraints (`NotAvailable` says why there is none;
    `_OutOfTime` if `deadline`, on the budget's clock, passes while its tables are built)."""
    budget = budget if budget is not None else TABLES
    chain = markov_chain(model, vocab.size, config)
    if chain is None:
        raise NotAvailable(f"a {model.model_type} model is not a finite Markov chain with at most "
                        f"{MAX_ENUMERATED_CONTEXTS:,} contexts")
    automaton = build_automaton(vocab, config)
    if automaton is None:
        raise NotAvailable(f"the constraints need more than {MAX_AUTOMATON_STATES:,} automaton states")
    return ExactSampler(chain, automaton, vocab, config.starts_with, max(config.min_len or 0, 1), max_len, seed,
                        deadline, max_bytes=budget.table_bytes, clock=budget.clock)


def sound_draws(model: CharModel, vocab: Vocab, config: GenerateConfig, max_word_length: int,
                cache: ExactCache, build: bool = True) -> SoundDraws | None:
    """The model's draws indexed by sound (namesmith.generation.sound_draws) under `config`'s decoding, if `cache`
    holds them; a background cache (a server's) starts building them (with `build`), once, for the requests that
    come after."""
    key = ("sound draws", config.temperature, config.top_k, config.top_p)
    if not (cache.background and build):
        entry = cache.get(key)
    else:
        guard = length_limit(model, None, max_word_length)

        def make(until: float) -> SoundDraws:
            with eval_mode(model):
                run = plain_sampler(model, vocab, prefix="", max_length=guard, seed=0, **config.decoding).run
                if model.calibration is not None:
                    run = tilted_draws(run, model.calibration, vocab, 0)
                return SoundDraws.build(run, guard, deadline=until, clock=cache.budget.clock)

        entry = cache.build_and_wait(key, make, deadline=time.perf_counter())
    return entry if isinstance(entry, SoundDraws) else None


# --- the search loop ----------------------------------------------------------------------------
def _check_vocab(vocab: Vocab, config: GenerateConfig) -> None:
    for name, text in (("starts_with", config.starts_with), ("ends_with", config.ends_with),
                       *(("contains", c) for c in config.contains)):
        unknown = vocab.unknown_chars(text)
        if unknown:
            raise ConfigError(f"{name} {text!r}: {', '.join(map(repr, dict.fromkeys(unknown)))} not in the model's "
                              "vocabulary, so no name can satisfy it", field=name)
    if config.syllables is not None:
        check_alphabet(vocab.chars)


def _name_test(config: GenerateConfig, exact: bool, known: Collection[str] | None) -> Callable[[str], bool] | None:
    """The cheap per-name test of what the sampler did not already enforce (None: nothing to test).
    `unique` and `regex` are checked by the search loop."""
    checks: list[Callable[[str], bool]] = []
    if not exact:
        lo = max(config.min_len or 0, 1)
        checks.append(lambda n: len(n) >= lo)
        if config.ends_with:
            checks.append(lambda n: n.endswith(config.ends_with))
        for c in config.contains:
            checks.append(lambda n, c=c: c in n)
        for e in config.excludes:
            checks.append(lambda n, e=e: e not in n)
        if config.syllables is not None:
            lo, hi = config.syllables
            checks.append(lambda n: lo <= (count_syllables(n) or 0) <= hi)
    if config.novel:
        checks.append(lambda n: n not in known)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda n: all(check(n) for check in checks)


def choosing_filters(config: GenerateConfig) -> list[tuple[str, Callable[[str], bool]]]:
    """The filters of choosing a name, each with the parameter that asks for it: a name's popularity, whether it
    is in any built-in list, whether it alliterates with the surname, whether it sounds like a name. The catalogue
    is read here, once per process (choosing.popularity), so a search pays for it before its first name, not during
    it."""
    filters: list[tuple[str, Callable[[str], bool]]] = []
    if config.popularity is not None or config.not_in_catalogue:
        index = popularity_index()
        if config.popularity is not None:
            admits = parse_popularity(config.popularity).admits
            filters.append(("popularity", lambda n: admits(index.best(n))))
        if config.not_in_catalogue:
            filters.append(("not_in_catalogue", lambda n: not index.is_known(n)))
    if config.alliteration != "any":
        wanted, surname = config.alliteration == "want", config.surname
        filters.append(("alliteration", lambda n: alliterates(n, surname) == wanted))
    if config.sounds_like:
        filters.append(("sounds_like", lambda n: sounds_alike(n, config.sounds_like)))
    return filters


def _passes(filters: list[tuple[str, Callable[[str], bool]]], name: str, rejected: dict[str, int]) -> bool:
    """Whether the name passes every filter; the first that turns it away is counted."""
    for field_, admits in filters:
        if not admits(name):
            rejected[field_] = rejected.get(field_, 0) + 1
            return False
    return True


def _regex_test(pattern: str) -> Callable[[str, float | None], bool]:
    """`search(name, deadline)`: whether the name matches, each match bounded in time."""
    search = compile_regex(pattern).search

    def matches(name: str, deadline: float | None) -> bool:
        timeout = REGEX_TIMEOUT
        if deadline is not None:
            timeout = min(timeout, deadline - time.perf_counter())
            if timeout <= 0:
                raise _OutOfTime
        try:
            return search(name, timeout=timeout) is not None
        except TimeoutError:
            if timeout < REGEX_TIMEOUT:  # the budget's time ran out, not the per-match limit
                raise _OutOfTime from None
            raise ConfigError(f"regex {_shown(pattern)} took more than {REGEX_TIMEOUT:g} s (CPU) to match one "
                              f"name ({len(name)} characters): it backtracks exponentially (nested repetition "
                              "such as (a+)+ or (a|a)+); simplify it", field="regex") from None

    return matches


class GenerationStream:
    """The names of one generation as they are found, batch by batch (see `iter_generate`).

    Iterate it for lists of names; `generation` holds the statistics so far (final once the
    iteration ends). `close()` (or leaving a `with` block) stops the search early.
    """

    def __init__(self, batches: Iterator[list[str]], generation: Generation):
        self._batches = batches
        self.generation = generation

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> list[str]:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_generate(model: CharModel, vocab: Vocab, config: GenerateConfig = GenerateConfig(), *,
                  max_word_length: int, known_words: Collection[str] | None = None,
                  cache: ExactCache | None = None, guide: Guide | None = None) -> GenerationStream:
    """Generate `config.num` names satisfying every constraint, yielded as they are found.

    `max_word_length` is the longest training name (the default length guard is twice that);
    `known_words` are the training data's words (all splits), needed for `novel`; `cache` keeps
    exact samplers' tables for later calls on the same (trained, unchanging) model. `guide` steers
    a model that is not a finite chain (`namesmith.generation.guided.Guide`): with it, method "auto" uses
    guided sampling where exact conditioning is not available, and "guided" asks for it.

    The contract, for the CLI and other streaming callers:
    - Everything that can be refused before sampling is refused here, before the first name:
      a `ConfigError` (its `field` the parameter) for characters outside the vocabulary, `novel`
      without `known_words`, lengths the guard makes impossible, constraints of probability 0
      under an exactly conditioned model, or `method="exact"` (or "guided") where it is not
      available. Exact tables (and a guide's twist tables) are built here too (within the time budget).
    - Iterating yields non-empty lists of names, in order, as each batch is examined: the first
      batch is small (`MIN_BATCH` draws), later ones grow up to the sampler's limit, so the first
      names come at once and memory is bounded by a batch (`namesmith.generation.sample.CHUNK` names,
      `MAX_BATCH_TOKENS` tokens), not by `num`. At most `num` names in all; the same seed gives
      the same names however they are consumed.
    - The iteration ends when `num` names were yielded or a budget ran out; `stream.generation`
      then holds the final statistics (`complete`, `stop_reason`, `tries`, `unfinished`, ...;
      its `names` stay empty). During iteration it holds the statistics so far.
    - A regex that backtracks for more than `REGEX_TIMEOUT` s on one name raises `ConfigError`
      (field "regex") from the iteration, after the names already yielded.
    - To stop early (e.g. on `BrokenPipeError` when stdout's reader has gone), call
      `stream.close()` or use `with iter_generate(...) as stream:`; nothing else is needed. The
      model is in eval mode while the stream runs and its mode is restored when it ends or closes.
    """
    start_time = time.perf_counter()
    deadline = None if config.time_budget is None else start_time + config.time_budget
    _check_vocab(vocab, config)
    if config.novel and known_words is None:
        raise ConfigError("novel needs the training word list (known_words)", field="novel")
    known = known_words if known_words is None or isinstance(known_words, (set, frozenset)) else set(known_words)
    max_len = length_limit(model, config.max_len, max_word_length)
    if config.max_len is None:
        check_lengths(config, max_len, f"the length guard (twice the longest training name, at least "
                                       f"{GUARD_AT_LEAST}; set max_len)")
    elif max_len < config.max_len:
        check_lengths(config, max_len, f"the longest name a {model.model_type} model can read")
    seed = config.seed if config.seed is not None else int(torch.randint(0, 2**62, ()).item())
    gen = Generation([], config.num, method="plain", max_len=max_len)
    run: Callable[[int, float | None], Batch | None] | None = None

    def draws() -> Callable[[int, float | None], Batch | None]:
        """The model's own draws (the prefix conditioned exactly): rejection sampling, or plain."""
        return plain_sampler(model, vocab, prefix=config.starts_with, max_length=max_len, seed=seed,
                             **config.decoding).run

    exact_too_slow = False
    # "auto" spends at most half the budget building exact (or a guide's) tables, then samples by rejection in
    # the rest (with a background cache, the tables go on being built for the next request)
    build_deadline = deadline if deadline is None or config.method != "auto" else \
        start_time + EXACT_BUILD_SHARE * config.time_budget
    if config.method == "exact" or (config.method == "auto" and config.structural):
        try:
            with eval_mode(model):
                exact = exact_sampler(model, vocab, config, max_len, seed, build_deadline, cache)
            if exact.log_p_valid == -math.inf:
                raise ConfigError("no name satisfies these constraints with non-zero probability under this model "
                                  "(at this temperature, top-k and top-p)")
            run, gen.method = exact.run, "exact"
        except NotAvailable as why:
            if config.method == "exact":
                raise ConfigError(f"method 'exact' is not available here: {why}; use 'auto' or 'rejection'",
                                  field="method") from None
        except _OutOfTime:
            exact_too_slow = True  # a finite chain after all: rejection, not guidance, for the rest of the budget
            if config.method == "exact":
                gen.method, gen.stop_reason = "exact", "time-budget"
    if run is None and gen.stop_reason is None and (config.method == "guided" or (
            config.method == "auto" and config.structural and guide is not None and not exact_too_slow)):
        if guide is None:
            raise ConfigError("method 'guided' needs an n-gram to steer by (the model's training words or an n-gram "
                              "inside it); use 'auto' or 'rejection'", field="method")
        try:
            with eval_mode(model):
                guided = guide(vocab, config, max_len, seed, build_deadline)
            if guided.twist.log_p_valid == -math.inf:
                raise ConfigError("no name satisfies these constraints (within the length limits)")
            # rejection keeps about P(valid) of its draws; guided sampling about as many whatever P(valid) is
            # (namesmith.generation.guided): "auto" guides only constraints the n-gram finds rare
            if config.method == "guided" or guided.twist.log_p_valid < math.log(GUIDE_BELOW):
                run, gen.method, gen.effective_sample_size = guided.run, "guided", 0.0
                if config.method == "auto":
                    run = _GuidedWhileFaster(guided, draws, gen)
        except NotAvailable as why:
            if config.method == "guided":
                raise ConfigError(f"method 'guided' is not available here: {why}; use 'auto' or 'rejection'",
                                  field="method") from None
        except _OutOfTime:
            if config.method == "guided":
                gen.method, gen.stop_reason = "guided", "time-budget"
    if run is None and gen.stop_reason is None:
        run = draws()
        gen.method = "rejection" if config.structural or config.regex is not None else "plain"
    if run is not None and model.calibration is not None and gen.method != "exact":  # the exact tables weigh it in
        run = tilted_draws(run, model.calibration, vocab, seed)
    if run is not None and config.sounds_like and gen.method in ("plain", "rejection") and cache is not None:
        index = sound_draws(model, vocab, config, max_word_length, cache)
        if index is not None and max_len <= index.max_len:
            fresh = run
            run = index.walk(config.sounds_like, config.starts_with, max_len, seed, then=lambda: fresh)
    filters = choosing_filters(config)
    batches = _search(model, run, config, gen, known, max_len, start_time, deadline, filters)
    return GenerationStream(batches, gen)


class _GuidedWhileFaster:
    """Method "auto" with a guide: guided sampling while it keeps more names per draw than rejection would, then
    rejection. Guided sampling keeps P(valid) / B of its particles (B: the largest importance weight seen, which
    only grows; generation.guided), rejection P(valid) of its draws, so guidance pays while B < 1 / GUIDED_COST.
    Both draw names from the model conditioned on the constraints, so a search may use one and then the other."""

    def __init__(self, guided: Any, rejection: Callable[[], Callable[[int, float | None], Batch | None]],
                 gen: Generation):
        self.guided, self.rejection, self.gen = guided, rejection, gen
        self.run: Callable[[int, float | None], Batch | None] = guided.run

    def __call__(self, size: int, deadline: float | None) -> Batch | None:
        drawn = self.run(size, deadline)
        if self.gen.method == "guided" and self.guided.log_bound > -math.log(GUIDED_COST):
            self.run, self.gen.method = self.rejection(), "rejection"
        return drawn


def _search(model: CharModel, run: Callable[[int, float | None], Batch | None] | None, config: GenerateConfig,
            gen: Generation, known: Collection[str] | None, max_len: int, start_time: float,
            deadline: float | None, filters: list[tuple[str, Callable[[str], bool]]]) -> Iterator[list[str]]:
    """The search loop behind `iter_generate`: draw, examine, yield, until done or out of budget."""
    test = _name_test(config, gen.method == "exact", known)
    matches = None if config.regex is None else _regex_test(config.regex)
    # a calibrated model's draws are filtered too (namesmith.generation.calibration.tilted_draws), except exact ones
    filtering = test is not None or matches is not None or config.unique or bool(filters) or (
        model.calibration is not None and gen.method != "exact")
    max_tries = config.max_tries or DEFAULT_TRIES_PER_NAME * config.num + MIN_TRIES
    largest = batch_limit(max_len)
    cap = min(MIN_BATCH, largest)
    seen: set[str] = set()
    with eval_mode(model):
        while run is not None and gen.found < config.num:
            if gen.tries >= max_tries:
                gen.stop_reason = "max-tries"
                break
            if deadline is not None and time.perf_counter() > deadline:
                gen.stop_reason = "time-budget"
                break
            need = config.num - gen.found
            if filtering:  # enough draws for what is missing at the acceptance rate so far
                rate = (gen.found + 1) / (gen.tries + 1) if gen.tries else 1.0
                size = max(MIN_BATCH, math.ceil(1.1 * need / rate))
            else:
                size = need
            size = min(size, cap, max_tries - gen.tries)
            cap = min(cap * BATCH_GROWTH, largest)
            drawn = run(size, deadline)
            if drawn is None:
                gen.stop_reason = "time-budget"
                break
            names, examined = drawn.names, len(drawn.names)  # unfiltered: at most `need`, all taken
            if filtering:
                names, examined = [], 0
                try:
                    for name in drawn.names:
                        examined += 1
                        if (test is None or test(name)) and not (config.unique and name in seen) \
                                and _passes(filters, name, gen.rejected) \
                                and (matches is None or matches(name, deadline)):
                            names.append(name)
                            if config.unique:
                                seen.add(name)
                            if len(names) == need:
                                break
                except _OutOfTime:
                    gen.stop_reason = "time-budget"
            # the draws examined: up to the last name looked at (all of them if every name was)
            draws = len(drawn.finished)
            if examined < len(drawn.names):
                draws = int(np.flatnonzero(drawn.finished)[examined - 1]) + 1 if examined else 0
            gen.tries += draws
            gen.unfinished += draws - examined - (0 if drawn.rejected is None else int(drawn.rejected[:draws].sum()))
            for field_, turned_away in drawn.turned_away.items():
                gen.rejected[field_] = gen.rejected.get(field_, 0) + int(turned_away[:draws].sum())
            if drawn.effective_sample_size is not None:  # a weighted sampler: its draws and their worth
                gen.particles += len(drawn.finished)
                gen.effective_sample_size += drawn.effective_sample_size
            gen.found += len(names)
            gen.seconds = time.perf_counter() - start_time
            if names:
                try:
                    yield names
                except GeneratorExit:  # the caller closed the stream
                    if gen.found < config.num:
                        gen.stop_reason = "closed"
                    raise
            if gen.stop_reason:
                break
    gen.seconds = time.perf_counter() - start_time


def generate(model: CharModel, vocab: Vocab, config: GenerateConfig = GenerateConfig(), *,
             max_word_length: int, known_words: Collection[str] | None = None,
             cache: ExactCache | None = None, guide: Guide | None = None) -> Generation:
    """Draw `config.num` names that satisfy every constraint, within the budget (all at once;
    see `iter_generate` for the streamed form and the arguments)."""
    stream = iter_generate(model, vocab, config, max_word_length=max_word_length, known_words=known_words,
                           cache=cache, guide=guide)
    names = [name for batch in stream for name in batch]
    stream.generation.names = names
    return stream.generation


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


@dataclass(frozen=True)
class KnownWords:
    """The words of a split as sets, built once per trained model: what novelty is checked against."""

    train: frozenset[str]
    heldout: frozenset[str]  # validation and test words that are not training words

    @classmethod
    def of(cls, split: Split) -> KnownWords:
        train = frozenset(split.train)
        return cls(train, frozenset(itertools.chain(split.val, split.test)) - train)

    @functools.cached_property
    def all(self) -> frozenset[str]:
        return self.train | self.heldout

    def add(self, summary: NoveltySummary, names: list[str]) -> None:
        """Count `names` into `summary` (one batch of a stream, or all the names)."""
        in_train = sum(n in self.train for n in names)
        in_heldout = sum(n in self.heldout for n in names)
        summary.total += len(names)
        summary.in_train += in_train
        summary.in_heldout += in_heldout
        summary.new += len(names) - in_train - in_heldout


def novelty_summary(names: list[str], split: Split | KnownWords | None,
                    unavailable: str | None = None) -> NoveltySummary:
    """Count names found in the train split, in validation/test (only), and nowhere."""
    if split is None:
        return NoveltySummary(len(names), unavailable=unavailable or "unknown")
    summary = NoveltySummary(0, 0, 0, 0)
    (split if isinstance(split, KnownWords) else KnownWords.of(split)).add(summary, names)
    return summary
