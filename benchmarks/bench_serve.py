"""Throughput and latency of `namesmith serve`: a real uvicorn on 127.0.0.1, bounded in count and time.

The request: 20 names ending in "a" (and a label condition when the model is conditional) from the
`us` n-gram. For 1, 8 and 32 concurrent clients (keep-alive HTTP/1.1 connections from one asyncio
process), each for --seconds (default 30): requests per second, p50/p99 latency, errors, and the
server's resident memory over the run. The baseline, measured in the same run: the same work
called in-process (`namesmith.serve.service.generate`, no HTTP), one request at a time.

    python benchmarks/bench_serve.py                    # us n-gram, 30 s per level, a worker per core
    python benchmarks/bench_serve.py --seconds 5 --levels 1 8 --model-dir runs/lstm   # a trained model

Targets on this 2-core machine (n-gram): >= 300 requests/s at 32 clients with p99 <= 200 ms,
p50 <= 20 ms at 1 client, zero errors, memory flat. The clients share the machine with the server.
Before the reported levels, --warm-up seconds (default 5) at the highest concurrency, so every
worker has built its tables (their errors are printed, not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker processes), in MB."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
    except (OSError, ValueError):
        pass
    return total


async def request(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    return status, await reader.readexactly(length)


async def client(port: int, path: str, body: bytes, until: float, latencies: list, errors: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            try:
                status, payload = await request(reader, writer, path, body)
            except (OSError, asyncio.IncompleteReadError) as e:
                errors.append(repr(e))
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(status)
            elif len(json.loads(payload)["names"]) != 20:
                errors.append("200, short of names")
    finally:
        writer.close()


async def level(port: int, path: str, body: bytes, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list = []
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(client(port, path, body, until, latencies, errors) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "seconds": elapsed, "rps": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None, "errors": len(errors),
            "error_kinds": dict(Counter(map(str, errors)))}


def start_server(port: int, args: argparse.Namespace, cache: str) -> subprocess.Popen:
    code = ("import sys; from namesmith.serve import Limits, run_server; "
            f"run_server({[args.model_dir] if args.model_dir else []!r}, datasets={[args.dataset]!r}, port={port}, "
            f"preload=True, workers={args.workers}, limits=Limits.parse({args.limit!r}), log_level='warning')")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "NAMESMITH_CACHE": cache, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("the server exited before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    server.kill()
    sys.exit("the server did not start in time")


def model_request(port: int) -> tuple[str, dict, str]:
    """The path and body of the benchmark request, with a condition when the model has labels."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/models", timeout=10) as r:
        model = json.loads(r.read())["models"][0]
    body = {"n": 20, "ends_with": "a"}
    condition = "none (the model has no labels)"
    if model.get("labels"):
        label, values = next(iter(model["labels"].items()))
        body["where"] = {label: values[0]}
        condition = f"{label}={values[0]}"
    return f"/api/v1/models/{model['id']}/generate", body, condition


def baseline(args: argparse.Namespace, cache: str, body: dict, seconds: float) -> dict:
    """The same request's work in this process, without HTTP, one at a time."""
    import torch

    torch.set_num_threads(1)
    os.environ["NAMESMITH_CACHE"] = cache
    from namesmith.serve import Limits, service
    from namesmith.serve.registry import model_labels
    from namesmith.serve.server import build_registry

    entry = next(iter(build_registry([args.model_dir] if args.model_dir else [], [args.dataset], preload=True)))
    model = entry.get()
    labels = model_labels(model)
    request = {"n": 20, "where": {}, "starts_with": "", "ends_with": "", "contains": [], "excludes": [], "regex": None,
               "min_len": None, "max_len": None, "novel": False, "unique": False, "temperature": 1.0, "top_k": None,
               "top_p": None, "seed": None, "max_tries": None, "time_budget": None, "method": "auto",
               "filter_offensive": True, **body}
    times = []
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        start = time.perf_counter()
        service.generate(model, request, Limits(), labels)
        times.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {"requests": len(times), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rps": len(times) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="us", help="built-in data set of the n-gram (default: us)")
    parser.add_argument("--model-dir", help="serve this trained model directory instead (e.g. a neural model)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per concurrency level (default: 30)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server processes (default: one per core, %(default)s here)")
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="a server limit, as `namesmith serve --limit` takes it (e.g. max_concurrent=2)")
    parser.add_argument("--method", choices=("auto", "exact", "rejection"), default="auto",
                        help="the request's sampling method (default: auto, the library's choice)")
    parser.add_argument("--warm-up", type=float, default=5.0, help="seconds of unreported requests first "
                        "(default: 5)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="namesmith-bench-serve-") as cache:
        port = free_port()
        server = start_server(port, args, cache)
        try:
            wait_ready(port, server)
            path, body, condition = model_request(port)
            if args.method != "auto":
                body["method"] = args.method
            payload = json.dumps(body).encode()
            print(f"server pid {server.pid}, {path}, body {body}, condition: {condition}")
            # warm-up, not reported: at the highest concurrency, so every worker process has built its tables
            warm = asyncio.run(level(port, path, payload, max(args.levels), args.warm_up))
            print(f"warm-up: {warm['requests']} requests in {warm['seconds']:.1f} s, "
                  f"errors: {warm['error_kinds'] or 0}")
            memory: list[tuple[float, float]] = []
            stop = threading.Event()

            def watch() -> None:
                t0 = time.perf_counter()
                while not stop.is_set():
                    memory.append((time.perf_counter() - t0, rss_mb(server.pid)))
                    stop.wait(1.0)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            rows = [asyncio.run(level(port, path, payload, c, args.seconds)) for c in args.levels]
            stop.set()
            watcher.join()
        finally:
            server.terminate()
            server.wait(30)
        base = baseline(args, cache, body, min(args.seconds, 10.0))

    print(f"\nbaseline, in-process service.generate (no HTTP), 1 at a time: {base['rps']:.0f} requests/s, "
          f"p50 {base['p50_ms']:.2f} ms, p99 {base['p99_ms']:.2f} ms")
    print("\n| clients | requests | requests/s | p50 ms | p99 ms | p50 vs in-process | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']:,} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['p50_ms'] / base['p50_ms']:.2f}x | {r['errors']} |")
    rss = [m for _, m in memory]
    third = max(1, len(rss) // 3)
    print(f"\nserver memory (RSS): start {rss[0]:.0f} MB, max {max(rss):.0f} MB, end {rss[-1]:.0f} MB; "
          f"mean of first third {np.mean(rss[:third]):.0f} MB, of last third {np.mean(rss[-third:]):.0f} MB")
    targets = {r["clients"]: r for r in rows}
    if 32 in targets and 1 in targets:
        t32, t1 = targets[32], targets[1]
        print(f"targets: >=300 req/s at 32 clients: {t32['rps']:.0f} {'met' if t32['rps'] >= 300 else 'NOT met'}; "
              f"p99 <= 200 ms at 32: {t32['p99_ms']:.1f} {'met' if t32['p99_ms'] <= 200 else 'NOT met'}; "
              f"p50 <= 20 ms at 1: {t1['p50_ms']:.1f} {'met' if t1['p50_ms'] <= 20 else 'NOT met'}; "
              f"errors: {sum(r['errors'] for r in rows)}")
    if args.json:
        args.json.write_text(json.dumps({"condition": condition, "body": body, "baseline": base, "levels": rows,
                                         "memory_mb": memory}, indent=1))


if __name__ == "__main__":
    main()
