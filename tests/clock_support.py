"""A clock the tests move, put where every time budget reads the time (namesmith.core.clock): a budget is then
tested by the steps taken before it passes, not by how fast the machine is (issue 28)."""

from __future__ import annotations

import pytest

from namesmith.core import clock


class FakeClock:
    """Seconds that move only by `tick` per reading (0: they stand still) or when a test adds to `now`;
    `readings` counts the budget's checks."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick, self.readings = 0.0, tick, 0

    def __call__(self) -> float:
        self.readings += 1
        self.now += self.tick
        return self.now


def fake_clock(monkeypatch: pytest.MonkeyPatch, tick: float = 0.0) -> FakeClock:
    """Put a `FakeClock` in place of the budgets' clock for the test."""
    fake = FakeClock(tick)
    monkeypatch.setattr(clock, "source", fake)
    return fake
