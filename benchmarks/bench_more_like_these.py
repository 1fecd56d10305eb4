""""More like these": how much the names resemble the shortlist, how name-like they stay, how fast.

    python benchmarks/bench_more_like_these.py                 # 1 + 8 shortlists, the old adaptation too
    python benchmarks/bench_more_like_these.py --lists 4 --no-adapt

Protocol (issue 27, item 5). The base model is the default model of the built-in names (`ngram`,
conditioned on sex: what `namesmith serve` offers as `builtin-ngram`), trained once into
`--model-dir`. The shortlists are the issue's (`aurelia, aurora, amara, ...`, girls' names) and
`--lists` more, each the names most similar to an anchor drawn at random (seeded) from the 3,000
most common names of one sex: the 7 names of that sex, among its 5,000 most common, with the
highest similarity to the anchor, and the anchor (a shortlist a person builds by keeping names of
one style). Each is asked the way the page asks: 20 names, `novel` and `unique`, under the
shortlist's sex. Per shortlist and method:

- likeness: the mean over the names of their similarity to the most similar shortlist name
  (rapidfuzz's normalised Indel similarity, 0-1: 1 - edits / total length);
- quality: the names' percentile under the base model (among its training names of that sex),
  median, and the share below 1 (the issue's "percentile 0.0 for 7 of 8");
- letters: the share of names holding a letter that no shortlist name has;
- seconds: building the adapted model, and the whole request (building, drawing, scoring);
  "cold" is the first shortlist of the process (the model loaded, nothing else done), "warm" the
  others (each a new shortlist: nothing of it cached).

Methods: `plain` (the base model's own draws under the same sex: the baseline likeness),
`more_like` (NameModel.more_like, the fix: the shortlist's letters only), `more_like+prior_letters`
(the same, drawing the base model's other letters too), and `adapt` (what "more like these" did
before: NameModel.adapt, the cross-validated adaptation, drawing the prior's letters, its names
scored by the adapted model as the server did, `own_percentile`, and by the base model).
Figures are medians over the shortlists; timings depend on the machine (compare methods within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rapidfuzz.distance import Indel
from rapidfuzz.process import extract

from namesmith import NameModel
from namesmith.data.words import read_builtin_table

ISSUE_LIST = ["aurelia", "aurora", "amara", "amelia", "arabella", "adaline", "ariana", "aria"]
REQUEST = {"novel": True, "unique": True}
N = 20


def shortlists(count: int, seed: int) -> list[tuple[list[str], str]]:
    """(names, sex): the issue's list, then `count` lists of one style (see the module docstring)."""
    rows = read_builtin_table()
    by_sex = {sex: [name.lower() for name, f, m in sorted(rows, key=lambda r: -(r[1] if sex == "F" else r[2]))
                    if (f > m) == (sex == "F")] for sex in "FM"}
    rng = random.Random(seed)
    lists = [(ISSUE_LIST, "F")]
    for i in range(count):
        sex = "FM"[i % 2]
        anchor = rng.choice(by_sex[sex][:3000])
        near = extract(anchor, by_sex[sex][:5000], scorer=Indel.normalized_similarity, limit=8)
        lists.append(([anchor] + [name for name, _, _ in near if name != anchor][:7], sex))
    return lists


def likeness(names: list[str], shortlist: list[str]) -> float:
    return statistics.mean(max(Indel.normalized_similarity(n, s) for s in shortlist) for n in names)


def measure(base: NameModel, shortlist: list[str], sex: str, method: str, seed: int) -> dict[str, Any]:
    where = {"sex": sex}
    start = time.perf_counter()
    if method == "plain":
        model, built = base, 0.0
    elif method.startswith("more_like"):
        model = base.more_like(shortlist, where=where)
        built = time.perf_counter() - start
    else:
        model = base.adapt(shortlist, where=where)
        built = time.perf_counter() - start
    # the old path drew the prior's letters too, as does "more_like+prior_letters"
    letters = method in ("adapt", "more_like+prior_letters")
    names = model.generate(N, seed=seed, where=where, prior_letters=letters, **REQUEST).names
    own = model.score(names, where=where)
    seconds = time.perf_counter() - start
    percentiles = [s.percentile for s in base.score(names, where=where)]
    letters = set("".join(shortlist))
    return {"names": names, "likeness": likeness(names, shortlist), "median_percentile": statistics.median(percentiles),
            "below_1": sum(p < 1 for p in percentiles) / len(names),
            "own_percentile": statistics.median(s.percentile for s in own if s.percentile is not None),
            "other_letters": sum(bool(set(n) - letters) for n in names) / len(names),
            "build_seconds": built, "request_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=8, help="shortlists besides the issue's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-adapt", action="store_true", help="leave out the old, cross-validated adaptation")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on 2 shared cores, 2 threads make every batched op noisy)")
    cache = Path(os.environ.get("NAMESMITH_CACHE", Path.home() / ".cache" / "namesmith"))
    parser.add_argument("--model-dir", type=Path, default=cache / "bench" / "builtin-ngram")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "more_like_these.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if not (args.model_dir / "namesmith.json").exists():
        NameModel.train(data="builtin", model="ngram", out=args.model_dir)
    base = NameModel.load(args.model_dir)
    methods = ["more_like", "more_like+prior_letters", "plain"] + ([] if args.no_adapt else ["adapt"])
    rows = []
    for i, (shortlist, sex) in enumerate(shortlists(args.lists, args.seed)):
        for method in methods:
            row = {"list": i, "shortlist": shortlist, "sex": sex, "method": method,
                   **measure(base, shortlist, sex, method, seed=args.seed + i)}
            rows.append(row)
            print(f"{i} {method:23s} likeness {row['likeness']:.3f}  percentile {row['median_percentile']:5.1f} "
                  f"(<1: {row['below_1']:.2f}; own {row['own_percentile']:5.1f})  other letters "
                  f"{row['other_letters']:.2f}  build {row['build_seconds']:.3f} s  request "
                  f"{row['request_seconds']:.3f} s  {', '.join(row['names'][:6])}", flush=True)
    summary = {}
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        summary[method] = {
            "likeness": statistics.median(r["likeness"] for r in mine),
            "median_percentile": statistics.median(r["median_percentile"] for r in mine),
            "below_1": statistics.median(r["below_1"] for r in mine),
            "own_percentile": statistics.median(r["own_percentile"] for r in mine),
            "other_letters": statistics.median(r["other_letters"] for r in mine),
            "cold_build_seconds": mine[0]["build_seconds"], "cold_request_seconds": mine[0]["request_seconds"],
            "warm_build_seconds": statistics.median(r["build_seconds"] for r in mine[1:]),
            "warm_request_seconds": statistics.median(r["request_seconds"] for r in mine[1:])}
        s = summary[method]
        print(f"{method:23s} median likeness {s['likeness']:.3f}, percentile {s['median_percentile']:.1f} "
              f"(<1: {s['below_1']:.2f}), other letters {s['other_letters']:.2f}; build cold "
              f"{s['cold_build_seconds']:.3f} s, warm {s['warm_build_seconds']:.3f} s; request cold "
              f"{s['cold_request_seconds']:.3f} s, warm {s['warm_request_seconds']:.3f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"protocol": "benchmarks/bench_more_like_these.py", "n": N, "request": REQUEST,
              "cpu_count": os.cpu_count(), "threads": args.threads, "summary": summary, "rows": rows}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
