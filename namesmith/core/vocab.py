"""The character vocabulary: characters seen in the data plus one reserved boundary token.

Token 0 is the boundary: it starts every name as context and ends it as a target. It is a
token id, not a character, so it can never collide with a character of the data (the seed
notebook used '.', which breaks on names such as "st. john").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from namesmith.core.errors import CheckpointError, DataError, NamesmithError

BOUNDARY = 0
# What a caller does with a name holding a character outside the vocabulary (`Vocab.readable`): raise an error,
# drop the name silently, fail that name alone (an error beside it, the batch goes on), or keep it for a model
# with an open vocabulary to score with its fallback (namesmith.scoring.open_vocabulary.open_word_log_probs).
UnknownPolicy = Literal["raise", "drop", "fail", "fallback"]
UNKNOWN_POLICIES: tuple[UnknownPolicy, ...] = ("raise", "drop", "fail", "fallback")
# How the boundary is shown in plots and reports: the first of these not in the data.
_BOUNDARY_LABELS = (".", "#", "$", "|", "^", "~", "·")


class UnknownCharacterError(DataError):
    """A word holds a character the model's vocabulary does not have."""

    def __init__(self, word: str, char: str):
        super().__init__(f"{word!r} contains {char!r} (U+{ord(char):04X}), which is not in the model's vocabulary")
        self.word = word
        self.char = char


@dataclass(frozen=True)
class Vocab:
    """Sorted data characters; `stoi`/`itos` map them to token ids 1..len(chars). Build one with
    `from_chars` or `from_words` (a saved vocabulary is read back as it was written, and checked: `saved`)."""

    chars: tuple[str, ...]
    stoi: dict[str, int] = field(init=False, repr=False, compare=False)
    itos: dict[int, str] = field(init=False, repr=False, compare=False)
    charset: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars) or any(not isinstance(c, str) or len(c) != 1 for c in self.chars):
            raise DataError("a vocabulary must be distinct single characters")
        if list(self.chars) != sorted(self.chars):  # token ids follow the characters' order: one order everywhere
            raise DataError("a vocabulary's characters must be in sorted (code point) order")
        object.__setattr__(self, "stoi", {c: i + 1 for i, c in enumerate(self.chars)})
        object.__setattr__(self, "itos", {i + 1: c for i, c in enumerate(self.chars)})
        object.__setattr__(self, "charset", frozenset(self.chars))

    @classmethod
    def from_chars(cls, chars: Iterable[str]) -> Vocab:
        """The vocabulary of these characters (any order, repeats allowed): how every vocabulary is built."""
        return cls(tuple(sorted(set(chars))))

    @classmethod
    def saved(cls, chars: Sequence[str], source: object) -> Vocab:
        """A model directory's vocabulary as its namesmith.json (`source`) records it, or a CheckpointError naming
        that file."""
        try:
            return cls(tuple(chars))
        except NamesmithError as e:
            raise CheckpointError(f"{source}: {e}") from None

    @classmethod
    def from_words(cls, words: Iterable[str]) -> Vocab:
        """The vocabulary of the characters of `words`."""
        return cls.from_chars(set().union(*map(set, words)))

    @property
    def size(self) -> int:
        """Number of tokens, the boundary included."""
        return len(self.chars) + 1

    @property
    def boundary_label(self) -> str:
        """'.' as in the lecture series, unless '.' is a data character."""
        for label in _BOUNDARY_LABELS:
            if label not in self.stoi:
                return label
        return "<b>"

    def label(self, token: int) -> str:
        """Printable label of a token id (the boundary shown as `boundary_label`)."""
        return self.boundary_label if token == BOUNDARY else self.itos[token]

    def encode(self, word: str) -> list[int]:
        try:
            return [self.stoi[c] for c in word]
        except KeyError as e:
            raise UnknownCharacterError(word, e.args[0]) from None

    def decode(self, tokens: Iterable[int]) -> str:
        return "".join(self.itos[t] for t in tokens)

    def unknown_chars(self, word: str) -> list[str]:
        if self.charset.issuperset(word):  # the usual case, checked in C
            return []
        return sorted({c for c in word if c not in self.stoi})

    def unreadable(self, word: str) -> str | None:
        """Why a model of this vocabulary cannot score or classify `word` (None when it can): the one
        rule every batch (score, classify) applies per name, so one bad name never fails the others."""
        if not word:
            return "empty name"
        unknown = self.unknown_chars(word)
        return f"{describe_chars(unknown)} not in the model's vocabulary" if unknown else None

    def readable(self, names: Sequence[str], unknown: UnknownPolicy,
                 source: str = "names") -> tuple[list[int], dict[int, str]]:
        """The one unknown-character rule: the positions of the `names` a model of this vocabulary scores, and
        why each other one is not scored (`unreadable`), under the policy `unknown` (UNKNOWN_POLICIES): "raise"
        a DataError naming `source` and the first such name, "drop" them silently, "fail" them (each with its
        reason), or keep them for a "fallback". An empty name is never scored (a fallback fails it)."""
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got {unknown!r}")
        kept: list[int] = []
        problems: dict[int, str] = {}
        for i, name in enumerate(names):
            why = self.unreadable(name)
            if why is None or (unknown == "fallback" and name):
                kept.append(i)
            elif unknown == "raise":
                raise DataError(f"{source}: {name!r}: {why}", field=source)
            elif unknown != "drop":
                problems[i] = why
        return kept, problems


def describe_chars(chars: Iterable[str]) -> str:
    """Characters listed one by one for a message: "'-' (U+002D), 'J' is" / "... are"."""
    chars = sorted(set(chars))
    shown = ", ".join(repr(c) if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in chars)
    return f"{shown} {'is' if len(chars) == 1 else 'are'}"


def script_of(char: str) -> str:
    """The script of a letter or mark (first word of its Unicode name: LATIN, CYRILLIC, CJK...);
    "FORMAT" for invisible format characters (zero-width joiners, direction marks: Persian and Indic
    names have them, other scripts' names should not get them); "COMMON" for punctuation, spaces,
    digits and other characters shared by every script."""
    if unicodedata.category(char) == "Cf":
        return "FORMAT"
    if unicodedata.category(char)[0] not in "LM":
        return "COMMON"
    word = unicodedata.name(char, "UNKNOWN").split(" ")[0]
    return "COMMON" if word in ("COMBINING", "MODIFIER") else word
