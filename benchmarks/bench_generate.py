"""Names per second of steered generation with a count model on names.txt.

Exact conditioning (backward messages on the model's chain × the constraint automaton) should
stay within 3× of unconstrained sampling. Each case is timed `--repeats` times; the median is
reported, with the acceptance rate, the method and how many of the requested names were found
(rejection can stop at its budget). `--model ngram` steers the order-6 n-gram over the contexts it
stores. Run long runs under the shared lock:

    flock /tmp/namesmith-long.lock python3 benchmarks/bench_generate.py
    flock /tmp/namesmith-long.lock python3 benchmarks/bench_generate.py --model ngram -n 2000
    python3 benchmarks/bench_generate.py --model-dir out/lstm -n 5000 --cases networks

`--model-dir` times a trained model (a network: guided sampling, namesmith.generation.guided) on the
`networks` cases: unconstrained, then `--ends-with lyn` and `--starts-with ma --ends-with a
--min-len 6` with the automatic method, guided sampling and rejection; the ratio column is the
unconstrained rate over the case's (the issue's target: guided at most 5×, i.e. at least 20% of
the unconstrained rate). Rates are names per second of wall time and, in brackets, per second of
CPU time (the fairer figure on a shared machine).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from namesmith import NameModel

CASES = {
    "unconstrained": {},
    "--starts-with ma": {"starts_with": "ma"},
    "--ends-with lyn": {"ends_with": "lyn"},
    "--ends-with a --min-len 6": {"ends_with": "a", "min_len": 6},
    "--contains ri --excludes e": {"contains": ("ri",), "excludes": ("e",)},
    "--novel --unique": {"novel": True, "unique": True},
    "--ends-with lyn (rejection)": {"ends_with": "lyn", "method": "rejection"},
    "--ends-with ette --novel": {"ends_with": "ette", "novel": True},
    "--ends-with ette --novel (rejection)": {"ends_with": "ette", "novel": True, "method": "rejection"},
}
NETWORK_CASES = {
    "unconstrained": {},
    "--ends-with lyn": {"ends_with": "lyn"},
    "--ends-with lyn (guided)": {"ends_with": "lyn", "method": "guided"},
    "--ends-with lyn (rejection)": {"ends_with": "lyn", "method": "rejection"},
    "--starts-with ma --ends-with a --min-len 6": {"starts_with": "ma", "ends_with": "a", "min_len": 6},
    "  the same, guided": {"starts_with": "ma", "ends_with": "a", "min_len": 6, "method": "guided"},
    "  the same, rejection": {"starts_with": "ma", "ends_with": "a", "min_len": 6, "method": "rejection"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/names.txt")
    parser.add_argument("--model", default="bigram-counts", choices=["bigram", "bigram-counts", "ngram"])
    parser.add_argument("-n", "--num", type=int, default=200_000, help="names per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", help="time this trained model (e.g. a network) instead of training one")
    parser.add_argument("--cases", choices=["counts", "networks"], default=None,
                        help="which cases (default: networks with --model-dir, counts otherwise)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on 2 shared cores, 2 threads make every batched op noisy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model_dir:
        model = NameModel.load(args.model_dir)
        what = f"{model.describe()} from {args.model_dir}"
    else:
        model = NameModel.train(args.data, args.model, **({"max_steps": 200} if args.model == "bigram" else {}))
        what = f"{args.model} on {args.data}"
    cases = NETWORK_CASES if (args.cases or ("networks" if args.model_dir else "counts")) == "networks" else CASES
    words = sum(map(len, model.corpus.split.parts().values()))
    print(f"{what} ({words} words); {args.num:,} names per run, median of {args.repeats}, {args.threads} thread(s)")
    print(f"{'case':<44} {'names/s':>10} {'(per CPU s)':>12} {'ratio':>7} {'acceptance':>11} {'method':>10} "
          f"{'found':>8} {'ESS/particles':>14}")
    base = None
    for label, options in cases.items():
        rates, cpu_rates, gen = [], [], None
        for repeat in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            gen = model.generate(args.num, seed=repeat, **options).stats  # the `namesmith sample` path
            rates.append(len(gen.names) / (time.perf_counter() - start))
            cpu_rates.append(len(gen.names) / (time.process_time() - cpu))
        rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
        base = base or rate
        ess = f"{gen.effective_sample_size / gen.particles:.2f}" if gen.particles else ""
        print(f"{label:<44} {rate:>10,.0f} {cpu_rate:>12,.0f} {base / rate:>6.2f}× {100 * gen.acceptance:>10.2f}% "
              f"{gen.method:>10} {len(gen.names):>8,} {ess:>14}", flush=True)


if __name__ == "__main__":
    main()
