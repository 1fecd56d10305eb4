"""The server's adapted models ("more like these"): built inside a slot, waited for within the budget, kept by bytes.

Adapting a model to a list of names takes seconds (0.9-2.4 s for 200 names on the `us` n-gram) and
a copy of the model's tables. Run inside the request, it escaped both the time budget and the
generation slots (40 concurrent requests left a plain `generate` waiting 60 s), and a cache counted
in models grew from 2.1 to 5.5 GB. Here each adaptation is a job: one per list at a time, run on
a worker thread holding one of the server's slots, at most `max_jobs` at once and `max_pending`
running or queued (a queued one that no request waits for any more gives way to a new one). A
request waits for its job only for what is left of its time budget; then it is told to ask again
(the job goes on, and its model is cached for the retry). Finished models are kept, least recently
used first out, while their tensors fit in `max_bytes` (the newest always: dropped, a retry would
start it again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import torch

from namesmith.namemodel import NameModel
from namesmith.serve.limits import CLIENT, Slots

SLOT_WAIT = 30.0  # seconds an adaptation job waits for a slot before it gives up (its requests have gone by then)


class Busy(Exception):
    """No adaptation could start: every job is taken, or no slot came."""


class StillAdapting(Exception):
    """The adaptation goes on past the request's budget; its model will be cached for a retry."""


def tensor_bytes(value: Any, depth: int = 6, seen: set[int] | None = None) -> int:
    """Bytes of the tensors and arrays an object holds: a module's parameters and buffers, and what its
    attributes, lists and dicts hold, `depth` levels down; storages shared by several tensors count once."""
    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor):
        storage = value.untyped_storage()
        key = storage.data_ptr() or id(value)
        if key in seen:
            return 0
        seen.add(key)
        return storage.nbytes()
    if id(value) in seen or depth < 0:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    total = 0
    if isinstance(value, torch.nn.Module):
        total += sum(tensor_bytes(t, depth, seen) for t in (*value.parameters(), *value.buffers()))
        children = [v for k, v in vars(value).items() if k not in ("_parameters", "_buffers", "_modules")]
    elif isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    elif hasattr(value, "__dict__"):
        children = list(vars(value).values())
    else:
        return 0
    return total + sum(tensor_bytes(child, depth - 1, seen) for child in children)


class AdaptedModels:
    """Adapted models by key, each built once by a job that holds one of `slots`."""

    def __init__(self, slots: Slots, max_bytes: int, max_jobs: int, max_pending: int):
        self.slots, self.max_bytes, self.max_jobs, self.max_pending = slots, max_bytes, max_jobs, max_pending
        self._lock = threading.Lock()
        self._cache: OrderedDict[Hashable, tuple[NameModel, int]] = OrderedDict()
        self._jobs: dict[Hashable, Future] = {}
        self._waiters: dict[Hashable, int] = {}  # requests waiting for each job
        self._pool = ThreadPoolExecutor(max_workers=max_jobs, thread_name_prefix="namesmith-adapt")

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._cache.values())

    def get(self, key: Hashable, adapt: Callable[[], NameModel], timeout: float) -> NameModel:
        """The model for `key`, adapting it with `adapt` if needed, waiting at most `timeout` seconds.

        Raises Busy when no job can start, StillAdapting when the job outlasts `timeout`, and
        whatever `adapt` raised (a user's bad list, say).
        """
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key][0]
            job = self._jobs.get(key)
            if job is None:
                if len(self._jobs) >= self.max_pending and not self._drop_abandoned():
                    raise Busy(f"{self.max_pending} adaptations are running or waiting")
                job = self._jobs[key] = self._pool.submit(self._build, key, adapt, CLIENT.get())
            self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            return job.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            raise StillAdapting from None
        finally:
            with self._lock:
                self._waiters[key] -= 1
                if not self._waiters[key]:
                    del self._waiters[key]

    def _drop_abandoned(self) -> bool:
        """Cancel the oldest job not started that no request waits for (its requests gave up; one that asks
        again queues it again); False if there is none. Holds the lock."""
        for key, job in self._jobs.items():
            if key not in self._waiters and job.cancel():
                del self._jobs[key]
                return True
        return False

    def _build(self, key: Hashable, adapt: Callable[[], NameModel], client: str) -> NameModel:
        try:
            if not self.slots.acquire(timeout=SLOT_WAIT, client=client):
                raise Busy("no slot came free for the adaptation")
            try:
                model = adapt()
            finally:
                self.slots.release(client)
            self._keep(key, model)
            return model
        finally:
            with self._lock:
                self._jobs.pop(key, None)

    def _keep(self, key: Hashable, model: NameModel) -> None:
        """Cache `model`, dropping the least recently used while over `max_bytes`; the newest stays even when it
        alone is over (dropped, a request that gave up waiting for it would ask again and start it again)."""
        size = tensor_bytes(model)
        with self._lock:
            self._cache[key] = (model, size)
            total = sum(s for _, s in self._cache.values())
            while total > self.max_bytes and len(self._cache) > 1:
                _, (_, dropped) = self._cache.popitem(last=False)
                total -= dropped
