"""Common nicknames of given names (Robert → Bob, Rob, Robbie), from a hand-curated list.

The list is the `nicknames` package's (Apache-2.0), shipped as namesmith/catalogue/nicknames.tsv.gz
by scripts/build_nicknames.py; its card, namesmith/catalogue/NICKNAMES.md, says what it holds.
It covers English names: a name it does not know has no nicknames here (not "none exist").
Read once per process; a lookup is a dict access, case-insensitive, and answers in the name's
casing (`Robert` → `Bob`, `robert` → `bob`).
"""

from __future__ import annotations

import functools
import gzip
import unicodedata
from importlib import resources
from pathlib import Path

NICKNAMES_FILE = "catalogue/nicknames.tsv.gz"


def nicknames_path() -> Path:
    return Path(str(resources.files("namesmith").joinpath(*NICKNAMES_FILE.split("/"))))


@functools.cache
def nickname_pairs() -> tuple[tuple[str, str], ...]:
    """Every (name, nickname) pair of the list, lowercase, sorted."""
    lines = gzip.decompress(nicknames_path().read_bytes()).decode("utf-8").splitlines()
    assert lines[0] == "name\tnickname", f"{NICKNAMES_FILE}: not a nicknames file"
    return tuple(tuple(line.split("\t")) for line in lines[1:])  # type: ignore[misc]


@functools.cache
def _nicknames() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for name, nickname in nickname_pairs():
        table.setdefault(name, []).append(nickname)
    return {name: tuple(nicknames) for name, nicknames in table.items()}


def _in_casing_of(word: str, name: str) -> str:
    if name.isupper() and len(name) > 1:
        return word.upper()
    return word[:1].upper() + word[1:] if name[:1].isupper() else word


def nicknames_of(name: str) -> list[str]:
    """The name's common nicknames, in the name's casing, as the list orders them (alphabetically)."""
    folded = unicodedata.normalize("NFC", name.strip()).casefold()
    return [_in_casing_of(nickname, name.strip()) for nickname in _nicknames().get(folded, ())]
