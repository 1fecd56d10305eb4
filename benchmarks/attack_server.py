"""A hostile client's floods against `namesmith serve` (issue 31), and what a plain client sees meanwhile.

The server runs with its default limits on 127.0.0.1, started afresh for each flood; every load
goes only there, bounded in count and in time. For each flood: whether the server handled it (the
attack's own check), the peak resident memory of the server (all its processes), and the p50
latency of a plain `generate` probe sent from another client address (127.0.0.2) every 0.2 s
during the flood. With --workers 2, a kill -9 of a worker under load: requests lost, how long requests
failed (target: no request fails for more than 5 s: the other worker answers meanwhile) and seconds
until the supervisor started a successor and until it listened. Then schemathesis over the OpenAPI
schema (`--checks all`), counting 5xx answers. The fast single attacks (HEAD, nosniff, empty keys, one
slow header...) are tests/serve/test_serve_attacks.py.

    python benchmarks/attack_server.py                           # an n-gram of the built-in names
    python benchmarks/attack_server.py --model-dir runs/lstm --workers 2 --seconds 10   # and a worker killed

Targets: 0 attacks mishandled; peak RSS <= 2 GB under each flood; probe p50 <= 200 ms; 0 x 5xx. Each flood's
row also gives the probe's p90, the seconds its names took inside the server (the rest is waiting: for a slot,
the CPU, the event loop) and the machine's load average (on a shared machine, compare with the baseline row).
A safety stop kills the server above --max-rss-mb (the machine is shared), counting a mishandling.
Writes benchmarks/results/attack_server.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import free_port, rss_mb  # noqa: E402

from namesmith.serve.limits import Limits  # noqa: E402

LIMITS = Limits()  # the server runs with the defaults


def http(port: int, method: str, path: str, body: dict | None = None, source: str = "127.0.0.1",
         timeout: float = 30) -> tuple[int, bytes]:
    """One request on a fresh connection (closed after): (status, body)."""
    data = b"" if body is None else json.dumps(body).encode()
    with socket.socket() as conn:
        conn.settimeout(timeout)
        conn.bind((source, 0))
        conn.connect(("127.0.0.1", port))
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    return (int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0), payload  # 0: closed unanswered


class Watch:
    """The server's peak RSS and a plain generate probe's latencies, sampled in the background."""

    def __init__(self, port: int, server: subprocess.Popen, path: str, max_rss_mb: float):
        self.port, self.server, self.path, self.max_rss_mb = port, server, path, max_rss_mb
        self.peak, self.latencies, self.probe_errors, self.killed = 0.0, [], 0, False
        self.loads: list[float] = []  # the machine's 1-minute load average, sampled with the memory
        self.sampling: list[float] = []  # of each probe's latency, the seconds its names took to draw (the server's)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.memory, daemon=True),
                        threading.Thread(target=self.probe, daemon=True)]

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def memory(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, rss_mb(self.server.pid))
            self.loads.append(os.getloadavg()[0])
            if self.peak > self.max_rss_mb and not self.killed:  # the safety stop: the machine is shared
                self.killed = True
                with contextlib.suppress(OSError):
                    os.killpg(self.server.pid, signal.SIGKILL)

    def probe(self) -> None:
        while not self.stop.wait(0.2):
            start = time.perf_counter()
            try:
                status, body = http(self.port, "POST", self.path, {"n": 5}, source="127.0.0.2", timeout=10)
            except OSError:
                status = 0
            if status == 200:
                self.latencies.append(time.perf_counter() - start)
                self.sampling.append(json.loads(body)["generation"]["seconds"])
            else:
                self.probe_errors += 1

    def figures(self) -> dict:
        p50 = float(np.median(self.latencies)) * 1000 if self.latencies else None
        p90 = float(np.percentile(self.latencies, 90)) * 1000 if self.latencies else None
        return {"peak_rss_mb": round(self.peak), "probe_p50_ms": None if p50 is None else round(p50, 1),
                "probe_p90_ms": None if p90 is None else round(p90, 1),
                "probe_ok": len(self.latencies), "probe_errors": self.probe_errors,
                "probe_sampling_p50_ms": round(float(np.median(self.sampling)) * 1000, 1) if self.sampling else None,
                "load_average": round(float(np.median(self.loads)), 1) if self.loads else None}


def in_threads(n: int, work: Callable[[int], None], seconds: float) -> None:
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server closes `conn` within `seconds` (reading what it sends)."""
    conn.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


# --- the floods: each returns (attacks tried, attacks mishandled, what was seen) -------------------------------------

def connection_flood(port: int, seconds: float) -> tuple[int, int, dict]:
    """2,000 idle connections from one address: the server keeps at most max_client_connections of them."""
    conns = []
    for _ in range(2000):
        with contextlib.suppress(OSError):
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(min(seconds, 2.0))
    still_open = sum(not closed_within(c, 0.01) for c in conns)
    time.sleep(max(0.0, seconds - 2.0))
    for conn in conns:
        conn.close()
    return 1, int(still_open > LIMITS.max_client_connections), {"opened": len(conns), "kept_by_server": still_open}


def slowloris(port: int, seconds: float) -> tuple[int, int, dict]:
    """50 connections sending a header byte each second: each is cut at read_timeout."""
    conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    head = b"GET /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    start, cut = time.monotonic(), {}
    for i in range(len(head)):
        for k, conn in enumerate(conns):
            if k not in cut:
                try:
                    conn.send(head[i:i + 1])
                except OSError:
                    cut[k] = time.monotonic() - start
        time.sleep(1.0)
        if len(cut) == len(conns) or time.monotonic() - start > max(seconds, LIMITS.read_timeout + 5):
            break
    for k, conn in enumerate(conns):
        if k not in cut and closed_within(conn, 0.1):
            cut[k] = time.monotonic() - start
        conn.close()
    late = sum(cut.get(k, 1e9) > LIMITS.read_timeout + 3 for k in range(len(conns)))
    return len(conns), late, {"cut_after_s": round(float(np.median(list(cut.values()))), 1) if cut else None}


def big_headers(port: int, seconds: float) -> tuple[int, int, dict]:
    """Rounds of 20 connections each sending a 100 MB header: the server stops reading at max_header_bytes."""
    accepted = []

    def one(i: int) -> None:
        sent = 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn, contextlib.suppress(OSError):
            conn.sendall(b"GET /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
            while sent < 100 * 2**20:
                conn.sendall(b"a" * 2**16)
                sent += 2**16
        accepted.append(sent)

    until = time.monotonic() + seconds
    while time.monotonic() < until:
        in_threads(20, one, seconds)
    # what the kernel's buffers take before the server's close is felt is a few MB at most
    median_mb = round(float(np.median(accepted)) / 2**20, 2)
    return len(accepted), sum(s > 8 * 2**20 for s in accepted), {"median_bytes_sent_mb": median_mb}


def request_flood(port: int, seconds: float, path: str, bodies: Callable[[random.Random], dict],
                  clients: int, events: list[tuple[float, float, int]] | None = None) -> tuple[int, int, dict]:
    """`clients` clients sending requests for `seconds`: every answer is 200 or a 503 (busy), never 5xx else.
    `events` gets each request's (start, end, status) on the monotonic clock."""
    counts: dict[int, int] = {}
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def one(i: int) -> None:
        rng = random.Random(i)
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                status, _ = http(port, "POST", path, bodies(rng), timeout=60)
            except OSError:
                status = 0
            with lock:
                counts[status] = counts.get(status, 0) + 1
                if events is not None:
                    events.append((start, time.monotonic(), status))

    in_threads(clients, one, seconds)
    bad = sum(n for status, n in counts.items() if status not in (200, 503))
    return sum(counts.values()), bad, {"answers": {str(k): v for k, v in sorted(counts.items())}}


def random_words(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(n)]


def listening(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (a replacement worker opens its own once it serves)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(row.split()[1] == f"0100007F:{port:04X}" and row.split()[3] == "0A" for row in rows)


def kill_a_worker(port: int, server: subprocess.Popen, path: str) -> tuple[int, int, dict]:
    """kill -9 one worker under 8 clients. The service must keep answering while the worker is replaced: the other
    worker serves (the dead one's socket is closed at once) and no request fails for more than 5 s (`failing_s`:
    from the first failed request's start to the last one's end; `longest_unanswered_s`: the longest time after the
    kill in which no request was answered). Also: requests lost, seconds until the supervisor started a successor
    and until it listened (it loads the models first: a figure, not a target)."""
    def workers_now() -> list[int]:
        return [int(c) for task in Path(f"/proc/{server.pid}/task").iterdir()
                for c in (task / "children").read_text().split()
                if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]

    workers = workers_now()
    victim = workers[0]
    started: list[float] = []
    back: list[float] = []
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        os.kill(victim, signal.SIGKILL)
        while time.monotonic() - killed_at[0] < 60:
            fresh = [c for c in workers_now() if c not in workers]
            if fresh and not started:
                started.append(time.monotonic() - killed_at[0])
            if fresh and listening(port) == len(workers):  # the successor listens on its own socket
                back.append(time.monotonic() - killed_at[0])
                return
            time.sleep(0.05)

    killer = threading.Timer(2.0, kill)
    killer.start()
    events: list[tuple[float, float, int]] = []
    tried, _, seen = request_flood(port, 12.0, path, lambda rng: {"n": 5}, clients=8, events=events)
    killer.join(90)
    failed = [(start, end) for start, end, status in events if status != 200]
    failing = max(end for _, end in failed) - min(start for start, _ in failed) if failed else 0.0
    answered = sorted([killed_at[0]] + [end for _, end, status in events if status == 200 and end > killed_at[0]])
    unanswered = max(b - a for a, b in zip(answered, answered[1:])) if len(answered) > 1 else None
    seen.update(lost=len(failed), failing_s=round(failing, 2),
                longest_unanswered_s=None if unanswered is None else round(unanswered, 2),
                successor_started_s=round(started[0], 2) if started else None,
                worker_back_s=round(back[0], 1) if back else None)
    # lost: the 8 clients' requests in flight on the dead worker, and those queued at its socket before it was closed
    return tried, int(failing > 5 or unanswered is None or unanswered > 5 or not back), seen


def schemathesis_run(port: int, max_examples: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        har = Path(tmp) / "run.har"
        run = subprocess.run(["schemathesis", "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
                              "--max-examples", str(max_examples), "--report", "har", "--report-har-path", str(har)],
                             capture_output=True, text=True, timeout=600)
        entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    statuses = [e["response"]["status"] for e in entries]
    return {"requests": len(statuses), "5xx": sum(s >= 500 and s != 503 for s in statuses),
            "503_busy": statuses.count(503), "exit_code": run.returncode,
            "summary": run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-300:]}


@contextlib.contextmanager
def serving(model_dir: str, workers: int):
    """A fresh `namesmith serve` (default limits) on a free port of 127.0.0.1; yields (port, process)."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("NAMESMITH_API_KEY", None)
    server = subprocess.Popen([sys.executable, "-m", "namesmith", "serve", "-m", model_dir, "--port", str(port),
                               "--workers", str(workers), "--quiet"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            with contextlib.suppress(OSError):  # every worker listening (they start one after another) and answering
                if listening(port) == workers and all(http(port, "GET", "/api/v1", timeout=30)[0] == 200
                                                      for _ in range(4 * workers)):
                    break
            time.sleep(0.5)
        yield port, server
    finally:
        with contextlib.suppress(OSError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a trained model directory (default: an n-gram of the built-in names, "
                                            "trained into a temporary folder)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each flood")
    parser.add_argument("--max-rss-mb", type=float, default=4000, help="the safety stop")
    parser.add_argument("--schemathesis-examples", type=int, default=30, help="0: no schemathesis run")
    parser.add_argument("--only", default="", help="run only the floods whose name holds this text")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "attack_server.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = str(Path(tmp) / "ngram")
            subprocess.run([sys.executable, "-m", "namesmith", "train", "--data", "builtin", "--model", "ngram",
                            "--out", model_dir, "-q", "--samples", "0"], check=True, timeout=900)
        model_id = Path(model_dir).name
        generate = f"/api/v1/models/{model_id}/generate"
        floods: dict[str, Callable[[int, subprocess.Popen], tuple[int, int, dict]]] = {
            "none (baseline)": lambda port, server: (time.sleep(args.seconds), (0, 0, {}))[1],
            "2,000 idle connections from one address": lambda port, server: connection_flood(port, args.seconds),
            "slowloris: 50 connections, a header byte a second": lambda port, server: slowloris(port, args.seconds),
            "20 headers of 100 MB at a time": lambda port, server: big_headers(port, args.seconds),
            "generate, 32 clients, a new exact constraint set each": lambda port, server: request_flood(
                port, args.seconds, generate, lambda rng: {
                    "n": 20, "ends_with": rng.choice("aeinoy"), "contains": [rng.choice("lmnrst")],
                    "min_len": rng.randint(3, 6)}, clients=32),
            "more-like-these, 16 clients, a new 200-word list each": lambda port, server: request_flood(
                port, args.seconds, f"/api/v1/models/{model_id}/more-like-these",
                lambda rng: {"n": 10, "words": random_words(rng, 200)}, clients=16),
            "score, 16 clients, 1,000 names each": lambda port, server: request_flood(
                port, args.seconds, f"/api/v1/models/{model_id}/score",
                lambda rng: {"names": random_words(rng, 1000)}, clients=16),
            "classify, 16 clients, 1,000 names each": lambda port, server: request_flood(
                port, args.seconds, f"/api/v1/models/{model_id}/classify",
                lambda rng: {"names": random_words(rng, 1000)}, clients=16),
        }
        if args.workers > 1:
            floods["kill -9 a worker under 8 clients"] = lambda port, server: kill_a_worker(port, server, generate)
        rows = []
        floods = {name: flood for name, flood in floods.items() if args.only in name}
        for name, flood in floods.items():  # each on a fresh server: its own peak, nothing left from the last
            with serving(model_dir, args.workers) as (port, server):
                with Watch(port, server, generate, args.max_rss_mb) as watch:
                    tried, mishandled, seen = flood(port, server)
                    time.sleep(2.0)  # what the flood left running (queued adaptations, table builds) is watched too
                figures = watch.figures()
            mishandled += int(watch.killed)
            rows.append({"flood": name, "tried": tried, "mishandled": mishandled, **figures, **seen})
            print(json.dumps(rows[-1]), flush=True)
        schema = None
        if args.schemathesis_examples:
            with serving(model_dir, args.workers) as (port, server):
                schema = schemathesis_run(port, args.schemathesis_examples)

    result = {"workers": args.workers, "seconds_per_flood": args.seconds, "limits": LIMITS.to_dict(),
              "attacks_tried": sum(r["tried"] for r in rows), "attacks_mishandled": sum(r["mishandled"] for r in rows),
              "floods": rows, "schemathesis": schema, "cpus": os.cpu_count(),
              "note": "the machine was shared with other work while this ran"}
    print(f"{'flood':55} {'tried':>6} {'bad':>4} {'peak RSS MB':>11} {'probe p50 ms':>12} {'p90':>7} {'load':>5}")
    for r in rows:
        print(f"{r['flood']:55} {r['tried']:6} {r['mishandled']:4} {r['peak_rss_mb']:11} {r['probe_p50_ms']!s:>12} "
              f"{r['probe_p90_ms']!s:>7} {r['load_average']!s:>5}")
    print(f"attacks tried {result['attacks_tried']}, mishandled {result['attacks_mishandled']}; "
          f"schemathesis: {schema}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
