"""The server's adapted models ("more like these"): built inside a slot, waited for within the budget, kept by bytes.

Adapting a model to a list of names takes seconds (0.9-2.4 s for 200 names on the `us` n-gram) and
a copy of the model's tables. Run inside the request, it escaped both the time budget and the
generation slots (40 concurrent requests left a plain `generate` waiting 60 s), and a cache counted
in models grew from 2.1 to 5.5 GB. Here each adaptation is a job: one per list at a time, run on
a worker thread holding one of the server's slots, at most `max_jobs` at once (and `max_pending`
running or queued); a request waits
for its job only for what is left of its time budget (then a 503 asks it to come back: the job
goes on and its model is cached for the retry); finished models are kept, least recently used
first out, while their tensors fit in `max_bytes`.
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
    """Bytes of the tensors and arrays an object holds (its attributes, lists and dicts, `depth` levels down)."""
    seen = set() if seen is None else seen
    if id(value) in seen or depth < 0:
        return 0
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    elif isinstance(value, torch.nn.Module) or hasattr(value, "__dict__"):
        children = list(vars(value).values())
    else:
        return 0
    return sum(tensor_bytes(child, depth - 1, seen) for child in children)


class AdaptedModels:
    """Adapted models by key, each built once by a job that holds one of `slots`."""

    def __init__(self, slots: Slots, max_bytes: int, max_jobs: int, max_pending: int):
        self.slots, self.max_bytes, self.max_jobs, self.max_pending = slots, max_bytes, max_jobs, max_pending
        self._lock = threading.Lock()
        self._cache: OrderedDict[Hashable, tuple[NameModel, int]] = OrderedDict()
        self._jobs: dict[Hashable, Future] = {}
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
                if len(self._jobs) >= self.max_pending:
                    raise Busy(f"{self.max_pending} adaptations are running or waiting")
                job = self._jobs[key] = self._pool.submit(self._build, key, adapt, CLIENT.get())
        try:
            return job.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            raise StillAdapting from None

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
        size = tensor_bytes(model)
        if size > self.max_bytes:
            return  # served to the requests waiting for it, then dropped
        with self._lock:
            self._cache[key] = (model, size)
            total = sum(s for _, s in self._cache.values())
            while total > self.max_bytes:
                _, (_, dropped) = self._cache.popitem(last=False)
                total -= dropped
