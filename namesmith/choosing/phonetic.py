"""How a name sounds: Double Metaphone keys (Philips 2000) and names that sound alike, ranked (issue 30).

A phonetic key spells a name by its sound: Aiden, Aidan, Ayden and Aden are all "ATN". Double Metaphone
gives a primary key and, where a spelling has two usual readings, an alternate one (Catherine: K0RN and
KTRN). The keys come from the `doublemetaphone` package (a wrapper of Philips' C++ code, maintained
with the dedupe project; Artistic licence), an optional extra (`pip install 'namesmith[phonetic]'`): a
compiled wheel that only this feature needs, so the core install stays small.

It was chosen on evidence (benchmarks/bench_choosing.py): on spelling-variant groups built from the
catalogue by an independent rule (us names with at least 1,000 births that the CMU Pronouncing Dictionary
pronounces identically, within two edits of the group's most frequent spelling), recall@10 of the ranking
below was 0.90 with Double Metaphone's two keys, 0.87 with jellyfish's Metaphone, 0.86 Soundex, 0.81
NYSIIS, 0.68 the match rating codex (tuning half of the groups; the held-out half within 1.5 points).

`sounds_like` ranks candidates whose key is within one edit of one of the target's keys by

    2 · (key edits) + (spelling edits, Damerau-Levenshtein, case-insensitive) - 0.6 · log10(births)

so the same sound comes first, then the closest spelling, then the better-known name.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from namesmith.core.errors import ConfigError

KEY_WEIGHT = 2.0  # a key edit costs as much as two spelling edits
POPULARITY_WEIGHT = 0.6  # ten times the births is worth 0.6 of a spelling edit
MAX_KEY_EDITS = 1  # candidates: names whose key is within this many edits of one of the target's keys


@functools.cache
def _double_metaphone():
    try:
        from doublemetaphone import doublemetaphone
    except ImportError:
        raise ConfigError("sounds_like needs the phonetic extra: pip install 'namesmith[phonetic]' "
                          "(the doublemetaphone package)", field="sounds_like") from None
    return doublemetaphone


def phonetic_keys(name: str) -> tuple[str, ...]:
    """The name's Double Metaphone keys: the primary one, then the alternate if it differs (() for no sound)."""
    primary, alternate = _double_metaphone()(name)
    return tuple(k for k in dict.fromkeys((primary, alternate)) if k)


def phonetic_key(name: str) -> str:
    """The primary Double Metaphone key ("" for a name with no letter it reads)."""
    keys = phonetic_keys(name)
    return keys[0] if keys else ""


def sounds_alike(a: str, b: str) -> bool:
    """Whether two names share a Double Metaphone key (the test `--sounds-like` applies to each name drawn)."""
    return bool(set(phonetic_keys(a)) & set(phonetic_keys(b)))


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: insert, delete, substitute, swap neighbours)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def _deletions(key: str) -> set[str]:
    """The key and every string one deletion away: two keys within one edit share one of these."""
    return {key, *(key[:i] + key[i + 1:] for i in range(len(key)))}


class SoundIndex:
    """Names indexed by their keys, to rank those that sound like a target (with births, if known, to break ties)."""

    def __init__(self, names: Iterable[str], births: Mapping[str, int] | None = None,
                 keys: Callable[[str], tuple[str, ...]] = phonetic_keys):
        """`keys` spells a name by its sound (Double Metaphone's keys; the benchmark compares others)."""
        self.births = dict(births) if births is not None else {}
        self.keys = keys
        self.by_key: dict[str, list[str]] = defaultdict(list)
        self.near: dict[str, set[str]] = defaultdict(set)  # deletion neighbourhood -> keys
        for name in dict.fromkeys(names):
            for key in keys(name):
                self.by_key[key].append(name)
        for key in self.by_key:
            for variant in _deletions(key):
                self.near[variant].add(key)

    def rank(self, target: str, k: int = 10) -> list[str]:
        """Up to `k` names that sound like `target` (itself left out), best first (see the module docstring)."""
        key_edits: dict[str, int] = {}
        for key in self.keys(target):
            for other in set().union(*(self.near.get(v, set()) for v in _deletions(key))):
                edits = edit_distance(key, other)
                if edits > MAX_KEY_EDITS:
                    continue
                for name in self.by_key[other]:
                    key_edits[name] = min(edits, key_edits.get(name, edits))
        folded = target.casefold()

        def bound(name: str) -> float:
            """The cost with the spelling edits at their least (the difference of the lengths)."""
            return (KEY_WEIGHT * key_edits[name] + abs(len(name) - len(folded))
                    - POPULARITY_WEIGHT * math.log10(max(self.births.get(name, 0), 1)))

        # costs in order of their lower bound, until the bound passes the k-th best cost found (a key shared by
        # thousands of names, as Soundex's are, then costs a few edit distances, not thousands)
        best: list[tuple[float, str]] = []
        for low, name in sorted((bound(n), n) for n in key_edits if n.casefold() != folded):
            if len(best) >= k and low > best[k - 1][0]:
                break
            best.append((low - abs(len(name) - len(folded)) + edit_distance(folded, name.casefold()), name))
            best.sort()
        return [name for _, name in best[:k]]


@functools.cache
def catalogue_births() -> dict[str, int]:
    """Births of every name of the us catalogue (1880-2017), all decades and both sexes together."""
    from namesmith.data.catalogue import load_dataset

    table = load_dataset("us")
    births: dict[str, int] = defaultdict(int)
    for name, count in zip(table.names, table.counts.tolist()):
        births[name] += count
    return dict(births)


@functools.cache
def catalogue_index() -> SoundIndex:
    """The us catalogue's names: the known names `sounds_like` ranks."""
    return SoundIndex(catalogue_births(), catalogue_births())


def sounds_like(target: str, names: Iterable[str] | None = None, k: int = 10) -> list[str]:
    """Names that sound like `target`, best first: among `names` (e.g. a model's draws), or among the
    catalogue's known names (spelling variants of a known name: Aiden -> Aidan, Ayden, Aden ...)."""
    if not phonetic_keys(target):
        raise ConfigError(f"sounds_like {target!r}: no letters to sound out", field="sounds_like")
    index = catalogue_index() if names is None else SoundIndex(names, catalogue_births())
    return index.rank(target, k)


class Variant(NamedTuple):
    """A known name that sounds like another: its spelling, births in the us catalogue and Double Metaphone keys."""

    name: str
    births: int
    keys: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "births": self.births, "keys": list(self.keys)}


def spelling_variants(name: str, k: int = 10) -> list[Variant]:
    """The catalogue's known names that sound like `name`, closest first (`sounds_like`), with their births:
    the other spellings of a known name (Aiden -> Aidan, Ayden, Aden ...), or the known names near a new one."""
    births = catalogue_births()
    return [Variant(v, births.get(v, 0), phonetic_keys(v)) for v in sounds_like(name, k=k)]
