"""Shared test fixtures."""

import os

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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SCREENSHOTS in config.stash:
        terminalreporter.write_line(f"screenshots of the page: {config.stash[SCREENSHOTS]}")
