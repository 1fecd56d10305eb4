"""Rejection sampling done ahead of time: a model's draws, made once, walked by the requests that filter them.

The filters of choosing a name turn most of a model's draws away (namesmith.generation.generate's
`choosing_filters`): of the order-6 n-gram of the built-in names, `popularity="common"` keeps about one
draw in 20, `alliteration="want"` one in 40, `sounds_like="Katelyn"` one in 1,200, so a request of 20
names drew and examined hundreds to tens of thousands of names, where a draw of that model costs far
more than testing it (a dict lookup, a Double Metaphone key). None of these filters is a small
automaton the exact sampler could compose (the catalogue's 146,399 names; Double Metaphone reads
letters ahead and behind with many special cases).

So a server makes the model's draws once (`DrawPool.build`: up to `DRAWS` draws or its build
seconds, in draw order), and a request walks them from a position its seed picks, round once at
most, the search loop examining each as it would a fresh draw (every constraint and filter applies).
Those are the draws, in the same order, that rejection sampling over that stretch of the model's
draws would have examined: a rotation of independent draws is independent draws, so a request's
names are independent draws of the model conditioned on its constraints, and the draws walked count
as its tries. Two requests share draws where their stretches overlap: the pool is one sample of the
model. Once a request has walked round the whole pool without enough names, it goes on with fresh
draws.

The pool is indexed by Double Metaphone key too (namesmith.choosing.phonetic), so a `sounds_like`
walk hands the search only the draws of the target's sound and counts the others as turned away by
it (`Batch.turned_away`), without testing each.

A server builds the pool in the background on a model's first request that filters (no request
waits for it; until it is ready, requests filter fresh draws), within the process's exact-table
budget (namesmith.generation.generate.TableBudget: builders, bytes kept, seconds).
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from namesmith.choosing.phonetic import phonetic_keys
from namesmith.core.clock import now
from namesmith.core.errors import ConfigError
from namesmith.generation.draws import Batch

DRAWS = 200_000  # draws a pool holds, at most (the built-in n-gram: about 60,000 distinct names, 7 MB)
CHUNK = 4096  # draws per batch while building (the deadline is checked between batches)
UNFINISHED, DROPPED = -1, -2  # a position's code: no name (the length guard), or dropped by the sampler itself

Run = Callable[[int, float | None], Batch | None]  # a sampler's `run(size, deadline)`

# A pool is made in a daemon thread; one still inside torch when the interpreter finalises aborts the process, so at
# exit the builds stop between batches, and the exit waits for them (a batch takes milliseconds)
_exiting = threading.Event()
_builds = threading.Condition()
_active = 0


@atexit.register
def _stop_builds() -> None:
    _exiting.set()
    with _builds:
        _builds.wait_for(lambda: _active == 0, timeout=10)


@dataclass
class DrawPool:
    """A model's draws in draw order (`codes`: an index into `names`, or UNFINISHED / DROPPED), and for each
    Double Metaphone key the names that have it (None: the phonetic extra is not installed)."""

    names: list[str]
    codes: np.ndarray  # (P,) int32
    lengths: np.ndarray  # (len(names),) int32: each name's length
    by_key: dict[str, np.ndarray] | None  # key -> ids of the names with that key
    max_len: int  # the length guard the draws were made under

    @classmethod
    def build(cls, run: Run, max_len: int, draws: int = DRAWS, deadline: float | None = None,
              clock: Callable[[], float] = now) -> DrawPool:
        """Draw with `run` (a sampler of the model's own names, up to `max_len` characters, no prefix) until
        `draws` draws or `deadline` (on `clock`), whichever comes first; keep and index them."""
        global _active
        ids: dict[str, int] = {}
        codes: list[np.ndarray] = []
        made = 0
        with _builds:
            _active += 1
        try:
            while made < draws and (deadline is None or clock() < deadline) and not _exiting.is_set():
                batch = run(min(CHUNK, draws - made), None)
                if batch is None:
                    break
                code = np.full(len(batch.finished), UNFINISHED, dtype=np.int32)
                if batch.rejected is not None:
                    code[batch.rejected] = DROPPED
                code[np.flatnonzero(batch.finished)] = [ids.setdefault(n, len(ids)) for n in batch.names]
                codes.append(code)
                made += len(code)
        finally:
            with _builds:
                _active -= 1
                _builds.notify_all()
        names = list(ids)
        by_key: dict[str, list[int]] | None = {}
        try:
            for i, name in enumerate(names):
                for key in phonetic_keys(name):
                    by_key.setdefault(key, []).append(i)
        except ConfigError:  # no phonetic extra: no sounds_like either
            by_key = None
        return cls(names, np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32),
                   np.array([len(n) for n in names], dtype=np.int32), None if by_key is None else
                   {key: np.array(found, dtype=np.int64) for key, found in by_key.items()}, max_len)

    @property
    def size(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Memory held, about: the names (str objects) and the arrays."""
        return (sum(map(sys.getsizeof, self.names)) + 8 * len(self.names) + self.codes.nbytes + self.lengths.nbytes
                + sum(found.nbytes + 100 for found in (self.by_key or {}).values()))

    def walk(self, sounds_like: str, max_len: int, seed: int, then: Callable[[], Run]) -> Run:
        """A sampler of the model's names of at most `max_len` (<= the pool's) characters: the pool's draws from a
        position `seed` picks, round once, then `then()`'s fresh draws. With `sounds_like`, only the draws that
        share a key with it (the others marked as turned away by `sounds_like`: `Batch.turned_away`)."""
        assert max_len <= self.max_len, "the pool has no draws longer than its own length guard"
        assert not sounds_like or self.by_key is not None, "sounds_like needs the phonetic extra"
        P = self.size
        start = int(np.random.default_rng(seed).integers(P)) if P else 0
        fits = self.lengths <= max_len  # longer names: unfinished under this request's length guard
        wanted = None
        if sounds_like:
            wanted = np.zeros(len(self.names), dtype=bool)
            for key in phonetic_keys(sounds_like):
                wanted[self.by_key.get(key, [])] = True
        walked = 0
        fresh: Run | None = None

        def run(size: int, deadline: float | None) -> Batch | None:
            nonlocal walked, fresh
            if walked >= P:
                fresh = fresh or then()
                return fresh(size, deadline)
            size = min(size, P - walked)
            code = self.codes[(start + np.arange(walked, walked + size)) % P]
            walked += size
            named = np.maximum(code, 0)
            finished = (code >= 0) & fits[named]
            turned_away = {}
            if wanted is not None:
                turned_away["sounds_like"] = finished & ~wanted[named]
                finished &= wanted[named]
            rejected = (code == DROPPED) | turned_away.get("sounds_like", False)
            return Batch([self.names[c] for c in code[finished]], finished, rejected, turned_away=turned_away)

        return run
