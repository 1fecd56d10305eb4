"""The paths a new user takes first (issue 26), each against its target, on the machine at hand.

Every figure comes from the command a user types (`python -m namesmith ...` in a fresh process) or
the server a user starts (`namesmith serve`, no -m), timed here; times are the median of --runs
runs (default 3; 1 with --quick), wall clock with the process's CPU time (user + system) beside it,
which a busy machine inflates less; memory the peak resident set of the process (os.wait4's ru_maxrss,
or /proc's VmHWM for the server). Any process above --cap-mb (default 4,000 MB) is killed and the
figure marked so, and any above --timeout seconds too: a benchmark must not take the machine down.

- `train --data SET` for each built-in data set: seconds and peak MB (target: <= 60 s, <= 2,048 MB);
- `train` with no flag on 8 MB of random words (under the old 20 MB cut: target <= 60 s), on a 50 MB word
  list (7M lines made from /work/shared/data/names.txt, or --big-list), on 50 MB of random words (the most
  distinct n-grams a list can have) and, with --gigabyte-list, on a 1 GB list: seconds, peak MB (target:
  <= 2,048 MB), whether it streamed, the longest wait for a progress line (target <= 10 s), and on the 50 MB
  of random words, SIGINT at the first progress line of each phase: seconds to exit (target <= 2 s); then,
  under NAMESMITH_MEMORY_LIMIT=2G, what must be refused in one line naming the option before it takes the
  memory (issue 31.9): `--model lstm` on a 500 MB list, `--max-line-length 200000000` with a 100 MB line
  (n-gram and LSTM), the n-gram on 500 MB of random words;
- `namesmith serve`: seconds until it answers, until every listed model is ready, the first request
  to each model (target <= 1 s), the server's memory with all loaded (target <= 2,048 MB) and how
  long SIGTERM takes; once from an empty cache (each model built by the server), once from the
  cache it left (with --quick the cache is seeded from the train runs instead of built again);
- classify `leslie` with the `us` model: warm in-process and over the API (target <= 20 ms), and
  `namesmith classify -m US leslie` end to end (target <= 1.5 s);
- `python -c "import namesmith"` and `namesmith --help` (target <= 0.3 s), `namesmith sample -m
  MODEL -n 1` for the count models of the built-in set, of `us` and of a 40-name list adapted onto the
  catalogue's prior (target <= 0.6 s; `python -X importtime -m namesmith sample ...` says where it goes).

    python benchmarks/bench_first_hour.py            # every figure, median of 3 (long: trains every set 3x)
    python benchmarks/bench_first_hour.py --quick    # one run each, the server cache seeded from training
    python benchmarks/bench_first_hour.py --parts startup classify sample --trained DIR  # a few rows only

Writes benchmarks/results/first_hour.json and prints the table docs/performance.md shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETS = ("builtin", "us", "israel", "world", "surnames")
PARTS = ("startup", "train", "big-list", "serve", "classify", "sample")
ADAPTED = "adapted-40"  # a 40-name list: `train` adapts it onto the catalogue's prior (a sparse-ngram)
NAMES = Path("/work/shared/data/names.txt")
MB = 1 << 20


# --- running a command, watched -----------------------------------------------------------------
def run(command: list[str], env: dict[str, str], timeout: float, cap_mb: float) -> dict:
    """Run `command`: seconds, peak MB, exit code, and why it was killed (None if it was not)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    killed: list[str] = []

    def running() -> bool:  # without reaping the child (Popen.poll would), so os.wait4 below gets its usage
        try:
            return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:  # os.wait4 has reaped it
            return False

    def watch() -> None:
        while running():
            if time.perf_counter() - start > timeout:
                killed.append(f"over {timeout:g} s")
            elif rss_mb(process.pid) > cap_mb:
                killed.append(f"over {cap_mb:g} MB")
            if killed:
                process.kill()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines, said = [], [start]  # what it wrote on stderr, and when (progress lines: how long it went silent)
    for line in process.stderr:
        lines.append(line)
        said.append(time.perf_counter())
    stderr = "".join(lines)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    watcher.join()
    said.append(start + seconds)
    return {"seconds": round(seconds, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_mb": round(usage.ru_maxrss / 1024, 1), "rc": process.returncode,
            "killed": killed[0] if killed else None, "traceback": "Traceback" in stderr,
            "error": stderr.strip().splitlines()[-1] if process.returncode and stderr.strip() else None,
            "longest_silence_s": round(max(b - a for a, b in zip(said, said[1:])), 1), "stderr_lines": len(lines),
            "streamed": "streaming it" in stderr}


def interrupted(command: list[str], env: dict[str, str], phase: str, timeout: float) -> dict:
    """Run `command` until it logs a progress line of `phase`, send it SIGINT: seconds until it has exited, its
    exit code, and whether it left its model directory (the `--out` of `command`, emptied first) without a model."""
    out = Path(command[command.index("--out") + 1])
    shutil.rmtree(out, ignore_errors=True)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    start, sent, tail = time.perf_counter(), None, []
    for line in process.stderr:
        tail = (tail + [line])[-3:]
        if sent is None and f"INFO: {phase}" in line:
            process.send_signal(signal.SIGINT)
            sent = time.perf_counter()
        if time.perf_counter() - start > timeout:
            process.kill()
            break
    process.wait()
    return {"phase": phase, "stop_s": None if sent is None else round(time.perf_counter() - sent, 2),
            "rc": process.returncode, "no_model_left": not (out / "namesmith.json").exists(),
            "last_line": tail[-1].strip() if tail else ""}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def repeated(command: list[str], env: dict[str, str], runs: int, timeout: float, cap_mb: float) -> dict:
    """`run` `runs` times (stopping at the first failure): the median seconds and the largest peak."""
    results = []
    for _ in range(runs):
        results.append(run(command, env, timeout, cap_mb))
        if results[-1]["rc"] != 0:
            break
    ok = [r for r in results if r["rc"] == 0]
    return {"seconds": statistics.median(r["seconds"] for r in ok) if ok else None,
            "cpu_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
            "peak_mb": max(r["peak_mb"] for r in results), "runs": [r["seconds"] for r in results],
            "killed": next((r["killed"] for r in results if r["killed"]), None),
            "error": next((r["error"] for r in results if r["error"]), None)}


def namesmith(*args: str) -> list[str]:
    return [sys.executable, "-m", "namesmith", *args]


# --- the server ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict, float]:
    """(status, JSON body, seconds) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response), time.perf_counter() - start
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), time.perf_counter() - start


def serve(env: dict[str, str], log: Path, ready_timeout: float, cap_mb: float, sets: list[str]) -> dict:
    """Start `namesmith serve`, wait until every listed model is ready, ask each once, then SIGTERM it.

    With only some of the built-in sets, `run_server(datasets=sets)` (what `namesmith serve` runs, with all)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    command = namesmith("serve", "--port", str(port))
    if sorted(sets) != sorted(SETS):
        command = [sys.executable, "-c", f"from namesmith.serve.server import run_server; "
                                         f"run_server(datasets={sets!r}, port={port})"]
    start = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=out, cwd=ROOT)
    figures: dict = {}
    try:
        while "answers_s" not in figures:
            if server.poll() is not None or time.perf_counter() - start > ready_timeout:
                return {**figures, "error": f"the server did not answer (see {log})"}
            try:
                call(base, timeout=2)
                figures["answers_s"] = round(time.perf_counter() - start, 3)
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        answers = []  # every request while models are prepared: answered at once (503 + Retry-After or 200)
        while True:
            status, body, seconds = call(base + "/models")
            models = body["models"]
            answers.append(seconds)
            if models and all(m["state"] == "ready" for m in models):
                break
            pending = [m["id"] for m in models if m["state"] != "ready"]
            if pending:
                status, _, seconds = call(f"{base}/models/{pending[0]}/generate", {"n": 1})
                answers.append(seconds)
            if rss_mb(server.pid) > cap_mb or time.perf_counter() - start > ready_timeout:
                return {**figures, "error": "the models were not ready in time or the server grew too large"}
            time.sleep(0.5)
        figures["all_ready_s"] = round(time.perf_counter() - start, 3)
        figures["slowest_answer_while_preparing_s"] = round(max(answers), 3)
        figures["models"] = [m["id"] for m in models]
        figures["first_request_s"] = {}
        for m in models:
            status, _, seconds = call(f"{base}/models/{m['id']}/generate", {"n": 5, "seed": 1})
            figures["first_request_s"][m["id"]] = round(seconds, 3) if status == 200 else f"HTTP {status}"
        if "us-ngram" in figures["models"]:
            first = call(f"{base}/models/us-ngram/classify", {"names": ["leslie"]})[2]
            warm = [call(f"{base}/models/us-ngram/classify", {"names": ["leslie"]})[2] for _ in range(20)]
            figures["classify_api_first_s"] = round(first, 4)
            figures["classify_api_warm_s"] = round(statistics.median(warm), 4)
        figures["rss_mb"] = round(rss_mb(server.pid), 1)
        figures["peak_rss_mb"] = round(rss_mb(server.pid, "VmHWM"), 1)
        figures["not_served"] = [line.split("namesmith: ", 1)[-1] for line in log.read_text().splitlines()
                                 if "not served" in line]
    finally:
        stop = time.perf_counter()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        figures["sigterm_s"] = round(time.perf_counter() - stop, 3)
    return figures


# --- the inputs -------------------------------------------------------------------------------------
def big_list(path: Path, megabytes: int = 50, seed: int = 26) -> Path:
    """A word list of `megabytes` MB made from names.txt: each line the start of one name and the end of
    another (both cuts at least a letter long), made 250,000 lines at a time with NumPy (1 GB in about
    a minute)."""
    import numpy as np

    names = NAMES.read_text().split() if NAMES.exists() else ["emma", "olivia", "liam", "noah", "ava", "mia"]
    width = max(map(len, names))
    letters = np.zeros((len(names), width), np.uint8)  # (names, width): each name's bytes, 0 after it
    for i, name in enumerate(names):
        letters[i, : len(name)] = np.frombuffer(name.encode(), np.uint8)
    lengths = np.array([len(name) for name in names])
    rng, columns, written = np.random.default_rng(seed), np.arange(width), 0
    with path.open("wb") as out:
        while written < megabytes * 1e6:
            a, b = rng.integers(0, len(names), 250_000), rng.integers(0, len(names), 250_000)
            keep_a = rng.integers(1, lengths[a] + 1)  # the first 1..len(a) letters of a
            skip_b = rng.integers(0, lengths[b])  # and b from one of its letters on
            head = np.where(columns < keep_a[:, None], letters[a], 0)
            tail = np.where(columns >= skip_b[:, None], letters[b], 0)
            lines = np.concatenate([head, tail, np.full((len(a), 1), ord("\n"), np.uint8)], 1).ravel()
            data = lines[lines != 0].tobytes()
            out.write(data)
            written += len(data)
    return path


def adapted_model(trained: Path | None, work: Path, env: dict[str, str]) -> Path | None:
    """The model of a 40-name list (ADAPTED in --trained, else trained here on 40 names of names.txt)."""
    if trained is not None and (trained / ADAPTED / "namesmith.json").exists():
        return trained / ADAPTED
    import random

    names = NAMES.read_text().split() if NAMES.exists() else []
    if len(names) < 40:
        return None
    (work / "forty.txt").write_text("\n".join(random.Random(40).sample(names, 40)) + "\n")
    out = work / "train" / ADAPTED
    result = run(namesmith("train", "--data", str(work / "forty.txt"), "--out", str(out), "-q", "--samples", "0"),
                 env, 600, 4000)
    return out if result["rc"] == 0 else None


def classify_in_process(model_dir: Path) -> dict:
    """First and warm (median of 50) seconds of NameModel.classify(['leslie']), in a fresh process."""
    code = ("import statistics, sys, time, torch; torch.set_num_threads(1); from namesmith import NameModel; "
            "m = NameModel.load(sys.argv[1]); t = time.perf_counter(); m.classify(['leslie']); "
            "first = time.perf_counter() - t; w = []\n"
            "for _ in range(50):\n t = time.perf_counter(); m.classify(['leslie']); w.append(time.perf_counter() - t)\n"
            "print(first, statistics.median(w))")
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1]}
    first, warm = map(float, out.stdout.split())
    return {"first_s": round(first, 4), "warm_s": round(warm, 4)}


# --- big lists (issue 26) and inputs too large to hold (issue 31.9) ------------------------------------
def random_list(path: Path, megabytes: float, seed: int = 31) -> Path:
    """About `megabytes` MB of random lowercase words of 3-10 letters: the most distinct n-grams per byte a
    list of names can have (a 50 MB list: 6.7M words, 23M distinct 6-grams), written 8 MB at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with path.open("wb") as out:
        written = 0
        while written < megabytes * 1e6:
            lengths = rng.integers(3, 11, 1_000_000)
            text = rng.integers(97, 123, int(lengths.sum()) + len(lengths), dtype=np.uint8)
            text[np.cumsum(lengths + 1) - 1] = ord("\n")
            out.write(text.tobytes())
            written += len(text)
    return path


def one_long_line(path: Path, megabytes: float) -> Path:
    """A list of a few names and one line of `megabytes` MB (what `--max-line-length 200000000` lets in)."""
    with path.open("wb") as out:
        out.write(b"emma\nolivia\nliam\n")
        for _ in range(int(megabytes)):
            out.write(b"abcdefghij" * 100_000)
        out.write(b"\nnoah\n")
    return path


def big_list_rows(work: Path, env: dict[str, str], args: argparse.Namespace, results: dict, rows: list[dict]) -> None:
    """The default `train` on a 50 MB list of name-like words and on one of random words (<= 2 GB), on a
    1 GB list with --gigabyte-list; then, with NAMESMITH_MEMORY_LIMIT=2G (the target), what must be refused
    in one line before it takes the machine: a network on a 500 MB list, a 100 MB line let in by
    --max-line-length (the n-gram and an LSTM), and the default n-gram on 500 MB of random words."""
    lists = [("random", random_list(work / "random8.txt", 8)),  # under the old 20 MB cut: minutes in memory
             ("name-like", args.big_list or big_list(work / "big.txt")),
             ("random", random_list(work / "random50.txt", 50))]
    if args.gigabyte_list:
        lists.append(("name-like", big_list(work / "big1000.txt", 1000)))
    for kind, path in lists:
        mb = path.stat().st_size / 1e6
        figure = f"train on a {mb:,.0f} MB list of {kind} words"
        command = namesmith("train", "--data", str(path), "--out", str(work / "train" / "big"), "--overwrite",
                            "--samples", "0")
        result = run(command, env, args.timeout, args.cap_mb)  # one run: minutes each
        results[figure] = result
        how = "streamed" if result["streamed"] else "held in memory"
        rows.append(seconds_row(figure, result, 60 if mb < 20 else float("inf")))
        rows[-1]["note"] = f"{how}; {rows[-1]['note']}"
        if mb >= 20:
            rows[-1]["target"] = "(progress shown)"
        rows.append(row(f"{figure}: peak memory", result["peak_mb"], "<= 2048 MB", result["peak_mb"] <= 2048,
                        result.get("killed") or ""))
        rows.append(row(f"{figure}: longest wait for a line (s)", result["longest_silence_s"], "<= 10 s",
                        result["longest_silence_s"] <= 10, f"{result['stderr_lines']} lines"))
        print(*rows[-3:], flush=True)
        if kind == "random" and mb > 20:  # Ctrl-C in the phases of a long list (each a fresh run to that phase)
            for phase in ("counting", "tuning the discounts", "building the n-gram's tables", "scoring"):
                stop = interrupted(command, env, phase, args.timeout)
                results[f"{figure}: Ctrl-C in {phase}"] = stop
                ok = stop["stop_s"] is not None and stop["stop_s"] <= 2 and stop["rc"] == 130 and stop["no_model_left"]
                rows.append(row(f"{figure}: Ctrl-C in {phase}: seconds to exit", stop["stop_s"], "<= 2 s, exit 130",
                                ok, f"exit {stop['rc']}; {stop['last_line']}"[:160]))
                print(rows[-1], flush=True)
        if path != args.big_list:
            path.unlink()  # made here: the next list needs the disk
    limited = {**env, "NAMESMITH_MEMORY_LIMIT": "2G"}
    huge, line = random_list(work / "random500.txt", 500), one_long_line(work / "line.txt", 100)
    refusals = [
        ("--model lstm on a 500 MB list", huge, ["--model", "lstm"], "--model"),
        ("--max-line-length 200000000 with a 100 MB line", line, ["--max-line-length", "200000000"],
         "--max-line-length"),
        ("--model lstm --max-line-length 200000000 with a 100 MB line", line,
         ["--model", "lstm", "--max-line-length", "200000000"], "--max-line-length"),
        ("the default n-gram on a 500 MB list of random words", huge, [], "--order"),
    ]
    for figure, path, options, option in refusals:
        command = namesmith("train", "--data", str(path), "--out", str(work / "train" / "refused"), "--overwrite",
                            "-q", "--samples", "0", *options)
        result = run(command, limited, args.timeout, args.cap_mb)
        results[f"refused: {figure}"] = result
        refused = result["rc"] == 1 and not result["traceback"] and option in (result["error"] or "")
        rows.append(row(f"refused: {figure} (s)", result["seconds"], f"an error naming {option}, <= 2048 MB",
                        refused and result["peak_mb"] <= 2048,
                        f"peak {result['peak_mb']:,.0f} MB; {result.get('killed') or result['error']}"[:220]))
        print(rows[-1], flush=True)
    huge.unlink()
    line.unlink()


# --- the table ---------------------------------------------------------------------------------------
def row(figure: str, value: float | None, target: str, ok: bool | None, note: str = "") -> dict:
    return {"figure": figure, "value": value, "target": target, "met": ok, "note": note}


def seconds_row(figure: str, result: dict, limit: float) -> dict:
    value = result.get("seconds")
    note = result.get("killed") or result.get("error") or (f"CPU {result['cpu_s']:.2f} s" if value else "")
    return row(figure, value, f"<= {limit:g} s", None if value is None else value <= limit, note)


def table(rows: list[dict]) -> str:
    lines = ["| figure | measured | target | met |", "|---|---:|---|---|"]
    for r in rows:
        value = "—" if r["value"] is None else (f"{r['value']:.3g}" if isinstance(r["value"], float) else r["value"])
        met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {r['figure']} | {value}{note} | {r['target']} | {met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run per figure; seed the server cache from training")
    parser.add_argument("--runs", type=int, default=None, help="runs per timed figure (default 3, --quick 1)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS, help="built-in sets to train")
    parser.add_argument("--trained", type=Path, help="a folder of models already trained by `train --data SET` "
                        "(SET/ in it): those sets are not trained again, only used (for a machine too busy to train)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="which figures to measure (default: all); models not trained here come from --trained")
    parser.add_argument("--big-list", type=Path, help="the 50 MB word list (default: made from names.txt)")
    parser.add_argument("--skip-big-list", action="store_true", help="leave out the big lists")
    parser.add_argument("--gigabyte-list", action="store_true",
                        help="also train on a 1 GB list (minutes; 1 GB of disk)")
    parser.add_argument("--cap-mb", type=float, default=4000, help="kill any process above this (default 4000)")
    parser.add_argument("--timeout", type=float, default=600, help="kill any train run after this (default 600 s)")
    parser.add_argument("--serve-timeout", type=float, default=1800,
                        help="give up on the server's models being ready after this (default 1800 s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "first_hour.json")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    work = Path(tempfile.mkdtemp(prefix="namesmith-first-hour-"))
    env = {**os.environ, "NAMESMITH_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)  # the defaults a user has
    rows: list[dict] = []
    results: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                 "python": platform.python_version(),
                                 "load_average_at_start": os.getloadavg()}, "runs": runs, "quick": args.quick}
    print(f"working in {work}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    try:
        # start-up
        startup = (("python -c 'import namesmith'", [sys.executable, "-c", "import namesmith"], 0.3),
                   ("namesmith --help", namesmith("--help"), 0.3))
        for figure, command, limit in startup if "startup" in args.parts else ():
            results[figure] = repeated(command, env, max(runs, 3), 60, args.cap_mb)
            rows.append(seconds_row(figure, results[figure], limit))
            print(rows[-1], flush=True)

        # training each built-in set
        trained: dict[str, Path] = {}
        for name in args.sets:
            if args.trained is not None and (args.trained / name / "namesmith.json").exists():
                trained[name] = args.trained / name
                if "train" in args.parts:
                    rows.append(row(f"train --data {name}", None, "<= 60 s", None, "not timed: --trained"))
                continue
            if "train" not in args.parts:
                continue
            out = work / "train" / name
            command = namesmith("train", "--data", name, "--out", str(out), "--overwrite", "-q", "--samples", "0")
            result = repeated(command, env, runs, args.timeout, args.cap_mb)
            results[f"train --data {name}"] = result
            if result["seconds"] is not None:
                trained[name] = out
            rows.append(seconds_row(f"train --data {name}", result, 60))
            rows.append(row(f"train --data {name}: peak memory", result["peak_mb"], "<= 2048 MB",
                            result["peak_mb"] <= 2048, result.get("killed") or ""))
            print(rows[-2], rows[-1], flush=True)

        # big lists: trained in bounded memory, or refused before they take it
        if not args.skip_big_list and "big-list" in args.parts:
            big_list_rows(work, env, args, results, rows)

        # the server: from an empty cache (or one seeded with the trained models), then from its own cache
        if args.quick:
            for name, directory in trained.items():
                shutil.copytree(directory, work / "cache" / "models" / f"{name}-ngram")
        phases = (("warm",) if args.quick else ("cold", "warm")) if "serve" in args.parts else ()
        for phase in phases:
            figures = serve(env, work / f"serve-{phase}.log", args.serve_timeout, args.cap_mb, args.sets)
            results[f"serve ({phase} cache)"] = figures
            what = "from its own cache" if phase == "warm" else "building every model"
            rows.append(row(f"serve {what}: answers after", figures.get("answers_s"), "(listens at once)", None))
            rows.append(row(f"serve {what}: all listed models ready after", figures.get("all_ready_s"),
                            "(builds bounded: build_seconds)", None, ", ".join(figures.get("models", []))))
            slowest = figures.get("slowest_answer_while_preparing_s")
            rows.append(row(f"serve {what}: slowest answer while preparing (s)", slowest, "<= 1 s",
                            None if slowest is None else slowest <= 1))
            for model_id, seconds in figures.get("first_request_s", {}).items():
                ok = isinstance(seconds, float) and seconds <= 1
                rows.append(row(f"serve {what}: first generate, {model_id} (s)", seconds, "<= 1 s", ok))
            if "rss_mb" in figures:
                rows.append(row(f"serve {what}: server memory, all loaded (MB)", figures["peak_rss_mb"],
                                "<= 2048 MB", figures["peak_rss_mb"] <= 2048, f"now {figures['rss_mb']:.0f} MB"))
            rows.append(row(f"serve {what}: SIGTERM to exit (s)", figures["sigterm_s"], "within seconds",
                            figures["sigterm_s"] <= 5))
            for line in figures.get("not_served", []):
                rows.append(row(f"serve {what}: not listed", None, "(the log says why)", None, line[:160]))
            if "classify_api_warm_s" in figures:
                rows.append(row("classify leslie over the API, warm (s)", figures["classify_api_warm_s"], "<= 0.02 s",
                                figures["classify_api_warm_s"] <= 0.02, f"first {figures['classify_api_first_s']} s"))
            if "error" in figures:
                rows.append(row(f"serve {what}", None, "", False, figures["error"]))
            print(*rows[-6:], sep="\n", flush=True)

        # classify and sample with the trained models
        us = trained.get("us")
        if us is not None and "classify" in args.parts:
            inproc = classify_in_process(us)
            results["classify in-process"] = inproc
            rows.append(row("classify leslie in-process, warm (s)", inproc.get("warm_s"), "<= 0.02 s",
                            inproc.get("warm_s") is not None and inproc["warm_s"] <= 0.02,
                            f"first {inproc.get('first_s')} s" if "first_s" in inproc else inproc.get("error", "")))
            results["namesmith classify -m US leslie"] = repeated(namesmith("classify", "-m", str(us), "leslie"), env,
                                                                 max(runs, 3), 120, args.cap_mb)
            rows.append(seconds_row("namesmith classify -m US leslie", results["namesmith classify -m US leslie"],
                                    1.5))
        if "sample" in args.parts:
            trained[ADAPTED] = adapted_model(args.trained, work, env)
            for name in ("builtin", "us", ADAPTED):
                if trained.get(name) is None:
                    continue
                figure = f"namesmith sample -m {name.upper()} -n 1"
                # the first run reads the training list for the novelty summary and keeps its words in the cache
                run(namesmith("sample", "-m", str(trained[name]), "-n", "1"), env, 120, args.cap_mb)
                results[figure] = repeated(namesmith("sample", "-m", str(trained[name]), "-n", "1"), env,
                                           max(runs, 3), 120, args.cap_mb)
                rows.append(seconds_row(figure, results[figure], 0.6))
                print(rows[-1], flush=True)
    finally:
        results["rows"] = rows
        results["machine"]["load_average_at_end"] = os.getloadavg()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(table(rows))
        print(f"wrote {args.out}; load average {os.getloadavg()[0]:.1f} at the end")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
