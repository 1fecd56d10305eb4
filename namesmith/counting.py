"""Counting: the pair counts of words in memory, and of word lists too large to hold as strings.

This module only counts; training from the counts is in namesmith.train, evaluating from them
in namesmith.evaluate.

A bigram model needs only its sufficient statistics, the (V, V) counts of (previous, next)
character pairs (see models/bigram.py), so a file of any size is read in binary blocks cut at
newlines and each block is counted with NumPy (`np.bincount` of previous × V + next pair ids).
One pass: the vocabulary grows as new characters appear and the table is re-indexed into
sorted vocabulary order at the end. Memory is O(block + V²), whatever the file size.

Line rules are those of `data.parse_words` (strip, NFC, skip blank, --max-line-length, a tab ends
the name, no control characters, optional lowercase). A block of plain text (no tab, carriage
return, control or unusual whitespace, no space at a line's ends) is cleaned with array
operations; any other block goes through `parse_words` itself, line by line.

The split of a streamed file: the lecture split shuffles all words, which needs them all in
memory. Here word i (0-based, counting the words kept) goes to train/val/test by a hash of
(i, split seed): hash mod 10 → 0-7 train, 8 val, 9 test; about 80/10/10 and deterministic.
Streaming is used for large files only (see namesmith.train), so names.txt and other small lists
keep the exact lecture split.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from namesmith.data import _BAD_CATEGORIES, DataConfig, decode_text, parse_words
from namesmith.errors import DataError
from namesmith.vocab import BOUNDARY, Vocab

log = logging.getLogger("namesmith")

BLOCK = 8 << 20  # bytes read and counted at a time: bounds memory (about 20 × this at peak)
PARTS = ("train", "val", "test")
_NEWLINE = ord("\n")
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
    """Code points of a block whose lines need no per-line rule but the length check, else None."""
    if raw.isascii():
        if config.lowercase:
            raw = raw.lower()
        if len(raw.translate(None, _ASCII_CONTROLS)) != len(raw):  # tab, CR, other controls
            return None
        text_has_edge_space = raw.startswith(b" ") or b"\n " in raw or b" \n" in raw
        return None if text_has_edge_space else np.frombuffer(raw, dtype=np.uint8)
    source = path if offset == 0 else f"{path} (block at byte {offset})"
    text = unicodedata.normalize("NFC", decode_text(raw, source, config.encoding))
    if config.lowercase:
        lowered = text.lower()
        if len(lowered) != len(text):
            return None
        text = lowered
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    for c in map(chr, _distinct(codes)):
        if c != "\n" and (unicodedata.category(c) in _BAD_CATEGORIES or (c.isspace() and c != " ")):
            return None
    if text.startswith(" ") or "\n " in text or " \n" in text:
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
        if offset == 0 and b"\x00" in raw[:65536]:
            decode_text(raw[:65536], path, config.encoding)  # raises the binary-file error
        if b"\r" in raw:
            raw = raw.replace(b"\r\n", b"\n")
        codes = _block_codes(raw, offset, path, config)
        ends = np.flatnonzero(codes == _NEWLINE)
        lengths = np.diff(ends, prepend=-1) - 1  # characters of each line
        keep_line = (lengths > 0) & (lengths <= config.max_line_length)
        if not keep_line.all():  # blank lines and lines too long leave
            skipped_long += int((lengths > config.max_line_length).sum())
            codes = codes[np.repeat(keep_line, lengths + 1)]
            lengths = lengths[keep_line]
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
    vocab = Vocab(tuple(sorted(chr(c) for c in index if c != _NEWLINE)))
    order = [BOUNDARY] + [index[ord(c)] for c in vocab.chars]  # sorted vocabulary order
    pairs = counts[:, order][:, :, order]
    return StreamCounts(vocab, pairs, dict(zip(PARTS, n_words.tolist())), max_len, n_bytes,
                        time.perf_counter() - start, skipped_long)
