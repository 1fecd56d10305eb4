"""Whole-name calibration of conditional count models: lengths given each label value, NLL, classification.

    python benchmarks/bench_conditional_realism.py                  # us, by sex, 200,000 draws per value
    python benchmarks/bench_conditional_realism.py --data israel --label sex --draws 50000

Trains the default model of a built-in table (an n-gram conditioned on every label column, calibrated per
label node: namesmith.training.calibrate_labels), then, with its label calibrations and without them:

- per value of `--label`: total variation between the lengths of `--draws` names drawn given that value
  and the lengths of the training rows of that value, weighted as the model counts them (the target is
  <= 0.03), and of its distinct training names;
- the test NLL per character (each test row under its own labels) with its standard error;
- classification accuracy of `--label` on the test rows (the most probable value is the row's), with the
  seconds the calibration took (the share of `train` it costs).

Results go to benchmarks/results/conditional_realism.json. The machine may be shared: seconds are noisy.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from pathlib import Path

from namesmith import NameModel
from namesmith.models.nll import labelled_row_log_probs
from namesmith.scoring.evaluate import calibrated_rows

RESULTS = Path(__file__).resolve().parent / "results" / "conditional_realism.json"


def total_variation(a: list[int], b: list[int]) -> float:
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def test_nll(model: NameModel) -> tuple[float, float]:
    """Test NLL per character and its standard error (rows as the independent units: a ratio estimator)."""
    corpus = model.corpus
    x, y = corpus.tensors("test")
    logp = calibrated_rows(model.model, labelled_row_log_probs(model.model, x, y), corpus, "test")
    chars = (y >= 0).sum(1).double()
    nll = -logp.sum().item() / chars.sum().item()
    return nll, math.sqrt(len(chars)) * (-logp - nll * chars).std().item() / chars.sum().item()


def measure(model: NameModel, label: str, draws: int, seed: int) -> dict:
    corpus, values = model.corpus, model.labels[label]
    j = list(model.labels).index(label)
    train_codes, test_codes = corpus.codes["train"][:, j].tolist(), corpus.codes["test"][:, j].tolist()
    result: dict = {"length_tv": {}}
    result["length_tv_distinct"] = {}
    weights = corpus.weights["train"]
    for code, value in enumerate(values):
        rows = [i for i, c in enumerate(train_codes) if c == code]
        started = time.perf_counter()
        names = model.generate(draws, where={label: value}, seed=seed).names
        # the rows of that value weighted as the model counts them (a name of many decades is many rows)
        weighted: Counter = Counter()
        for i in rows:
            weighted[len(corpus.words("train")[i])] += weights[i]
        drawn = Counter(len(n) for n in names)
        result["length_tv"][value] = 0.5 * sum(abs(drawn[k] / len(names) - weighted[k] / sum(weighted.values()))
                                               for k in set(drawn) | set(weighted))
        result["length_tv_distinct"][value] = total_variation(
            [len(n) for n in names], [len(n) for n in {corpus.words("train")[i] for i in rows}])
        print(f"  {label}={value}: length TV {result['length_tv'][value]:.4f} ({len(names):,} draws in "
              f"{time.perf_counter() - started:.0f} s)", flush=True)
    result["test_nll"], result["test_nll_error"] = test_nll(model)
    rows = [(w, c) for w, c in zip(corpus.words("test"), test_codes) if c < len(values)]
    posteriors = model.classify([w for w, _ in rows])
    result["classify_accuracy"] = sum(max(p.labels[label], key=p.labels[label].get) == values[c]
                                      for p, (_, c) in zip(posteriors, rows)) / len(rows)
    print(f"  test NLL {result['test_nll']:.4f} ± {result['test_nll_error']:.4f}, {label} accuracy "
          f"{result['classify_accuracy']:.4f} on {len(rows):,} test rows", flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="us", help="a built-in data set (default: us)")
    p.add_argument("--label", default="sex")
    p.add_argument("--draws", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    started = time.perf_counter()
    model = NameModel.train(args.data)
    seconds = time.perf_counter() - started
    report = model.meta.get("calibration_report", {})
    print(f"{args.data}: trained in {seconds:.0f} s; calibration {report.get('choice')}: {report.get('note')}")
    calibrations = model.model.label_calibrations
    run = {"train_seconds": seconds, "calibration": report}
    for name, tilt in (("uncalibrated", None), ("calibrated", calibrations)):
        print(name, flush=True)
        model.model.set_label_calibrations(tilt)
        model._exact.clear()
        run[name] = measure(model, args.label, args.draws, args.seed)
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    results[f"{args.data} by {args.label}"] = {"draws": args.draws, **run}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
