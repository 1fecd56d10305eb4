"""What a person choosing a name wants to know about it, whether the name is known or new.

For each name: `known` (in any built-in list: namesmith.choosing.popularity.is_known), `popularity` (its
best-known use in the catalogue: count, rank, sex, decade; None for a name with no counted use,
such as an invented one), `nicknames` (namesmith.data.nicknames) and, given a surname, `surname_fit`
(namesmith.choosing.surname: a score and its reasons). The CLI's `--details` and `--surname`, the API's
generate response and the page show these; they are facts of the catalogue and of spelling, not of
a model. `by_fit` sorts names by their fit with the surname, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from namesmith.choosing.popularity import Use, popularity_index
from namesmith.choosing.surname import SurnameFit, surname_fit
from namesmith.data.nicknames import nicknames_of


@dataclass(frozen=True)
class NameFacts:
    name: str
    known: bool
    popularity: Use | None
    nicknames: list[str]
    surname_fit: SurnameFit | None = None  # only when a surname was given

    def to_dict(self) -> dict[str, Any]:
        facts = {"known": self.known, "popularity": None if self.popularity is None else self.popularity.to_dict(),
                 "nicknames": list(self.nicknames)}
        if self.surname_fit is not None:
            facts["surname_fit"] = self.surname_fit.to_dict()
        return facts

    def line(self) -> str:
        """The facts in words, for a terminal: 'known; common (rank 4 of boys, 2010s); nicknames: Bill, Will'."""
        parts = ["known" if self.known else "new"]
        if self.popularity is not None:
            use = self.popularity
            sex = {"F": "girls", "M": "boys"}.get(use.sex, use.sex)
            parts.append(f"rank {use.rank:,} of {sex}, {use.decade} ({use.source}: {use.count:,} births, "
                         f"{use.per_million:,.0f} per million)")
        if self.nicknames:
            parts.append("nicknames: " + ", ".join(self.nicknames))
        if self.surname_fit is not None:
            parts.append(self.fit_line())
        return "; ".join(parts)

    def fit_line(self) -> str:
        """The fit with the surname in words: 'fit 0.85: rhythm: 1 + 1 syllables, ...' ('' without a surname)."""
        if self.surname_fit is None:
            return ""
        return f"fit {self.surname_fit.score:.2f}: " + "; ".join(self.surname_fit.reasons)


def name_facts(names: Sequence[str], *, surname: str | None = None, alliteration: str = "any") -> list[NameFacts]:
    """The facts of each name (the catalogue read once per process, then a few dict lookups per name)."""
    index = popularity_index()
    return [NameFacts(name, index.is_known(name), index.best(name), nicknames_of(name),
                      None if surname is None else surname_fit(name, surname, alliteration)) for name in names]


def fit_order(facts: Sequence[NameFacts]) -> list[int]:
    """The positions of the names, by their fit with the surname, best first (ties keep their order)."""
    return sorted(range(len(facts)), key=lambda i: -(facts[i].surname_fit.score if facts[i].surname_fit else 0.0))


def by_fit(facts: Sequence[NameFacts]) -> list[NameFacts]:
    """The names' facts sorted by their fit with the surname, best first (ties keep their order)."""
    return [facts[i] for i in fit_order(facts)]
