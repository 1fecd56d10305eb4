"""What a person choosing a name wants to know about it, whether the name is known or new.

For each name: `known` (in any built-in list: namesmith.popularity.is_known), `popularity` (its
best-known use in the catalogue: count, rank, sex, decade; None for a name with no counted use,
such as an invented one) and `nicknames` (namesmith.nicknames). The CLI's `--details`, the API's
generate response and the page show these; they are facts of the catalogue, not of a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from namesmith.nicknames import nicknames_of
from namesmith.popularity import Use, popularity_index


@dataclass(frozen=True)
class NameFacts:
    name: str
    known: bool
    popularity: Use | None
    nicknames: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"known": self.known, "popularity": None if self.popularity is None else self.popularity.to_dict(),
                "nicknames": list(self.nicknames)}

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
        return "; ".join(parts)


def name_facts(names: Sequence[str]) -> list[NameFacts]:
    """The facts of each name (the catalogue read once per process, then a few dict lookups per name)."""
    index = popularity_index()
    return [NameFacts(name, index.is_known(name), index.best(name), nicknames_of(name)) for name in names]
