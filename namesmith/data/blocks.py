"""Reading a word list in binary blocks, and cleaning a block by the line rules of `parse_words`.

A file of any size is read in blocks cut at newlines (`read_blocks`), or in byte ranges of it, each of which
owns the lines that start in it (`read_shard`, `shard_ranges`), so ranges can be counted apart and merged.

Line rules are those of `data.parse_words` (strip, NFC, skip blank, --max-line-length, a tab ends
the name, no control characters, invisible format characters removed, lines with an emoji skipped,
optional lowercase). A block of plain text (no character the rules act on:
`data.changed_by_rules`, no space at a line's ends) is cleaned with array
operations (`plain_codes`); any other block goes through `parse_words` itself, line by line
(`clean_block`; tests/data/test_cleaning_rule.py checks that both keep the same words).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from namesmith.core.errors import ConfigError, DataError
from namesmith.data.words import DataConfig, changed_by_rules, check_data_file, decode_text, parse_words

BLOCK = 8 << 20  # bytes read and counted at a time: bounds memory (about 20 × this at peak)
NEWLINE = ord("\n")
DROPPED_LOOP = 256  # up to this many dropped lines per block are cut out one by one (see clean_block)
_ASCII_CONTROLS = bytes(c for c in range(128) if (c < 32 or c == 127) and c != NEWLINE)


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


def distinct_codes(codes: np.ndarray) -> list[int]:
    """The distinct code points of a block (a histogram when they are small: faster than a sort)."""
    if codes.dtype == np.uint8 or (len(codes) and int(codes.max()) < 1 << 17):
        return np.flatnonzero(np.bincount(codes)).tolist()
    return np.unique(codes).tolist()


def plain_codes(raw: bytes, offset: int, path: str, config: DataConfig) -> np.ndarray | None:
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
    if any(c != "\n" and changed_by_rules(c) for c in map(chr, distinct_codes(codes))):
        return None
    if " " in text and (text.startswith(" ") or "\n " in text or " \n" in text):
        return None
    return codes


def _block_codes(raw: bytes, offset: int, path: str, config: DataConfig) -> np.ndarray:
    """Code points of the kept words of one block, each followed by a newline."""
    codes = plain_codes(raw, offset, path, config)
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


def clean_block(raw: bytes, offset: int, path: str, config: DataConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The words kept from one block: their code points (each word followed by a newline), their
    lengths, and how many lines were skipped as longer than `config.max_line_length`."""
    if offset == 0 and b"\x00" in raw[:65536]:
        decode_text(raw[:65536], path, config.encoding)  # raises the binary-file error
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    codes = _block_codes(raw, offset, path, config)
    ends = np.flatnonzero(codes == NEWLINE)
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
