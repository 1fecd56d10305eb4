"""`run_server`: the app on uvicorn, bound to 127.0.0.1 unless told otherwise, in one process or a
supervised group of workers (a pre-fork server like gunicorn's: sockets bound once by the parent,
workers replaced when they die and stopped when it does)."""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from namesmith.core.errors import ConfigError, NamesmithError
from namesmith.serve.limits import Limits

if TYPE_CHECKING:  # the models' modules (and torch) are imported by the processes that serve, not the supervisor
    from namesmith.serve.registry import ModelRegistry

log = logging.getLogger("namesmith")

API_KEY_ENV = "NAMESMITH_API_KEY"
WORKER_CONFIG_ENV = "NAMESMITH_SERVE_CONFIG"  # how run_server(workers=N) tells its worker processes what to serve
DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 serves the network (then set an API key)
DEFAULT_PORT = 8000
WORKER_STOP_SECONDS = 30  # a stopped worker's time to finish its requests before it is killed
SERVING = "namesmith serving on http://{host}:{port}/ (API at /api/v1, OpenAPI at /docs)"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)


def build_registry(model_dirs: Sequence[str | Path] = (), datasets: Sequence[str] | None = None,
                   cache: str | Path | None = None, preload: bool = False,
                   limits: Limits | None = None) -> ModelRegistry:
    """The directories' models (loaded now), or with none one n-gram per built-in data set.

    `preload`: build or load the built-in models now, before serving, rather than in the background
    while serving (the models over `limits`' build_seconds or build_memory_mb are left out either way).
    """
    from namesmith.serve.build import BuildLimits
    from namesmith.serve.registry import ModelRegistry

    if model_dirs:
        return ModelRegistry.from_directories(model_dirs)
    limits = limits or Limits()
    registry = ModelRegistry.builtin(datasets, cache=cache,
                                     limits=BuildLimits(
        limits.build_seconds, limits.build_memory_mb, limits.server_memory_mb))
    if preload:
        try:
            registry.wait()
        except BaseException:  # Ctrl-C: the build in progress is killed, not waited for
            registry.close()
            raise
    return registry


def resolve_api_key(api_key: str | None = None, key_file: str | Path | None = None) -> str | None:
    """The key every /api request must carry: `api_key`, else the first line of `key_file`, else $NAMESMITH_API_KEY.

    An empty key is refused: it would let every request in without anyone noticing.
    """
    if api_key is not None and key_file is not None:
        raise ConfigError("give --api-key or --api-key-file, not both", field="api_key")
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{key_file}: cannot read the API key file ({getattr(e, 'strerror', None) or e})",
                              field="api_key_file") from None
        key, where = (lines[0].strip() if lines else ""), f"{key_file}: the API key file"
    elif api_key is not None:
        key, where = api_key, "--api-key"
    else:
        key, where = os.environ.get(API_KEY_ENV), API_KEY_ENV
    if key is not None and not key.strip():
        raise ConfigError(f"{where} is empty: an empty key would let every request in; give a key, or leave it out "
                          "to serve without one", field="api_key")
    return key


def uvicorn_config(app: Any, limits: Limits, **options: Any) -> Any:
    """uvicorn's settings for the app: the connection limits of `limits` (namesmith.serve.connections), no
    Server header, and a bounded graceful stop."""
    import uvicorn

    from namesmith.serve.connections import bounded_protocol

    return uvicorn.Config(app, http=bounded_protocol(limits), timeout_keep_alive=limits.idle_timeout,
                          timeout_graceful_shutdown=WORKER_STOP_SECONDS, server_header=False, **options)


def run_server(model_dirs: Sequence[str | Path] = (), *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               api_key: str | None = None, api_key_file: str | Path | None = None, limits: Limits | None = None,
               datasets: Sequence[str] | None = None, cache: str | Path | None = None, preload: bool = False,
               threads: int = 1, workers: int = 1, log_level: str = "info") -> None:
    """Serve the page and the JSON API until interrupted (what `namesmith serve` runs).

    `api_key`, the first line of `api_key_file`, or the NAMESMITH_API_KEY environment variable makes
    every /api request need it (an empty one is refused).
    `threads`: torch threads per request; requests run in parallel, so 1 is best on a small machine.
    `workers`: server processes (each holds its own copy of the models): generation holds Python's
    GIL, so one process uses about one core; N processes use N, and a worker that dies is replaced.
    """
    import uvicorn

    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {port}", field="port")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}", field="workers")
    limits = limits or Limits()
    api_key = resolve_api_key(api_key, api_key_file)
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        log.warning(f"serving on {host} without an API key: anyone who can reach this address can use the server "
                    f"(set {API_KEY_ENV} or --api-key-file)")
    if workers == 1:
        import torch

        from namesmith.serve.app import create_app

        torch.set_num_threads(threads)
        app = create_app(build_registry(model_dirs, datasets, cache, preload, limits), limits=limits, api_key=api_key)
        log.info(SERVING.format(host=host, port=port))
        uvicorn.Server(uvicorn_config(app, limits, host=host, port=port, log_level=log_level)).run()
        return
    # the workers load the models (the first builds the built-in ones missing from the cache, the others then
    # load them from it); this process only supervises them, holding no model and not even torch
    os.environ[WORKER_CONFIG_ENV] = json.dumps({
        "model_dirs": [str(Path(d).resolve()) for d in model_dirs], "datasets": None if datasets is None else
        list(datasets), "cache": None if cache is None else str(cache), "limits": limits.to_dict(), "threads": threads,
        "workers": workers, "log_level": log_level})
    if api_key is not None:
        os.environ[API_KEY_ENV] = api_key  # the workers read it there (a command line shows in ps)
    run_workers(host, port, workers)


def run_workers(host: str, port: int, workers: int) -> None:
    """`workers` uvicorn servers in processes of their own, supervised: one that dies is started again.

    The port is bound here first, without SO_REUSEPORT, so a port that anything holds (an old
    server's orphaned workers included) is refused in one line, and handed to the first worker. Its
    models loaded (the built-in ones built into the cache if missing), the others start and load
    them. On Linux each of the others joins the port with a SO_REUSEPORT socket of its own once its
    models are loaded, and the kernel spreads new connections evenly over them (with one shared
    socket, whichever process wakes first accepts every connection waiting: eight clients that
    connect at once were served 7 and 1, the 7 in line on one core while the other idled). A worker
    that dies has its socket closed at once, so new connections go to the workers serving rather than
    wait seconds for its successor, which joins the same way (with no other worker serving yet, its
    socket is kept for the successor: connections wait there rather than be refused). Elsewhere the
    workers share one socket. Workers stop when this process stops, even when it is killed
    (`_die_with_parent`), so a restarted server never shares the port with an old one's workers
    (which would serve with the old API key). SIGTERM or Ctrl-C stops them all. A worker that cannot
    serve (a bad model directory, say) stops the server with its one-line reason.
    """
    first = _listening_socket(host, port)
    shared = not (hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux"))
    if not shared:
        first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # read when the others bind, so they may join
    port = first.getsockname()[1]  # the port picked for port 0, which the others join
    pool = _Workers(host, port, workers, first, shared)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        pool.start(0, first)
        multiprocessing.connection.wait([pool.reports[0]])
        pool.report(0)  # the first serves: the others find the built-in models in its cache
        log.info(SERVING.format(host=host, port=port))
        for i in range(1, workers):
            pool.start(i, first if shared else None)
        pool.supervise()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        pool.stop()
        first.close()


class _Workers:
    """The worker processes of `run_workers`, each with its pipe until it reports and, where workers join the port
    with sockets of their own, the socket it was given (held here too: closed when the worker dies)."""

    def __init__(self, host: str, port: int, workers: int, first: socket.socket, shared: bool):
        self.host, self.port, self.workers, self.first, self.shared = host, port, workers, first, shared
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = [None] * workers
        self.reports: list[Any] = [None] * workers  # each worker's pipe until it reports: None (it serves) or why not
        self.owned: dict[int, socket.socket] = {}  # a worker's socket held here too (closed when the worker dies)

    def start(self, i: int, sock: socket.socket | None) -> None:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_worker, args=(sock, writer, self.host, self.port),
                                       name=f"namesmith-serve-{i}")
        process.start()
        writer.close()  # the worker's end: a worker that dies before it reports leaves the pipe at its end
        self.processes[i], self.reports[i] = process, reader
        if sock is not None and not self.shared:
            self.owned[i] = sock

    def report(self, i: int) -> None:
        """Read worker i's report: it serves, or the server stops with its reason."""
        try:
            reason = self.reports[i].recv()
        except EOFError:
            reason = f"server worker {i} exited with code {self.processes[i].exitcode} before it could serve"
        self.reports[i].close()
        self.reports[i] = None
        if reason is not None:
            raise NamesmithError(reason)

    def supervise(self) -> None:
        """Read the workers' reports as they come and start a worker again where one died, until interrupted."""
        while True:
            waiting = {self.reports[i]: i for i in range(self.workers) if self.reports[i] is not None}
            for ready in multiprocessing.connection.wait([p.sentinel for p in self.processes] + list(waiting)):
                if ready in waiting:
                    self.report(waiting[ready])
            for i, process in enumerate(self.processes):
                if not process.is_alive():
                    self.replace(i)

    def replace(self, i: int) -> None:
        """Start worker i again, after it died."""
        process = self.processes[i]
        process.join()
        if self.reports[i] is not None:
            self.report(i)  # it died before it could serve: its reason stops the server
        log.warning(f"server worker {i} (pid {process.pid}) exited with code {process.exitcode}; starting another")
        serving = [j for j in range(self.workers)
                   if j != i and self.reports[j] is None and self.processes[j].is_alive()]
        sock = self.owned.pop(i, None)
        if sock is not None and serving:  # what waits at its own socket would wait for the successor:
            sock.close()  # closed, new connections go to the workers serving
            sock = None
        # with no other worker serving yet, the connections wait at its socket for the successor rather
        # than be refused
        self.start(i, self.first if self.shared else sock)

    def stop(self) -> None:
        """Stop every worker: uvicorn finishes the requests in flight, then exits; one that does not within
        WORKER_STOP_SECONDS is killed."""
        for process in self.processes:
            if process is not None and process.is_alive():
                process.terminate()
        for process in self.processes:
            if process is not None:
                process.join(WORKER_STOP_SECONDS)
                if process.is_alive():
                    process.kill()
                    process.join()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; one listened on is not
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}", field="port") from None
    return sock


def _die_with_parent() -> None:
    """End this worker when its parent ends, however it ends (a parent killed with SIGKILL runs no cleanup).

    Linux sends SIGTERM at the parent's death (PR_SET_PDEATHSIG); everywhere, a thread waits on the
    pipe multiprocessing keeps to the parent, which closes when the parent dies (also if it died
    before this ran). uvicorn stops on SIGTERM: no new connections, the requests in flight finished.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="namesmith-parent-watch", daemon=True).start()


def _worker(sock: socket.socket | None, report: Any, host: str, port: int) -> None:
    """One worker process of `run_workers`: the app of `worker_app` on `sock` (with none, a new SO_REUSEPORT socket
    on the port, joining the others once the app is ready). `report` gets None once it serves, else the one line
    that says why it cannot."""
    import uvicorn

    _die_with_parent()
    config = json.loads(os.environ[WORKER_CONFIG_ENV])
    try:
        app = worker_app()
        if sock is None:
            sock = _listening_socket(host, port, reuse_port=True)
    except NamesmithError as e:
        report.send(str(e))
        sys.exit(1)
    except ImportError as e:
        report.send(f"serve needs the serve extra ({e.name} is missing): pip install 'namesmith[serve]'")
        sys.exit(1)
    report.send(None)
    report.close()
    limits = Limits(**config["limits"])
    uvicorn.Server(uvicorn_config(app, limits, log_level=config["log_level"])).run(sockets=[sock])


def worker_app():
    """The app of one worker process of `run_server(workers=N)`, from the settings it left in the environment: the
    models, and one worker's share of the server's limits (`Limits.per_worker`)."""
    import torch

    from namesmith.serve.app import create_app

    config = json.loads(os.environ[WORKER_CONFIG_ENV])
    torch.set_num_threads(config["threads"])
    limits = Limits(**config["limits"])
    registry = build_registry(config["model_dirs"], config["datasets"], config["cache"], preload=True, limits=limits)
    return create_app(registry, limits=limits.per_worker(config.get("workers", 1)),
                      api_key=os.environ.get(API_KEY_ENV) or None)
