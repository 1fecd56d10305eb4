"""Memory estimates made before allocating: work that would not fit is refused in one line, not started.

Training holds what its inputs decide: a word list read into memory as Python strings, its words as
padded (words, longest + 1) tensors, a network's activations for a batch of them, an n-gram's
windows. A list of 500 MB, or one line of 100 MB with `--max-line-length` raised to let it in, asks
for tens or hundreds of gigabytes, and used to find out minutes later (a `MemoryError` or
`std::bad_alloc` traceback, or the kernel's OOM killer). Each rule here says how many bytes a step
will take from the sizes known before it runs, and `check_fits` refuses a step whose estimate passes
the limit, naming the option a user can change.

Estimates are of the process's peak, and the limit is the peak it may reach: `NAMESMITH_MEMORY_LIMIT`
(bytes, or with a K/M/G/T suffix: "2G") where set, else what the process holds now plus what the
system says is available (`MemAvailable` of /proc/meminfo, within a cgroup's `memory.max`), else
none. The factors are measured (see each constant) and meant as upper bounds of the peak: a step
they let through fits; one they refuse would not have.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from namesmith.core.errors import ConfigError

LIMIT_VARIABLE = "NAMESMITH_MEMORY_LIMIT"
# A word list read into memory (`data.parse_words`: the text, its lines, the cleaned words, the split)
# takes about 15 bytes per byte of file at its peak (a 50 MB list of 7M names: 0.75 GB).
WORDS_PER_FILE_BYTE = 15
BASE_BYTES = 300 << 20  # Python, torch and namesmith imported, before any data
WORD_BYTES = 64  # a short word held as a Python string in a list (the words stay held while training)
TENSOR_BYTES = 16  # per cell of `encode_words`' padded (words, longest + 1) x and y: two int64
# The in-memory n-gram (`NGram.count`): per padded cell, the (order) windows as int64, their flipped
# copy and their keys' running sums.
NGRAM_BYTES_PER_ORDER = 3 * 8
# A streamed n-gram, per distinct n-gram counted (every part): its keys and counts, the per-order counts
# and the sparse table built from them, and the work of each step (measured: 1.8 GB at the peak for 23M
# distinct n-grams of a 50 MB list of random words).
STREAMED_BYTES_PER_NGRAM = 72
# A network's activations per token of a batch, per unit of width (embedding or hidden size) and layer:
# float32 values of the gates, states and their gradients (an LSTM keeps 4 gates and 2 states a step).
NETWORK_BYTES_PER_WIDTH = 4 * 12
# Where a list is trained by default (namesmith.training.streamed.should_stream): held in memory while what that is
# estimated to take stays within both bounds, else streamed (whose memory grows with the distinct n-grams, not the
# list). Half the 2 GB a default run keeps to, and the minute the first hour allows a training run.
IN_MEMORY_BYTES = 1_000_000_000
IN_MEMORY_SECONDS = 60.0
# Held in memory, an n-gram too large for a dense table is scored (evaluation, calibration) a whole (V,) row per
# position of every word: seconds of CPU per cell of those rows, measured on one thread (4,096 random words of
# 3-10 letters, 45,000 rows of 27, in 0.22 s). The dense n-gram reads its rows from a table, far faster.
SECONDS_PER_ROW_CELL = 2e-7
_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def memory_limit() -> int | None:
    """The peak this process may reach: NAMESMITH_MEMORY_LIMIT, else what it holds now plus what the system
    has available (within a cgroup's limit), else None."""
    given = os.environ.get(LIMIT_VARIABLE, "").strip()
    if given:
        return parse_bytes(given)
    known = [room for room in (_available(), _cgroup_room()) if room is not None]
    return min(known) + _resident() if known else None


def parse_bytes(text: str) -> int:
    """Bytes from "2000000000", "2G", "512M" (powers of 1024); a ConfigError naming the variable otherwise."""
    number, suffix = text.upper().rstrip("B"), ""
    if number and number[-1] in "KMGT":
        number, suffix = number[:-1], number[-1]
    try:
        value = float(number) * _SUFFIXES[suffix]
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{LIMIT_VARIABLE} must be a number of bytes, optionally with K, M, G or T (e.g. 4G), "
                          f"got {text!r}")
    return int(value)


def proc_bytes(path: str, key: str) -> int | None:
    """The `key:` line of a /proc file that counts in kB (VmRSS and VmHWM of /proc/self/status, MemAvailable of
    /proc/meminfo), in bytes; None where there is no such file or line (not Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _available() -> int | None:
    return proc_bytes("/proc/meminfo", "MemAvailable")


def _resident() -> int:
    """Bytes this process holds now (VmRSS)."""
    return proc_bytes("/proc/self/status", "VmRSS") or 0


def _cgroup_room() -> int | None:
    """What a cgroup v2 memory limit leaves this group (None without one)."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()), 0)
    except (OSError, ValueError):
        return None


def in_words(n_bytes: float) -> str:
    """"1.2 GB", "35 MB"."""
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:,.0f} MB"


def check_fits(estimate: float, what: str, advice: str, option: str | None = None) -> None:
    """A ConfigError (naming `option`) if `estimate` bytes pass the memory limit: "`what` would take about
    N GB, more than the M GB available (NAMESMITH_MEMORY_LIMIT sets the limit); `advice`"."""
    limit = memory_limit()
    if limit is None or estimate <= limit:
        return
    where = f"{option}: " if option else ""
    raise ConfigError(f"{where}{what} would take about {in_words(estimate)} of memory, more than the "
                      f"{in_words(limit)} available ({LIMIT_VARIABLE} sets the limit); {advice}",
                      field=option.lstrip("-").replace("-", "_") if option else None)


def words_in_memory(file_bytes: int) -> int:
    """The peak of reading a word list of `file_bytes` into memory."""
    return BASE_BYTES + WORDS_PER_FILE_BYTE * file_bytes


def streamed_ngram_bytes(distinct: int) -> int:
    """The peak of counting, fitting and scoring a streamed n-gram whose counts hold `distinct` n-grams (all
    parts): its counts and sparse tables, and the work of building them (a 50 MB list of random words,
    23M distinct n-grams: 1.6 GB)."""
    return BASE_BYTES + STREAMED_BYTES_PER_NGRAM * distinct


def in_memory_cost(file_bytes: int, n_words: int, longest: int, vocab_size: int,
                   order: int | None) -> tuple[int, float]:
    """The peak bytes and the seconds of CPU of training a count model on a word list held in memory: reading its
    `file_bytes`, its `n_words` words padded to the `longest`, and for an n-gram (`order`; None for a bigram) its
    windows, and the scoring of every position through whole rows of `vocab_size` that a sparse table takes."""
    cells = n_words * (longest + 1)
    held = BASE_BYTES + WORD_BYTES * n_words + TENSOR_BYTES * cells + NGRAM_BYTES_PER_ORDER * (order or 0) * cells
    seconds = SECONDS_PER_ROW_CELL * cells * vocab_size if order else 0.0
    return max(words_in_memory(file_bytes), held), seconds


def training_bytes(model_type: str, model_config: object, n_words: int, longest: int, vocab_size: int,
                   batch_size: int | None) -> int:
    """The peak of training `model_type` on `n_words` words in memory: the words, the padded tensors of
    every part, and what the model builds from them (an n-gram's windows, a network's activations for
    one batch, a Transformer's attention maps)."""
    cells = n_words * (longest + 1)
    estimate = BASE_BYTES + WORD_BYTES * n_words + TENSOR_BYTES * cells
    order = getattr(model_config, "order", None)
    if model_type == "ngram" and order:
        estimate += NGRAM_BYTES_PER_ORDER * order * cells
    width = max((getattr(model_config, name, 0) or 0) for name in ("n_embd", "n_hidden"))
    if width:  # a network
        tokens = min(batch_size or 64, n_words) * (longest + 1)
        layers = getattr(model_config, "n_layer", 1) or 1
        estimate += tokens * (NETWORK_BYTES_PER_WIDTH * width * layers + 3 * 4 * vocab_size)
        heads = getattr(model_config, "n_head", 0) or 0
        if heads:  # attention weights (batch, heads, T, T) per layer, kept for the backward pass
            estimate += 3 * 4 * min(batch_size or 64, n_words) * heads * layers * (longest + 1) ** 2
    return estimate


def release_freed_memory() -> None:
    """Hand back to the system the memory that many small arrays freed. glibc's malloc serves arrays under
    its mmap threshold (which rises to 32 MB) from its heap and keeps what they free there for reuse: after
    counting a 50 MB list of random words in small ranges of keys (namesmith.data.counting), 0.43 GB of the
    1.14 GB resident was free heap, held through fitting and scoring. `malloc_trim` returns it (glibc only;
    elsewhere nothing is done)."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)


M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc malloc.h)
MAPPED_ARRAYS = 1 << 20  # inside `large_arrays_mapped`, arrays of this many bytes or more get pages of their own
HEAP_ARRAYS = 32 << 20  # after it, glibc's own ceiling for arrays kept on its heap (its mmap threshold's maximum)


@contextlib.contextmanager
def large_arrays_mapped() -> Iterator[None]:
    """Inside, every array of MAPPED_ARRAYS bytes or more gets pages of its own, returned to the system when
    it is freed. glibc raises its mmap threshold as large blocks are freed, up to 32 MB, and serves arrays
    below it from its heap, where what they free stays resident: tuning the discounts of a 12 MB list of
    random words (hundreds of 4 MB temporaries) left 1.1 GB resident for 0.45 GB in use; inside, 0.45 GB.
    Fresh pages cost page faults, so only the steps that make such temporaries once (fitting a long list's
    n-gram) run inside: scoring a chunk at a time inside took 41 s of system time instead of 6 (glibc only)."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, MAPPED_ARRAYS)
    try:
        yield
    finally:
        if mallopt is not None:
            mallopt(M_MMAP_THRESHOLD, HEAP_ARRAYS)


def _libc_function(name: str) -> Any:
    """A function of glibc, or None elsewhere."""
    if sys.platform != "linux":
        return None
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
