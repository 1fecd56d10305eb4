"""What exact samplers' tables may take in a process, and the cache that keeps them per trained model.

Exact conditioning (namesmith.generation.exact) builds tables per set of constraints: seconds and up to
hundreds of megabytes for a large n-gram. `TableBudget` bounds the builds (at once, bytes, seconds) and
the bytes kept, for every model of a process; `ExactCache` keeps one model's tables across requests,
least recently used first out, and builds them in the background for a server. Neither imports torch:
a `NameModel` holds a cache from the start, and only a request with exact constraints fills it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from namesmith.core.clock import now
from namesmith.generation.config import GenerateConfig, NotAvailable, OutOfTime, check, is_int, is_number

# an entry's tables: a namesmith.generation.exact.ExactSampler (which imports this module, so it is not named here),
# or a model's draws made once (namesmith.generation.draw_pool.DrawPool); each has `nbytes`
ExactSampler = Any

TABLE_BUILDERS = 2  # exact-table builds at once in a process, at most (more requests sample otherwise meanwhile)
TABLE_BYTES = 256 << 20  # estimated peak memory of one build (`exact_table_bytes`), at most: else sample otherwise
TABLE_CACHE_BYTES = 512 << 20  # bytes of built tables a process keeps, at most (the least recently used leave)
TABLE_BUILD_SECONDS = 30.0  # a background build taking longer is abandoned (its constraints then sampled otherwise)


class TableBudget:
    """What exact tables may take in one process: how many builds run at once (`builders`), how much memory
    one build may take (`table_bytes`, estimated by `exact_table_bytes` before anything is allocated), how
    long a background build may run (`build_seconds`; one its caller waits for ends with the caller's
    time budget, so a seed gives the same names on a slow machine), and how many bytes of built tables
    are kept (`cache_bytes`, least recently used first out, across every `ExactCache` that shares the
    budget: a server's models, their conditions and guides alike, since they share its memory).
    Unbounded, a server's background builds, one per new set of constraints, once took 117 threads and
    22.4 GB in 175 s (issue 31).

    A build that would pass `table_bytes` or `build_seconds` is "not available", and the constraints are
    sampled otherwise (rejection, or guided); while every builder is busy, a new request does the same
    without queueing a build. `clock` times the builds (tests pass their own).
    """

    def __init__(self, builders: int = TABLE_BUILDERS, table_bytes: int = TABLE_BYTES,
                 cache_bytes: int = TABLE_CACHE_BYTES, build_seconds: float = TABLE_BUILD_SECONDS,
                 clock: Callable[[], float] = now):
        self._changed = threading.Condition()  # guards everything below; notified when a builder is freed
        self._building = 0
        self._held: dict[tuple[int, tuple], tuple[ExactCache, int]] = {}  # (cache, key) -> bytes, oldest use first
        self.held_bytes = 0
        self.clock = clock
        self.builders, self.table_bytes, self.cache_bytes, self.build_seconds = 1, 1, 1, 1.0
        self.configure(builders=builders, table_bytes=table_bytes, cache_bytes=cache_bytes,
                       build_seconds=build_seconds)

    def configure(self, **limits: float) -> None:
        """Change some limits (`builders`, `table_bytes`, `cache_bytes`, `build_seconds`), as a server does at
        start; builds already running finish, and tables over the new `cache_bytes` leave at once."""
        for name, value in limits.items():
            check(name in ("builders", "table_bytes", "cache_bytes", "build_seconds"), name, "is not a table limit")
            check(is_number(value) and value > 0 and (name == "build_seconds" or is_int(value)), name,
                   f"must be a positive {'number' if name == 'build_seconds' else 'integer'}, got {value!r}")
        with self._changed:
            for name, value in limits.items():
                setattr(self, name, value)
            check(self.cache_bytes >= self.table_bytes, "cache_bytes",
                   f"({self.cache_bytes:,}) must be at least table_bytes ({self.table_bytes:,}): a built table must "
                   "fit")
            self._changed.notify_all()
        self._evict()

    def start_build(self, timeout: float | None) -> bool:
        """Take a builder's place, waiting up to `timeout` seconds for one (0: no wait; None: as long as it
        takes); False if none came. `end_build` gives it back."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._building < self.builders, timeout):
                return False
            self._building += 1
            return True

    def end_build(self) -> None:
        with self._changed:
            self._building -= 1
            self._changed.notify()

    def kept(self, cache: ExactCache, key: tuple, nbytes: int) -> None:
        """`cache` keeps the entry `key` of `nbytes`: count it, and drop the least recently used over `cache_bytes`."""
        with self._changed:
            old = self._held.pop((id(cache), key), None)
            self.held_bytes += nbytes - (old[1] if old else 0)
            self._held[(id(cache), key)] = (cache, nbytes)
        self._evict()

    def used(self, cache: ExactCache, key: tuple) -> None:
        with self._changed:
            held = self._held.pop((id(cache), key), None)
            if held is not None:
                self._held[(id(cache), key)] = held  # most recently used last

    def dropped(self, cache: ExactCache, key: tuple) -> None:
        with self._changed:
            held = self._held.pop((id(cache), key), None)
            self.held_bytes -= held[1] if held else 0

    def _evict(self) -> None:
        leaving = []
        with self._changed:
            while self.held_bytes > self.cache_bytes and self._held:
                (_, key), (cache, nbytes) = next(iter(self._held.items()))
                del self._held[(id(cache), key)]
                self.held_bytes -= nbytes
                leaving.append((cache, key))
        for cache, key in leaving:  # outside this lock: a cache's lock is never taken while holding it
            cache.discard(key)


TABLES = TableBudget()  # the process's budget, shared by every cache unless given another (`NameModel.limit_tables`)
# draw pools made at once in a process: one (a pool is made once per model, condition and decoding, and leaves the
# exact tables' builders to them; what pools keep counts against their cache's budget)
POOL_BUILDERS = TableBudget(builders=1)


class ExactCache:
    """The exact samplers' tables of one trained model, reused across requests (a server's, say).

    Building the tables is most of the cost of a small request (about 0.5-1 s for the default
    n-gram and `ends_with="ette"`); they depend on the constraints, the decoding options and the
    length limit, not on the seed or the number of names. Each use gets a shallow copy with its own
    random generator, so concurrent requests share only read-only tables. The `size` most recently
    used entries are kept, and the process's tables within `budget` (`TableBudget`: builders, bytes,
    seconds); a model's answer "not exact here" is kept too. Only for models that no longer change
    (a cache outliving training would serve stale tables).

    With `background` (a long-running server), tables are built once per key in a daemon thread,
    whoever asks first (while the budget has a free builder): a request waits for them until its
    deadline and then samples otherwise, while the build goes on for the requests that come after;
    requests asking for tables being built wait for that build instead of starting their own (a
    burst of cold requests would otherwise build the same tables once each, every build starved of
    the CPU by the others, each given up at its deadline). Without it the asking thread builds them
    itself, within its deadline (a short-lived process would only be slowed by a build it does not
    wait for). A background cache also keeps the model's draws made once (`draw_pool`), built the
    same way.
    """

    def __init__(self, size: int = 8, background: bool = False, budget: TableBudget | None = None):
        self.size, self.background = size, background
        self.budget = budget if budget is not None else TABLES
        self._entries: dict[tuple, ExactSampler | NotAvailable] = {}
        self._building: dict[tuple, threading.Event] = {}  # set when the key's build ends, built or not
        self._lock = threading.Lock()

    @staticmethod
    def key(config: GenerateConfig, max_len: int) -> tuple:
        return (config.starts_with, config.ends_with, config.contains, config.excludes, config.min_len,
                config.syllables, config.temperature, config.top_k, config.top_p, max_len)

    def get(self, key: tuple) -> ExactSampler | NotAvailable | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._entries[key] = entry  # most recently used last
        if entry is not None:
            self.budget.used(self, key)
        return entry

    def put(self, key: tuple, entry: ExactSampler | NotAvailable) -> None:
        leaving = []
        with self._lock:
            self._entries[key] = entry
            while len(self._entries) > self.size:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                leaving.append(oldest)
        for old in leaving:
            self.budget.dropped(self, old)
        self.budget.kept(self, key, entry.nbytes if not isinstance(entry, NotAvailable) else 1024)

    def discard(self, key: tuple) -> None:
        """Forget the entry `key` (the budget's memory is needed for others)."""
        with self._lock:
            self._entries.pop(key, None)

    def build_and_wait(self, key: tuple, build: Callable[[float], ExactSampler], deadline: float | None,
                       builders: TableBudget | None = None,
                       thread_name: str = "namesmith-exact-tables") -> ExactSampler | NotAvailable | None:
        """The key's entry, built in a daemon thread by `build(deadline on the budget's clock)` (once per key,
        however many wait for it); None if it is not ready by `deadline` (the build goes on), if every
        builder of `builders` (the budget's by default) is busy (no build is started), or if the build failed."""
        builders = builders if builders is not None else self.budget
        with self._lock:
            done = self._building.get(key)
            if done is None and key not in self._entries and builders.start_build(timeout=0):
                done = self._building[key] = threading.Event()
                threading.Thread(target=self._build, args=(key, build, done, builders), name=thread_name,
                                 daemon=True).start()
        if done is not None:
            done.wait(None if deadline is None else max(0.0, deadline - now()))
        return self.get(key)

    def _build(self, key: tuple, build: Callable[[float], ExactSampler], done: threading.Event,
               builders: TableBudget) -> None:
        try:
            self.put(key, build(self.budget.clock() + self.budget.build_seconds))
        except NotAvailable as why:
            self.put(key, why)
        except OutOfTime:
            self.put(key, _too_slow(self.budget))
        except Exception:  # noqa: BLE001 - a failed background build only means no cached tables
            pass
        finally:
            builders.end_build()
            with self._lock:
                self._building.pop(key, None)
            done.set()


def _too_slow(budget: TableBudget) -> NotAvailable:
    return NotAvailable(f"its tables take more than {budget.build_seconds:g} s to build (build_seconds)")


