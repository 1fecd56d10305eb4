"""`run_server`: the app on uvicorn, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from namesmith.errors import ConfigError
from namesmith.serve.limits import Limits
from namesmith.serve.registry import ModelRegistry

log = logging.getLogger("namesmith")

API_KEY_ENV = "NAMESMITH_API_KEY"
WORKER_CONFIG_ENV = "NAMESMITH_SERVE_CONFIG"  # how run_server(workers=N) tells its worker processes what to serve
DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 serves the network (then set an API key)
DEFAULT_PORT = 8000
WORKER_STOP_SECONDS = 30  # a stopped worker's time to finish its requests before it is killed


def build_registry(model_dirs: Sequence[str | Path] = (), datasets: Sequence[str] | None = None,
                   cache: str | Path | None = None, preload: bool = False) -> ModelRegistry:
    """The directories' models (loaded now), or with none one n-gram per built-in data set.

    `preload`: train or load the built-in models now rather than on first use.
    """
    if model_dirs:
        return ModelRegistry.from_directories(model_dirs)
    registry = ModelRegistry.builtin(datasets, cache=cache)
    if preload:
        for entry in registry:
            entry.get()
    return registry


def run_server(model_dirs: Sequence[str | Path] = (), *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               api_key: str | None = None, limits: Limits | None = None, datasets: Sequence[str] | None = None,
               cache: str | Path | None = None, preload: bool = False, threads: int = 1, workers: int = 1,
               log_level: str = "info") -> None:
    """Serve the page and the JSON API until interrupted (what `namesmith serve` runs).

    `api_key` (or the NAMESMITH_API_KEY environment variable) makes every /api request need it.
    `threads`: torch threads per request; requests run in parallel, so 1 is best on a small machine.
    `workers`: server processes (each holds its own copy of the models): generation holds Python's
    GIL, so one process uses about one core; N processes use N.
    """
    import uvicorn

    from namesmith.serve.app import create_app

    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {port}", field="port")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}", field="workers")
    limits = limits or Limits()
    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning(f"serving on {host} without an API key: anyone who can reach this address can use the server "
                    f"(set --api-key or {API_KEY_ENV})")
    torch.set_num_threads(threads)
    registry = build_registry(model_dirs, datasets, cache, preload or workers > 1)  # workers load from the cache
    log.info(f"namesmith serving on http://{host}:{port}/ (API at /api/v1, OpenAPI at /docs)")
    if workers == 1:
        app = create_app(registry, limits=limits, api_key=api_key)
        uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)
        return
    os.environ[WORKER_CONFIG_ENV] = json.dumps({
        "model_dirs": [str(Path(d).resolve()) for d in model_dirs], "datasets": None if datasets is None else
        list(datasets), "cache": None if cache is None else str(cache), "limits": limits.to_dict(), "threads": threads})
    if api_key is not None:
        os.environ[API_KEY_ENV] = api_key  # the workers read it from there, as from a user's environment
    if hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux"):
        run_workers(host, port, workers, log_level)
    else:  # uvicorn's workers share one socket (elsewhere SO_REUSEPORT does not spread connections)
        uvicorn.run("namesmith.serve.server:worker_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, server_header=False)


def run_workers(host: str, port: int, workers: int, log_level: str) -> None:
    """`workers` uvicorn servers in processes of their own, each on its own SO_REUSEPORT socket.

    The kernel spreads new connections evenly over the sockets. With one shared socket (uvicorn's
    `workers`), whichever process wakes first accepts every connection waiting: eight clients that
    connect at once were served 7 and 1 here, the 7 waiting in line on one core while the other
    idled. A worker that exits stops the others (a supervisor such as systemd restarts the whole),
    and SIGTERM or Ctrl-C stops them all.
    """
    # holds the port (and picks one for port 0) until the end: bound, not listening, it is given no connection
    placeholder = _listening_socket(host, port, listen=False)
    port = placeholder.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(host, port, log_level), name=f"namesmith-serve-{i}")
                 for i in range(workers)]
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for process in processes:
            process.start()
        multiprocessing.connection.wait([p.sentinel for p in processes])
        stopped = next(p for p in processes if not p.is_alive())
        log.error(f"server worker {stopped.name} (pid {stopped.pid}) exited with code {stopped.exitcode}; "
                  "stopping the others")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        placeholder.close()
        for process in processes:
            if process.is_alive():
                process.terminate()  # uvicorn finishes the requests in flight, then exits
        for process in processes:
            process.join(WORKER_STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _listening_socket(host: str, port: int, listen: bool = True) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", field="port") from None
    if listen:
        sock.listen(2048)
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    """One worker process of `run_workers`: its own socket on the shared port, its own uvicorn."""
    import uvicorn

    sock = _listening_socket(host, port)
    config = uvicorn.Config("namesmith.serve.server:worker_app", factory=True, log_level=log_level,
                            server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def worker_app():
    """The app of one worker process of `run_server(workers=N)`, from the settings it left in the environment."""
    from namesmith.serve.app import create_app

    config = json.loads(os.environ[WORKER_CONFIG_ENV])
    torch.set_num_threads(config["threads"])
    registry = build_registry(config["model_dirs"], config["datasets"], config["cache"], preload=True)
    return create_app(registry, limits=Limits(**config["limits"]), api_key=os.environ.get(API_KEY_ENV) or None)
