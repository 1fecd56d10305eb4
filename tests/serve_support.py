"""What the serve tests share: small trained models in a temporary folder, and a real uvicorn."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from namesmith import NameModel

_TRAINED = tempfile.TemporaryDirectory(prefix="namesmith-test-bigram-")  # this process's, removed at its exit


def train_bigram(folder: Path) -> Path:
    """An unconditioned bigram-counts model of the built-in names, in `folder/bigram`: uncalibrated, as the server's
    tests need no calibration (with one, training took 61 s on the busy shared machine; without, 6 s). Trained once a
    process (0.16 s) and copied to each folder that asks (milliseconds), so a test may change or break its copy."""
    trained = Path(_TRAINED.name) / "bigram"
    if not trained.is_dir():
        # labels: see test_serve_where
        NameModel.train(data="builtin", model="bigram-counts", out=trained, condition="none", calibrate="none")
    out = folder / "bigram"
    shutil.copytree(trained, out)
    return out


def children(pid: int) -> list[int]:
    """The processes `pid` started (any of its threads), on Linux (/proc)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def alive(pid: int) -> bool:
    """Whether process `pid` runs, on Linux (/proc): a zombie, dead and not yet reaped, does not."""
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app, port: int | None = None):
    """A real uvicorn serving `app` on 127.0.0.1 in a thread; yields its base URL; stops it after."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # only catches a server that never starts
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
