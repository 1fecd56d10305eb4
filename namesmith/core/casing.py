"""Letter case: learn names in one case, print them in the case the list uses.

A list of capitalised names ("Aragorn", "Éowyn") taken literally gives a model two versions of
every letter, and capitals turn up in the middle of names ("ILshëprGCL"). So by default (case
"auto") the list's dominant casing pattern is detected — all lowercase, title case ("Mary-Jane",
"O'Brien": `str.title`), or all capitals — and when at least `DOMINANT` of the names that have
cased letters follow one pattern, the model learns the lowercased names and its output is
printed in that pattern. Lists without one dominant pattern ("McDonald", "iPhone", mixed lists)
and scripts without case (Hebrew, CJK) are learned exactly as written. Case "exact" always learns
the names as written; "lower" lowercases them and prints them lowercase.
"""

from __future__ import annotations

from collections.abc import Iterable

CASES = ("auto", "exact", "lower")  # what a user asks for
PATTERNS = ("lower", "title", "upper")  # what "auto" can detect; "exact" when none dominates
DOMINANT = 0.9  # share of the cased names that must follow a pattern


def restore(word: str, casing: str) -> str:
    """A lowercased (model-space) name printed in `casing`."""
    if casing == "title":
        return word.title()
    if casing == "upper":
        return word.upper()
    return word


def folds(casing: str) -> bool:
    """Whether names are lowercased for the model under `casing`."""
    return casing in PATTERNS


def detect(words: Iterable[str]) -> str:
    """The dominant casing pattern of `words`, or "exact" when none has a share of at least DOMINANT."""
    cased = [w for w in words if w.lower() != w.upper()]
    if not cased:
        return "exact"
    for pattern in PATTERNS:
        if sum(restore(w.lower(), pattern) == w for w in cased) >= DOMINANT * len(cased):
            return pattern
    return "exact"


def resolve(words: Iterable[str], case: str) -> str:
    """The casing a list of words is learned in, for the user's choice `case` (see CASES)."""
    if case == "exact":
        return "exact"
    if case == "lower":
        return "lower"
    return detect(words)


def fold(words: list[str], casing: str) -> list[str]:
    """The names as the model learns them."""
    return [w.lower() for w in words] if folds(casing) else words
