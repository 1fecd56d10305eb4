"""How common a name is, and was: counts and ranks by sex and decade from the catalogue.

The catalogue's sets with birth counts (`us`: US Social Security Administration 1880-2017,
`israel`: Israel Central Bureau of Statistics 1949-2024; see namesmith/catalogue/DATA_CARD.md)
give each name a count per (sex, decade). Here each such *use* of a name also gets its rank
among the names of that sex and decade (1 = the most given; names with equal counts share the
better rank, "1224" ranking) and its share, per million births of that sex and decade, which,
unlike a rank, compares decades and countries of different sizes.

A name's *best-known use* is its use of the largest share (ties: the later decade); it is what
`popularity` reports, and what the bands and rank filters judge (one rule, `PopularityFilter`):

    common    at least 100 per million births (1 in 10,000) in its best-known use: in the US
              of the 1990s-2010s about the top 1,000 of each sex (1,340 girls' and 1,044
              boys' names of the 2010s)
    uncommon  10 to 100 per million (the next 5,600 girls' and 3,900 boys' names of the 2010s)
    rare      under 10 per million (down to the sets' floor: 5 births a year)
    top:N     rank at most N in its best-known use
    A-B       rank from A to B in its best-known use

A name with no counted use (invented, or known only from a list without counts) is "new" to
popularity and passes none of these filters. `is_known` is wider: whether a name is in ANY
built-in list (every catalogue set, the built-in word list, the nicknames), as `--not-in-catalogue`
needs (a fantasy writer does not want `Elaine`, whatever a model was trained on).

Names are matched case-insensitively (`key`: NFC, case folded), so `mary`, `Mary` and `MARY` are
one name. The index is built from the catalogue once (a few seconds) and kept in the user's cache
folder (namesmith.core.io.cache_dir, under a name made of the sha256 of every file it is built from), so
a process reads it in a fraction of a second; a process does so once, under a lock, and a lookup
is then a dict access.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import threading
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from namesmith.core.errors import ConfigError
from namesmith.core.io import atomic_write_bytes, cache_dir
from namesmith.data.catalogue import DATASETS, load_dataset
from namesmith.data.nicknames import nickname_pairs, nicknames_path

log = logging.getLogger("namesmith")

COUNTED_SETS = ("us", "israel")  # the catalogue sets with births per sex and decade
# bands of a name's best-known use, in births per million of its sex and decade: [low, high)
BANDS: dict[str, tuple[float, float]] = {"common": (100.0, math.inf), "uncommon": (10.0, 100.0), "rare": (0.0, 10.0)}
MAX_RANK = 10_000_000  # a rank filter's bounds, at most (more names than any set has)
_RANGE = re.compile(r"^\s*(\d{1,8})\s*-\s*(\d{1,8})\s*$")
_TOP = re.compile(r"^\s*top\s*:\s*(\d{1,8})\s*$", re.IGNORECASE)


def key(name: str) -> str:
    """The form names are matched in: NFC, case folded, outer spaces stripped."""
    return unicodedata.normalize("NFC", name.strip()).casefold()


@dataclass(frozen=True)
class Use:
    """One use of a name: its births in one sex and decade of one counted set, rank and share."""

    source: str  # "us" or "israel"
    sex: str
    decade: str
    count: int
    rank: int  # 1 = the most given name of that sex and decade in that set
    per_million: float  # births per million of that sex and decade

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "rank": self.rank, "sex": self.sex, "decade": self.decade,
                "source": self.source, "per_million": round(self.per_million, 3)}


@dataclass(frozen=True)
class PopularityFilter:
    """A `popularity` option parsed: a band of shares, or a range of ranks, of a name's best-known use."""

    text: str
    per_million: tuple[float, float] | None = None  # [low, high)
    ranks: tuple[int, int] | None = None  # [first, last]

    def admits(self, use: Use | None) -> bool:
        if use is None:
            return False
        if self.ranks is not None:
            return self.ranks[0] <= use.rank <= self.ranks[1]
        low, high = self.per_million
        return low <= use.per_million < high


def parse_popularity(text: str) -> PopularityFilter:
    """`rare`, `uncommon`, `common`, `top:N` or a rank range `A-B` (ConfigError naming "popularity" else)."""
    if not isinstance(text, str):
        raise ConfigError(f"popularity must be a string, got {text!r}", field="popularity")
    band = text.strip().lower()
    if band in BANDS:
        return PopularityFilter(band, per_million=BANDS[band])
    top, ranks = _TOP.match(text), _RANGE.match(text)
    if top:
        first, last = 1, int(top.group(1))
    elif ranks:
        first, last = int(ranks.group(1)), int(ranks.group(2))
    else:
        shown = repr(text) if len(text) <= 40 else f"{text[:40]!r}..."
        raise ConfigError(f"popularity must be one of {', '.join(BANDS)}, top:N or a rank range A-B (e.g. 100-500), "
                          f"got {shown}", field="popularity")
    if not 1 <= first <= last <= MAX_RANK:
        raise ConfigError(f"popularity: ranks run from 1 to {MAX_RANK:,} and the first must not pass the last, got "
                          f"{text.strip()!r}", field="popularity")
    return PopularityFilter(text.strip(), ranks=(first, last))


class _CountedSet:
    """One counted set as columns, one row per (name, sex, decade) with its count, rank and share; a name's
    rows are contiguous (rows `bounds[k]` to `bounds[k + 1]` for the name of id k), and `best_rows[k]` is its
    best-known use."""

    COLUMNS = ("counts", "group", "ranks", "per_million", "bounds", "best_rows")

    def __init__(self, source: str, keys: list[str], sex_values: list[str], decade_values: list[str],
                 columns: dict[str, np.ndarray]):
        self.source, self.keys, self.sex_values, self.decade_values = source, keys, sex_values, decade_values
        self.key_ids = {k: i for i, k in enumerate(keys)}
        self.counts, self.group, self.ranks, self.per_million, self.bounds, self.best_rows = (
            columns[c] for c in self.COLUMNS)

    @classmethod
    def count(cls, source: str) -> _CountedSet:
        """The set's rows from its catalogue table: births per (name, sex, decade), then ranks and shares."""
        table = load_dataset(source)
        names, sexes, decades = table.names, table.labels["sex"], table.labels["decade"]
        sex_values, decade_values = table.label_values("sex"), table.label_values("decade")
        sex_code = {v: i for i, v in enumerate(sex_values)}
        decade_code = {v: i for i, v in enumerate(decade_values)}
        # the file is sorted by name: a name's rows are one run (israel's hold a row per sector, summed below)
        starts = [0] + [i for i in range(1, len(names)) if names[i] != names[i - 1]]
        key_ids: dict[str, int] = {}
        run_ids = np.array([key_ids.setdefault(key(names[i]), len(key_ids)) for i in starts])  # equal once folded
        row_key = np.repeat(run_ids, np.diff(np.append(starts, len(names))))
        groups = len(sex_values) * len(decade_values)
        group = (np.fromiter((sex_code[v] for v in sexes), dtype=np.int64, count=len(names)) * len(decade_values)
                 + np.fromiter((decade_code[v] for v in decades), dtype=np.int64, count=len(names)))
        rows, at = np.unique(row_key * groups + group, return_inverse=True)  # sorted by key, then sex, then decade
        counts = np.bincount(at, weights=table.counts, minlength=len(rows)).astype(np.int64)
        group = (rows % groups).astype(np.int16)
        ranks = np.zeros(len(rows), dtype=np.int32)
        per_million = np.zeros(len(rows), dtype=np.float64)
        for g in range(groups):
            members = np.flatnonzero(group == g)
            descending = -np.sort(-counts[members])
            # rank = 1 + the number of names of the group given strictly more often
            ranks[members] = np.searchsorted(-descending, -counts[members], side="left") + 1
            per_million[members] = counts[members] * 1e6 / max(int(counts[members].sum()), 1)
        row_keys = rows // groups
        bounds = np.searchsorted(row_keys, np.arange(len(key_ids) + 1))
        # each name's best-known use, found once for all: its rows by share, then decade; the last is the best
        best_rows = np.lexsort((group % len(decade_values), per_million, row_keys))[bounds[1:] - 1]
        columns = {"counts": counts, "group": group, "ranks": ranks, "per_million": per_million, "bounds": bounds,
                   "best_rows": best_rows}
        return cls(source, list(key_ids), sex_values, decade_values, columns)

    def _use(self, i: int) -> Use:
        decades = len(self.decade_values)
        return Use(self.source, self.sex_values[int(self.group[i]) // decades],
                   self.decade_values[int(self.group[i]) % decades], int(self.counts[i]), int(self.ranks[i]),
                   float(self.per_million[i]))

    def uses(self, name_key: str) -> list[Use]:
        k = self.key_ids.get(name_key)
        return [] if k is None else [self._use(i) for i in range(int(self.bounds[k]), int(self.bounds[k + 1]))]

    def best(self, name_key: str) -> Use | None:
        k = self.key_ids.get(name_key)
        return None if k is None else self._use(int(self.best_rows[k]))


class Popularity:
    """Every counted use of every name, and every name of every built-in list (see the module docstring)."""

    def __init__(self, sets: list[_CountedSet], known: frozenset[str]):
        self.sets, self.known = sets, known

    @classmethod
    def read(cls) -> Popularity:
        """Built from the catalogue's files (a few seconds on a busy machine; `popularity_index` keeps it)."""
        sets = [_CountedSet.count(source) for source in COUNTED_SETS]
        known = {k for counted in sets for k in counted.key_ids}
        for source in DATASETS:
            if source not in COUNTED_SETS:
                known.update(map(key, load_dataset(source).distinct_names()))
        for name, nickname in nickname_pairs():
            known.update((key(name), key(nickname)))
        return cls(sets, frozenset(known))

    def uses(self, name: str) -> list[Use]:
        """Every counted use of the name: by set, sex, then decade (empty for a name of no counted set)."""
        k = key(name)
        return [use for counted in self.sets for use in counted.uses(k)]

    def best(self, name: str) -> Use | None:
        """The use of the largest share (ties: the later decade), or None for a name with no counted use."""
        k = key(name)
        candidates = [use for counted in self.sets if (use := counted.best(k)) is not None]
        return max(candidates, key=lambda u: (u.per_million, u.decade), default=None)

    def is_known(self, name: str) -> bool:
        return key(name) in self.known


# --- kept in the user's cache folder: read in a fraction of the time it takes to build ----------------
CACHE_FORMAT = "namesmith-popularity 1"


def _lines(array: np.ndarray) -> list[str]:
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def _bytes(lines: list[str]) -> np.ndarray:
    return np.frombuffer("\n".join(lines).encode("utf-8"), dtype=np.uint8)


def cache_path() -> Path:
    """Where this catalogue's index is kept: named by the sha256 of every file it is built from."""
    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for path in [DATASETS[name].path() for name in sorted(DATASETS)] + [nicknames_path()]:
        digest.update(Path(path).read_bytes())
    return cache_dir() / "popularity" / f"{digest.hexdigest()[:32]}.npz"


def _save(index: Popularity, path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"format": _bytes([CACHE_FORMAT])}
    counted = set()
    for s in index.sets:
        counted |= s.key_ids.keys()
        arrays[f"{s.source}.keys"] = _bytes(s.keys)
        arrays[f"{s.source}.labels"] = _bytes([json.dumps([s.sex_values, s.decade_values])])
        arrays.update({f"{s.source}.{c}": getattr(s, c) for c in _CountedSet.COLUMNS})
    arrays["known"] = _bytes(sorted(index.known - counted))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load(path: Path) -> Popularity:
    with np.load(path, allow_pickle=False) as saved:
        if _lines(saved["format"]) != [CACHE_FORMAT]:
            raise ValueError(f"{path}: not a popularity index")
        sets = []
        for source in COUNTED_SETS:
            sex_values, decade_values = json.loads(_lines(saved[f"{source}.labels"])[0])
            columns = {c: saved[f"{source}.{c}"] for c in _CountedSet.COLUMNS}
            sets.append(_CountedSet(source, _lines(saved[f"{source}.keys"]), sex_values, decade_values, columns))
        known = frozenset(_lines(saved["known"])).union(*(s.key_ids for s in sets))
    return Popularity(sets, known)


def _read_or_build() -> Popularity:
    """The index from the cache when it holds this catalogue's; else built, and kept there for next time."""
    try:
        path = cache_path()
    except OSError as e:  # a package file unreadable: build, which says so
        log.debug(f"popularity: no cache ({e})")
        return Popularity.read()
    if path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as e:
            log.debug(f"popularity: {path} unreadable ({e}); building it again")
    index = Popularity.read()
    try:
        _save(index, path)
    except OSError as e:  # a read-only home: build each time
        log.debug(f"popularity: could not keep the index in {path.parent} ({e})")
    return index


_lock = threading.Lock()
_index: Popularity | None = None


def popularity_index() -> Popularity:
    """The one index of this process, read on first use (about a second; threads wait for one read)."""
    global _index
    if _index is None:
        with _lock:
            if _index is None:
                _index = _read_or_build()
    return _index


def is_known(name: str) -> bool:
    """Whether the name is in any built-in list (catalogue sets, built-in word list, nicknames), any case."""
    return popularity_index().is_known(name)


def best_use(name: str) -> Use | None:
    """The name's best-known use (largest share of births of its sex and decade), None if it has none."""
    return popularity_index().best(name)


def trend(name: str, sex: str | None = None) -> list[Use]:
    """The name's counted uses by decade (of one sex if given): what `namesmith trend` draws."""
    uses = popularity_index().uses(name)
    return [use for use in uses if sex is None or use.sex == sex]
