"""Torch's thread count for work made of many small tensor operations (counting, tables, fitting a count model).

A second thread saves nothing on such work, and when another process holds a core, OpenMP's threads spin waiting for
a partner that is not running: 10-15x slower. Torch is imported only when the context is entered, so the torch-free
paths that import this module stay torch-free."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one thread inside, as before after. Count models fit through thousands of small
    tensor operations: a second thread saves nothing on them (the default `namesmith train`: 2.6 s
    on 2 threads, 2.8 s on one, here), and when another process holds a core, OpenMP's threads spin
    waiting for a partner that is not running, 10-15x slower (41 s instead of 3 s). The tables a
    model directory saves for torch-free sampling and classification took 24.6 s of CPU instead of
    0.94 s on the default threads beside a busy core."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
