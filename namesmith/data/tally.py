"""Counting n-gram keys exactly in bounded memory: the keys of a block's n-grams, and a tally of them.

Each block's keys (`block_ngram_keys`: `NGramCounts`' keys, plus the part × base^N as `KeyLayout` says)
are counted by sorting (`Tally.add_keys`), and the sorted runs are merged into totals by key range:
integer sums of sorted keys, so the result does not depend on how a file was cut into blocks, pieces
or shards (`merge_shards` sums the tallies of several processes or ranks).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from namesmith.core.memory import release_freed_memory
from namesmith.core.progress import Phase
from namesmith.data.blocks import NEWLINE

DENSE_LIMIT = 1 << 18  # key spaces up to this size are counted with bincount in one dense table
PARTITIONS = 64  # key ranges of a tally (see Tally)
PENDING_MIN = 1 << 15  # keys of small runs in one range merged together before they join its total


def block_ngram_keys(digits: np.ndarray, lengths: np.ndarray, order: int, base: int) -> np.ndarray:
    """Key of the order-N n-gram ending at every token of a block, as `NGram` counts them.

    `digits` are token + 1 (the end token, a newline, is 1) of words each followed by its end
    token; `lengths` are the words' lengths. Horner's rule over the block gives the key of the
    N tokens up to each one, oldest first. That is the n-gram for every token but the first N-2
    of a word, whose window reaches back into the word before: there every digit older than the
    end token of the previous word becomes the boundary's, 1 (`NGram` pads names so).
    """
    n, dtype = len(digits), digits.dtype.type
    padded = np.ones(n + order - 1, dtype=digits.dtype)  # the block starts after N-1 boundary tokens
    padded[order - 1 :] = digits
    keys = padded[:n].copy()
    for i in range(1, order):
        keys *= dtype(base)
        keys += padded[i : i + n]
    word_start = np.cumsum(lengths + 1) - (lengths + 1)
    for position in range(order - 2):  # the token at this position of each word that has one (the end token too)
        at = word_start[lengths >= position] + position
        kept = base ** (position + 2)  # its own tokens and the end token before them
        keys[at] = keys[at] % dtype(kept) + dtype(sum(base**j for j in range(position + 2, order)))
    return keys


def _merge_sorted(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct keys and summed counts of a few runs of (sorted distinct keys, counts)."""
    runs = [run for run in runs if len(run[0])]
    if len(runs) <= 1:
        return runs[0] if runs else (np.empty(0, np.int64), np.empty(0, np.int64))
    keys = np.concatenate([k for k, _ in runs])
    counts = np.concatenate([c for _, c in runs])
    order = np.argsort(keys, kind="stable")  # timsort: merges the sorted runs rather than sorting anew
    keys, counts = keys[order], counts[order]
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    return keys[first], np.add.reduceat(counts, first)


def _merge_into(total: tuple[np.ndarray, np.ndarray], run: tuple[np.ndarray, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """`total` (sorted distinct keys, counts: updated in place) plus a run: keys found add their
    counts, new keys are inserted. Memory: about twice the total, not the run's sort of it."""
    keys, counts = total
    new_keys, new_counts = run
    if not len(keys):
        return new_keys.copy(), new_counts.copy()
    pos = np.searchsorted(keys, new_keys)
    found = keys[np.minimum(pos, len(keys) - 1)] == new_keys
    counts[pos[found]] += new_counts[found]
    fresh = np.flatnonzero(~found)
    if not len(fresh):
        return keys, counts
    at = pos[fresh] + np.arange(len(fresh))  # where the new keys go in the merged arrays
    old = np.ones(len(keys) + len(fresh), dtype=bool)
    old[at] = False
    merged_keys, merged_counts = np.empty(len(old), keys.dtype), np.empty(len(old), counts.dtype)
    merged_keys[at], merged_counts[at] = new_keys[fresh], new_counts[fresh]
    merged_keys[old], merged_counts[old] = keys, counts
    return merged_keys, merged_counts


class Tally:
    """Counts of integer keys, added a block at a time: memory grows with the distinct keys only.

    A small key space is one dense table (`np.bincount`). Otherwise each block is counted on its own (torch's sort,
    fastest on int32 keys, then the first of each run of equal keys) and the sorted run is cut into PARTITIONS
    ranges of keys (quantiles of the first run); in each range the runs wait in a list, are merged together once
    they outgrow half the range's total (`_merge_sorted`) and join the total by binary search and insertion
    (`_merge_into`), so a total is rewritten about as often as it grows by half. Ranges keep every array small:
    merges stay in cache, and memory freed by one is reused by the next instead of being mapped afresh. Live memory:
    at most about 1.5 × 12 bytes per distinct key (int32 keys, int64 counts), plus the block being counted.
    """

    def __init__(self, space: int, dtype: type):
        self.dense = np.zeros(space, np.int64) if space <= DENSE_LIMIT else None
        self.dtype = dtype
        self.bounds: np.ndarray | None = None  # the first key of each range but the first: set by the first run
        empty = (np.empty(0, dtype), np.empty(0, np.int64))
        self.totals: list[tuple[np.ndarray, np.ndarray]] = [empty] * PARTITIONS
        self.pending: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(PARTITIONS)]
        self.pending_size = [0] * PARTITIONS

    def add_keys(self, keys: np.ndarray) -> None:
        if self.dense is not None:
            self.dense += np.bincount(keys, minlength=len(self.dense))
            return
        ordered = torch.from_numpy(keys).sort().values.numpy()  # torch's sort: faster than torch.unique's here
        first = np.empty(len(ordered), bool)
        first[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        self.add_counts(ordered[starts], np.diff(starts, append=len(ordered)))

    @property
    def size(self) -> int:
        """Keys held (distinct, but for the runs still waiting to be merged)."""
        if self.dense is not None:
            return len(self.dense)
        return sum(len(keys) for keys, _ in self.totals) + sum(self.pending_size)

    def add_counts(self, keys: np.ndarray, counts: np.ndarray) -> None:
        """Add (sorted distinct keys, counts)."""
        if not len(keys):  # a part a process saw no word of (its ranges come from the first run with keys)
            return
        keys = keys.astype(self.dtype, copy=False)
        if self.dense is not None:
            self.dense[keys] += counts
            return
        if self.bounds is None:  # ranges of about as many keys of the first run each (keys are far from uniform)
            self.bounds = np.unique(keys[np.linspace(0, len(keys), PARTITIONS + 1)[1:-1].astype(np.int64)])
        cuts = [0, *np.searchsorted(keys, self.bounds).tolist(), len(keys)]
        for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
            if a == b:
                continue
            self.pending[i].append((keys[a:b], counts[a:b]))
            self.pending_size[i] += b - a
            if self.pending_size[i] >= max(PENDING_MIN, len(self.totals[i][0]) // 2):
                self._flush(i)

    def _flush(self, i: int) -> None:
        self.totals[i] = _merge_into(self.totals[i], _merge_sorted(self.pending[i]))
        self.pending[i], self.pending_size[i] = [], 0

    def result(self, starts: tuple[int, ...] = (0,)) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sorted distinct int64 keys and their counts, cut where the keys reach each of `starts` (each piece's
        keys less its start: the parts of a `KeyLayout`), every array its own. Each range of keys is freed as it
        is copied and the freed heap handed back every few ranges (`release_freed_memory`): the tally is never
        held twice (counting 1 GB of names ended at 1.97 GB when it was: the ranges, freed, stayed resident)."""
        # each range's last merge and then its copy are a step each: the merges of a long list's pending runs
        # (up to half its keys) were one silent unit before the first step
        phase = Phase("gathering the counted n-grams", 1 if self.dense is not None else 2 * PARTITIONS, "steps")
        if self.dense is not None:
            keys = np.flatnonzero(self.dense)
            ranges = [(keys, self.dense[keys])]
            self.dense = None
        else:
            for i in range(PARTITIONS):
                phase.advance()
                if self.pending[i]:
                    self._flush(i)
            ranges, self.totals = self.totals, []
        cuts = np.array(starts, np.int64)
        at = [np.append(np.searchsorted(keys, cuts), len(keys))[1:] for keys, _ in ranges]  # each piece's end
        sizes = np.sum([np.diff(ends, prepend=0) for ends in at], 0) if at else np.zeros(len(cuts), np.int64)
        pieces = [(np.empty(size, np.int64), np.empty(size, np.int64)) for size in sizes.tolist()]
        filled = [0] * len(pieces)
        for i, ends in enumerate(at):
            phase.advance()
            keys, counts = ranges[i]
            ranges[i] = None  # the only reference left: freed once copied
            for j, (a, b) in enumerate(zip([0, *ends[:-1].tolist()], ends.tolist())):
                piece_keys, piece_counts = pieces[j]
                piece_keys[filled[j] : filled[j] + b - a] = keys[a:b]
                piece_keys[filled[j] : filled[j] + b - a] -= cuts[j]
                piece_counts[filled[j] : filled[j] + b - a] = counts[a:b]
                filled[j] += b - a
            del keys, counts
            if i % 8 == 7:
                release_freed_memory()
        return pieces


# Beside its n-grams, each word's cell is tallied: its length (this or longer counted as this) and its last token, per
# part: what whole-name calibration is fitted and chosen on (namesmith.training.calibrate), without the words.
CELL_LENGTHS = 64


@dataclass(frozen=True)
class KeyLayout:
    """How the keys of one count are built: N-gram key + part × base^N, int32 where that fits."""

    order: int
    base: int
    chars: tuple[int, ...]  # code points of the vocabulary's characters, sorted

    @property
    def space(self) -> int:
        return 4 * self.base**self.order  # four parts

    @property
    def dtype(self) -> type:
        return np.int32 if self.space <= 2**31 else np.int64

    @property
    def parts_in_key(self) -> bool:
        return self.space <= 2**63  # else each part is counted in a table of its own

    def digits(self) -> np.ndarray:
        """Code point → digit (token + 1; a newline, the end token, is 1)."""
        table = np.zeros(max(*self.chars, NEWLINE) + 1, self.dtype)
        table[NEWLINE] = 1
        table[list(self.chars)] = np.arange(2, len(self.chars) + 2)
        return table


def merge_shards(results: Iterable[tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]], layout: KeyLayout
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The (keys, counts) of each part and the words' cells of each part ((4, CELL_LENGTHS + 1, base): words by
    length and last digit), summed over shards' results."""
    results = iter(results)
    first, second = next(results, None), next(results, None)
    if second is None:  # nothing to merge
        empty = (np.empty(0, layout.dtype), np.empty(0, np.int64))
        return first if first is not None else ([empty] * 4, np.zeros((4, CELL_LENGTHS + 1, layout.base), np.int64))
    tallies = [Tally(layout.base**layout.order, layout.dtype) for _ in range(4)]
    words_by_part = np.zeros_like(first[1])
    for by_part, counted in itertools.chain([first, second], results):
        for tally, (keys, counts) in zip(tallies, by_part):
            tally.add_counts(keys, counts)
        words_by_part += counted
    return [tally.result()[0] for tally in tallies], words_by_part
