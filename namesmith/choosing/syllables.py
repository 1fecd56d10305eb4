"""Syllables of a name from its spelling, as one finite-state machine (issue 30).

English-style orthographic syllabification, the rules that syllable counters since Flesch (1948)
have used: count the vowel groups (a, e, i, o, u and y), then correct them. The corrections here:

- y is a consonant at the start of a word before a vowel (Yolanda) and between vowels (Maya);
  u is a consonant after q before a vowel (Quinn, Henrique), and after g before e, i, y (Miguel).
- A final e is silent (Jane, Kyle), unless it is the word's only vowel group (Le) or ends a
  consonant + "le" (Mable; but not Giselle's "lle"). An "e" between a consonant and a final s is
  silent too (James), except after a sibilant (Moses: s, z, x, c, g). A final "ue" is one (Monique).
- Some vowel pairs are two syllables, hiatus: ia, io, iu, eo, ua, uo, ue (Maria, Leon, Joshua);
  "ia", "io", "iu" after c, g, h, s, t, x, z or ll are one (Patricia, Georgia, William). A word's
  first group of y + vowel after a consonant is two (Bryan, Dyer); a final ia, io, ea is two.
- "Mc" at the start is a syllable of its own (McKenzie). An accented é is never silent (José),
  and a vowel with a diaeresis starts a group of its own (Zoë, Chloë).
- Every word (split at spaces and hyphens) has at least one syllable.

These rules were chosen on a random half of the names of the `us` catalogue that the CMU
Pronouncing Dictionary has (14,789 names); benchmarks/bench_choosing.py reports their agreement
with CMU on both halves, beside syllapy's and pyphen's (about 94-95% here, 86% and 57% for those).

Supported: names in the Latin script, accents included (é, ñ, ø, ß ...). A name with a letter of
any other script has no count (`count_syllables` gives None; `--syllables` refuses a model without
Latin letters and never draws such names).

The rules run as a Mealy machine, reading one character at a time (`_step`, `_finish`): its state
is finite (the current vowel group, what came before it, a few flags), so the same rules become
a finite automaton (`SyllableMachine`, minimised by partition refinement, Moore 1956) that
namesmith.generation.constraints composes with the other constraints for exact sampling (`syllable_automaton`).
`count_syllables` runs the rules directly; the tests check that both agree on every built-in word.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from namesmith.core.errors import ConfigError
from namesmith.core.io import atomic_write_bytes, cache_dir

log = logging.getLogger("namesmith")

VOWELS = "aeiouy"
MAX_SYLLABLES = 20  # the largest count `parse_syllables` accepts (a range beyond it would mean nothing for names)
# the form of a syllable range in text: "2", "2-3", or empty/blank for any (the API's schema says it with this too)
SYLLABLES_PATTERN = r"^\s*(?:(\d{1,3})\s*(?:-\s*(\d{1,3})\s*)?)?$"
_HIATUS = ("ia", "io", "iu", "eo", "ua", "uo", "ue")  # vowel pairs read as two syllables
_SOFTENED = ("ia", "io", "iu")  # ... but one after a consonant that softens the i (Patricia, William)
_FINAL_TWO = ("ia", "io", "ea")  # two at the end of a word (Maria, Mario, Leah... Andrea)

# The alphabet the machine reads: characters fold onto these symbols (`symbol_of`). Consonants that no rule
# names fold onto "b"; "s" stands for s and x, "t" for t and h (softening an i, but not sibilant).
_CONSONANTS = "lszcgtqmb"
_ACUTE_E = "é"  # an e with an accent other than a diaeresis: never silent
_DIAERESIS = "äëïöüÿ"  # a vowel with a diaeresis: starts a vowel group of its own
_ALL_VOWELS = VOWELS + _ACUTE_E + _DIAERESIS
_WORD_BREAK = " "  # spaces and hyphens end a word
ALPHABET = tuple(_CONSONANTS + _ALL_VOWELS + _WORD_BREAK)
_FOLDED = {"æ": "a", "œ": "e", "ø": "o", "ı": "i", "ł": "l", "ß": "s", "đ": "b", "ð": "b", "þ": "t", "ŋ": "b"}
_BREAKS = frozenset(" -\u2010\u2011\u2012\u2013\u2014")


@functools.lru_cache(maxsize=4096)
def symbol_of(char: str) -> str | None:
    """The machine's symbol for one character (None: a letter of a script other than Latin)."""
    if char in _BREAKS:
        return _WORD_BREAK
    if not char.isalpha():
        return "b"  # an apostrophe, a dot, a digit: it separates vowel groups as a consonant does
    lower = char.lower()
    if lower in _FOLDED:
        return _FOLDED[lower]
    decomposed = unicodedata.normalize("NFD", lower)
    base, marks = decomposed[0], decomposed[1:]
    if not ("a" <= base <= "z"):
        return "b" if unicodedata.name(char, "").startswith("LATIN") else None
    if base in VOWELS:
        if "\u0308" in marks:
            return _DIAERESIS[VOWELS.index(base)]
        return _ACUTE_E if base == "e" and marks else base
    return {"l": "l", "s": "s", "z": "z", "x": "s", "c": "c", "g": "g", "t": "t", "h": "t", "q": "q",
            "m": "m"}.get(base, "b")


def is_supported(name: str) -> bool:
    """Whether `count_syllables` counts this name (every letter Latin)."""
    return all(symbol_of(c) is not None for c in name)


# --- the rules, one character at a time -------------------------------------------------------------
class _State(NamedTuple):
    """Where the machine is inside the current word.

    `before`: what precedes the open vowel group (or the last character, if none is open): "^" the word's
    start, "m^" a word so far just "m", "v" a vowel, "q", "g" and "z" those letters, "sib" s/x/c, "soft" t/h/ll,
    "Cl" an l after another consonant, "l" another l, "b" any other consonant.
    `group`: the open vowel group ("" none), spelled out up to two letters, longer ones as their first two,
    "+" and their last two.
    `pending`: a y or u whose part (vowel or consonant) the next character decides ("" none).
    `seen`: a vowel group of this word was closed already. `owed`: an "e" closed by "s", worth one unless the
    word ends right there. `letters`: the word has a letter.
    """

    before: str = "^"
    group: str = ""
    pending: str = ""
    seen: bool = False
    owed: bool = False
    letters: bool = False


_START = _State()


def _group_value(group: str, before: str, seen: bool, end: bool) -> int:
    """Syllables of a closed vowel group (see the module docstring)."""
    if group == "e" and end and seen:
        return 1 if before == "Cl" else 0
    if group == "ue" and end:
        return 1
    if group[:2] in _SOFTENED and seen and before in ("sib", "soft", "g"):
        return 1
    if group[0] == "y" and len(group) >= 2 and not seen and before != "^":
        return 2
    if group[:2] in _HIATUS:
        return 2
    if end and group[-2:] in _FINAL_TWO:
        return 2
    return 1


def _consonant_class(symbol: str, before: str) -> str:
    """`before` for the next group once consonant `symbol` follows `before` (or "v": a vowel)."""
    if symbol == "l":
        return "soft" if before == "l" or before == "Cl" else ("Cl" if before not in ("^", "m^", "v") else "l")
    if symbol in "sc":
        return "sib"
    if symbol == "z":
        return "z"  # sibilant, but does not soften an i (Fabrizio)
    if symbol == "t":
        return "soft"
    if symbol in "qg":
        return symbol
    return "m^" if symbol == "m" and before == "^" else "b"


def _close(state: _State, end: bool) -> tuple[_State, int]:
    """Close the open vowel group, if any: its value, and the state without it."""
    if not state.group:
        return state, 0
    value = _group_value(state.group, state.before, state.seen, end)
    return state._replace(group="", before="v", seen=True), value


def _consonant(state: _State, symbol: str) -> tuple[_State, int]:
    added = 0
    if state.owed:
        state, added = state._replace(owed=False), 1
    owes = state.group == "e" and symbol == "s" and state.seen and state.before not in ("sib", "z", "g")
    if owes:
        state = state._replace(group="", before="v", owed=True)
    else:
        state, value = _close(state, end=False)
        added += value
    if symbol == "c" and state.before == "m^":
        added += 1  # Mc-
    return state._replace(before=_consonant_class(symbol, state.before), letters=True), added


def _vowel(state: _State, symbol: str) -> tuple[_State, int]:
    added = 0
    if state.owed:
        state, added = state._replace(owed=False), 1
    if symbol in _DIAERESIS:
        state, value = _close(state, end=False)
        return state._replace(group=symbol, letters=True), added + value
    group = state.group + symbol if len(state.group) < 2 else state.group[:2] + "+" + state.group[-1] + symbol
    return _canonical(state._replace(group=group, letters=True)), added


def _canonical(state: _State) -> _State:
    """The state with only what the rules will read of it, so that the machine has few states: of a group
    of three or more vowels, the class of its first two (`_HIATUS`, `_SOFTENED`, y + vowel or other) and
    its last two if they can still become or are `_FINAL_TWO`; of `before`, only what a group starting
    with i, e or y reads (a, o, u and marked vowels start groups that no rule about `before` reads)."""
    group, before = state.group, state.before
    if len(group) > 2:
        first = "ia" if group[:2] in _SOFTENED else "eo" if group[:2] in _HIATUS else \
            "ya" if group[0] == "y" else "aa"
        last = group[-2:] if group[-2:] in _FINAL_TWO else group[-1] if group[-1] in "ie" else "a"
        group = first + "+" + last
    if group and group[0] not in "iey":
        before = "v"
    return state._replace(group=group, before=before)


def _resolve(state: _State, following: str) -> tuple[_State, int]:
    """Decide a pending y or u by the symbol that follows it ("" the word's end): consonant or vowel."""
    pending, state = state.pending, state._replace(pending="")
    if not pending:
        return state, 0
    follows_vowel = following in _ALL_VOWELS
    if pending == "y":
        consonant = follows_vowel and following != "y"  # pending only at a word's start or after a vowel
    else:
        consonant = follows_vowel and (state.before == "q" or following in "eiyéëïÿ")
    return _consonant(state, "b") if consonant else _vowel(state, pending)


def _end_word(state: _State) -> int:
    """Syllables the word's end adds."""
    state, added = _resolve(state, "")
    state, value = _close(state, end=True)  # an owed "e" ends the word here: silent
    added += value
    return added + (1 if state.letters and not state.seen else 0)


def _step(state: _State, symbol: str) -> tuple[_State, int]:
    """The state after `symbol`, and the syllables it completed."""
    if symbol == _WORD_BREAK:
        return _START, _end_word(state)
    state, added = _resolve(state, symbol)
    if symbol == "y" and ((state.before == "^" and not state.group) or state.group):
        return state._replace(pending="y", letters=True), added
    if symbol == "u" and not state.group and (state.before == "q" or state.before == "g"):
        return state._replace(pending="u", letters=True), added
    state, more = (_vowel if symbol in _ALL_VOWELS else _consonant)(state, symbol)
    return state, added + more


def _finish(state: _State) -> int:
    return _end_word(state)


def count_syllables(name: str) -> int | None:
    """Syllables of a Latin-script name by the rules above (None: a letter of another script, or no letter)."""
    symbols = [symbol_of(c) for c in name]
    if None in symbols or not any(c.isalpha() for c in name):
        return None
    state, total = _START, 0
    for symbol in symbols:
        state, added = _step(state, symbol)
        total += added
    return total + _finish(state)


# --- the same rules as a finite automaton ----------------------------------------------------------
@dataclass(frozen=True)
class SyllableMachine:
    """The rules as tables over `ALPHABET`: in state m, symbol a leads to `next_state[m, a]` and completes
    `emits[m, a]` syllables; a name ending in state m adds `final[m]`. State 0 is the start."""

    next_state: np.ndarray  # (M, A) int64
    emits: np.ndarray  # (M, A) int64
    final: np.ndarray  # (M,) int64

    def count(self, symbols: list[str]) -> int:
        index = {a: i for i, a in enumerate(ALPHABET)}
        m, total = 0, 0
        for a in symbols:
            total += int(self.emits[m, index[a]])
            m = int(self.next_state[m, index[a]])
        return total + int(self.final[m])


@functools.cache
def syllable_machine() -> SyllableMachine:
    """The rules as a minimal automaton (`build_machine`), built once per version of the rules: kept in the user's
    cache folder, named by the sha256 of this module's source (the rules and nothing else make it), so a process
    reads it (about a millisecond) rather than builds it (about a second, which the first `--syllables` request
    of every process once paid)."""
    try:
        path = cache_dir() / "syllables" / f"{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:32]}.npz"
    except OSError as e:  # the module's source unreadable (a frozen install): build each time
        log.debug(f"syllables: no cache ({e})")
        return build_machine()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                return SyllableMachine(saved["next_state"], saved["emits"], saved["final"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            log.debug(f"syllables: {path} unreadable ({e}); building it again")
    machine = build_machine()
    buffer = io.BytesIO()
    np.savez(buffer, next_state=machine.next_state, emits=machine.emits, final=machine.final)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:  # a read-only home: build each time
        log.debug(f"syllables: could not keep the automaton in {path.parent} ({e})")
    return machine


def build_machine() -> SyllableMachine:
    """The rules' reachable states, tabulated, then minimised: two states are merged when every string
    read from them completes the same syllables (Moore's partition refinement)."""
    index = {_START: 0}
    order = [_START]
    rows, outs = [], []
    for state in order:  # breadth-first; `order` grows as states are found
        row, out = [], []
        for a in ALPHABET:
            nxt, added = _step(state, a)
            if nxt not in index:
                index[nxt] = len(order)
                order.append(nxt)
            row.append(index[nxt])
            out.append(added)
        rows.append(row)
        outs.append(out)
    next_state, emits = np.array(rows), np.array(outs)
    final = np.array([_finish(s) for s in order])
    # refine the partition by (final, emits) until each block's successors fall in the same blocks
    _, block = np.unique(np.column_stack([final, emits]), axis=0, return_inverse=True)
    block = block.ravel()
    while True:
        _, refined = np.unique(np.column_stack([block, final, emits, block[next_state]]), axis=0,
                               return_inverse=True)
        refined = refined.ravel()
        if refined.max() == block.max():
            break
        block = refined
    # renumber so the start state's block is 0, then pick one representative state per block
    order_of_blocks = np.unique(block, return_index=True)[1]
    blocks = block[np.sort(order_of_blocks)]
    renumber = np.empty(block.max() + 1, dtype=np.int64)
    renumber[blocks] = np.arange(len(blocks))
    block = renumber[block]
    representative = np.zeros(len(blocks), dtype=np.int64)
    representative[block[::-1]] = np.arange(len(block))[::-1]  # the first state of each block
    return SyllableMachine(block[next_state[representative]], emits[representative], final[representative])


def parse_syllables(value: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """A syllable range from "2-3", "2", 2 or (2, 3) (`ConfigError` naming "syllables" otherwise)."""
    if isinstance(value, str):
        match = re.fullmatch(SYLLABLES_PATTERN, value)
        if match is None or match[1] is None:
            raise ConfigError(f"syllables must be a count or a range such as 2-3, got {value!r}", field="syllables")
        lo = int(match[1])
        hi = int(match[2]) if match[2] else lo
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        lo = hi = int(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        lo, hi = int(value[0]), int(value[1])
    else:
        raise ConfigError(f"syllables must be a count or a range such as 2-3, got {value!r}", field="syllables")
    if not 1 <= lo <= hi <= MAX_SYLLABLES:
        raise ConfigError(f"syllables {lo}-{hi}: needs 1 <= low <= high <= {MAX_SYLLABLES}", field="syllables")
    return lo, hi


@dataclass(frozen=True)
class SyllableAutomaton:
    """`syllables=(lo, hi)` over a model's tokens: state m·(hi + 1) + c is machine state m with c syllables
    completed (c <= hi: more can never come back down). `step[x, t]` is the state after token t (-1: a name
    can no longer be valid: too many syllables, or a letter of another script); `accept[x]` whether a name
    may end in x."""

    step: np.ndarray  # (X, V) int64; column 0 (the boundary) unused
    accept: np.ndarray  # (X,) bool


def check_alphabet(chars: tuple[str, ...]) -> None:
    """Refuse (`ConfigError` naming "syllables") an alphabet without a Latin letter: none of its names is counted."""
    if not any(c.isalpha() and symbol_of(c) is not None for c in chars):
        raise ConfigError("syllables: only names in the Latin script are counted, and this model's alphabet has no "
                          "Latin letter", field="syllables")


def syllable_automaton(chars: tuple[str, ...], lo: int, hi: int) -> SyllableAutomaton:
    """The automaton of `lo <= count_syllables(name) <= hi` over tokens 1..len(chars) (`chars`: a vocabulary's)."""
    check_alphabet(chars)
    machine = syllable_machine()
    M = len(machine.final)
    index = {a: i for i, a in enumerate(ALPHABET)}
    symbols = [symbol_of(c) for c in chars]
    counts = np.arange(hi + 1)
    step = np.full((M * (hi + 1), len(chars) + 1), -1, dtype=np.int64)
    for t, s in enumerate(symbols, start=1):
        if s is None:
            continue  # another script: never a countable name
        nxt, added = machine.next_state[:, index[s]], machine.emits[:, index[s]]  # (M,)
        total = counts[None, :] + added[:, None]  # (M, hi + 1)
        step[:, t] = np.where(total <= hi, nxt[:, None] * (hi + 1) + total, -1).ravel()
    total = counts[None, :] + machine.final[:, None]
    accept = ((total >= lo) & (total <= hi)).ravel()
    return SyllableAutomaton(step, accept)
