"""Counting: n-gram counts of word lists too large to hold as strings, and the split of a streamed list.

This module only counts; training from the counts is in namesmith.training.train, evaluating from them
in namesmith.scoring.evaluate. A bigram's pair counts are counted in namesmith.data.pair_counts.

Blocks are read and cleaned by the line rules of `data.parse_words` in namesmith.data.blocks.

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
reads it) and every shard counts in the same vocabulary; `streamed_split` gives the same split of a word
list in memory.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesmith.core.errors import ConfigError, DataError
from namesmith.core.memory import check_fits, release_freed_memory, streamed_ngram_bytes
from namesmith.core.progress import Phase
from namesmith.core.vocab import Vocab
from namesmith.data.blocks import (
    BLOCK,
    NEWLINE,
    clean_block,
    distinct_codes,
    file_size,
    read_shard,
    shard_ranges,
)
from namesmith.data.ngram_keys import NGramCounts, check_order, check_order_value, default_order, held_out_every
from namesmith.data.process_pool import (
    claimed,
    every_shard,
    gather,
    last_of_pool,
    process_group,
    rank_and_world,
    worker_pool,
)
from namesmith.data.tally import CELL_LENGTHS, KeyLayout, Tally, block_ngram_keys, merge_shards
from namesmith.data.words import BUILTIN, DataConfig, Split

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

log = logging.getLogger("namesmith")

PARTS = ("train", "val", "test")


def split_parts(first: int, count: int, seed: int) -> np.ndarray:
    """Part (0 train, 1 val, 2 test) of words first..first+count-1: splitmix64 hash, mod 10."""
    with np.errstate(over="ignore"):
        z = np.arange(first, first + count, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    digit = (z % np.uint64(10)).astype(np.uint8)
    return np.where(digit < 8, 0, digit - 7).astype(np.uint8)


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
PIECES = 32  # pieces of a shard, claimed one at a time by the processes that count it (see count_ngrams_file)
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
    # (4, CELL_LENGTHS + 1, V) the words of FIT (every training word), HELD_OUT, VAL and TEST by length (that many
    # or more in the last row) and last token: what whole-name calibration needs of them (training.calibrate)
    cells: torch.Tensor | None = None

    @property
    def n_words(self) -> dict[str, int]:
        return {part: self.part(part).n_words for part in PARTS}

    def word_cells(self, name: str) -> torch.Tensor:
        """(CELL_LENGTHS + 1, V) the words of part "train", "val", "test" or "held_out" by length and last token."""
        self.part(name)  # checks the name
        return self.cells[{"train": FIT, "held_out": HELD_OUT, "val": VAL, "test": TEST}[name]]

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
    chars: set[int] = {NEWLINE}
    phase = Phase(f"reading {path} for its words and characters", (end - start) / 1e6, "MB")
    for offset, raw in read_shard(path, start, end, block_size):
        phase.advance(len(raw) / 1e6)
        n_bytes += len(raw)
        codes, lengths, skipped = clean_block(raw, offset, path, config)
        skipped_long += skipped
        if len(lengths):
            n_words += len(lengths)
            max_len = max(max_len, int(lengths.max()))
            if codes.dtype == np.uint8:  # ASCII: drop the characters seen already (fast), look at the rest
                codes = np.frombuffer(codes.tobytes().translate(None, bytes(c for c in chars if c < 128)), np.uint8)
            chars.update(distinct_codes(codes))
    chars.discard(NEWLINE)
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

    def __init__(self, layout: KeyLayout):
        self.layout, self.digit_of = layout, layout.digits()
        self.top = layout.base**layout.order
        self.part_offset = np.arange(4, dtype=layout.dtype) * layout.dtype(self.top) if layout.parts_in_key else None
        self.tallies = [Tally(layout.space, layout.dtype)] if layout.parts_in_key else \
            [Tally(self.top, layout.dtype) for _ in range(4)]
        self.cells = np.zeros((4, CELL_LENGTHS + 1, layout.base), np.int64)  # words by part, length, last digit
        self.checked_at = 1 << 16  # distinct n-grams when memory was last checked (fewer: not checked)

    def add(self, path: str, start: int, end: int, config: DataConfig, first_word: int, first_train: int,
            every: int, block_size: int, phase: Phase | None = None) -> None:
        """Count the piece start..end of the file. Word first_word of the file comes first, and training
        word first_train; training words 0, every, 2 × every, ... are held out to tune the discounts.
        `phase`: the progress of every piece this process counts (else the piece's own)."""
        layout, word, train = self.layout, first_word, first_train
        phase = phase or Phase(f"counting {path}", (end - start) / 1e6, "MB")
        for offset, raw in read_shard(path, start, end, block_size):
            # a block is two steps of progress, its keys and then their tally (each about 0.3 s of CPU for 2 MB
            # of a long list's words: a step is at most every + one step apart, even on a busy core)
            phase.advance(len(raw) / 2e6)
            with _quiet():  # the first pass warned about the lines it skipped
                codes, lengths, _ = clean_block(raw, offset, path, config)
            if not len(lengths):
                phase.advance(len(raw) / 2e6)
                continue
            parts = _word_parts(word, train, len(lengths), config, every)
            counted = np.bincount(parts, minlength=4)
            word, train = word + len(lengths), train + int(counted[FIT] + counted[HELD_OUT])
            self._add_cells(codes, lengths, parts)
            if len(codes) > BLOCK_CHECKED:  # a line far longer than a block (a raised --max-line-length)
                check_fits(streamed_ngram_bytes(sum(tally.size for tally in self.tallies)) + BLOCK_BYTES * len(codes),
                           f"{path}: counting a line of {int(lengths.max()):,} characters", "lower --max-line-length",
                           "--max-line-length")
            keys = block_ngram_keys(self.digit_of[codes], lengths, layout.order, layout.base)
            token_parts = np.repeat(parts, lengths + 1)
            held_out = token_parts == HELD_OUT  # counted in FIT too, which so counts every training word
            phase.advance(len(raw) / 2e6)
            if layout.parts_in_key:  # (FIT's keys have no part added)
                self.tallies[0].add_keys(np.concatenate([keys + self.part_offset[token_parts], keys[held_out]]))
            else:
                for part, tally in enumerate(self.tallies):
                    tally.add_keys(keys[(token_parts == part) | (held_out if part == FIT else False)])
            del keys, token_parts, held_out
            self._check_memory(path, offset + len(raw) - start, end - start)

    def _add_cells(self, codes: np.ndarray, lengths: np.ndarray, parts: np.ndarray) -> None:
        """Tally each word's cell: its part, its length (CELL_LENGTHS or longer as CELL_LENGTHS), its last digit."""
        last = self.digit_of[codes[np.cumsum(lengths + 1) - 2]].astype(np.int64)  # the character before each newline
        length = np.minimum(lengths, CELL_LENGTHS)
        cell = (parts.astype(np.int64) * (CELL_LENGTHS + 1) + length) * self.layout.base + last
        self.cells += np.bincount(cell, minlength=self.cells.size).reshape(self.cells.shape)

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
        """(int64 keys, counts) of each part and the words' cells of each part (`_add_cells`)."""
        if not self.layout.parts_in_key:
            return [tally.result()[0] for tally in self.tallies], self.cells
        return self.tallies[0].result(tuple(part * self.top for part in range(4))), self.cells


def _count_pieces(claims: Any, layout: KeyLayout, tasks: list[tuple]
                  ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Count the pieces (`_Counter.add` arguments) this process claims, until none is left."""
    counter = _Counter(layout)
    first = min((task[1] for task in tasks), default=0)
    phase = Phase(f"counting {tasks[0][0]}", sum(task[2] - task[1] for task in tasks) / 1e6, "MB") if tasks else None
    for i in claimed(claims, len(tasks)):
        if phase is not None:  # pieces are claimed in file order: where this one starts, every process has reached
            phase.advance(max((tasks[i][1] - first) / 1e6 - phase.done, 0))
        counter.add(*tasks[i], phase=phase)
    return counter.result()


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
       keys, plus the part × base^N), and the counts are merged (namesmith.data.tally): integer sums
       of sorted keys, so the result does not depend on how the file was cut.

    `workers` > 1 counts in that many processes, this one included, each claiming `PIECES` pieces of a shard
    at a time (namesmith.data.process_pool: forked on Linux; spawned elsewhere, so call this under `if __name__
    == "__main__":` there). Under torch.distributed (an initialised default group, as `torchrun` sets up, or
    `group`) every rank must call this: each counts shards rank, rank + world size, ..., and every rank returns
    the same totals. Counts travel as pickled arrays: under NCCL pass a gloo `group` (`new_group(backend="gloo")`).
    Memory is bounded by the distinct n-grams, not by the file: each counting process holds
    about 20-40 bytes per distinct n-gram (all parts) plus a block being counted.

    Fit and evaluate from the result::

        counts = count_ngrams_file(DataConfig(path="words.txt"), 6, workers=4)
        model = NGram(counts.vocab.size, NGramConfig(order=6))
        model.fit_counts(counts.train, counts.held_out)
        test_nll = model.nll_counts(counts.test)
    """
    start_time = time.perf_counter()
    _check_arguments(config, order, workers)
    path = str(config.path)
    size = file_size(path)
    group = process_group(group)
    rank, world = rank_and_world(group)
    shards = workers * world if shards is None else shards
    mine = list(range(rank, shards, world))
    # every pass reads each shard in PIECES pieces: a process that is free (this one, while the workers start)
    # takes the next piece
    pieces = PIECES if workers > 1 else 1
    piece_ranges = shard_ranges(size, shards * pieces)  # shard s is pieces s × pieces ... (s + 1) × pieces - 1
    my_pieces = [s * pieces + j for s in mine for j in range(pieces)]
    with worker_pool(workers) as pool:
        scans, vocab, layout, tasks = _first_pass(pool, group, my_pieces, piece_ranges, config, order, block_size)
        order = layout.order
        # every rank gets every rank's counts (its processes' merged first), and merges them as this one does
        gathered = gather(lambda: merge_shards(last_of_pool(pool, _count_pieces, layout, tasks), layout), group)
    by_part, cells = merge_shards(gathered, layout)
    del gathered
    cells[FIT] += cells[HELD_OUT]  # FIT's n-grams are every training word's (see _Counter.add)
    parts = [NGramCounts(order, vocab.size, torch.from_numpy(keys), torch.from_numpy(counts), int(part_cells.sum()))
             for (keys, counts), part_cells in zip(by_part, cells)]  # int64 arrays of their own: not copied
    train, held_out, val, test = parts
    del by_part, parts
    release_freed_memory()  # the tallies' small arrays
    skipped_long = sum(scan.skipped_long for scan in scans)
    if skipped_long and rank == 0:
        log.warning(f"{path}: skipped {skipped_long} line(s) longer than --max-line-length={config.max_line_length}")
    return NGramFileCounts(vocab, order, train, held_out, val, test,
                           max(scan.max_word_length for scan in scans), sum(scan.n_bytes for scan in scans),
                           time.perf_counter() - start_time, skipped_long, shards,
                           torch.from_numpy(cells[:, :, 1:].copy()))  # digit d is token d - 1: the end token's 0


def _first_pass(pool: Any, group: ProcessGroup | None, my_pieces: list[int], piece_ranges: list[tuple[int, int]],
                config: DataConfig, order: int | None, block_size: int
                ) -> tuple[list[WordScan], Vocab, KeyLayout, list[tuple]]:
    """`count_ngrams_file`'s first pass: every piece's words and characters, so the vocabulary, the keys' layout
    (the default order where `order` is None) and the second pass's tasks (`_Counter.add` arguments): each piece
    with its first word and first training word."""
    path = str(config.path)
    scans = every_shard(pool, group, my_pieces, _scan_shard,
                        [(path, *piece_ranges[p], config, block_size) for p in my_pieces],
                        f"reading {path} for its words and characters" if len(my_pieces) > 1 else "")
    n_words, chars = _words_and_characters(scans, path, file_size(path))
    vocab = Vocab.from_chars(map(chr, chars))
    if order is None:
        order = default_order(vocab.size)
    check_order(order, vocab.size)
    first_word = np.cumsum([0, *n_words]).tolist()
    train_words = every_shard(pool, group, my_pieces, _train_words,
                              [(first_word[p], n_words[p], config) for p in my_pieces])
    first_train = np.cumsum([0, *train_words]).tolist()
    layout = KeyLayout(order, vocab.size + 1, chars)
    every = held_out_every(first_train[-1])  # the training words held out to tune the discounts
    tasks = [(path, *piece_ranges[p], config, first_word[p], first_train[p], every, block_size) for p in my_pieces]
    return scans, vocab, layout, tasks


def _check_arguments(config: DataConfig, order: int | None, workers: int) -> None:
    """`count_ngrams_file`'s arguments, checked before the file is read."""
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be an integer of at least 1, got {workers!r}")
    if str(config.path) == BUILTIN:
        raise ConfigError("counting a file needs a word-list file, not the built-in data set")
    if order is not None:
        check_order_value(order)
    if "\n".encode(config.encoding) != b"\n" or "a".encode(config.encoding) != b"a":
        raise ConfigError(f"--encoding: counting a file reads ASCII-compatible encodings only, not {config.encoding}")


def _words_and_characters(scans: list[WordScan], path: str, size: int) -> tuple[list[int], tuple[int, ...]]:
    """The words of each piece and the code points of the file's characters (sorted), from the first pass."""
    n_words = [scan.n_words for scan in scans]
    if not sum(n_words):
        raise DataError(f"{path}: has no usable names (every line was blank or skipped)" if size
                        else f"{path}: is empty (no names in it)")
    return n_words, tuple(sorted(set().union(*(scan.chars for scan in scans))))
