"""Shared test fixtures.

The suite runs in parallel under pytest-xdist (`-n auto`, docs/testing.md): each worker is a process of its own with
its own temporary folders and caches; what takes seconds to build and is only read (the catalogue's prior, the
server's built-in model) is built once for the whole run by `once_per_run` and copied into each worker's folders."""

import contextlib
import functools
import gc
import hashlib
import io
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

try:
    import fcntl
except ImportError:  # Windows: each worker builds its own copy
    fcntl = None

SCREENSHOTS = pytest.StashKey()  # the folder where the browser tests saved the page's screenshots


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch  # here, not above: xdist's controller process runs no test and need not import it (1.4 s)

        # one core per worker (xdist starts as many as there are cores): a second torch/OpenMP thread would only
        # contend with the other workers, and OpenMP spin-waits for a thread that shares a busy core
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # the CLI runs and servers the tests start, likewise


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session):
    """Collecting with the garbage collector off: it imports torch, FastAPI, the package and 80 test modules, objects
    that live as long as the run, and the collector walked them in 14 full passes (1.6 s of each worker's start)."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's garbage collected once more, then what is left frozen (gc.freeze): pytest's check for exceptions in
    finalizers collects 5 times after this (0.3 s each over the half million objects torch, FastAPI and the rest
    leave in a worker), and the interpreter walks them once more as it exits; 3 s of each worker's end, now 0.3 s.
    The exceptions this collection raises in finalizers are still reported: pytest's hook for them is still there."""
    gc.collect()
    gc.freeze()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def once_per_run(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder `build(folder)` filled, built once for the whole run: under pytest-xdist the first worker to ask builds
    it (under a file lock, in the run's temporary folder that all workers share) and the others wait for it. Callers
    copy it before anything may write into it. A build that fails leaves nothing; the next worker to ask tries again."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER") and fcntl is not None:
        root = root.parent  # pytest-of-USER/pytest-N: the run's, above each worker's popen-gwN
    done = root / f"once-{name}"
    with _locked(root / f"once-{name}.lock"):
        if not done.is_dir():
            building = root / f".once-{name}.building"
            shutil.rmtree(building, ignore_errors=True)
            building.mkdir()
            build(building)
            os.replace(building, done)
    return done


@pytest.fixture(scope="session")
def built_once(tmp_path_factory) -> Callable[[str, Callable[[Path], None]], Path]:
    """`once_per_run` for a test module: `built_once(name, build)` is the folder `build` filled, once for the run."""
    return lambda name, build: once_per_run(tmp_path_factory, name, build)


@pytest.fixture(scope="session")
def cli_trained(built_once) -> Callable[[str], Path]:
    """`cli_trained(command)`: a folder where `command` (a `namesmith train ... --out out`) ran, what it printed in
    `printout.txt` beside `out`; run once for the whole run (the README's `namesmith train --out out` takes seconds,
    and the docs' examples and the CLI's tests read it). Only read it: copy it before anything writes there."""
    def build(command: str, folder: Path) -> None:
        from namesmith.cli import main

        printed = io.StringIO()
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
            patch.chdir(folder)
            assert main(shlex.split(command)[1:]) == 0
        (folder / "printout.txt").write_text(printed.getvalue(), encoding="utf-8")

    def folder(command: str) -> Path:
        name = "cli-" + hashlib.sha256(command.encode()).hexdigest()[:12]
        return built_once(name, functools.partial(build, command))
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: extra torch threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build_prior(folder: Path, catalogue_prior: Callable) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NAMESMITH_CACHE", str(folder))
        catalogue_prior("ngram")


@pytest.fixture(scope="session", autouse=True)
def prior_cache(tmp_path_factory):
    """Priors (namesmith.adaptation.prior) are built into a temporary cache, shared by the session (and by the
    CLI runs it starts), never into the user's ~/.cache. Under pytest-xdist each worker has a cache of its own,
    which gets the catalogue's n-gram prior, built once for the run (about 5 s of CPU a build), when a test of
    the worker first asks for it (most never do: no worker waits for the build at its start); a process a test
    starts builds its own. Alone, the session builds it when a test first asks."""
    previous = os.environ.get("NAMESMITH_CACHE")
    cache = tmp_path_factory.mktemp("namesmith-cache")
    os.environ["NAMESMITH_CACHE"] = str(cache)
    with pytest.MonkeyPatch.context() as patch:
        if os.environ.get("PYTEST_XDIST_WORKER"):
            from namesmith.adaptation import prior

            build = prior.catalogue_prior

            def catalogue_prior(*args, **kwargs):
                if not (cache / ".prior-copied").exists():
                    built = once_per_run(tmp_path_factory, "prior", lambda folder: _build_prior(folder, build))
                    shutil.copytree(built, cache, dirs_exist_ok=True)
                    (cache / ".prior-copied").touch()
                return build(*args, **kwargs)

            patch.setattr(prior, "catalogue_prior", catalogue_prior)
        yield os.environ["NAMESMITH_CACHE"]
    if previous is None:
        os.environ.pop("NAMESMITH_CACHE", None)
    else:
        os.environ["NAMESMITH_CACHE"] = previous


@pytest.fixture(scope="session")
def builtin_ngram_cache(tmp_path_factory) -> Path:
    """A server cache holding the built-in set's default model (`builtin-ngram`), built once for the whole run by
    the server's own worker process (namesmith.serve.build): each such build is a process that imports torch, trains
    and warms the model up (about 7 s of CPU), and the serve and browser tests only read it. A test that breaks or
    replaces a cached model copies it into a cache of its own first."""
    pytest.importorskip("fastapi")
    from namesmith.serve import ModelRegistry
    from namesmith.serve.build import BuildLimits

    def build(cache: Path) -> None:
        # the default limits but server_memory_mb: the test process (the whole suite's) may hold more than a server
        # would
        registry = ModelRegistry.builtin(["builtin"], cache=cache, limits=BuildLimits(server_mb=1 << 30))
        try:
            assert registry.wait(600) and registry.get("builtin-ngram").state == "ready"
        finally:
            registry.close()

    cache = tmp_path_factory.mktemp("serve-builtin-cache")  # this worker's copy: its servers may write into it
    shutil.copytree(once_per_run(tmp_path_factory, "serve-builtin-cache", build), cache, dirs_exist_ok=True)
    return cache


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SCREENSHOTS in config.stash:
        terminalreporter.write_line(f"screenshots of the page: {config.stash[SCREENSHOTS]}")
