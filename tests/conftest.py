"""Shared test fixtures."""

import os
from pathlib import Path

import pytest
import torch

SCREENSHOTS = pytest.StashKey()  # the folder where the browser tests saved the page's screenshots


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared 2-core machine: extra torch threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def prior_cache(tmp_path_factory):
    """Priors (namesmith.adaptation.prior) are built into a temporary cache, shared by the session (and by the
    CLI runs it starts), never into the user's ~/.cache."""
    previous = os.environ.get("NAMESMITH_CACHE")
    os.environ["NAMESMITH_CACHE"] = str(tmp_path_factory.mktemp("namesmith-cache"))
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

    cache = tmp_path_factory.mktemp("serve-builtin-cache")
    # the default limits but server_memory_mb: the test process (the whole suite's) may hold more than a server would
    registry = ModelRegistry.builtin(["builtin"], cache=cache, limits=BuildLimits(server_mb=1 << 30))
    try:
        assert registry.wait(600) and registry.get("builtin-ngram").state == "ready"
    finally:
        registry.close()
    return cache


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SCREENSHOTS in config.stash:
        terminalreporter.write_line(f"screenshots of the page: {config.stash[SCREENSHOTS]}")
