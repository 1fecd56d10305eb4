"""The training words of a model as sets (what novelty is checked against), read and split once per list.

The novelty summary (makemore's check: how many generated names are training words?) needs the words the
model was trained on, split as they were. Reading and splitting them again costs little for a short list
and seconds for a large table (`us`: 97,000 distinct names from 2 million labelled rows, 3.4 s of CPU, on
every `namesmith sample`). So the sets are kept in the user's cache folder (namesmith.core.io.cache_dir),
under a key made of the model's data record (source fingerprint, casing, split seed, ...), as UTF-8 lines
behind a header holding their sha256. They are used only while the list still has the fingerprint the
model recorded (so a list that changed since training makes novelty unavailable, as reading it would); a
damaged or foreign file is read as missing and written again. Words a model keeps in its own directory
(given in Python), and streamed lists (their words were never held), are not cached.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from namesmith.core.io import atomic_write_bytes, cache_dir
from namesmith.data.sources import source_fingerprint
from namesmith.data.words import Split

log = logging.getLogger("namesmith")

FORMAT = "namesmith-known-words 1"
MAX_CACHED_BYTES = 64 << 20  # larger word sets are read from the list each time (a cache file that size reads slowly)


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


def cache_key(record: dict[str, Any]) -> str:
    """The key of a model's training words: its whole data record (what was read, and how it was split)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(record: dict[str, Any]) -> Path:
    return cache_dir() / "known-words" / f"{cache_key(record)[:32]}.txt"


def _cacheable(record: dict[str, Any]) -> bool:
    return not record.get("streamed") and not isinstance(record.get("words"), list) and "sha256" in record


def _encode(known: KnownWords) -> bytes:
    body = "\n".join([f"{len(known.train)} {len(known.heldout)}", *sorted(known.train), *sorted(known.heldout)])
    data = body.encode("utf-8")
    return f"{FORMAT} {hashlib.sha256(data).hexdigest()}\n".encode() + data


def _decode(data: bytes) -> KnownWords | None:
    header, _, body = data.partition(b"\n")
    if header != f"{FORMAT} {hashlib.sha256(body).hexdigest()}".encode():
        return None
    lines = body.decode("utf-8").split("\n")
    n_train, n_heldout = (int(n) for n in lines[0].split())
    if len(lines) != 1 + n_train + n_heldout:
        return None
    return KnownWords(frozenset(lines[1 : 1 + n_train]), frozenset(lines[1 + n_train :]))


def known_words(record: dict[str, Any], data_path: str | None, build: Callable[[], KnownWords]) -> KnownWords:
    """The training words of a model whose data record is `record` (its list at `data_path` if it moved):
    from the cache while the list keeps its recorded fingerprint, else `build()` (which reads the list, or
    raises why it cannot) and kept in the cache for next time."""
    if not _cacheable(record):
        return build()
    path = cache_path(record)
    try:
        same = source_fingerprint(data_path or record["path"]) == record["sha256"]
    except (OSError, ValueError, KeyError):
        same = False
    if same and path.is_file():
        try:
            known = _decode(path.read_bytes())
        except (OSError, ValueError, UnicodeDecodeError):
            known = None
        if known is not None:
            return known
    known = build()
    data = _encode(known)
    if len(data) <= MAX_CACHED_BYTES:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except OSError as e:  # a read-only cache costs the next run the reading, nothing else
            log.debug("could not keep the training words in %s: %s", path, e)
    return known
