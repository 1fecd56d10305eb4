"""What one request may ask of the server: every limit documented, and configurable at start.

A name server is asked for work by strangers; each limit bounds one way a request could take more
than its share (memory, CPU time, response size). The defaults suit one person's laptop and a
small public deployment alike; `namesmith serve --limit NAME=VALUE` (or `Limits(...)`) changes them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, deque
from contextvars import ContextVar
from dataclasses import dataclass

from namesmith.core.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """What one request, and one client's connections, may take. A request over a limit gets a 422 naming the
    field (413 for the body size, 431 for the headers, 408 for a request that arrives too slowly, 503 for a
    busy server or too many connections); and what building a built-in model at start may take (`build_*`:
    namesmith.serve.build)."""

    max_names: int = 200  # names one generate request may ask for (`n`)
    max_score_names: int = 1000  # names one score, classify or similarity request may send
    max_body_bytes: int = 64 * 1024  # bytes of a request body
    max_pattern_length: int = 64  # characters of starts_with, ends_with, each contains/excludes, regex
    max_patterns: int = 16  # entries of contains and of excludes
    max_name_length: int = 64  # characters of a name sent to be scored, and of max_len
    time_budget: float = 2.0  # seconds of search per request, at most (a request may ask for less)
    max_tries: int = 1_000_000  # names drawn per generate request, at most
    max_adapt_words: int = 200  # names sent for "more like these"
    max_concurrent: int = 2  # requests computing at once (with --workers N, 1/N per worker, at least 1): generate,
    #                          more-like-these (its adaptation too), score and classify (each may hold a model's
    #                          tables); more wait for a slot up to time_budget, then get a 503
    quick_slots: int = 1  # more slots, for plain generate requests only (no constraint, label or method: draws
    #                       alone), so that a flood of heavy requests holding every max_concurrent slot never
    #                       makes them wait (namesmith.serve.limits.Slots)
    max_adapted_bytes: int = 256 * 2**20  # memory of the adapted models ("more like these") kept for reuse, in all
    #                                       (with --workers N, each worker keeps 1/N: `per_worker`)
    build_seconds: float = 300.0  # building one built-in model at start (in a worker process), at most;
    build_memory_mb: int = 2048  # its peak memory, at most: a model over either is not served (the log says why)
    server_memory_mb: int = 2048  # the server's memory with the built-in models loaded, a build worker beside it
    #                               included, at most: a model that would not fit is not served (the log says why)
    # --- connections (what reaches the server before any request does: a reverse proxy can enforce these too)
    max_header_bytes: int = 16 * 1024  # bytes of a request line and headers; more get a 431 and the connection closed
    read_timeout: float = 10.0  # seconds a request's headers and body may take to arrive, from its first byte
    #                             (or from the connection's opening); then a 408 and the connection is closed
    idle_timeout: float = 5.0  # seconds a kept-alive connection may wait for its next request
    max_connections: int = 256  # connections open at once (per worker); one more gets a 503 and is closed
    max_client_connections: int = 64  # of those, from one address (behind a reverse proxy every client has the
    #                                   proxy's address: raise it to the proxy's pool and limit clients there)
    # exact sampling's tables, for the whole server (generation.exact_cache.TableBudget; with --workers N each worker
    # has 1/N of the builders and of the cache): a request whose constraints are new starts a build, beyond these it
    # samples otherwise (rejection or guided) at once
    table_builders: int = 2  # builds at once
    table_bytes: int = 256 << 20  # estimated peak bytes of one build
    table_cache_bytes: int = 512 << 20  # bytes of built tables kept (least recently used leave first)
    table_build_seconds: float = 30.0  # a build running longer is abandoned

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"limit {f.name} must be a positive number, got {value!r}", field=f.name)
            if f.type == "int" and not isinstance(value, int):
                raise ConfigError(f"limit {f.name} must be a whole number, got {value!r}", field=f.name)

    @classmethod
    def parse(cls, items: list[str] | tuple[str, ...]) -> Limits:
        """Limits from `NAME=VALUE` strings (the `--limit` option), the rest at their defaults."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, int | float] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in fields:
                raise ConfigError(f"--limit {item!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}",
                                  field="limit")
            try:
                values[name] = float(text) if fields[name].type == "float" else int(text)
            except ValueError:
                raise ConfigError(f"--limit {item!r}: {text!r} is not a number", field="limit") from None
        return cls(**values)

    def to_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)

    def per_worker(self, workers: int) -> Limits:
        """What one of `workers` server processes may hold: the requests computing at once and the memory kept
        across requests (exact tables and their builders, adapted models) are budgeted for the whole server, so
        each worker gets its share (issue 31: two workers each filling the budget of one took 2.7 GB under a flood
        of new constraint sets, and four 1,000-name scores on two cores made a plain generate wait 210 ms); the
        limits of one request or connection, and the fast lane (`quick_slots`), stay as they are."""
        if workers <= 1:
            return self
        return dataclasses.replace(self, max_concurrent=max(1, self.max_concurrent // workers),
                                   table_builders=max(1, self.table_builders // workers),
                                   table_cache_bytes=max(1, self.table_cache_bytes // workers),
                                   max_adapted_bytes=max(1, self.max_adapted_bytes // workers))


CLIENT: ContextVar[str] = ContextVar("namesmith_client", default="")  # the address of the request being served


class Slots:
    """At most `n` holders at once, and `reserved` more for quick work only; a freed slot goes to the client
    holding fewest, then to the longest waiter.

    A plain semaphore lets a request that has just arrived take a freed slot ahead of those already
    waiting, so under load a few unlucky requests wait for many others (the p99 latency); here a
    freed slot is handed straight to a waiter. Among waiters, the one whose client (its address)
    holds the fewest slots comes first, so one client's flood of requests queues behind itself and
    another client's request waits for one slot to free, not for the flood (fair queuing; with one
    client it is first come, first served). Generation holds Python's GIL, so more slots than cores
    only share the same CPU among more requests.

    The `reserved` slots are a fast lane: work that says it is quick (`acquire(quick=True)`: a plain
    draw of a few names) may take any slot, other work only the first `n`. While a flood of heavy
    requests (new exact tables, adaptations, 1,000-name classifications) holds every one of those, a
    plain `generate` waits for no more than the quick work ahead of it (issue 31: it waited for the
    flood's requests to end; p50 208 -> 96 ms under a flood of new constraint sets, shared machine).
    """

    def __init__(self, n: int, reserved: int = 0):
        self._lock = threading.Lock()
        self._free = n + reserved
        self._heavy_free = n  # slots left for work that is not quick
        self._held: Counter[str] = Counter()  # slots held, by client
        self._waiting: deque[tuple[str, bool, threading.Event]] = deque()  # (client, quick, handed a slot)

    def _may_take(self, quick: bool) -> bool:
        return self._free > 0 and (quick or self._heavy_free > 0)

    def _take(self, client: str, quick: bool) -> None:
        self._free -= 1
        self._heavy_free -= not quick
        self._held[client] += 1

    def acquire(self, timeout: float, client: str | None = None, quick: bool = False) -> bool:
        """Take a slot for `client` (default: the request's, CLIENT), waiting at most `timeout` seconds; `quick`
        work may take a reserved slot too. `release` with the same `client` and `quick` gives it back."""
        client = CLIENT.get() if client is None else client
        with self._lock:
            if self._may_take(quick):  # then no waiter may take it (every release hands slots to those that may)
                self._take(client, quick)
                return True
            ticket = (client, quick, threading.Event())
            self._waiting.append(ticket)
        if ticket[2].wait(timeout):
            return True
        with self._lock:
            if ticket[2].is_set():  # handed a slot just as the wait ended
                return True
            self._waiting.remove(ticket)
            return False

    def release(self, client: str | None = None, quick: bool = False) -> None:
        client = CLIENT.get() if client is None else client
        with self._lock:
            self._held[client] -= 1
            if self._held[client] <= 0:
                del self._held[client]
            self._free += 1
            self._heavy_free += not quick
            self._hand_over()

    def _hand_over(self) -> None:
        """Give free slots to the waiters that may take them: the client holding fewest first, then the longest
        waiting (min keeps the first of equals)."""
        while self._waiting:
            eligible = [ticket for ticket in self._waiting if self._may_take(ticket[1])]
            if not eligible:
                return
            ticket = min(eligible, key=lambda t: self._held[t[0]])
            self._waiting.remove(ticket)
            self._take(ticket[0], ticket[1])
            ticket[2].set()  # the slot passes to the waiter
