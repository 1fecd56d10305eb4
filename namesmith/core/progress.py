"""Progress of the long phases of fitting and evaluating: a log line with the rate and the time left.

A count model is fitted in one step, so the trainer's step bar says nothing for as long as it
counts, fits its weights and evaluates. Each such phase counts its units of work through a `Phase`,
which logs `what: done/total unit (rate/s, about N s left)` every `every` seconds once it has run
that long; a phase shorter than that says nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("namesmith")

EVERY = 5.0  # seconds between progress lines of one phase


class Phase:
    """One phase of `total` units of work; call `advance(n)` as they are done."""

    def __init__(self, what: str, total: float, unit: str, every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit, self.every, self.clock = what, total, unit, every, clock
        self.done = 0
        self.start = self.last = clock()
        self.lines = 0  # progress lines logged

    def advance(self, n: float = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        self.lines += 1
        rate = self.done / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info(f"{self.what}: {self.done:,.0f}/{self.total:,.0f} {self.unit} ({rate:,.0f} {self.unit}/s, "
                 f"about {left:,.0f} s left)")
