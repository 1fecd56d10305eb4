"""Names per second of steered generation with a count model on names.txt.

Exact conditioning (backward messages on the model's chain × the constraint automaton) should
stay within 3× of unconstrained sampling. Each case is timed `--repeats` times; the median is
reported, with the acceptance rate, the method and how many of the requested names were found
(rejection can stop at its budget). `--model ngram` steers the order-6 n-gram over the contexts it
stores. Run long runs under the shared lock:

    flock /tmp/namesmith-long.lock python3 benchmarks/bench_generate.py
    flock /tmp/namesmith-long.lock python3 benchmarks/bench_generate.py --model ngram -n 2000
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/work/shared/data/names.txt")
    parser.add_argument("--model", default="bigram-counts", choices=["bigram", "bigram-counts", "ngram"])
    parser.add_argument("-n", "--num", type=int, default=200_000, help="names per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on 2 shared cores, 2 threads make every batched op noisy)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = NameModel.train(args.data, args.model, **({"max_steps": 200} if args.model == "bigram" else {}))
    words = sum(map(len, model.corpus.split.parts().values()))
    print(f"{args.model} on {args.data} ({words} words); {args.num:,} names per run, median of {args.repeats}, "
          f"{args.threads} thread(s)")
    print(f"{'case':<38} {'names/s':>12} {'ratio':>7} {'acceptance':>11} {'method':>10} {'found':>9}")
    base = None
    for label, options in CASES.items():
        rates, gen = [], None
        for repeat in range(args.repeats):
            start = time.perf_counter()
            gen = model.generate(args.num, seed=repeat, **options).stats  # the `namesmith sample` path
            rates.append(len(gen.names) / (time.perf_counter() - start))
        rate = statistics.median(rates)
        base = base or rate
        print(f"{label:<38} {rate:>12,.0f} {base / rate:>6.2f}× {100 * gen.acceptance:>10.2f}% {gen.method:>10} "
              f"{len(gen.names):>9,}")


if __name__ == "__main__":
    main()
