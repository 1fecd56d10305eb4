"""What a user gets from a generation: the names in the list's casing, with how many are training, held-out or
new words (namesmith.generation.novelty) and how hard the search was (namesmith.generation.result's
`Generation`), all at once (`Names`) or streamed (`NameStream`). `NameModel.generate` and `iter_generate`
return them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from namesmith.generation.novelty import KnownWords, NoveltySummary
from namesmith.generation.result import Generation, GenerationStream


@dataclass
class Names:
    """What `NameModel.generate` found: the names, where they come from, and how hard the search was."""

    names: list[str]
    novelty: NoveltySummary  # how many are training, held-out or new words
    stats: Generation  # tries, acceptance, method, why it stopped early (if it did)

    @property
    def complete(self) -> bool:
        return self.stats.complete

    def to_dict(self) -> dict[str, Any]:
        return {"names": self.names, "summary": self.novelty.to_dict(), "generation": self.stats.to_dict()}


class NameStream:
    """Names of one generation as they are found (see `NameModel.iter_generate`).

    Iterating yields lists of names (in the list's casing); `novelty` counts them as they pass
    (nothing is kept), and `stats` is the search's `Generation` (final once the iteration ends).
    """

    def __init__(self, stream: GenerationStream, printed: Callable[[list[str]], list[str]], known: KnownWords | None,
                 why: str | None):
        self._stream, self._printed, self._known = stream, printed, known
        self.novelty = NoveltySummary(0, *((0, 0, 0) if known is not None else ()), unavailable=why)

    @property
    def stats(self) -> Generation:
        return self._stream.generation

    def __iter__(self) -> NameStream:
        return self

    def __next__(self) -> list[str]:
        names = next(self._stream)
        if self._known is not None:
            self._known.add(self.novelty, names)
        else:
            self.novelty.total += len(names)
        return self._printed(names)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> NameStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
