"""The one clock that every time budget reads: generation's `time_budget` (its search, samplers, exact tables
and regex matches), training's, calibration's and the server's request budget.

A budget is a rule about work done before a deadline, not about how fast a machine is. Reading the time in
one place lets a test replace that time (`monkeypatch.setattr(clock, "source", fake)`) with a clock it moves:
the budget is then tested by the steps taken before it passes, and gives the same result on a busy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

source: Callable[[], float] = time.perf_counter  # seconds, monotonic; tests put their own clock here


def now() -> float:
    """Seconds on the budgets' clock (`source`, read at each call: a replaced source applies everywhere)."""
    return source()
