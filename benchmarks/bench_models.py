"""Train every model type with its defaults on names.txt and compare them.

    python benchmarks/bench_models.py                      # every model, then the report
    python benchmarks/bench_models.py --models mlp gru     # some models (results are kept per model)
    python benchmarks/bench_models.py --report             # table + JSON + plot from saved results
    python benchmarks/bench_models.py --ensemble transformer:1 transformer:2 lstm:1 lstm:2 gru:1 ngram

Each run writes benchmarks/results/<model>.json (figures and the validation curve). The report
prints a table (model, parameters, steps, wall time, ms/step, train/val/test NLL), writes it to
benchmarks/results/models.json, and plots validation loss against wall time for all models
in docs/val_loss_vs_time.png. The split is the lecture series' (seed 42, 80/10/10).

`--ensemble TYPE[:SEED[:OPTION=VALUE,...]] ...` is the ensemble recipe (namesmith.models.ensemble):
it trains each member with its defaults, networks alone (`ngram_mix=0`: an `ngram` member brings
the n-gram into the product with its own weight), the given seed and options (e.g.
`transformer:2:weight_decay=0.2,time_budget=900`), into runs/ensemble/ (a member already trained
there with the same request is reused), then combines them with weights fitted on the validation
split and writes benchmarks/results/ensemble.json: each member's and the ensemble's NLLs with the
test figure's standard error over words, the members' summed training time (the budget the
issue counts), and the weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import namesmith
from namesmith import NameModel
from namesmith.cli.options import parse_scalar
from namesmith.models import trainable_types

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "names.txt"
RESULTS = ROOT / "benchmarks" / "results"
LADDER = ["bigram-counts", "bigram", "ngram", "mlp", "wavenet", "rnn", "gru", "lstm", "transformer"]


def run_model(model_type: str, words: list[str], data_path: str) -> dict:
    """Train one model with its defaults; return its figures and validation curve."""
    start = time.perf_counter()
    result = NameModel.train(data_path, model_type, words=words)
    wall = time.perf_counter() - start
    history = result.history
    curve = [(seconds, loss) for _, seconds, loss in history.val_loss]
    if not curve:  # fitted in one go: one point at the end of fitting
        curve = [(history.seconds, result.metrics["val"]["nll"])]
    return {
        "model": model_type,
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "steps": history.steps,
        "train_seconds": history.seconds,
        "wall_seconds": wall,
        "ms_per_step": 1000 * history.seconds / max(history.steps, 1),
        "stop_reason": history.stop_reason,
        "nll": {part: result.metrics[part]["nll"] for part in ("train", "val", "test")},
        # neural models are combined with an n-gram after training (models/ngram_mix.py): the network alone
        "nll_without_ngram": {part: m["nll"] for part, m in result.meta.get("metrics_without_ngram", {}).items()},
        "ngram_mix_weights": result.meta["model_config"]["weights"] if result.model_type == "ngram-mix" else None,
        "val_curve": curve,
        "train_config": result.meta["resolved_train_config"],
        "model_config": result.model.config_dict(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }


def report() -> list[dict]:
    """Print the table of every saved result, write models.json and the plot."""
    rows = [json.loads((RESULTS / f"{m}.json").read_text()) for m in LADDER if (RESULTS / f"{m}.json").exists()]
    header = (f"{'model':<14}{'params':>9}{'steps':>8}{'train s':>9}{'ms/step':>9}{'train':>8}{'val':>8}{'test':>8}"
              f"{'alone':>8}")  # alone: the network's test NLL before it is combined with the n-gram
    print(header)
    print("-" * len(header))
    for r in rows:
        nll, alone = r["nll"], r.get("nll_without_ngram") or {}
        alone_test = f"{alone['test']:>8.4f}" if alone.get("test") is not None else f"{'':>8}"
        print(f"{r['model']:<14}{r['parameters']:>9,}{r['steps']:>8}{r['train_seconds']:>9.1f}{r['ms_per_step']:>9.2f}"
              f"{nll['train']:>8.4f}{nll['val']:>8.4f}{nll['test']:>8.4f}{alone_test}")
    table = [{k: v for k, v in r.items() if k != "val_curve"} for r in rows]
    (RESULTS / "models.json").write_text(json.dumps(table, indent=2) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        seconds, losses = zip(*r["val_curve"])
        style = {"marker": "o"} if len(seconds) == 1 else {}
        ax.plot(seconds, losses, label=f"{r['model']} (test {r['nll']['test']:.3f})", **style)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_ylim(1.85, 2.6)
    ax.set_xlabel("training time (s, 2-core CPU)")
    ax.set_ylabel("validation NLL per character (networks alone)")
    ax.set_title("namesmith models on names.txt (lecture split)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(ROOT / "docs" / "val_loss_vs_time.png", dpi=100, bbox_inches="tight")
    return rows


def ensemble_recipe(specs: list[str], data_path: str, combine: str) -> dict:
    """Train (or reuse) each member in runs/ensemble/, combine them, return the figures."""
    from bench_ensemble import nll_and_error  # benchmarks/ is on sys.path when run as a script

    runs = ROOT / "runs" / "ensemble"
    members, rows, seconds = [], [], 0.0
    for spec in specs:
        model_type, seed, options = (spec.split(":") + ["", ""])[:3]
        extra = {k: parse_scalar(v) for k, v in (o.split("=", 1) for o in options.split(",") if o)}
        if model_type != "ngram":
            extra.setdefault("ngram_mix", 0)
        if seed:
            extra["seed"] = int(seed)
        out = runs / spec.replace(":", "_").replace(",", "_").replace("=", "-")
        start = time.perf_counter()
        model = NameModel.train(data_path, model_type, out=out, **extra) if not (out / "namesmith.json").exists() \
            else NameModel.load(out)
        seconds += model.history.seconds
        members.append(model)
        test, err = nll_and_error(model.model, model.corpus.split.test, model.vocab)
        rows.append({"member": spec, "val": model.metrics["val"]["nll"], "test": test, "test_se": err,
                     "train_seconds": model.history.seconds, "wall_seconds": time.perf_counter() - start})
        print(f"{spec:<40} val {rows[-1]['val']:.4f}  test {test:.4f} ± {err:.4f}  "
              f"({model.history.seconds:.0f} s training)", flush=True)
    combined = NameModel.ensemble(members, out=runs / "combined", combine=combine, overwrite=True)
    test, err = nll_and_error(combined.model, combined.corpus.split.test, combined.vocab)
    result = {"members": rows, "combine": combine, "weights": combined.meta["model_config"]["weights"],
              "val": combined.metrics["val"]["nll"], "test": test, "test_se": err,
              "training_minutes": seconds / 60,
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    print(f"{'ensemble (' + combine + ')':<40} val {result['val']:.4f}  test {test:.4f} ± {err:.4f}  "
          f"({seconds / 60:.1f} training minutes in all); weights {result['weights']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="word list (default ../shared/data/names.txt)")
    parser.add_argument("--models", nargs="+", choices=trainable_types(), help="models to train (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the report of saved results")
    parser.add_argument("--ensemble", nargs="+", metavar="TYPE[:SEED[:OPT=VAL,...]]",
                        help="train these members and combine them (see the module docstring)")
    parser.add_argument("--combine", default="product", choices=["product", "mixture"])
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.ensemble:
        result = ensemble_recipe(args.ensemble, args.data, args.combine)
        (RESULTS / "ensemble.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    if not args.report:
        words = namesmith.load_words(args.data)
        for model_type in args.models or LADDER:
            row = run_model(model_type, words, args.data)
            (RESULTS / f"{model_type}.json").write_text(json.dumps(row, indent=2) + "\n")
            print(f"{model_type}: test {row['nll']['test']:.4f} in {row['train_seconds']:.1f} s "
                  f"({row['steps']} steps, {row['stop_reason']})", flush=True)
    report()


if __name__ == "__main__":
    main()
