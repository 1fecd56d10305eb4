"""Distillation on names.txt: one LSTM taught by an ensemble, against the ensemble and the LSTM alone.

    python benchmarks/bench_distill.py --out /tmp/distill                  # everything (about 20 minutes)
    python benchmarks/bench_distill.py --out /tmp/distill --seeds 1337 1   # students of two seeds
    python benchmarks/bench_distill.py --out /tmp/distill --json benchmarks/results/distill.json
    python benchmarks/bench_distill.py --out /tmp/set2 --threads 1 --member-seed 2 --seeds 2 3 \
        --wide-seeds 2 --no-plain                                          # the seven-model product's parts

Runs `namesmith train` as a user would, on the lecture split of `--data` (default
../shared/data/names.txt), with `--threads` threads (default 2), one run at a time, uncalibrated
(`--calibrate none`: a product of them is calibrated as a whole, bench_calibrated_product.py):

1. the teacher's members: the four recurrent networks of the ensemble paragraph of docs/models.md (a
   384-unit LSTM, a 2 x 256 LSTM, a 384-unit LSTM with weight decay 0.3, a 384-unit GRU; dropout
   0.3-0.4, 6,000 steps, each combined with its 6-gram), then their product (`namesmith ensemble`);
2. for each seed, the student: a 384-unit LSTM with dropout 0.2 taught by that ensemble
   (`--teacher`), `--student-steps` steps, alone (`--ngram-mix 0`); its figure combined with the
   6-gram is computed here (namesmith.models.ngram_mix) from the same network;
   a 512-unit student with dropout 0.25 for each of `--wide-seeds` (none by default);
3. the same LSTM without a teacher, for each seed (the baseline; `--no-plain` leaves it out);
4. names per second of `namesmith sample` (namesmith.generation.generate; the median of 3 runs of 20,000
   names) for the student, the plain LSTM and the teacher.

Model directories already complete in --out are reused, not retrained (their recorded training
seconds are still counted). Prints the test NLL per character with its standard error (words as
the units), training seconds and CPU-minutes (seconds x threads), and the mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_ensemble import nll_and_error  # benchmarks/ is on sys.path when run as a script

from namesmith.models.ngram_mix import mix_with_ngram
from namesmith.namemodel import NameModel
from namesmith.training.checkpoint import META_FILE, read_meta

NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"
MEMBERS = {  # directory: options (docs/models.md's four-network ensemble)
    "lstm384": ["--model", "lstm", "--n-hidden", "384", "--dropout", "0.3"],
    "lstm2x256": ["--model", "lstm", "--n-layer", "2", "--n-hidden", "256", "--dropout", "0.3"],
    "lstm384wd": ["--model", "lstm", "--n-hidden", "384", "--dropout", "0.4", "--weight-decay", "0.3"],
    "gru384": ["--model", "gru", "--n-hidden", "384", "--dropout", "0.3"],
}
MEMBER_STEPS = ["--max-steps", "6000", "--patience", "20"]
STUDENT = ["--model", "lstm", "--n-hidden", "384", "--dropout", "0.2", "--ngram-mix", "0"]
WIDE_STUDENT = [*STUDENT, "--n-hidden", "512", "--dropout", "0.25"]  # the later options win


def train(out: Path, data: Path, options: list[str], threads: int) -> float:
    """`namesmith train` into `out` unless a complete model is there; its training seconds."""
    if not ((out / META_FILE).is_file() and read_meta(out).get("complete")):
        command = [sys.executable, "-m", "namesmith", "train", "--data", str(data), "--out", str(out), "--samples",
                   "0", "-q", "--overwrite", "--time-budget", "100000", "--calibrate", "none", *options]
        print("  $ " + " ".join(command[1:]), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return float(read_meta(out)["history"]["seconds"])


def names_per_second(model: NameModel, n: int = 20_000, repeats: int = 3) -> float:
    """Names per second of `namesmith sample -n n` (NameModel.generate), the median of `repeats` runs."""
    def draw(seed: int) -> int:
        return model.generate(n, seed=seed).stats.tries

    draw(0)
    rates = []
    for seed in range(1, repeats + 1):
        start = time.perf_counter()
        drawn = draw(seed)
        rates.append(drawn / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=NAMES)
    p.add_argument("--out", type=Path, required=True, help="directory for the models (reused when complete)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1])
    p.add_argument("--wide-seeds", type=int, nargs="*", default=[],
                   help="seeds of a 512-unit student (dropout 0.25) taught by the same teacher")
    p.add_argument("--member-seed", type=int, help="--seed of the teacher's members (default: train's)")
    p.add_argument("--no-plain", action="store_true", help="leave out the untaught baseline LSTMs")
    p.add_argument("--threads", type=int, default=2, help="torch threads of every run (CPU-minutes count them)")
    p.add_argument("--student-steps", type=int, default=15_000)
    p.add_argument("--distill-weight", type=float, default=0.7)
    p.add_argument("--json", type=Path, help="also write the figures here (benchmarks/results/distill.json)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}

    def report(label: str, model: NameModel, seconds: float, network: torch.nn.Module | None = None) -> dict:
        split = model.corpus.split
        test, error = nll_and_error(model.model if network is None else network, split.test, model.vocab)
        row = {"test": test, "error": error, "seconds": seconds, "cpu_minutes": seconds * args.threads / 60}
        print(f"{label:<46} test {test:.4f} ± {error:.4f}  {seconds:7.0f} s  {row['cpu_minutes']:5.1f} CPU-min",
              flush=True)
        results[label] = row
        return row

    print(f"teacher: the product of {len(MEMBERS)} networks, each with its 6-gram", flush=True)
    member_seconds = 0.0
    for name, options in MEMBERS.items():
        seed = [] if args.member_seed is None else ["--seed", str(args.member_seed)]
        seconds = train(out / name, args.data, [*options, *MEMBER_STEPS, *seed], args.threads)
        member_seconds += seconds
        report(f"  member {name}", NameModel.load(out / name), seconds)
    teacher_dir = out / "teacher"
    if not (teacher_dir / META_FILE).is_file():
        NameModel.ensemble([out / name for name in MEMBERS], out=teacher_dir)
    teacher = NameModel.load(teacher_dir)
    report("teacher (product of the members)", teacher, member_seconds)

    teach = ["--teacher", str(teacher_dir), "--distill-weight", str(args.distill_weight)]
    runs = [(kind, seed) for seed in args.seeds for kind in ("student", "plain")
            if not (kind == "plain" and args.no_plain)] + [("wide", seed) for seed in args.wide_seeds]
    labels = {"student": "student (lstm 384, taught)", "plain": "plain (lstm 384, no teacher)",
              "wide": "wide student (lstm 512, taught)"}
    for kind, seed in runs:
        directory = out / f"{kind}-{seed}"
        options = {"student": [*STUDENT, *teach], "plain": STUDENT, "wide": [*WIDE_STUDENT, *teach]}[kind]
        seconds = train(directory, args.data, [*options, "--seed", str(seed), "--max-steps",
                                               str(args.student_steps), "--patience", "20"], args.threads)
        model = NameModel.load(directory)
        label = labels[kind]
        report(f"{label}, seed {seed}", model, seconds)
        mixed = mix_with_ngram(model.model, model.corpus, 6).eval()
        report(f"{kind} + its 6-gram, seed {seed}", model, seconds, mixed)
    for kind in ("student (lstm 384, taught)", "plain (lstm 384, no teacher)", "student + its 6-gram",
                 "plain + its 6-gram"):
        rows = [row for label, row in results.items() if label.startswith(kind)]
        if len(rows) > 1:
            tests = [row["test"] for row in rows]
            spread = statistics.stdev(tests) / math.sqrt(len(tests))
            print(f"mean of {kind.strip()} over {len(rows)} runs: {statistics.mean(tests):.4f} "
                  f"(± {spread:.4f} across runs)", flush=True)

    print("names per second of `namesmith sample` (20,000 names, median of 3):", flush=True)
    seed = args.seeds[0]
    for label, directory in (("student", out / f"student-{seed}"), ("plain lstm 384", out / f"plain-{seed}"),
                             ("teacher", teacher_dir)):
        if not directory.is_dir():  # --no-plain
            continue
        rate = names_per_second(NameModel.load(directory))
        results[f"speed {label}"] = {"names_per_second": rate}
        print(f"  {label:<16} {rate:>9,.0f} names/s", flush=True)
    for path in (out / "bench_distill.json", args.json):
        if path is not None:
            path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
