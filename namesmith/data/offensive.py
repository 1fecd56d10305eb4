"""Is a generated name offensive? A word-list filter that sees through case and letter games.

A character model trained on real names can still spell a slur or a swear word, whole or inside
a longer name. The list (`namesmith/builtin/offensive_words.txt`) is the `better-profanity`
package's word list (MIT), copied at build time by `scripts/build_offensive_words.py` with its
licence and a card (`offensive_words.md`) saying what was changed.

How a name is matched:
1. It is *normalised*: case folded, accents dropped (`é` → `e`), common letter substitutions
   undone (`0`→o, `1`→i or l, `3`→e, `4`→a, `5`→s, `7`→t, `8`→b, `9`→g, `@`→a, `$`→s, `!`→i,
   `+`→t, `|`→l or i) and separators (spaces, hyphens, apostrophes, periods, anything not a
   letter) removed. A character with two readings (`1`) gives two variants; each is checked.
   Runs of three or more of the same letter are also read as one (`fuuuck`).
2. A list word of four or more letters matches anywhere inside the name (`xfuckx`).
   A shorter one (`ass`, `fag`) matches only a whole name or a whole part of it (`ass-hat`),
   since as a substring it is in too many real names (Cassandra, Abigail); so do the longer
   words the list marks `=word` (`=anal`: Annalise, `=nazi`: Nazir).

This is a guard against the obvious, not a judge of taste: it will pass words no list holds.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

MIN_SUBSTRING = 4  # list words at least this long match inside a name; shorter ones only whole parts
# one reading per substitution character; a string of two letters means two readings
SUBSTITUTIONS = {"0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a",
                 "$": "s", "!": "i", "+": "t", "|": "li", "€": "e", "¡": "i"}
_SUBSTITUTED = frozenset(SUBSTITUTIONS)
SEPARATORS = re.compile(r"[\s\-_'’.·,/]+")
LONG_RUN = re.compile(r"(\w)\1{2,}")
WORDS_FILE = "offensive_words.txt"
CACHED_NAMES = 100_000  # verdicts remembered per filter (a server checks the same names again and again)


def _fold(text: str) -> str:
    """Case folded, accents removed (NFKD, combining marks dropped)."""
    if text.isascii():  # NFKD leaves ASCII as it is, and casefold is lower
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise(text: str) -> set[str]:
    """Every reading of `text` as plain letters: folded, substitutions undone, non-letters removed."""
    folded = _fold(text)
    readings = [folded]  # most names have no substitution character: one reading, as it is
    if not _SUBSTITUTED.isdisjoint(folded):
        readings = [""]
        for c in folded:
            options = SUBSTITUTIONS.get(c, c)
            if len(options) == 1:
                readings = [r + options for r in readings]
            elif len(readings) < 8:  # two readings of each ambiguous character, up to 8 variants in all
                readings = [r + o for r in readings for o in options]
            else:
                readings = [r + options[0] for r in readings]
    letters = {r if r.isalpha() else "".join(c for c in r if c.isalpha()) for r in readings}
    return letters | {LONG_RUN.sub(r"\1", r) for r in letters}


class OffensiveFilter:
    """Flags names containing a word of `words` (see the module docstring for the rules).

    `whole_only` words match only a whole name or a whole part of one, whatever their length.
    """

    def __init__(self, words: Iterable[str], whole_only: Iterable[str] = ()):
        inside = {v for word in words for v in normalise(word) if v}
        whole = {v for word in whole_only for v in normalise(word) if v}
        self.whole = frozenset(inside | whole)  # every word, for whole names and whole parts
        long_words = sorted((w for w in inside - whole if len(w) >= MIN_SUBSTRING), key=len, reverse=True)
        self._inside = re.compile("|".join(map(re.escape, long_words))) if long_words else None
        self.is_offensive = lru_cache(maxsize=CACHED_NAMES)(self.is_offensive)  # names recur: check each once

    def __call__(self, name: str) -> bool:
        return self.is_offensive(name)

    def is_offensive(self, name: str) -> bool:
        """Whether `name` holds a listed word (a long one anywhere, a short one as a whole part)."""
        for reading in normalise(name):
            if reading in self.whole or (self._inside is not None and self._inside.search(reading)):
                return True
        parts = [p for p in SEPARATORS.split(name) if p]
        if len(parts) > 1:
            return any(reading in self.whole for part in parts for reading in normalise(part))
        return False

    def offensive(self, names: Iterable[str]) -> list[str]:
        """The names that are flagged, in order."""
        return [name for name in names if self.is_offensive(name)]


@lru_cache(maxsize=1)
def default_filter() -> OffensiveFilter:
    """The filter over namesmith's shipped list (read once)."""
    text = (resources.files("namesmith") / "builtin" / WORDS_FILE).read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return OffensiveFilter([w for w in lines if not w.startswith("=")], [w[1:] for w in lines if w.startswith("=")])


def is_offensive(name: str) -> bool:
    """Whether `name` contains a word of namesmith's offensive-words list (see the module docstring)."""
    return default_filter().is_offensive(name)
