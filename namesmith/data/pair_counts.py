"""A bigram's sufficient statistics: the (V, V) counts of (previous, next) character pairs, of words in memory
and of a word-list file of any size (see models/bigram.py).

A file is read in binary blocks cut at newlines (namesmith.data.blocks, by the line rules of
`data.parse_words`) and each block is counted with NumPy (`np.bincount` of previous × V + next pair
ids). One pass: the vocabulary grows as new characters appear and the table is re-indexed into
sorted vocabulary order at the end. Memory is O(block + V²), whatever the file size. The split is
the streamed one (`namesmith.data.counting.split_parts`); `count_pairs_file` gives the same counts
from n-grams of order 2 counted in shards, worker processes or ranks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from namesmith.core.errors import DataError
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.blocks import BLOCK, NEWLINE, clean_block, read_blocks
from namesmith.data.counting import NGRAM_BLOCK, PARTS, count_ngrams_file, split_parts
from namesmith.data.words import DataConfig

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

log = logging.getLogger("namesmith")


def count_pairs(x: torch.Tensor, y: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Pair counts (V, V) from `encode_words` tensors: row = previous token, column = next."""
    mask = y >= 0
    flat = x[mask] * vocab_size + y[mask]
    return torch.bincount(flat, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)


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


def count_file(config: DataConfig, block_size: int = BLOCK) -> StreamCounts:
    """Stream `config.path` once and count its character pairs (train/val/test by word hash)."""
    start = time.perf_counter()
    path = str(config.path)
    index = {NEWLINE: BOUNDARY}  # code point → row of `counts` (insertion order)
    counts = np.zeros((3, 1, 1), dtype=np.int64)
    n_words = np.zeros(3, dtype=np.int64)
    max_len = skipped_long = n_bytes = 0
    for offset, raw in read_blocks(path, block_size):
        n_bytes += len(raw)
        codes, lengths, skipped = clean_block(raw, offset, path, config)
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
    vocab = Vocab.from_chars(chr(c) for c in index if c != NEWLINE)
    order = [BOUNDARY] + [index[ord(c)] for c in vocab.chars]  # sorted vocabulary order
    pairs = counts[:, order][:, :, order]
    return StreamCounts(vocab, pairs, dict(zip(PARTS, n_words.tolist())), max_len, n_bytes,
                        time.perf_counter() - start, skipped_long)


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
    keys[0] = int(np.searchsorted(alphabet, NEWLINE)) << shift
    np.left_shift(ids[:-1], shift, out=keys[1:])
    keys |= ids
    if parts is not None:
        keys |= np.repeat(parts, lengths + 1).astype(dtype) << (2 * shift)
    table = np.bincount(keys, minlength=3 * size * size).reshape(3, size, size)
    return table[:, : len(alphabet), : len(alphabet)], alphabet


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
