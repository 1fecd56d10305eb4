"""Progress of the long phases of fitting and evaluating: a log line with the rate and the time left.

A count model is fitted in one step, so the trainer's step bar says nothing for as long as it
counts, fits its weights and evaluates. Each such phase counts its units of work through a `Phase`,
which logs `what: done/total unit (rate/s, about N s left)` once `every` seconds have passed since
the last progress line of any phase (of the same clock): a phase that follows another does not wait
`every` seconds of its own before its first line, so the wait between two lines is at most `every`
plus one unit of work. The first phase of a run that is shorter than that says nothing.

The same units are where a thread's work may stop: inside `stops_on(event)`, a phase raises `Stopped` at its next
unit once the event is set. A server loads and warms up its models in a thread (scoring 20,000 training names for
percentiles takes seconds), and its SIGTERM must not wait for that; the main thread needs none of it, as Ctrl-C
interrupts it anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("namesmith")

EVERY = 5.0  # seconds between progress lines

# When the last progress line was logged, by clock: the phases of one run (one clock) share it. Phases that
# follow each other used to wait `every` seconds each from their own start, so the end of one and the start of
# the next went quiet for up to twice that (13.8 s between lines on a busy machine, for a target of 10 s).
_last_line: dict[Callable[[], float], float] = {}


_stop = threading.local()  # this thread's stop event (`stops_on`), if any


class Stopped(Exception):
    """A phase ended between two units of its work: its thread's stop event (`stops_on`) was set."""


@contextlib.contextmanager
def stops_on(stop: threading.Event) -> Iterator[None]:
    """Within the block, every phase of this thread raises `Stopped` at its next unit of work once `stop` is set."""
    previous = getattr(_stop, "event", None)
    _stop.event = stop
    try:
        yield
    finally:
        _stop.event = previous


def check_stop(what: str = "work") -> None:
    """Raise `Stopped` if this thread's stop event (`stops_on`) is set: at each unit of a phase, and between steps
    that are not units of one."""
    stop = getattr(_stop, "event", None)
    if stop is not None and stop.is_set():
        raise Stopped(f"{what}: stopped")


class Phase:
    """One phase of `total` units of work; call `advance(n)` as they are done."""

    def __init__(self, what: str, total: float, unit: str, every: float = EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.total, self.unit, self.every, self.clock = what, total, unit, every, clock
        self.done = 0
        self.start = clock()
        self.lines = 0  # progress lines logged
        if len(_last_line) > 64:  # clocks of tests come and go; the process's own clock stays
            _last_line.clear()
        _last_line.setdefault(clock, self.start)

    @property
    def last(self) -> float:
        """When the last progress line (of this phase or any other of its clock) was logged."""
        return _last_line.get(self.clock, self.start)

    def advance(self, n: float = 1) -> None:
        self.done += n
        check_stop(self.what)
        now = self.clock()
        if now - self.last < self.every:
            return
        _last_line[self.clock] = now
        self.lines += 1
        if self.done <= 0:  # nothing done yet (`advance(0)` at the start of a slow unit): no rate to give
            log.info(f"{self.what}: 0/{self.total:,.0f} {self.unit}")
            return
        rate = self.done / max(now - self.start, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        log.info(f"{self.what}: {self.done:,.0f}/{self.total:,.0f} {self.unit} ({rate:,.0f} {self.unit}/s, "
                 f"about {left:,.0f} s left)")
