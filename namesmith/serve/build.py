"""Building a built-in data set's model for the server: in a worker process, bounded, cached on disk.

A server must not do minutes of work inside a request, nor let one model's training take the machine
down with it. So a built-in model that is not yet in the cache is trained once, before it is served,
in a process of its own (spawned, so it shares no threads or locks with the server) that is watched:

- past `build_seconds` it is killed, and past `build_memory_mb` of peak memory, or what
  `server_memory_mb` leaves beside the server, it stops itself (a thread in the worker reads its
  peak RSS); the model is then not served and the log says why. The worker also loads the model
  and warms it up as the server will (`warm_up`), so a model whose tables would not fit is found
  there, not in the server, and writes beside it what that took (LOAD_MEMORY_FILE), so that the
  server loads it only where it fits beside the models it holds (issue 26: 2.48 GB at the peak).
  A note beside the cache keeps later starts with the same limits, data and version from trying again;
- the worker writes to a folder of its own, renamed into the cache only when the model is complete,
  so a killed build leaves nothing half-written for the next start to load;
- `stop` (set when the server shuts down: Ctrl-C or SIGTERM) kills the worker at once, and a worker
  whose server has gone (killed with SIGKILL, say) exits by itself within a second.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from namesmith.core.memory import proc_bytes, release_freed_memory
from namesmith.core.progress import check_stop

if TYPE_CHECKING:
    from namesmith.namemodel import NameModel

log = logging.getLogger("namesmith")

POLL_SECONDS = 0.1  # how often the server looks at a worker (and at `stop`)
MEMORY_EXIT = 3  # the worker's exit code when it stopped itself for using too much memory
ERROR_EXIT = 4  # the worker's exit code when training raised (the message is in its ERROR_FILE)
ERROR_FILE = "build-error.txt"
LOAD_MEMORY_FILE = "serve-memory.json"  # what loading the model took, measured by the worker that built it
FAILED_SUFFIX = ".failed.json"  # the note beside a cached model's folder when it could not be built
WORKER = "import sys; from namesmith.serve.build import _train; _train(*sys.argv[1:4], *map(int, sys.argv[4:7]))"


@dataclass(frozen=True)
class BuildLimits:
    """What building one built-in model may take (the server's `build_seconds` and `build_memory_mb`), and what the
    server may hold with its built-in models loaded, a build worker beside it included (`server_memory_mb`)."""

    seconds: float = 300.0
    memory_mb: int = 2048
    server_mb: int = 2048


@dataclass(frozen=True)
class BuildJob:
    """One model to build: the data set, the model type, and the cache folder it goes to."""

    dataset: str
    model_type: str
    directory: Path

    def note(self) -> Path:
        return self.directory.with_name(self.directory.name + FAILED_SUFFIX)

    def known_failure(self, key: dict) -> str | None:
        """Why an earlier start with the same `key` (limits, data, version) could not build this model, if so."""
        try:
            note = json.loads(self.note().read_text())
        except (OSError, ValueError):
            return None
        return note.get("reason") if note.get("key") == key else None

    def remember_failure(self, key: dict, reason: str) -> None:
        try:
            self.note().parent.mkdir(parents=True, exist_ok=True)
            self.note().write_text(json.dumps({"key": key, "reason": reason,
                                               "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        except OSError as e:  # a read-only cache: the next start tries again
            log.warning(f"could not write {self.note()}: {e}")

    def forget_failure(self) -> None:
        self.note().unlink(missing_ok=True)


def warm_up(model: NameModel) -> NameModel:
    """Read and build what the model makes lazily (training words, percentile table, classification's and the
    sampler's tables) before requests share it, so that no request pays for it (or runs out of its time budget).
    Exact tables that a request cannot build within its budget are built in the background for the next."""
    model.background_tables = True
    model.training_split()
    if model.vocab.chars:
        check_stop()  # a server that is stopping (namesmith.serve.registry) ends here, and in each phase's units
        model.score([model.vocab.chars[0]])
        if model.labels:  # classification's tables: a server classifies many names, so it keeps them
            check_stop()
            model.keep_classification_tables()
            model.classify([model.vocab.chars[0]])
    check_stop()
    model.generate(1, seed=0)
    return model


def build(job: BuildJob, limits: BuildLimits, stop: threading.Event | None = None) -> Failure | None:
    """Train `job`'s model into its cache folder in a watched worker process: None when built, else why not.

    Returns at once when `stop` is set; the worker is killed then.
    """
    stop = stop or threading.Event()
    staging = job.directory.with_name(f".{job.directory.name}.building-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    # a fresh interpreter (not multiprocessing, which re-imports the server's __main__): it shares no
    # threads or locks with the server, and its memory is its own
    # the worker and the server together stay within server_mb
    server_mb = (proc_bytes("/proc/self/status", "VmRSS") or 0) / (1 << 20)
    memory_mb = int(min(limits.memory_mb, limits.server_mb - server_mb))
    command = [sys.executable, "-c", WORKER, job.dataset, job.model_type, str(staging),
               str(memory_mb), str(os.getpid()), str(log.getEffectiveLevel())]
    start = time.monotonic()
    worker = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        while worker.poll() is None:
            if stop.is_set():
                return Failure("the server is stopping", lasting=False)
            if time.monotonic() - start > limits.seconds:
                return Failure(f"building it took more than build_seconds={limits.seconds:g} s")
            stop.wait(POLL_SECONDS)
        if worker.returncode == MEMORY_EXIT:
            return Failure(f"building it took more than build_memory_mb={limits.memory_mb} MB of memory"
                           if memory_mb == limits.memory_mb else
                           f"building it took more than {memory_mb} MB of memory, what server_memory_mb="
                           f"{limits.server_mb} MB left beside the server's {server_mb:.0f} MB")
        error = staging / ERROR_FILE
        if worker.returncode == ERROR_EXIT and error.exists():
            return Failure(error.read_text().strip())
        if worker.returncode != 0:  # killed from outside (the kernel's OOM killer?) or crashed: try again next start
            return Failure(f"the build process exited with code {worker.returncode}", lasting=False)
        _replace(staging, job.directory)
        return None
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        shutil.rmtree(staging, ignore_errors=True)


@dataclass(frozen=True)
class Failure:
    """Why a model was not built; `lasting`: the same build would fail again (over a limit, or training raised)."""

    reason: str
    lasting: bool = True

    def __str__(self) -> str:
        return self.reason


def _replace(staging: Path, directory: Path) -> None:
    """Put the built model in place of whatever `directory` held (an out-of-date model of this cache)."""
    old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
    if directory.exists():
        os.replace(directory, old)
    os.replace(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def _train(dataset: str, model_type: str, out: str, memory_mb: int, server_pid: int, log_level: int) -> None:
    """The worker process: train and save, watched by a thread that ends it when its limits or its server go."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s namesmith building {dataset}: %(message)s",
                        stream=sys.stderr)
    threading.Thread(target=_watch, args=(memory_mb, server_pid), daemon=True).start()
    import torch

    torch.set_num_threads(1)  # the server runs beside it: one core each
    from namesmith.namemodel import NameModel

    try:
        NameModel.train(data=dataset, model=model_type, out=out, overwrite=True)
        _measure_loading(out)  # as the server will: its tables count against the memory bound too
    except Exception as e:  # noqa: BLE001 - the server logs the reason and serves the other models
        Path(out, ERROR_FILE).write_text(f"training failed: {type(e).__name__}: {e}")
        sys.stderr.flush()
        os._exit(ERROR_EXIT)


def _measure_loading(out: str) -> None:
    """Load `out` and warm it up as the server will, and write beside it the memory that took (LOAD_MEMORY_FILE:
    what it holds once loaded, and at most while loading), so that a server can tell whether it fits before loading
    it. Measured from what this process held before (training's freed memory given back to the system first)."""
    from namesmith.namemodel import NameModel

    gc.collect()
    release_freed_memory()
    before = proc_bytes("/proc/self/status", "VmRSS")
    reset = _reset_peak()
    warm_up(NameModel.load(out))
    after, peak = proc_bytes("/proc/self/status", "VmRSS"), proc_bytes("/proc/self/status", "VmHWM")
    if before is None or after is None:
        return  # not Linux: nothing measured, the server loads it unchecked
    held = max(0, after - before) / (1 << 20)
    Path(out, LOAD_MEMORY_FILE).write_text(json.dumps(
        {"held_mb": round(held), "peak_mb": round(max(held, (peak - before) / (1 << 20)) if reset and peak else held)}))


def _reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to what it holds now (Linux 4.0+); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def load_memory_mb(directory: Path) -> tuple[float, float] | None:
    """(held, peak) MB that loading the model of `directory` took when it was built (`_measure_loading`), if known."""
    try:
        measured = json.loads((directory / LOAD_MEMORY_FILE).read_text())
        return float(measured["held_mb"]), float(measured["peak_mb"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _watch(memory_mb: int, server_pid: int) -> None:
    while True:
        if os.getppid() != server_pid:  # the server is gone: nobody will use this model
            os._exit(1)
        if _peak_rss_mb() > memory_mb:
            os._exit(MEMORY_EXIT)
        time.sleep(POLL_SECONDS)


def _peak_rss_mb() -> float:
    """This process's own peak resident memory. On Linux, /proc's VmHWM: getrusage's ru_maxrss keeps the peak of
    the process that started this one (Linux carries it across fork and exec), so a worker of a server holding
    more than build_memory_mb stopped itself at once, whatever it built."""
    peak = proc_bytes("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak / (1 << 20)
    try:
        import resource
    except ImportError:  # Windows: no memory bound, the time bound still holds
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB elsewhere


def limits_key(limits: BuildLimits) -> dict:
    return asdict(limits)
