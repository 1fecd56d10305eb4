"""Choosing a name (issue 30): each new option's latency through the API, and the catalogue's lookups.

    python benchmarks/bench_choosing.py                          # every section
    python benchmarks/bench_choosing.py --sections popularity --repeats 30 --model-dir runs/ngram

Sections (each writes its own key of benchmarks/results/choosing.json, keeping the others'):

- `popularity` (popularity, trend, not-in-catalogue, surname, nicknames): the latency of a generate
  request of 20 names through the JSON API (the app in-process through its ASGI test client: request
  validation, the search with its filters, scoring, each name's facts and the response), for each
  new option alone and the baseline without any, warm (the first request of each option is not
  counted), p50 and p90 over `--repeats` requests of different seeds, the options taking turns (so a
  change in the machine's load falls on all alike); GET /api/v1/trend; and the
  catalogue's own speed: reading it (once per process), a name's best-known use, `is_known`,
  `nicknames_of`, the facts of 20 names and a surname fit, per call.

The model is an n-gram of the built-in names without labels (`--model-dir` to use another),
trained once into a temporary folder. Timings depend on the machine and its load: compare an
option with the baseline of the same run (`ratio`). Target: p50 <= 20 ms warm for 20 names.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "choosing.json"
N = 20  # names per generate request
TARGET_MS = 20.0

# the options of the `popularity` section, each a generate request's extra fields
POPULARITY_OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "popularity=common": {"popularity": "common"},
    "popularity=uncommon": {"popularity": "uncommon"},
    "popularity=rare": {"popularity": "rare"},
    "popularity=top:1000": {"popularity": "top:1000"},
    "popularity=100-500": {"popularity": "100-500"},
    "not_in_catalogue": {"not_in_catalogue": True},
    "surname=Smith": {"surname": "Smith"},
    "surname=Smith, alliteration=avoid": {"surname": "Smith", "alliteration": "avoid"},
    "surname=Smith, alliteration=want": {"surname": "Smith", "alliteration": "want"},
}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def per_call(function: Callable[[Any], Any], items: list[Any], rounds: int = 5) -> float:
    """Microseconds per call, the median of `rounds` passes over `items`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            function(item)
        times.append((time.perf_counter() - start) / len(items))
    return round(statistics.median(times) * 1e6, 3)


def popularity_section(model_dir: Path, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from namesmith import NameModel
    from namesmith.facts import name_facts
    from namesmith.nicknames import nicknames_of
    from namesmith.popularity import best_use, is_known, popularity_index
    from namesmith.serve import ModelRegistry, create_app
    from namesmith.surname import surname_fit

    start = time.perf_counter()
    popularity_index()  # before the app, whose start reads it in the background
    read_seconds = time.perf_counter() - start
    client = TestClient(create_app(ModelRegistry.from_directories([model_dir])))
    model_id = model_dir.name
    url = f"/api/v1/models/{model_id}/generate"
    seconds: dict[str, list[float]] = {label: [] for label in POPULARITY_OPTIONS}
    tries = dict.fromkeys(POPULARITY_OPTIONS, 0)
    found = dict.fromkeys(POPULARITY_OPTIONS, 0)
    for i in range(repeats + 1):  # the options take turns, so a change in the machine's load falls on all alike
        for label, extra in POPULARITY_OPTIONS.items():
            began = time.perf_counter()
            response = client.post(url, json={"n": N, "seed": 1000 + i, **extra})
            took = time.perf_counter() - began
            assert response.status_code == 200, response.text
            body = response.json()
            if i:  # the first request of each option warms it (the exact tables, caches)
                seconds[label].append(took)
                tries[label] += body["generation"]["tries"]
                found[label] += body["generation"]["found"]
    rows = {}
    for label in POPULARITY_OPTIONS:
        rows[label] = {**percentiles(seconds[label]), "acceptance": round(found[label] / max(tries[label], 1), 4),
                       "names_per_request": found[label] / repeats}
        print(f"  {label:<36} p50 {rows[label]['p50_ms']:7.2f} ms  p90 {rows[label]['p90_ms']:7.2f} ms  "
              f"acceptance {rows[label]['acceptance']:.3f}", flush=True)
    base = rows["baseline"]["p50_ms"]
    for row in rows.values():
        row["ratio"] = round(row["p50_ms"] / base, 3)
        row["meets_target"] = row["p50_ms"] <= TARGET_MS
    trend_seconds = []
    for i in range(repeats + 1):
        began = time.perf_counter()
        response = client.get("/api/v1/trend", params={"name": ["Leslie", "Emma", "Zorblaxiel"][i % 3]})
        assert response.status_code == 200
        if i:
            trend_seconds.append(time.perf_counter() - began)
    rows["GET trend"] = percentiles(trend_seconds)
    print(f"  {'GET /api/v1/trend':<36} p50 {rows['GET trend']['p50_ms']:7.2f} ms", flush=True)

    rng = random.Random(0)
    known = [n.lower() for n in popularity_index().sets[0].key_ids][::97][:1000]
    new = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) + "q" for _ in range(1000)]
    lookups = {
        "read the catalogue (s, once per process)": round(read_seconds, 3),
        "best_use, known name (µs)": per_call(best_use, known),
        "best_use, new name (µs)": per_call(best_use, new),
        "is_known (µs)": per_call(is_known, known + new),
        "nicknames_of (µs)": per_call(nicknames_of, known + new),
        "facts of 20 names (µs)": per_call(name_facts, [known[i:i + 20] for i in range(0, 400, 20)]),
        "surname_fit (µs)": per_call(lambda n: surname_fit(n, "Smith"), known[:300]),
    }
    for label, value in lookups.items():
        print(f"  {label:<44} {value}", flush=True)
    info = NameModel.load(model_dir).describe()
    return {"model": info, "names_per_request": N, "repeats": repeats, "target_p50_ms": TARGET_MS,
            "api": rows, "lookups": lookups}


SECTIONS = {"popularity": popularity_section}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--model-dir", type=Path, help="a trained model (default: an n-gram of the built-in names)")
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per option (default: 30)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    from namesmith import NameModel

    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(folder) / "ngram"
            NameModel.train(model="ngram", condition="none", out=model_dir)
        record = json.loads(args.out.read_text()) if args.out.exists() else {}
        for name in args.sections:
            print(f"{name}:", flush=True)
            record[name] = SECTIONS[name](model_dir, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
