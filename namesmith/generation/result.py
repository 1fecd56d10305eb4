"""What a generation found: its names and how hard they were to find (`Generation`: tries, acceptance, the
method that ended the search and why it stopped), and the names as they are found (`GenerationStream`, from
namesmith.generation.generate.iter_generate)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Generation:
    """Names found, and how hard they were to find."""

    names: list[str]  # from `generate`; a stream's statistics keep none (its names were yielded)
    requested: int
    found: int = 0
    tries: int = 0  # draws examined, the rejected and the unfinished included
    seconds: float = 0.0
    # "exact", "guided", "rejection", "pooled" (rejection over the draws made once: generation.draw_pool) or "plain"
    # (the method that ended the search)
    method: str = "plain"
    stop_reason: str | None = None  # None: every requested name was found; "max-tries", "time-budget", "closed"
    unfinished: int = 0  # draws that reached the length guard without ending (dropped, counted in tries)
    max_len: int | None = None  # the length guard in force (see `length_limit`)
    particles: int = 0  # guided sampling: draws made (see namesmith.generation.guided)
    effective_sample_size: float | None = None  # guided sampling: Kish's ESS of their importance weights
    # draws turned away by each filter of choosing a name (`choosing_filters`: popularity, not_in_catalogue, ...)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.stop_reason is None and self.found == self.requested

    @property
    def acceptance(self) -> float | None:
        return self.found / self.tries if self.tries else None

    def message(self, option: Callable[[str], str] = str) -> str:
        """One line on the search; `option` spells a parameter as the caller's user knows it
        (the CLI passes its flags)."""
        rate = "n/a" if self.acceptance is None else f"{100 * self.acceptance:.3g}%"
        text = (f"found {self.found} of {self.requested} names in {self.tries:,} tries "
                f"({self.seconds:.2f} s, acceptance {rate}, {self.method} sampling")
        if self.effective_sample_size is not None and self.method == "guided":
            text += f", effective sample size {self.effective_sample_size:,.0f} of {self.particles:,} particles"
        elif self.effective_sample_size is not None:  # "auto" guided first, then found rejection faster
            text += (f" after {self.particles:,} guided particles, effective sample size "
                     f"{self.effective_sample_size:,.0f}: rejection keeps more names per draw here")
        text += ")"
        if self.rejected:
            text += "; turned away: " + ", ".join(f"{n:,} by {option(f)}" for f, n in self.rejected.items())
        if self.stop_reason == "closed":
            text += "; stopped early by its caller"
        elif self.stop_reason:
            what = option("max_tries" if self.stop_reason == "max-tries" else "time_budget")
            text += (f"; stopped at the {what} limit: the constraints are impossible or too rare under this "
                     f"model; loosen them or raise {what}")
        return text

    def unfinished_message(self, option: Callable[[str], str] = str) -> str | None:
        """One line on the draws that hit the length guard, if any (None: there were none)."""
        if not self.unfinished:
            return None
        return (f"{self.unfinished:,} of {self.tries:,} draws reached the length limit ({option('max_len')} "
                f"{self.max_len}) without ending and were dropped")

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "found": self.found, "tries": self.tries,
                "acceptance": self.acceptance, "seconds": self.seconds, "method": self.method,
                "complete": self.complete, "stop_reason": self.stop_reason, "unfinished": self.unfinished,
                "max_len": self.max_len, "particles": self.particles,
                "effective_sample_size": self.effective_sample_size, "rejected": dict(self.rejected)}


class GenerationStream:
    """The names of one generation as they are found, batch by batch (see `iter_generate`).

    Iterate it for lists of names; `generation` holds the statistics so far (final once the
    iteration ends). `close()` (or leaving a `with` block) stops the search early.
    """

    def __init__(self, batches: Iterator[list[str]], generation: Generation):
        self._batches = batches
        self.generation = generation

    def __iter__(self) -> GenerationStream:
        return self

    def __next__(self) -> list[str]:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()

    def __enter__(self) -> GenerationStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
