"""How well a first name goes with a surname: a score from 0 to 1, and its reasons in words.

The advice of naming guides (Nameberry, Behind the Name, baby-name books), made into rules a
reader can check, each worth a fixed amount (`PENALTIES`) and said in words:

- Rhythm, from the syllables of each (namesmith.choosing.syllables): two single beats sound abrupt
  (John Smith), equal counts a little sing-song; a longer first name before a shorter surname, or
  the reverse, flows. More than `LONG_SYLLABLES` in all is a mouthful.
- A clash: the first name ends on the sound the surname starts with (Jess Smith, Mark Cole): said
  together, the sound is heard once and the names run into each other. Two vowels meeting
  (Mia Adams) glide together a little.
- Alliteration: both start with the same sound (Peter Parker). Some want it, some avoid it: with
  `alliteration` "want" it adds to the score, with "avoid" it takes away, with "any" it is only
  said. (As a generation option it is also a filter: namesmith.generation.generate keeps or drops such names.)
- Initials that spell a word of the offensive list (namesmith.data.offensive): Anne-Sophie Smith is A.S.S.
- Length: more than `LONG_LETTERS` letters in all is long to write and say; under `SHORT_LETTERS`
  very short.

Sounds are read from spelling, at the edges of words only (`first_sound`, `last_sound`): English
digraphs (sh, ch, th, ph, ck), c and g before e/i/y, silent letters at the start (kn, wr, gn, ps)
and the silent final e (Jane ends on "n"). It is a rule of thumb for Latin-script names: for other
scripts the first and last letters are compared as they are, and syllables are not counted.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from namesmith.choosing.syllables import count_syllables
from namesmith.core.errors import ConfigError
from namesmith.data.offensive import is_offensive

ALLITERATION = ("any", "want", "avoid")
MAX_SURNAME_LENGTH = 64  # characters
LONG_SYLLABLES = 7  # syllables of first + surname above which the whole is a mouthful
LONG_LETTERS = 20  # letters of first + surname above which the whole is long
SHORT_LETTERS = 6  # ... and below which it is very short
# what each finding takes from (or adds to) a perfect 1.0: every rule's weight in one place
PENALTIES = {"single beats": 0.15, "equal beats": 0.05, "mouthful": 0.10, "clash": 0.25, "vowels meet": 0.05,
             "alliteration wanted": -0.10, "alliteration avoided": 0.30, "no alliteration wanted": 0.10,
             "offensive initials": 0.50, "long": 0.10, "short": 0.05}
_SEPARATORS = " -"  # between the words of a name (O'Brien and St. John stay one word each)
_ALLOWED = " -'’."  # what a surname may hold besides letters
_VOWEL_LETTERS = "aeiouy"
_START_SILENT = {"kn": "n", "wr": "r", "gn": "n", "ps": "s", "pn": "n", "wh": "w", "rh": "r"}
_DIGRAPHS = {"sh": "sh", "ch": "ch", "th": "th", "ph": "f", "ck": "k", "gh": "g", "qu": "k", "zh": "zh"}
_SOFT = {"c": "s", "g": "j"}  # before e, i, y
_LETTER_SOUND = {"q": "k", "x": "ks", "z": "z", "j": "j", "y": "y", "w": "w"}


@dataclass(frozen=True)
class SurnameFit:
    """A first name's fit with a surname: 0 (poor) to 1 (no fault found), and why, in words."""

    score: float
    reasons: list[str] = field(default_factory=list)
    alliterates: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"score": round(self.score, 3), "reasons": list(self.reasons)}


def check_surname(surname: str) -> str:
    """The surname, stripped, if it can be one (ConfigError naming "surname" otherwise)."""
    if not isinstance(surname, str):
        raise ConfigError(f"surname must be a string, got {surname!r}", field="surname")
    text = surname.strip()
    if not text or len(text) > MAX_SURNAME_LENGTH:
        raise ConfigError(f"surname must be 1 to {MAX_SURNAME_LENGTH} characters, got {len(text):,}", field="surname")
    bad = next((c for c in text if not (c.isalpha() or c in _ALLOWED or unicodedata.category(c) == "Mn")), None)
    if bad is not None:
        raise ConfigError(f"surname {text[:40]!r}: {bad!r} is not a letter (letters, spaces, hyphens and apostrophes "
                          "only)", field="surname")
    return text


def _plain(word: str) -> str:
    """Lowercase letters without accents (é → e), for reading sounds."""
    decomposed = unicodedata.normalize("NFD", word.casefold())
    return "".join(c for c in decomposed if c.isalpha())


def _words(name: str) -> list[str]:
    parts, word = [], ""
    for c in name:
        if c in _SEPARATORS:
            if word:
                parts.append(word)
            word = ""
        else:
            word += c
    return parts + [word] if word else parts


def first_sound(name: str) -> str:
    """The sound a name starts with, read from its spelling ('' for a name without letters)."""
    words = _words(name)
    word = _plain(words[0]) if words else ""
    if not word:
        return ""
    if not word.isascii():
        return word[0]
    for spelling, sound in (*_START_SILENT.items(), *_DIGRAPHS.items()):
        if word.startswith(spelling):
            return sound
    if word[0] in _SOFT and len(word) > 1:
        return _SOFT[word[0]] if word[1] in "eiy" else ("k" if word[0] == "c" else "g")
    if word[0] in _VOWEL_LETTERS and not (word[0] == "y" and len(word) > 1 and word[1] in "aeiou"):
        return "vowel"
    return {"x": "z"}.get(word[0], _LETTER_SOUND.get(word[0], word[0]))


def last_sound(name: str) -> str:
    """The sound a name ends on, read from its spelling ('' for a name without letters)."""
    words = _words(name)
    word = _plain(words[-1]) if words else ""
    if not word:
        return ""
    if not word.isascii():
        return word[-1]
    if len(word) > 2 and word.endswith("e") and word[-2] not in _VOWEL_LETTERS:
        word = word[:-1]  # the silent final e: Jane ends on n, Grace on s, George on j (below)
        if word[-1] in _SOFT:
            return _SOFT[word[-1]]
    if word.endswith("gh") and len(word) > 2:
        return "vowel"  # Leigh, Hugh
    for spelling, sound in _DIGRAPHS.items():
        if word.endswith(spelling):
            return sound
    if word[-1] in _VOWEL_LETTERS or (word[-1] in "hw" and len(word) > 1 and word[-2] in _VOWEL_LETTERS):
        return "vowel"  # Sarah, Andrew
    if word[-1] == "x":
        return "s"  # the end of ks
    return {"c": "k"}.get(word[-1], _LETTER_SOUND.get(word[-1], word[-1]))


def alliterates(first: str, surname: str) -> bool:
    """Whether both start with the same consonant sound (Peter Parker; Cara and Kent too, Cindy and Carter not)."""
    sound = first_sound(first)
    return bool(sound) and sound != "vowel" and sound == first_sound(surname)


def initials(first: str, surname: str) -> str:
    """The initials of every word of both names: Anne-Sophie Smith → 'ASS'."""
    return "".join(word[0].upper() for word in _words(first) + _words(surname))


# the surname is the same for every name of a request, and names recur: count each once
_syllables = functools.lru_cache(maxsize=1 << 16)(count_syllables)


def surname_fit(first: str, surname: str, alliteration: str = "any") -> SurnameFit:
    """How well `first` goes with `surname` (see the module docstring): a score in [0, 1] and its reasons."""
    if alliteration not in ALLITERATION:
        raise ConfigError(f"alliteration must be one of {', '.join(ALLITERATION)}, got {alliteration!r}",
                          field="alliteration")
    surname = check_surname(surname)
    found: list[tuple[str, str]] = []  # (rule of PENALTIES, reason), or ("", a note that costs nothing)
    a, b = _syllables(first), _syllables(surname)
    if a is None or b is None:
        found.append(("", "rhythm: syllables are counted in Latin-script names only"))
    elif a == b == 1:
        found.append(("single beats", "rhythm: 1 + 1 syllables, two single beats sound abrupt"))
    elif a == b:
        found.append(("equal beats", f"rhythm: {a} + {b} syllables, even beats, a little sing-song"))
    else:
        found.append(("", f"rhythm: {a} + {b} syllables, uneven beats flow"))
    if a is not None and b is not None and a + b > LONG_SYLLABLES:
        found.append(("mouthful", f"rhythm: {a + b} syllables in all, a mouthful"))
    end, start = last_sound(first), first_sound(surname)
    if end and end == start and end != "vowel":
        found.append(("clash", f"clash: {first} ends on the '{end}' that {surname} starts with, so the names run "
                               "together"))
    elif end == start == "vowel":
        found.append(("vowels meet", f"{first} ends on a vowel and {surname} starts with one: they glide together"))
    together = alliterates(first, surname)
    if together:
        rule = {"want": "alliteration wanted", "avoid": "alliteration avoided", "any": ""}[alliteration]
        found.append((rule, f"alliteration: both start with '{first_sound(first)}'"
                            + {"want": ", as asked", "avoid": ", which was to be avoided", "any": ""}[alliteration]))
    elif alliteration == "want":
        found.append(("no alliteration wanted", "no alliteration, though it was wanted"))
    letters = initials(first, surname)
    if len(letters) > 1 and is_offensive(letters):
        found.append(("offensive initials", f"initials: {'.'.join(letters)}. spell an offensive word"))
    length = sum(c.isalpha() for c in first + surname)
    if length > LONG_LETTERS:
        found.append(("long", f"length: {length} letters in all, long to write and say"))
    elif length < SHORT_LETTERS:
        found.append(("short", f"length: {length} letters in all, very short"))
    score = 1.0 - sum(PENALTIES[rule] for rule, _ in found if rule)
    return SurnameFit(min(1.0, max(0.0, score)), [reason for _, reason in found], together)
