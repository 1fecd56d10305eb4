"""Conditional models on `us` (US baby names 1880-2017): names given sex and decade.

    python benchmarks/bench_conditional.py                       # n-gram, then a GRU of 180 s
    python benchmarks/bench_conditional.py --neural-budget 0     # the n-gram only
    python benchmarks/bench_conditional.py --weighting log --json results.json

Everything runs on the library's own path (`NameModel.train(data="us", condition=...)`), split
by distinct name (80/10/10, seed 42: every row of a held-out name is held out). Reported:

1. Held-out NLL per character of (name | sex, decade): the conditional model against the same
   model type trained without labels, on the same test rows (each distinct (name, sex, decade)
   once, and weighted by births). The gain must be positive.
2. Sex of held-out names (truth: the sex with more births; test names, unseen in training):
   accuracy of argmax P(sex | name) (`NameModel.classify`), against a last-two-letters majority
   rule learned on the training names (each name's majority sex; a suffix's majority of the
   names that end in it; the last letter, then the overall majority, when the suffix is unseen).
   Target >= 90%.
3. Decade: mean absolute error, in years, between the posterior mean decade (decade midpoints:
   1885, ..., 2013.5 for 2010-2017) and each test name's birth-weighted mean year, against
   always predicting the mean of that figure over the training names. Target >= 30% lower.
4. Fidelity: of 10,000 names generated with sex=F (and with sex=M), those that are held-out
   (validation or test) names: the share whose births are mostly of that sex. Target >= 95%.

The neural model is a small GRU (1 layer, 128 units, embeddings 32, batch 64) trained for
--neural-budget seconds, conditioned and unconditioned alike, each combined with the
(conditional) 6-gram as the neural defaults do. One torch thread (a shared 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from namesmith import NameModel  # noqa: E402
from namesmith.core.casing import fold  # noqa: E402
from namesmith.data.sources import read_labelled_source  # noqa: E402
from namesmith.data.tables import WEIGHTINGS, aggregate, weights  # noqa: E402
from namesmith.data.words import DataConfig  # noqa: E402
from namesmith.models.nll import row_log_probs  # noqa: E402

CONDITION = ("sex", "decade")
GRU = {"n_embd": 32, "n_hidden": 128, "batch_size": 64, "eval_every": 250}


def decade_middle(decade: str) -> float:
    start = int(decade[:4])
    return 2013.5 if start == 2010 else start + 4.5  # the last decade holds 2010-2017 only


def truths(data: str) -> tuple[dict[str, str], dict[str, float]]:
    """Per distinct name (as the model reads it): the sex with more births, and its birth-weighted mean year."""
    table, _ = read_labelled_source(DataConfig(path=data))
    births: dict[str, Counter] = defaultdict(Counter)
    years: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for name, count, sex, decade in zip(table.names, table.counts.tolist(), table.labels["sex"],
                                        table.labels["decade"]):
        births[name][sex] += count
        years[name][0] += count * decade_middle(decade)
        years[name][1] += count
    sex = {name: ("F" if c["F"] >= c["M"] else "M") for name, c in births.items()}
    mean_year = {name: y / n for name, (y, n) in years.items() if n > 0}
    return sex, mean_year


def fidelity_ceiling(data: str, weighting: str, held_out: set[str]) -> dict[str, float]:
    """What a perfect model of the training weighting would score on fidelity: of held-out names drawn with
    the probability the weighting gives their rows of one sex, the share mostly of that sex by births."""
    table, _ = read_labelled_source(DataConfig(path=data))
    rows = aggregate(table, CONDITION)
    births: dict[str, Counter] = defaultdict(Counter)
    for name, s, count in zip(rows.names, rows.labels["sex"], rows.counts.tolist()):
        births[name][s] += count
    weight = dict(zip(zip(rows.names, rows.labels["sex"], rows.labels["decade"]), weights(rows, weighting)))
    ceiling = {}
    for value in ("F", "M"):
        mass = Counter()
        for (name, s, _), w in weight.items():
            if s == value and name in held_out:
                mass[(births[name]["F"] >= births[name]["M"]) == (value == "F")] += w
        ceiling[value] = mass[True] / max(mass[True] + mass[False], 1e-12)
    return ceiling


def suffix_rule(train: list[str], sex: dict[str, str]) -> callable:
    """The baseline: the majority sex of the training names ending in the same two letters (then one)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for name in train:
        for k in (2, 1):
            votes[name[-k:] if len(name) >= k else "#" + name][sex[name]] += 1
    overall = Counter(sex[name] for name in train).most_common(1)[0][0]

    def predict(name: str) -> str:
        for k in (2, 1):
            key = name[-k:] if len(name) >= k else "#" + name
            if key in votes:
                return votes[key].most_common(1)[0][0]
        return overall

    return predict


def conditional_figures(model: NameModel, plain: NameModel, sex: dict[str, str], mean_year: dict[str, float],
                        seed: int, n_generate: int, guidances: list[float], data: str, weighting: str) -> dict:
    corpus = model.corpus
    split = corpus.split
    x, y = corpus.tensors("test")
    chars = (y >= 0).sum(1).double()
    counts = torch.from_numpy(corpus.counts["test"]).double()
    conditional = row_log_probs(model.model, x, y)
    unconditional = row_log_probs(plain.model, *corpus.word_tensors("test"))
    nll = {name: float(-lp.sum() / chars.sum()) for name, lp in (("conditional", conditional),
                                                                   ("unconditional", unconditional))}
    per_count = {name: float(-(counts * lp).sum() / (counts * chars).sum())
                 for name, lp in (("conditional", conditional), ("unconditional", unconditional))}

    test_names = sorted(set(split.test))
    train_names = sorted(set(split.train))
    t0 = time.perf_counter()
    posterior = [r.labels for r in model.classify(test_names)]
    classify_seconds = time.perf_counter() - t0
    predicted = [max(p["sex"], key=p["sex"].get) for p in posterior]
    accuracy = float(np.mean([p == sex[n] for p, n in zip(predicted, test_names)]))
    rule = suffix_rule(train_names, sex)
    baseline = float(np.mean([rule(n) == sex[n] for n in test_names]))

    decades = model.labels["decade"]
    middles = np.array([decade_middle(d) for d in decades])
    posterior_mean = np.array([sum(p["decade"][d] * m for d, m in zip(decades, middles)) for p in posterior])
    truth = np.array([mean_year[n] for n in test_names])
    overall = float(np.mean([mean_year[n] for n in train_names]))
    mae = float(np.abs(posterior_mean - truth).mean())
    mae_baseline = float(np.abs(overall - truth).mean())

    held_out = set(split.val) | set(split.test)
    fidelity = {}
    for guidance in guidances:
        for value in ("F", "M"):
            names = model.generate(n_generate, where={"sex": value}, guidance=guidance, seed=seed).names
            found = [n for n in fold(names, model.casing) if n in held_out]  # as the model reads them
            share = float(np.mean([sex[n] == value for n in found])) if found else None
            fidelity[f"{value} guidance {guidance:g}"] = {"generated": len(names), "held_out": len(found),
                                                         "share_of_that_sex": share, "examples": names[:8]}
    return {
        "fidelity_ceiling": fidelity_ceiling(data, weighting, held_out),
        "nll_test": nll, "nll_test_gain": nll["unconditional"] - nll["conditional"],
        "nll_test_per_count": per_count,
        "nll_test_per_count_gain": per_count["unconditional"] - per_count["conditional"],
        "test_rows": len(x), "test_names": len(test_names),
        "sex_accuracy": accuracy, "sex_accuracy_suffix_rule": baseline, "classify_seconds": classify_seconds,
        "decade_mae_years": mae, "decade_mae_mean_baseline": mae_baseline,
        "decade_mae_reduction": 1 - mae / mae_baseline, "overall_mean_year": overall,
        "fidelity": fidelity,
    }


def report(title: str, figures: dict, seconds: dict) -> None:
    f = figures
    print(f"\n== {title} ==")
    print(f"training: conditional {seconds['conditional']:.1f} s, unconditional {seconds['unconditional']:.1f} s")
    print(f"test NLL/char of (name | sex, decade), {f['test_rows']:,} rows: conditional "
          f"{f['nll_test']['conditional']:.4f}, unconditional {f['nll_test']['unconditional']:.4f}, "
          f"gain {f['nll_test_gain']:.4f} nats")
    print(f"  weighted by births: conditional {f['nll_test_per_count']['conditional']:.4f}, unconditional "
          f"{f['nll_test_per_count']['unconditional']:.4f}, gain {f['nll_test_per_count_gain']:.4f}")
    print(f"sex of {f['test_names']:,} held-out names: {100 * f['sex_accuracy']:.1f}% (last-two-letters rule "
          f"{100 * f['sex_accuracy_suffix_rule']:.1f}%; target >= 90%) [classify {f['classify_seconds']:.1f} s]")
    print(f"decade: MAE {f['decade_mae_years']:.2f} years vs {f['decade_mae_mean_baseline']:.2f} predicting the mean "
          f"({f['overall_mean_year']:.1f}): {100 * f['decade_mae_reduction']:.1f}% lower (target >= 30%)")
    for key, fid in f["fidelity"].items():
        value, guidance = key.split(" guidance ")
        share = "n/a" if fid["share_of_that_sex"] is None else f"{100 * fid['share_of_that_sex']:.1f}%"
        print(f"sex={value}, guidance {guidance}: {fid['held_out']:,} of {fid['generated']:,} generated names are "
              f"held-out names, {share} of them mostly {value} by births (target >= 95%; a perfect model of this "
              f"weighting: {100 * f['fidelity_ceiling'][value]:.1f}%); e.g. {', '.join(fid['examples'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="us")
    parser.add_argument("--weighting", default="share", choices=WEIGHTINGS)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--neural-budget", type=float, default=180.0, help="seconds per GRU (0: skip the GRU)")
    parser.add_argument("--generate", type=int, default=10_000)
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 2.0],
                        help="fidelity at each of these guidances (default: 0 1 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    sex, mean_year = truths(args.data)
    results = {"data": args.data, "weighting": args.weighting, "condition": list(CONDITION)}

    def fit(model_type: str, condition: tuple[str, ...], **options) -> tuple[NameModel, float]:
        t0 = time.perf_counter()
        model = NameModel.train(args.data, model_type, condition=condition, weighting=args.weighting, **options)
        return model, time.perf_counter() - t0

    runs = [("ngram", {"order": args.order})]
    if args.neural_budget > 0:
        runs.append(("gru", {**GRU, "time_budget": args.neural_budget, "max_steps": 100_000}))
    for model_type, options in runs:
        conditional, t_cond = fit(model_type, CONDITION, **options)
        plain, t_plain = fit(model_type, (), **options)
        seconds = {"conditional": t_cond, "unconditional": t_plain}
        figures = conditional_figures(conditional, plain, sex, mean_year, args.seed, args.generate, args.guidance,
                                      args.data, args.weighting)
        figures["describe"] = conditional.describe()
        figures["seconds"] = seconds
        if model_type != "ngram":
            figures["steps"] = {"conditional": conditional.history.steps, "unconditional": plain.history.steps}
        results[model_type] = figures
        report(f"{conditional.describe()} vs {plain.describe()}", figures, seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
