"""Counting in worker processes and on the ranks of torch.distributed: the processes that count a file.

`worker_pool(workers)` starts `workers` - 1 processes beside this one (forked on Linux, spawned elsewhere).
Every process, this one included, claims the next task from a shared counter when it is free (`claimed`),
so this process works while the workers start up, and no process waits at the end for a slower one with
a whole shard still to count. A worker's result (NumPy arrays) comes back through shared memory
(`Shipped`), not pickled through the result pipe. Under torch.distributed every rank runs its own shards,
and the ranks swap their results with `all_gather_object` (`gather`, `every_shard`): every rank gets the
same totals, and an error on one rank is raised on every rank.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any

import numpy as np
import torch

from namesmith.core.progress import Phase

log = logging.getLogger("namesmith")

_claims: Any = None  # in a worker: the task counter its pool shares (see _run)


def _init_worker(claims: Any) -> None:
    global _claims
    _claims = claims
    torch.set_num_threads(1)  # one process per core: threads inside each would only contend
    log.disabled = True  # the calling process reports (a forked worker would repeat its messages, e.g. on Ctrl-C)


@dataclass
class Pool:
    """Worker processes that count beside this one, and the counter the processes claim tasks from."""

    executor: ProcessPoolExecutor
    claims: Any  # a shared multiprocessing.Value: the index of the next task not yet claimed
    workers: int

    def release(self) -> None:
        """Let the workers exit now, without waiting for them: a worker that held a tally of a gigabyte's
        n-grams takes about 0.4 s to exit, which it spends while this process merges the counts."""
        self.executor.shutdown(wait=False)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Pool | None]:
    """`workers` - 1 processes that count beside this one (None for 1: count here alone).

    On Linux they are forked: a worker starts at once, with this process's modules imported (a spawned one
    imports torch first, about 2 s, while a gigabyte's first pass takes 2.6 s). It runs NumPy and one-thread
    torch code only, as a DataLoader's forked workers do. Elsewhere they are spawned (fork is unsafe on macOS).
    """
    if workers == 1:
        yield None
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    resource_tracker.ensure_running()  # before a fork: the workers' shared memory (Shipped) is tracked here too
    claims = context.Value("q", 0)
    executor = ProcessPoolExecutor(workers - 1, mp_context=context, initializer=_init_worker, initargs=(claims,))
    try:
        yield Pool(executor, claims, workers - 1)
    except BaseException:
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    executor.shutdown()


def claimed(claims: Any, n: int) -> Iterator[int]:
    """The indexes of tasks 0..n-1 that this process claims, one at a time, until none is left (all
    of them without a shared counter)."""
    if claims is None:
        yield from range(n)
        return
    while True:
        with claims.get_lock():
            i = claims.value
            claims.value = i + 1
        if i >= n:
            return
        yield i


def _claim(claims: Any, function: Callable[..., Any], tasks: list[tuple], what: str = "") -> dict[int, Any]:
    """Run the tasks this process claims: {task index: result}; with `what`, say how far they all are (tasks
    are claimed in order: the index of this process's latest is how many every process has taken)."""
    phase, results = Phase(what, len(tasks), "pieces") if what else None, {}
    for i in claimed(claims, len(tasks)):
        if phase is not None:
            phase.advance(max(i - phase.done, 0))
        results[i] = function(*tasks[i])
    return results


def _each_process_in_worker(function: Callable[..., Any], *args: Any) -> Any:
    return Shipped(function(_claims, *args))


class Shipped:
    """A worker's result (nested lists and tuples of NumPy arrays) sent through shared memory rather than
    pickled through the result pipe: a tally of 15 million keys took about 2 s of the caller's time that
    way, while both processes waited. Where shared memory has no room for it, it goes through the pipe."""

    def __init__(self, result: Any):
        from multiprocessing import shared_memory

        arrays: list[np.ndarray] = []
        self.tree = _arrays_out(result, arrays)
        self.specs = []
        self.name = None
        if not arrays:  # nothing to share: the tree goes through the pipe as it is
            return
        size = max(1, sum(a.nbytes for a in arrays))
        memory = shared_memory.SharedMemory(create=True, size=size)
        if not _reserve(memory, size):  # shared memory is full (a container's 64 MB /dev/shm): use the pipe
            memory.close()
            memory.unlink()
            self.tree, self.specs = result, []
            return
        offset = 0
        for a in arrays:
            np.ndarray(a.shape, a.dtype, buffer=memory.buf, offset=offset)[...] = a
            self.specs.append((a.dtype.str, a.shape, offset))
            offset += a.nbytes
        self.name = memory.name
        memory.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"tree": self.tree, "specs": self.specs, "name": self.name}

    def open(self) -> Any:
        """The result, copied out of the shared memory, which is then freed."""
        from multiprocessing import shared_memory

        if self.name is None:
            return self.tree
        memory = shared_memory.SharedMemory(name=self.name)
        try:
            arrays = [np.ndarray(shape, dtype, buffer=memory.buf, offset=offset).copy()
                      for dtype, shape, offset in self.specs]
        finally:
            memory.close()
            memory.unlink()
        return _arrays_in(self.tree, arrays)

    def free(self) -> None:
        """Free the shared memory of a result that is not wanted."""
        from multiprocessing import shared_memory

        if self.name is not None:
            memory = shared_memory.SharedMemory(name=self.name)
            memory.close()
            memory.unlink()
            self.name = None


def _reserve(memory: Any, size: int) -> bool:
    """Whether the pages of new shared memory could be reserved. Without this, writing to shared memory
    that does not fit (in /dev/shm, often 64 MB in a container) kills the process with SIGBUS; reserved
    up front, it is an error here, and the caller takes another way."""
    fd = getattr(memory, "_fd", -1)  # POSIX shared memory's file descriptor
    if fd < 0 or not hasattr(os, "posix_fallocate"):
        return True
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class _ArrayAt:
    index: int  # in the list of a Shipped's arrays


def _arrays_out(tree: Any, arrays: list[np.ndarray]) -> Any:
    """`tree` with each array appended to `arrays` and replaced by its index there."""
    if isinstance(tree, np.ndarray):
        arrays.append(tree)
        return _ArrayAt(len(arrays) - 1)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_out(item, arrays) for item in tree)
    return tree


def _arrays_in(tree: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(tree, _ArrayAt):
        return arrays[tree.index]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_arrays_in(item, arrays) for item in tree)
    return tree


def _run(pool: Pool | None, function: Callable[..., Any], tasks: list[tuple], what: str = "") -> list[Any]:
    """`function(*args)` of each task, in order: in this process, or shared by it and the pool's workers
    (saying how far they are under the name `what`, if given).

    Every process claims the next task as it becomes free, this one included, so no process waits
    while there is work: a worker starts late (a forked one by a fraction of a second, a spawned one by
    about 2 s: it imports torch first), and this one does the work meanwhile.
    """
    if pool is None or len(tasks) <= 1:
        return [function(*args) for args in tasks]
    results: dict[int, Any] = {}
    for claimed in _each_process(pool, _claim, function, tasks, what):
        results.update(claimed)
    return [results[i] for i in range(len(tasks))]


def _each_process(pool: Pool | None, function: Callable[..., Any], *args: Any) -> list[Any]:
    """`function(claims, *args)` in this process and in each of the pool's workers, at once: one result
    per process. `function` claims its tasks from `claims` (`claimed`), so the processes share them
    out as each becomes free."""
    if pool is None:
        return [function(None, *args)]
    pool.claims.value = 0
    futures = [pool.executor.submit(_each_process_in_worker, function, *args) for _ in range(pool.workers)]
    try:
        results = [function(pool.claims, *args)]
        results += [future.result().open() for future in futures]
    except BaseException:
        with pool.claims.get_lock():
            pool.claims.value = 1 << 62  # the workers claim nothing more
        for future in futures:  # wait until they stop: a worker writes to `claims` until then, and the memory
            with contextlib.suppress(BaseException):  # of `claims` may soon hold another pool's counter
                future.result().free()  # (a result not wanted)
        raise
    return results


def last_of_pool(pool: Pool | None, function: Callable[..., Any], *args: Any) -> list[Any]:
    """`_each_process` for the pool's last work: the workers are released as soon as their results are in."""
    results = _each_process(pool, function, *args)
    if pool is not None:
        pool.release()
    return results


def process_group(group: Any) -> Any:
    """The torch.distributed group to count across: `group`, else the default one if initialised."""
    if group is not None:
        return group
    import torch.distributed as dist

    return dist.group.WORLD if dist.is_available() and dist.is_initialized() else None


def rank_and_world(group: Any) -> tuple[int, int]:
    """This process's rank in `group` and the group's size ((0, 1) without a group)."""
    if group is None:
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(group), dist.get_world_size(group)


def gather(compute: Callable[[], Any], group: Any) -> list[Any]:
    """Every rank's `compute()`, on every rank (just this one's without a group).

    A rank whose `compute` fails still takes part in the exchange, sending its error, and every
    rank raises it: the others do not wait for a rank that will never send.
    """
    if group is None:
        return [compute()]
    import torch.distributed as dist

    try:
        value, error = compute(), None
    except Exception as e:  # noqa: BLE001 (sent to the other ranks, then raised here too)
        value, error = None, e
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, (value, error), group=group)
    if error is not None:
        raise error
    for _, other in gathered:
        if other is not None:
            raise other
    return [value for value, _ in gathered]


def every_shard(pool: Pool | None, group: Any, mine: list[int], function: Callable[..., Any],
                tasks: list[tuple], what: str = "") -> list[Any]:
    """Results of `function` on every shard, in shard order: this rank runs `mine`, the ranks swap results."""
    gathered = gather(lambda: list(zip(mine, _run(pool, function, tasks, what))), group)
    return [result for _, result in sorted((pair for rank in gathered for pair in rank), key=lambda pair: pair[0])]
