"""Issue 31.1: a flood of generate requests, each with constraints no request asked before, as a server gets them.

Four threads send requests for `--seconds`, each with a new (ends_with, contains, min_len), on a model whose
exact tables are built in the background (as a server's are: `background_tables`). Before the table budget
(namesmith.generation.exact_cache.TableBudget) every such request left a build thread with no bound: the issue saw 117
threads and 22.4 GB in 175 s. `--unbounded` lifts the budget's limits in this process, for a baseline in the
same code. Prints and writes (benchmarks/results/table_flood.json) the peak RSS, the most build threads at
once, the requests done and their p50 latency. The run stops early (and says so) if RSS passes `--max-gb`.

    python benchmarks/bench_table_flood.py --model-dir DIR [--seconds 60] [--unbounded]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import statistics
import threading
import time
from pathlib import Path

from namesmith import NameModel


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-gb", type=float, default=4.0)
    parser.add_argument("--unbounded", action="store_true")
    args = parser.parse_args()

    model = NameModel.load(args.model_dir)
    model.background_tables = True
    if args.unbounded:
        NameModel.limit_tables(builders=10**6, table_bytes=1 << 60, cache_bytes=1 << 60, build_seconds=1e9)
    letters = sorted(set(model.vocab.chars) & set("abcdefghijklmnopqrstuvwxyz"))
    constraints = ((a + b, c, n) for n in itertools.count(3) for a in letters for b in letters for c in letters)
    lock, stop = threading.Lock(), threading.Event()
    latencies: list[float] = []
    peak = {"rss_gb": rss_gb(), "threads": 0}
    start_rss = peak["rss_gb"]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            with lock:
                ends_with, contains, min_len = next(constraints)
            began = time.perf_counter()
            model.generate(5, ends_with=ends_with, contains=[contains], min_len=min_len % 8 + 1,
                           seed=rng.randrange(2**31), time_budget=2.0)
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    stopped_early = False
    while time.perf_counter() - began < args.seconds:
        time.sleep(0.2)
        peak["rss_gb"] = max(peak["rss_gb"], rss_gb())
        peak["threads"] = max(peak["threads"], sum(t.name == "namesmith-exact-tables" for t in threading.enumerate()))
        if peak["rss_gb"] > args.max_gb:
            stopped_early = True
            break
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    result = {"unbounded": args.unbounded, "seconds": round(time.perf_counter() - began, 1),
              "stopped_at_max_gb": stopped_early, "start_rss_gb": round(start_rss, 3),
              "peak_rss_gb": round(peak["rss_gb"], 3), "peak_build_threads": peak["threads"],
              "requests": len(latencies),
              "p50_seconds": round(statistics.median(latencies), 3) if latencies else None}
    print(json.dumps(result))
    out = Path(__file__).parent / "results" / "table_flood.json"
    runs = json.loads(out.read_text()) if out.exists() else {}
    runs["unbounded" if args.unbounded else "bounded"] = result
    out.write_text(json.dumps(runs, indent=2) + "\n")


if __name__ == "__main__":
    main()
