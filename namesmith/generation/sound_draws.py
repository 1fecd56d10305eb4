"""Rejection sampling done ahead of time: a model's draws, indexed by how they sound (issue 30).

`sounds_like` keeps the model's names that share a Double Metaphone key with a target
(namesmith.choosing.phonetic). Double Metaphone reads letters ahead and behind with many special
cases, so it is no small automaton the exact sampler could compose; as a filter of fresh draws a
rare sound is slow (Katelyn's key KTLN: about one draw in 1,200 of the order-6 n-gram of the
built-in names, so 20 names take some 24,000 draws, about a second).

So the model's draws are made once, ahead (`SoundDraws.build`: up to `DRAWS` draws or
`build_seconds`, in draw order, each name's keys indexed to the positions of the draws that have
it), and a request walks them from a position its seed picks, round once at most, taking the draws
that share a key with its target (`walk`). Those are the draws, in the same order, that rejection
sampling over that stretch of the model's draws would have kept: a rotation of independent draws is
independent draws, so a request's names are independent draws of the model conditioned on sounding
like the target, and the draws walked past count as its tries (and as turned away by `sounds_like`)
as they would have. Two requests share draws where their stretches overlap: the index is one sample
of the model. Once a request has walked round the whole index without enough names (its other
constraints turned too many away), it goes on with fresh draws.

A server builds the index in the background on a model's first `sounds_like` request (no request
waits for it; until it is ready, requests filter fresh draws), within the process's exact-table
budget (namesmith.generation.exact_cache.TableBudget: builders, bytes kept, seconds).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from namesmith.choosing.phonetic import phonetic_keys
from namesmith.generation.draws import Batch

DRAWS = 200_000  # draws an index holds, at most (the built-in n-gram: about 140,000 distinct names, 15 MB)
CHUNK = 4096  # draws per batch while building (the deadline is checked between batches)
UNFINISHED, DROPPED = -1, -2  # a position's code: no name (the length guard), or dropped by the sampler itself

Run = Callable[[int, float | None], Batch | None]  # a sampler's `run(size, deadline)`


@dataclass
class SoundDraws:
    """A model's draws in draw order (`codes`: an index into `names`, or UNFINISHED / DROPPED), and for each
    phonetic key the positions of the draws whose name has it, ascending."""

    names: list[str]
    codes: np.ndarray  # (P,) int32
    lengths: np.ndarray  # (len(names),) int32: each name's length
    positions: dict[str, np.ndarray]  # key -> (k,) int64 positions
    max_len: int  # the length guard the draws were made under

    @classmethod
    def build(cls, run: Run, max_len: int, draws: int = DRAWS, deadline: float | None = None,
              clock: Callable[[], float] = time.perf_counter) -> SoundDraws:
        """Draw with `run` (a sampler of the model's own names, up to `max_len` characters) until `draws`
        draws or `deadline` (on `clock`), whichever comes first; keep and index them."""
        ids: dict[str, int] = {}
        codes: list[np.ndarray] = []
        made = 0
        while made < draws and (deadline is None or clock() < deadline):
            batch = run(min(CHUNK, draws - made), None)
            if batch is None:
                break
            code = np.full(len(batch.finished), UNFINISHED, dtype=np.int32)
            if batch.rejected is not None:
                code[batch.rejected] = DROPPED
            code[np.flatnonzero(batch.finished)] = [ids.setdefault(n, len(ids)) for n in batch.names]
            codes.append(code)
            made += len(code)
        names = list(ids)
        all_codes = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32)
        by_key: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            for key in phonetic_keys(name):
                by_key.setdefault(key, []).append(i)
        # positions of each name's draws, grouped by name: one stable sort of the finished positions
        drawn = np.flatnonzero(all_codes >= 0)
        order = drawn[np.argsort(all_codes[drawn], kind="stable")]
        bounds = np.searchsorted(all_codes[order], np.arange(len(names) + 1))
        positions = {key: np.sort(np.concatenate([order[bounds[i]:bounds[i + 1]] for i in members]))
                     for key, members in by_key.items()}
        lengths = np.array([len(n) for n in names], dtype=np.int32)
        return cls(names, all_codes, lengths, positions, max_len)

    @property
    def size(self) -> int:
        return len(self.codes)

    @property
    def nbytes(self) -> int:
        """Memory held, about: the names (str objects) and the arrays."""
        return (sum(map(sys.getsizeof, self.names)) + 8 * len(self.names) + self.codes.nbytes + self.lengths.nbytes
                + sum(p.nbytes + 100 for p in self.positions.values()))

    def walk(self, target: str, prefix: str, max_len: int, seed: int, then: Callable[[], Run]) -> Run:
        """A sampler of the model's names that share a key with `target`, start with `prefix` and have at most
        `max_len` (<= the index's) characters: the index's draws from a position `seed` picks, round once, then
        `then()`'s fresh draws. Each batch of `size` draws marks those that share no key (or do not fit) as turned
        away by `sounds_like` (`Batch.turned_away`)."""
        assert max_len <= self.max_len, "the index has no draws longer than its own length guard"
        P = self.size
        start = int(np.random.default_rng(seed).integers(P)) if P else 0
        found = [self.positions.get(k) for k in phonetic_keys(target)]
        matching = np.unique(np.concatenate([f for f in found if f is not None] or [np.zeros(0, np.int64)]))
        if prefix or max_len < self.max_len:
            fits = [self.names[self.codes[p]].startswith(prefix) and self.lengths[self.codes[p]] <= max_len
                    for p in matching]
            matching = matching[np.array(fits, dtype=bool)] if len(matching) else matching
        along = np.sort((matching - start) % P) if P else matching  # offsets from the start, in walking order
        walked = 0
        fresh: Run | None = None

        def run(size: int, deadline: float | None) -> Batch | None:
            nonlocal walked, fresh
            if walked >= P:
                fresh = fresh or then()
                return fresh(size, deadline)
            size = min(size, P - walked)
            offsets = np.arange(walked, walked + size)
            code = self.codes[(start + offsets) % P]
            unfinished = (code == UNFINISHED) | ((code >= 0) & (self.lengths[np.maximum(code, 0)] > max_len))
            taken = along[np.searchsorted(along, walked):np.searchsorted(along, walked + size)]
            finished = np.zeros(size, dtype=bool)
            finished[taken - walked] = True
            turned_away = (code >= 0) & ~unfinished & ~finished
            walked += size
            names = [self.names[c] for c in code[finished]]
            return Batch(names, finished, turned_away | (code == DROPPED), turned_away={"sounds_like": turned_away})

        return run
