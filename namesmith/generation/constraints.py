"""The constraints as automata and per-name tests: what `ends_with`, `contains`, `excludes`, `syllables` and
`regex` mean for a name, in the two forms generation needs.

- A finite automaton (`build_automaton`), for exact conditioning (namesmith.generation.exact): one
  Knuth–Morris–Pratt matcher per pattern and the syllable counter's automaton
  (namesmith.choosing.syllables), their product explored from the start state, which has read `starts_with`.
  It has at most `MAX_AUTOMATON_STATES` states.
- Tests on a finished name (`name_test`, `regex_test`), for rejection sampling and the filters every
  method runs. The regex runs on the `regex` engine, which takes a timeout per match:
  min(`REGEX_TIMEOUT`, the time left). A pattern that backtracks for longer than `REGEX_TIMEOUT` on
  one name (nested repetition such as `(a|a)+b`) is a `ConfigError`, so no pattern holds a request
  past its budget for long, and a request without a time budget still ends. The engine counts the
  process's CPU time, so on a busy machine one match may run past the wall-clock budget by up to
  `REGEX_TIMEOUT` × the load; in a multi-threaded process the other threads' CPU counts too, so a match
  the engine stops before this thread spent half of `REGEX_TIMEOUT` on it runs again (`REGEX_TRIES`).

NumPy only: a generation without exact constraints never imports torch for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from namesmith.choosing.syllables import check_alphabet, count_syllables, syllable_automaton
from namesmith.core.clock import now
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.generation.config import REGEX_TIMEOUT, GenerateConfig, OutOfTime, compile_regex, shown_pattern

MAX_AUTOMATON_STATES = 2_000  # states of the constraints' automaton, at most
REGEX_TRIES = 8  # matches of one name at most, where the process's other threads ran out the engine's timeout


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

    delta: np.ndarray  # (Q, V) int64
    accept: np.ndarray  # (Q,) bool
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
    return Automaton(np.array(rows, dtype=np.int64), np.array(accept, dtype=bool), 0)


# --- the per-name tests of what a sampler did not enforce -------------------------------------------
def check_vocab(vocab: Vocab, config: GenerateConfig) -> None:
    for name, text in (("starts_with", config.starts_with), ("ends_with", config.ends_with),
                       *(("contains", c) for c in config.contains)):
        unknown = vocab.unknown_chars(text)
        if unknown:
            raise ConfigError(f"{name} {text!r}: {', '.join(map(repr, dict.fromkeys(unknown)))} not in the model's "
                              "vocabulary, so no name can satisfy it", field=name)
    if config.syllables is not None:
        check_alphabet(vocab.chars)


def name_test(config: GenerateConfig, exact: bool, known: Collection[str] | None) -> Callable[[str], bool] | None:
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


def regex_test(pattern: str) -> Callable[[str, float | None], bool]:
    """`search(name, deadline)`: whether the name matches, each match bounded in time."""
    search = compile_regex(pattern).search

    def matches(name: str, deadline: float | None) -> bool:
        spent = 0.0  # this thread's CPU seconds on this name
        for _ in range(REGEX_TRIES):
            timeout = REGEX_TIMEOUT
            if deadline is not None:
                timeout = min(timeout, deadline - now())
                if timeout <= 0:
                    raise OutOfTime
            start = time.thread_time()
            try:
                return search(name, timeout=timeout) is not None
            except TimeoutError:
                if timeout < REGEX_TIMEOUT:  # the budget's time ran out, not the per-match limit
                    raise OutOfTime from None
                spent += time.thread_time() - start
                if spent >= REGEX_TIMEOUT / 2:
                    break
                # the engine counts the whole process's CPU time: other threads (a server's builds, a test
                # suite's pools) used most of it, not this match, so it is no sign of backtracking: match again
        raise ConfigError(f"regex {shown_pattern(pattern)} took more than {REGEX_TIMEOUT:g} s (CPU) to match one "
                          f"name ({len(name)} characters): it backtracks exponentially (nested repetition "
                          "such as (a+)+ or (a|a)+); simplify it", field="regex")

    return matches

