"""Counting: pair and n-gram counts of words in memory and of word lists too large to hold as strings.

This module only counts; training from the counts is in namesmith.training.train, evaluating from them
in namesmith.scoring.evaluate.

A bigram model needs only its sufficient statistics, the (V, V) counts of (previous, next)
character pairs (see models/bigram.py), so a file of any size is read in binary blocks cut at
newlines and each block is counted with NumPy (`np.bincount` of previous × V + next pair ids).
One pass: the vocabulary grows as new characters appear and the table is re-indexed into
sorted vocabulary order at the end. Memory is O(block + V²), whatever the file size.

Line rules are those of `data.parse_words` (strip, NFC, skip blank, --max-line-length, a tab ends
the name, no control characters, invisible format characters removed, lines with an emoji skipped,
optional lowercase). A block of plain text (no character the rules act on:
`data.changed_by_rules`, no space at a line's ends) is cleaned with array
operations; any other block goes through `parse_words` itself, line by line.

The split of a streamed file: the lecture split shuffles all words, which needs them all in
memory. Here word i (0-based, counting the words kept) goes to train/val/test by a hash of
(i, split seed): hash mod 10 → 0-7 train, 8 val, 9 test; about 80/10/10 and deterministic.
Streaming is used for large files only (see namesmith.training.train), so names.txt and other small lists
keep the exact lecture split.

N-gram counts of any order, in shards (`count_ngrams_file`): a file is cut into byte ranges and
each range owns the lines that start in it (`read_shard`), so ranges can be counted apart (in
worker processes, on the ranks of torch.distributed) and their counts merged exactly: integer sums
of sorted n-gram keys, the same whatever the cuts. A first pass counts the words and collects the
characters of each shard, so the split is the one above (word i of the file, whichever shard
reads it) and every shard counts in the same vocabulary. `count_pairs_file` gives `count_file`'s
pair counts that way, and `streamed_split` gives the same split of a word list in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesmith.core.errors import ConfigError, DataError
from namesmith.core.memory import check_fits, release_freed_memory, streamed_ngram_bytes
from namesmith.core.progress import Phase
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.ngram_keys import NGramCounts, check_order, check_order_value, default_order, held_out_every
from namesmith.data.words import BUILTIN, DataConfig, Split, changed_by_rules, check_data_file, decode_text, parse_words

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

log = logging.getLogger("namesmith")

BLOCK = 8 << 20  # bytes read and counted at a time: bounds memory (about 20 × this at peak)
PARTS = ("train", "val", "test")
_NEWLINE = ord("\n")
DROPPED_LOOP = 256  # up to this many dropped lines per block are cut out one by one (see _clean_block)
_ASCII_CONTROLS = bytes(c for c in range(128) if (c < 32 or c == 127) and c != _NEWLINE)


def count_pairs(x: torch.Tensor, y: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Pair counts (V, V) from `encode_words` tensors: row = previous token, column = next."""
    mask = y >= 0
    flat = x[mask] * vocab_size + y[mask]
    return torch.bincount(flat, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


def split_parts(first: int, count: int, seed: int) -> np.ndarray:
    """Part (0 train, 1 val, 2 test) of words first..first+count-1: splitmix64 hash, mod 10."""
    with np.errstate(over="ignore"):
        z = np.arange(first, first + count, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    digit = (z % np.uint64(10)).astype(np.uint8)
    return np.where(digit < 8, 0, digit - 7).astype(np.uint8)


def read_blocks(path: str | Path, block_size: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """(byte offset, block) pairs; every block ends with a newline (one is added at the end)."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        offset, carry = 0, b""
        while True:
            chunk = f.read(block_size)
            if not chunk:
                break
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                carry = data
                continue
            yield offset, data[:cut]
            offset += cut
            carry = data[cut:]
        if carry:
            yield offset, carry + b"\n"


def _distinct(codes: np.ndarray) -> list[int]:
    """The distinct code points of a block (a histogram when they are small: faster than a sort)."""
    if codes.dtype == np.uint8 or (len(codes) and int(codes.max()) < 1 << 17):
        return np.flatnonzero(np.bincount(codes)).tolist()
    return np.unique(codes).tolist()


def _plain_codes(raw: bytes, offset: int, path: str, config: DataConfig) -> np.ndarray | None:
    """Code points of a block whose lines need no per-line rule but the length check, else None
    (the rules are `data.parse_words`'s: see `data.changed_by_rules`)."""
    if raw.isascii():
        if config.lowercase:
            raw = raw.lower()
        if len(raw.translate(None, _ASCII_CONTROLS)) != len(raw):  # tab, CR, other controls
            return None
        # (a two-byte search is slow where newlines are frequent: look for a space first)
        text_has_edge_space = b" " in raw and (raw.startswith(b" ") or b"\n " in raw or b" \n" in raw)
        return None if text_has_edge_space else np.frombuffer(raw, dtype=np.uint8)
    source = path if offset == 0 else f"{path} (block at byte {offset})"
    text = unicodedata.normalize("NFC", decode_text(raw, source, config.encoding))
    if config.lowercase:
        lowered = text.lower()
        if len(lowered) != len(text):
            return None
        text = lowered
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    if any(c != "\n" and changed_by_rules(c) for c in map(chr, _distinct(codes))):
        return None
    if " " in text and (text.startswith(" ") or "\n " in text or " \n" in text):
        return None
    return codes


def _block_codes(raw: bytes, offset: int, path: str, config: DataConfig) -> np.ndarray:
    """Code points of the kept words of one block, each followed by a newline."""
    codes = _plain_codes(raw, offset, path, config)
    if codes is None:  # the general rules, line by line
        source = path if offset == 0 else f"{path} (block at byte {offset})"
        text = decode_text(raw, source, config.encoding)
        try:
            words = parse_words(text, source, lowercase=config.lowercase, max_line_length=config.max_line_length)
        except DataError:
            words = []  # a block of blank lines; an empty file is reported at the end
        joined = "".join(w + "\n" for w in words)
        codes = np.frombuffer(joined.encode("utf-32-le"), dtype="<u4")
    return codes


def _clean_block(raw: bytes, offset: int, path: str, config: DataConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The words kept from one block: their code points (each word followed by a newline), their
    lengths, and how many lines were skipped as longer than `config.max_line_length`."""
    if offset == 0 and b"\x00" in raw[:65536]:
        decode_text(raw[:65536], path, config.encoding)  # raises the binary-file error
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    codes = _block_codes(raw, offset, path, config)
    ends = np.flatnonzero(codes == _NEWLINE)
    lengths = np.diff(ends, prepend=-1) - 1  # characters of each line
    keep_line = (lengths > 0) & (lengths <= config.max_line_length)
    skipped_long = 0
    if not keep_line.all():  # blank lines and lines too long leave
        skipped_long = int((lengths > config.max_line_length).sum())
        dropped = np.flatnonzero(~keep_line)
        if len(dropped) <= DROPPED_LOOP:  # a few (the usual case): cheaper than a mask made by np.repeat
            keep = np.ones(len(codes), bool)
            for start, end in zip((ends[dropped] - lengths[dropped]).tolist(), ends[dropped].tolist()):
                keep[start : end + 1] = False
        else:
            keep = np.repeat(keep_line, lengths + 1)
        codes = codes[keep]
        lengths = lengths[keep_line]
    return codes, lengths, skipped_long


# --- shards: byte ranges of one file, counted apart and merged exactly ----------------------------
def file_size(path: str | Path) -> int:
    """Size in bytes of a word-list file, or a `DataError` saying why it cannot be read."""
    return check_data_file(path).stat().st_size


def shard_ranges(size: int, shards: int) -> list[tuple[int, int]]:
    """`shards` byte ranges [start, end) of about equal size that cover a file of `size` bytes."""
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    return [(size * i // shards, size * (i + 1) // shards) for i in range(shards)]


def read_shard(path: str | Path, start: int, end: int, block_size: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """(byte offset, block) pairs of the lines that *start* in bytes [start, end) of a file.

    A shard owns each line that starts in it, so cutting a file anywhere (inside a line, inside a
    UTF-8 character) loses and repeats nothing: a shard skips the end of the line it starts in
    (unless it starts at 0 or just after a newline) and reads past `end` to finish its last line.
    A newline byte never occurs inside a multi-byte UTF-8 character, so every cut it makes is
    between characters. Blocks end with a newline (one is added at the end of the file), as
    `read_blocks`' do.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    with f:
        offset = start
        if start > 0:  # the first line that starts here begins after the first newline at or after start - 1
            f.seek(start - 1)
            while True:
                chunk = f.read(block_size)
                if not chunk:
                    return
                newline = chunk.find(b"\n")
                if newline >= 0:
                    offset += newline
                    f.seek(offset)
                    break
                offset += len(chunk)
        data = b""  # bytes from `offset`, a line start, not yet given out
        while offset < end:
            chunk = f.read(block_size)
            if not chunk:  # end of file: the last line has no newline
                if data:
                    yield offset, data + b"\n"
                return
            data += chunk
            last = data.find(b"\n", end - offset - 1)  # the newline that ends the line holding byte end - 1
            if last >= 0:
                yield offset, data[: last + 1]
                return
            cut = data.rfind(b"\n") + 1
            if cut:
                yield offset, data[:cut]
                offset, data = offset + cut, data[cut:]


def streamed_split(words: list[str], seed: int = 42, split: bool = True) -> Split:
    """The split a streamed word list gets (`split_parts`), of words in memory, in file order.

    The n-gram fitted on `Corpus(streamed_split(words), vocab)` in memory equals the one fitted
    from `count_ngrams_file` of a file holding these words, bit for bit: the same words in each
    part, and the same training words held out to tune the discounts (every 10th in this order,
    see `data.ngram_keys.held_out_every`).
    """
    if not split:
        return Split(list(words), [], [])
    parts = split_parts(0, len(words), seed)
    return Split(*([w for w, p in zip(words, parts) if p == i] for i in range(3)))


# --- n-gram counts of a file, in shards, in worker processes, across torch.distributed ranks --------
NGRAM_BLOCK = 2 << 20  # bytes per block when counting n-grams: arrays stay small (no page faults)
DENSE_LIMIT = 1 << 18  # key spaces up to this size are counted with bincount in one dense table
PARTITIONS = 64  # key ranges of a tally (see _Tally)
PIECES = 32  # pieces of a shard, claimed one at a time by the processes that count it (see count_ngrams_file)
PENDING_MIN = 1 << 15  # keys of small runs in one range merged together before they join its total
# Counting a block takes about this many bytes per character at its peak (its digits, padded copy and
# keys, sorted with their indexes); blocks longer than BLOCK_CHECKED characters (one huge line) are checked
# against the memory limit first (namesmith.core.memory).
BLOCK_BYTES = 40
BLOCK_CHECKED = 4 * NGRAM_BLOCK
# Parts of a streamed word list as counted: HELD_OUT are the training words held out to tune the
# n-gram's discounts (every 10th training word in file order: `held_out_every`); FIT counts every training
# word, those too.
FIT, HELD_OUT, VAL, TEST = range(4)


@dataclass
class NGramFileCounts:
    """The n-gram counts of a streamed word list, per part of its split (see `count_ngrams_file`)."""

    vocab: Vocab
    order: int
    train: NGramCounts  # every training word
    held_out: NGramCounts  # training words held out to tune "tuned" discounts: every 10th in file order
    val: NGramCounts
    test: NGramCounts
    max_word_length: int
    n_bytes: int  # bytes read (a newline added to a last line without one counts)
    seconds: float
    skipped_long: int = 0
    shards: int = 1

    @property
    def n_words(self) -> dict[str, int]:
        return {part: self.part(part).n_words for part in PARTS}

    def part(self, name: str) -> NGramCounts:
        """The counts of "train", "val", "test" or "held_out"."""
        if name not in (*PARTS, "held_out"):
            raise ValueError(f"part must be one of {', '.join(PARTS)} or held_out, got {name!r}")
        return getattr(self, name)


@dataclass
class WordScan:
    """What the first pass learns of a shard: its words and characters."""

    n_words: int
    chars: list[int]  # code points, sorted
    max_word_length: int
    skipped_long: int
    n_bytes: int


def _scan_shard(path: str, start: int, end: int, config: DataConfig, block_size: int) -> WordScan:
    """First pass over a shard: count the words kept and collect the characters (no n-grams yet)."""
    n_words = max_len = skipped_long = n_bytes = 0
    chars: set[int] = {_NEWLINE}
    phase = Phase(f"reading {path} for its words and characters", (end - start) / 1e6, "MB")
    for offset, raw in read_shard(path, start, end, block_size):
        phase.advance(len(raw) / 1e6)
        n_bytes += len(raw)
        codes, lengths, skipped = _clean_block(raw, offset, path, config)
        skipped_long += skipped
        if len(lengths):
            n_words += len(lengths)
            max_len = max(max_len, int(lengths.max()))
            if codes.dtype == np.uint8:  # ASCII: drop the characters seen already (fast), look at the rest
                codes = np.frombuffer(codes.tobytes().translate(None, bytes(c for c in chars if c < 128)), np.uint8)
            chars.update(_distinct(codes))
    chars.discard(_NEWLINE)
    return WordScan(n_words, sorted(chars), max_len, skipped_long, n_bytes)


def scan_file(config: DataConfig, block_size: int = BLOCK) -> WordScan:
    """The words a word-list file holds (as `parse_words` keeps them), its characters and its longest word, read a
    block at a time: what holding it in memory would take is estimated from these (namesmith.training.train)."""
    return _scan_shard(str(config.path), 0, file_size(config.path), config, block_size)


def _train_words(first: int, count: int, config: DataConfig) -> int:
    """How many of words first..first+count-1 go to the training part."""
    if not config.split:
        return count
    step = 1 << 22  # bounds memory for a shard of any size
    return sum(int((split_parts(i, min(step, first + count - i), config.split_seed) == 0).sum())
               for i in range(first, first + count, step))


def _word_parts(first_word: int, first_train: int, count: int, config: DataConfig, every: int) -> np.ndarray:
    """(count,) FIT/HELD_OUT/VAL/TEST of words first_word.., whose first training word is training word
    first_train; training words 0, every, 2 × every, ... are held out."""
    split = split_parts(first_word, count, config.split_seed) if config.split else np.zeros(count, np.uint8)
    train = split == 0
    train_index = first_train + np.cumsum(train) - 1
    held_out = train & (train_index % every == 0)
    return np.where(train, np.where(held_out, HELD_OUT, FIT), split + 1).astype(np.uint8)


def _ngram_keys(digits: np.ndarray, lengths: np.ndarray, order: int, base: int) -> np.ndarray:
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


class _Tally:
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
        keys less its start: the parts of a `_Layout`), every array its own. Each range of keys is freed as it
        is copied and the freed heap handed back every few ranges (`release_freed_memory`): the tally is never
        held twice (counting 1 GB of names ended at 1.97 GB when it was: the ranges, freed, stayed resident)."""
        if self.dense is not None:
            keys = np.flatnonzero(self.dense)
            ranges = [(keys, self.dense[keys])]
            self.dense = None
        else:
            for i in range(PARTITIONS):
                if self.pending[i]:
                    self._flush(i)
            ranges, self.totals = self.totals, []
        cuts = np.array(starts, np.int64)
        at = [np.append(np.searchsorted(keys, cuts), len(keys))[1:] for keys, _ in ranges]  # each piece's end
        sizes = np.sum([np.diff(ends, prepend=0) for ends in at], 0) if at else np.zeros(len(cuts), np.int64)
        pieces = [(np.empty(size, np.int64), np.empty(size, np.int64)) for size in sizes.tolist()]
        filled = [0] * len(pieces)
        phase = Phase("gathering the counted n-grams", len(at), "key ranges")
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


@dataclass(frozen=True)
class _Layout:
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
        table = np.zeros(max(*self.chars, _NEWLINE) + 1, self.dtype)
        table[_NEWLINE] = 1
        table[list(self.chars)] = np.arange(2, len(self.chars) + 2)
        return table


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No messages from namesmith's logger meanwhile."""
    disabled, log.disabled = log.disabled, True
    try:
        yield
    finally:
        log.disabled = disabled


class _Counter:
    """The second pass of one process: the pieces of the file it claims, counted into one tally.

    Which pieces a process counts, and in what order, changes nothing: the counts are integer sums
    by key, and each piece knows its first word and first training word (from the first pass).
    """

    def __init__(self, layout: _Layout):
        self.layout, self.digit_of = layout, layout.digits()
        self.top = layout.base**layout.order
        self.part_offset = np.arange(4, dtype=layout.dtype) * layout.dtype(self.top) if layout.parts_in_key else None
        self.tallies = [_Tally(layout.space, layout.dtype)] if layout.parts_in_key else \
            [_Tally(self.top, layout.dtype) for _ in range(4)]
        self.n_words = np.zeros(4, np.int64)
        self.checked_at = 1 << 16  # distinct n-grams when memory was last checked (fewer: not checked)

    def add(self, path: str, start: int, end: int, config: DataConfig, first_word: int, first_train: int,
            every: int, block_size: int, phase: Phase | None = None) -> None:
        """Count the piece start..end of the file. Word first_word of the file comes first, and training
        word first_train; training words 0, every, 2 × every, ... are held out to tune the discounts.
        `phase`: the progress of every piece this process counts (else the piece's own)."""
        layout, word, train = self.layout, first_word, first_train
        phase = phase or Phase(f"counting {path}", (end - start) / 1e6, "MB")
        for offset, raw in read_shard(path, start, end, block_size):
            phase.advance(len(raw) / 1e6)
            with _quiet():  # the first pass warned about the lines it skipped
                codes, lengths, _ = _clean_block(raw, offset, path, config)
            if not len(lengths):
                continue
            parts = _word_parts(word, train, len(lengths), config, every)
            counted = np.bincount(parts, minlength=4)
            word, train = word + len(lengths), train + int(counted[FIT] + counted[HELD_OUT])
            self.n_words += counted
            if len(codes) > BLOCK_CHECKED:  # a line far longer than a block (a raised --max-line-length)
                check_fits(streamed_ngram_bytes(sum(tally.size for tally in self.tallies)) + BLOCK_BYTES * len(codes),
                           f"{path}: counting a line of {int(lengths.max()):,} characters", "lower --max-line-length",
                           "--max-line-length")
            keys = _ngram_keys(self.digit_of[codes], lengths, layout.order, layout.base)
            token_parts = np.repeat(parts, lengths + 1)
            held_out = token_parts == HELD_OUT  # counted in FIT too, which so counts every training word
            if layout.parts_in_key:  # (FIT's keys have no part added)
                self.tallies[0].add_keys(np.concatenate([keys + self.part_offset[token_parts], keys[held_out]]))
            else:
                for part, tally in enumerate(self.tallies):
                    tally.add_keys(keys[(token_parts == part) | (held_out if part == FIT else False)])
            del keys, token_parts, held_out
            self._check_memory(path, offset + len(raw) - start, end - start)

    def _check_memory(self, path: str, done: int, total: int) -> None:
        """Refuse to go on once the n-grams counted so far (a lower bound of the list's) would not fit in
        memory when fitted (namesmith.core.memory), rather than fail later, gigabytes on."""
        distinct = sum(tally.size for tally in self.tallies)
        if distinct < self.checked_at * 1.1:
            return
        self.checked_at = distinct
        check_fits(streamed_ngram_bytes(distinct),
                   f"{path}: its order-{self.layout.order} n-grams ({distinct:,} distinct after {done / 1e6:,.0f} of "
                   f"{total / 1e6:,.0f} MB), counted and fitted,", "use a lower --order, or a smaller list", "--order")

    def result(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """(int64 keys, counts) of each part and the number of words in each part."""
        if not self.layout.parts_in_key:
            return [tally.result()[0] for tally in self.tallies], self.n_words
        return self.tallies[0].result(tuple(part * self.top for part in range(4))), self.n_words


def _count_pieces(claims: Any, layout: _Layout, tasks: list[tuple]
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Count the pieces (`_Counter.add` arguments) this process claims, until none is left."""
    counter = _Counter(layout)
    first = min((task[1] for task in tasks), default=0)
    phase = Phase(f"counting {tasks[0][0]}", sum(task[2] - task[1] for task in tasks) / 1e6, "MB") if tasks else None
    for i in _claimed(claims, len(tasks)):
        if phase is not None:  # pieces are claimed in file order: where this one starts, every process has reached
            phase.advance(max((tasks[i][1] - first) / 1e6 - phase.done, 0))
        counter.add(*tasks[i], phase=phase)
    return counter.result()


def _merge_shards(results: Iterable[tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]], layout: _Layout
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The (keys, counts) of each part and the words of each part, summed over shards' results."""
    results = iter(results)
    first, second = next(results, None), next(results, None)
    if second is None:  # nothing to merge
        empty = (np.empty(0, layout.dtype), np.empty(0, np.int64))
        return first if first is not None else ([empty] * 4, np.zeros(4, np.int64))
    tallies = [_Tally(layout.base**layout.order, layout.dtype) for _ in range(4)]
    words_by_part = np.zeros(4, np.int64)
    for by_part, counted in itertools.chain([first, second], results):
        for tally, (keys, counts) in zip(tallies, by_part):
            tally.add_counts(keys, counts)
        words_by_part += counted
    return [tally.result()[0] for tally in tallies], words_by_part


_claims: Any = None  # in a worker: the task counter its pool shares (see _run)


def _init_worker(claims: Any) -> None:
    global _claims
    _claims = claims
    torch.set_num_threads(1)  # one process per core: threads inside each would only contend
    log.disabled = True  # the calling process reports (a forked worker would repeat its messages, e.g. on Ctrl-C)


@dataclass
class _Pool:
    """Worker processes that count beside this one, and the counter the processes claim tasks from."""

    executor: ProcessPoolExecutor
    claims: Any  # a shared multiprocessing.Value: the index of the next task not yet claimed
    workers: int

    def release(self) -> None:
        """Let the workers exit now, without waiting for them: a worker that held a tally of a gigabyte's
        n-grams takes about 0.4 s to exit, which it spends while this process merges the counts."""
        self.executor.shutdown(wait=False)


@contextlib.contextmanager
def _worker_pool(workers: int) -> Iterator[_Pool | None]:
    """`workers` - 1 processes that count beside this one (None for 1: count here alone).

    On Linux they are forked: a worker starts at once, with this process's modules imported (a spawned one
    imports torch first, about 2 s, while a gigabyte's first pass takes 2.6 s). It runs NumPy and one-thread
    torch code only, as a DataLoader's forked workers do. Elsewhere they are spawned (fork is unsafe on macOS).
    """
    if workers == 1:
        yield None
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    resource_tracker.ensure_running()  # before a fork: the workers' shared memory (_Shipped) is tracked here too
    claims = context.Value("q", 0)
    executor = ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_init_worker, initargs=(claims,))
    try:
        yield _Pool(executor, claims, workers - 1)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()


def _claimed(claims: Any, n: int) -> Iterator[int]:
    """The indexes of tasks 0..n-1 that this process claims, one at a time, until none is left (all
    of them without a shared counter)."""
    if claims is None:
        yield from range(n)
        return
    while True:
        with claims.get_lock():
            i = claims.value
            claims.value = i + 1
        if i >= n:
            return
        yield i


def _claim(claims: Any, function: Callable[..., Any], tasks: list[tuple], what: str = "") -> dict[int, Any]:
    """Run the tasks this process claims: {task index: result}; with `what`, say how far they all are (tasks
    are claimed in order: the index of this process's latest is how many every process has taken)."""
    phase, results = Phase(what, len(tasks), "pieces") if what else None, {}
    for i in _claimed(claims, len(tasks)):
        if phase is not None:
            phase.advance(max(i - phase.done, 0))
        results[i] = function(*tasks[i])
    return results


def _each_process_in_worker(function: Callable[..., Any], *args: Any) -> Any:
    return _Shipped(function(_claims, *args))


class _Shipped:
    """A worker's result (nested lists and tuples of NumPy arrays) sent through shared memory rather than
    pickled through the result pipe: a tally of 15 million keys took about 2 s of the caller's time that
    way, while both processes waited. Where shared memory has no room for it, it goes through the pipe."""

    def __init__(self, result: Any):
        from multiprocessing import shared_memory

        arrays: list[np.ndarray] = []
        self.tree = _arrays_out(result, arrays)
        self.specs = []
        self.name = None
        if not arrays:  # nothing to share: the tree goes through the pipe as it is
            return
        size = max(1, sum(a.nbytes for a in arrays))
        memory = shared_memory.SharedMemory(create=True, size=size)
        if not _reserve(memory, size):  # shared memory is full (a container's 64 MB /dev/shm): use the pipe
            memory.close()
            memory.unlink()
            self.tree, self.specs = result, []
            return
        offset = 0
        for a in arrays:
            np.ndarray(a.shape, a.dtype, buffer=memory.buf, offset=offset)[...] = a
            self.specs.append((a.dtype.str, a.shape, offset))
            offset += a.nbytes
        self.name = memory.name
        memory.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"tree": self.tree, "specs": self.specs, "name": self.name}

    def open(self) -> Any:
        """The result, copied out of the shared memory, which is then freed."""
        from multiprocessing import shared_memory

        if self.name is None:
            return self.tree
        memory = shared_memory.SharedMemory(name=self.name)
        try:
            arrays = [np.ndarray(shape, dtype, buffer=memory.buf, offset=offset).copy()
                      for dtype, shape, offset in self.specs]
        finally:
            memory.close()
            memory.unlink()
        return _arrays_in(self.tree, arrays)

    def free(self) -> None:
        """Free the shared memory of a result that is not wanted."""
        from multiprocessing import shared_memory

        if self.name is not None:
            memory = shared_memory.SharedMemory(name=self.name)
            memory.close()
            memory.unlink()
            self.name = None


def _reserve(memory: Any, size: int) -> bool:
    """Whether the pages of new shared memory could be reserved. Without this, writing to shared memory
    that does not fit (in /dev/shm, often 64 MB in a container) kills the process with SIGBUS; reserved
    up front, it is an error here, and the caller takes another way."""
    fd = getattr(memory, "_fd", -1)  # POSIX shared memory's file descriptor
    if fd < 0 or not hasattr(os, "posix_fallocate"):
        return True
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class _ArrayAt:
    index: int  # in the list of a _Shipped's arrays


def _arrays_out(tree: Any, arrays: list[np.ndarray]) -> Any:
    """`tree` with each array appended to `arrays` and replaced by its index there."""
    if isinstance(tree, np.ndarray):
        arrays.append(tree)
        return _ArrayAt(len(arrays) - 1)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_out(item, arrays) for item in tree)
    return tree


def _arrays_in(tree: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(tree, _ArrayAt):
        return arrays[tree.index]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_in(item, arrays) for item in tree)
    return tree


def _run(pool: _Pool | None, function: Callable[..., Any], tasks: list[tuple], what: str = "") -> list[Any]:
    """`function(*args)` of each task, in order: in this process, or shared by it and the pool's workers
    (saying how far they are under the name `what`, if given).

    Every process claims the next task as it becomes free, this one included, so no process waits
    while there is work: a worker starts late (a forked one by a fraction of a second, a spawned one by
    about 2 s: it imports torch first), and this one does the work meanwhile.
    """
    if pool is None or len(tasks) <= 1:
        return [function(*args) for args in tasks]
    results: dict[int, Any] = {}
    for claimed in _each_process(pool, _claim, function, tasks, what):
        results.update(claimed)
    return [results[i] for i in range(len(tasks))]


def _each_process(pool: _Pool | None, function: Callable[..., Any], *args: Any) -> list[Any]:
    """`function(claims, *args)` in this process and in each of the pool's workers, at once: one result
    per process. `function` claims its tasks from `claims` (`_claimed`), so the processes share them
    out as each becomes free."""
    if pool is None:
        return [function(None, *args)]
    pool.claims.value = 0
    futures = [pool.executor.submit(_each_process_in_worker, function, *args) for _ in range(pool.workers)]
    try:
        results = [function(pool.claims, *args)]
        results += [future.result().open() for future in futures]
    except BaseException:
        with pool.claims.get_lock():
            pool.claims.value = 1 << 62  # the workers claim nothing more
        for future in futures:  # wait until they stop: a worker writes to `claims` until then, and the memory
            with contextlib.suppress(BaseException):  # of `claims` may soon hold another pool's counter
                future.result().free()  # (a result not wanted)
        raise
    return results


def _last_of_pool(pool: _Pool | None, function: Callable[..., Any], *args: Any) -> list[Any]:
    """`_each_process` for the pool's last work: the workers are released as soon as their results are in."""
    results = _each_process(pool, function, *args)
    if pool is not None:
        pool.release()
    return results


def _process_group(group: Any) -> Any:
    """The torch.distributed group to count across: `group`, else the default one if initialised."""
    if group is not None:
        return group
    import torch.distributed as dist

    return dist.group.WORLD if dist.is_available() and dist.is_initialized() else None


def _gather(compute: Callable[[], Any], group: Any) -> list[Any]:
    """Every rank's `compute()`, on every rank (just this one's without a group).

    A rank whose `compute` fails still takes part in the exchange, sending its error, and every
    rank raises it: the others do not wait for a rank that will never send.
    """
    if group is None:
        return [compute()]
    import torch.distributed as dist

    try:
        value, error = compute(), None
    except Exception as e:  # noqa: BLE001 (sent to the other ranks, then raised here too)
        value, error = None, e
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, (value, error), group=group)
    if error is not None:
        raise error
    for _, other in gathered:
        if other is not None:
            raise other
    return [value for value, _ in gathered]


def _every_shard(pool: _Pool | None, group: Any, mine: list[int], function: Callable[..., Any],
                 tasks: list[tuple], what: str = "") -> list[Any]:
    """Results of `function` on every shard, in shard order: this rank runs `mine`, the ranks swap results."""
    gathered = _gather(lambda: list(zip(mine, _run(pool, function, tasks, what))), group)
    return [result for _, result in sorted((pair for rank in gathered for pair in rank), key=lambda pair: pair[0])]


def count_ngrams_file(config: DataConfig, order: int | None, *, workers: int = 1, shards: int | None = None,
                      group: ProcessGroup | None = None, block_size: int = NGRAM_BLOCK) -> NGramFileCounts:
    """Count the order-`order` n-grams of a word-list file of any size, in shards, exactly (order None: the
    default order that fits the file's vocabulary, `namesmith.data.ngram_keys.default_order`).

    The file is cut into `shards` byte ranges (default: one per counting process, `workers` ×
    the ranks of `group`); each shard owns the lines that start in it (`read_shard`). Lines are
    cleaned as `data.parse_words` cleans them. Two passes, each over every shard:

    1. scan: the words kept and the characters of each shard. This gives the vocabulary before
       any n-gram is counted (so every shard counts in the same keys) and each shard's first
       word index, so the split is that of `count_file`, whatever the shards: word i (counting
       the words kept, in file order) goes to train/val/test by `split_parts`, and every 10th
       training word in file order (`held_out_every`: fewer above a million) is also counted
       apart, to tune "tuned" discounts on. `NGram.fit` holds out the same words of its
       training list, so `NGram.fit` on `streamed_split` of the words gives the same model.
    2. count: each shard, a block at a time, counts the keys of its n-grams (`NGramCounts`'
       keys, plus the part × base^N), and the counts are merged (`_merge_sorted`): integer sums
       of sorted keys, so the result does not depend on how the file was cut.

    `workers` > 1 counts in that many processes: this one and `workers` - 1 workers, forked on Linux
    and spawned elsewhere (there, call this under `if __name__ == "__main__":` in a script).
    Every pass reads each shard in `PIECES` pieces, and each process claims the next piece when it
    is free (`_claimed`), so this process works while the workers start up, and no process waits
    at the end for a slower one with a whole shard still to count; in the second pass each process
    counts the pieces it claims into one tally (`_Counter`), so there are as many tallies to merge
    as processes. Under torch.distributed (an
    initialised default group, as `torchrun` sets up, or `group`) every rank must call this: each
    counts shards rank, rank + world size, ..., the results are exchanged with
    `all_gather_object`, and every rank returns the same totals (an error on one rank is raised
    on every rank). Counts travel as pickled arrays, so under NCCL pass a gloo `group`
    (`torch.distributed.new_group(backend="gloo")`) rather than send them through the GPUs.
    Memory is bounded by the distinct n-grams, not by the file: each counting process holds
    about 20-40 bytes per distinct n-gram (all parts) plus a block being counted.

    Fit and evaluate from the result::

        counts = count_ngrams_file(DataConfig(path="words.txt"), 6, workers=4)
        model = NGram(counts.vocab.size, NGramConfig(order=6))
        model.fit_counts(counts.train, counts.held_out)
        test_nll = model.nll_counts(counts.test)
    """
    start_time = time.perf_counter()
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer of at least 1, got {workers!r}")
    if str(config.path) == BUILTIN:
        raise ConfigError("counting a file needs a word-list file, not the built-in data set")
    if order is not None:
        check_order_value(order)
    if "\n".encode(config.encoding) != b"\n" or "a".encode(config.encoding) != b"a":
        raise ConfigError(f"--encoding: counting a file reads ASCII-compatible encodings only, not {config.encoding}")
    path = str(config.path)
    size = file_size(path)
    group = _process_group(group)
    rank, world = (0, 1)
    if group is not None:
        import torch.distributed as dist

        rank, world = dist.get_rank(group), dist.get_world_size(group)
    shards = workers * world if shards is None else shards
    mine = list(range(rank, shards, world))
    # every pass reads each shard in PIECES pieces: a process that is free (this one, while the workers start)
    # takes the next piece
    pieces = PIECES if workers > 1 else 1
    piece_ranges = shard_ranges(size, shards * pieces)  # shard s is pieces s × pieces ... (s + 1) × pieces - 1
    my_pieces = [s * pieces + j for s in mine for j in range(pieces)]
    with _worker_pool(workers) as pool:
        scans = _every_shard(pool, group, my_pieces, _scan_shard,
                             [(path, *piece_ranges[p], config, block_size) for p in my_pieces],
                             f"reading {path} for its words and characters" if len(my_pieces) > 1 else "")
        n_words = [scan.n_words for scan in scans]
        if not sum(n_words):
            raise DataError(f"{path}: has no usable names (every line was blank or skipped)" if size
                            else f"{path}: is empty (no names in it)")
        chars = tuple(sorted(set().union(*(scan.chars for scan in scans))))
        vocab = Vocab.from_chars(map(chr, chars))
        if order is None:
            order = default_order(vocab.size)
        check_order(order, vocab.size)
        first_word = np.cumsum([0, *n_words]).tolist()
        train_words = _every_shard(pool, group, my_pieces, _train_words,
                                   [(first_word[p], n_words[p], config) for p in my_pieces])
        first_train = np.cumsum([0, *train_words]).tolist()
        layout = _Layout(order, vocab.size + 1, chars)
        every = held_out_every(first_train[-1])  # the training words held out to tune the discounts
        tasks = [(path, *piece_ranges[p], config, first_word[p], first_train[p], every, block_size) for p in my_pieces]
        # every rank gets every rank's counts (its processes' merged first), and merges them as this one does
        gathered = _gather(lambda: _merge_shards(_last_of_pool(pool, _count_pieces, layout, tasks), layout), group)
    by_part, words_by_part = _merge_shards(gathered, layout)
    del gathered
    words_by_part[FIT] += words_by_part[HELD_OUT]  # FIT's n-grams are every training word's (see _Counter.add)
    parts = [NGramCounts(order, vocab.size, torch.from_numpy(keys), torch.from_numpy(counts), int(n_words))
             for (keys, counts), n_words in zip(by_part, words_by_part)]  # int64 arrays of their own: not copied
    train, held_out, val, test = parts
    del by_part, parts
    release_freed_memory()  # the tallies' small arrays
    skipped_long = sum(scan.skipped_long for scan in scans)
    if skipped_long and rank == 0:
        log.warning(f"{path}: skipped {skipped_long} line(s) longer than --max-line-length={config.max_line_length}")
    return NGramFileCounts(vocab, order, train, held_out, val, test,
                           max(scan.max_word_length for scan in scans), sum(scan.n_bytes for scan in scans),
                           time.perf_counter() - start_time, skipped_long, shards)


def count_pairs_file(config: DataConfig, *, workers: int = 1, shards: int | None = None,
                     group: ProcessGroup | None = None, block_size: int = NGRAM_BLOCK) -> StreamCounts:
    """`count_file`'s pair counts (bigram), counted in shards, worker processes or ranks: equal to its, exactly.

    The pairs are the n-grams of order 2 (`count_ngrams_file`); the split is the same.
    """
    counts = count_ngrams_file(config, 2, workers=workers, shards=shards, group=group, block_size=block_size)
    V = counts.vocab.size
    pairs = np.zeros((3, V, V), dtype=np.int64)
    for table, part in zip(pairs, PARTS):
        keys = counts.part(part).keys.numpy()
        table[keys // (V + 1) - 1, keys % (V + 1) - 1] = counts.part(part).counts.numpy()  # digits are token + 1
    return StreamCounts(counts.vocab, pairs, counts.n_words, counts.max_word_length, counts.n_bytes,
                        counts.seconds, counts.skipped_long)


@dataclass
class StreamCounts:
    """Pair counts of a streamed word list, per part of its split."""

    vocab: Vocab
    pairs: np.ndarray  # (3, V, V) int64: train/val/test; row = previous token, column = next
    n_words: dict[str, int]
    max_word_length: int
    n_bytes: int  # size of the file read
    seconds: float
    skipped_long: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> np.ndarray:
        return self.pairs[PARTS.index(name)]


def _block_table(codes: np.ndarray, lengths: np.ndarray, parts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Pair counts (3, A, A) of one cleaned block over its own alphabet A (code points, sorted).

    ASCII blocks count in the 128 × 128 byte space with 16-bit keys (part << 14 | previous << 7 |
    next), so nothing per character is wider than 2 bytes; others map code points to a local alphabet.
    """
    if codes.dtype == np.uint8:
        alphabet, ids, shift = np.arange(128), codes.astype(np.uint16), 7
    else:
        alphabet, ids = np.unique(codes, return_inverse=True)
        shift = max(int(len(alphabet) - 1).bit_length(), 1)
    size = 1 << shift
    dtype = np.uint16 if 3 * size * size <= 1 << 16 else np.int64
    ids = ids.astype(dtype, copy=False)
    keys = np.empty(len(ids), dtype=dtype)  # previous << shift | next; the first previous is a newline
    keys[0] = int(np.searchsorted(alphabet, _NEWLINE)) << shift
    np.left_shift(ids[:-1], shift, out=keys[1:])
    keys |= ids
    if parts is not None:
        keys |= np.repeat(parts, lengths + 1).astype(dtype) << (2 * shift)
    table = np.bincount(keys, minlength=3 * size * size).reshape(3, size, size)
    return table[:, : len(alphabet), : len(alphabet)], alphabet


def count_file(config: DataConfig, block_size: int = BLOCK) -> StreamCounts:
    """Stream `config.path` once and count its character pairs (train/val/test by word hash)."""
    start = time.perf_counter()
    path = str(config.path)
    index = {_NEWLINE: BOUNDARY}  # code point → row of `counts` (insertion order)
    counts = np.zeros((3, 1, 1), dtype=np.int64)
    n_words = np.zeros(3, dtype=np.int64)
    max_len = skipped_long = n_bytes = 0
    for offset, raw in read_blocks(path, block_size):
        n_bytes += len(raw)
        codes, lengths, skipped = _clean_block(raw, offset, path, config)
        skipped_long += skipped
        if not len(lengths):
            continue
        max_len = max(max_len, int(lengths.max()))
        parts = split_parts(int(n_words.sum()), len(lengths), config.split_seed) if config.split else None
        n_words += np.bincount(parts, minlength=3) if parts is not None else [len(lengths), 0, 0]
        table, alphabet = _block_table(codes, lengths, parts)
        present = np.flatnonzero(table.sum((0, 1)) + table.sum((0, 2)))  # characters of this block
        for c in alphabet[present].tolist():
            index.setdefault(c, len(index))
        if len(index) > counts.shape[1]:
            grown = np.zeros((3, len(index), len(index)), dtype=np.int64)
            grown[:, : counts.shape[1], : counts.shape[1]] = counts
            counts = grown
        rows = np.array([index[c] for c in alphabet[present].tolist()])
        counts[:, rows[:, None], rows[None, :]] += table[:, present[:, None], present[None, :]]
    if not n_words.sum():
        raise DataError(f"{path}: has no usable names (every line was blank or skipped)" if n_bytes
                        else f"{path}: is empty (no names in it)")
    if skipped_long:
        log.warning(f"{path}: skipped {skipped_long} line(s) longer than --max-line-length={config.max_line_length}")
    vocab = Vocab.from_chars(chr(c) for c in index if c != _NEWLINE)
    order = [BOUNDARY] + [index[ord(c)] for c in vocab.chars]  # sorted vocabulary order
    pairs = counts[:, order][:, :, order]
    return StreamCounts(vocab, pairs, dict(zip(PARTS, n_words.tolist())), max_len, n_bytes,
                        time.perf_counter() - start, skipped_long)
