"""Train every model type with its defaults on names.txt and compare them.

    python benchmarks/bench_models.py                      # every model, then the report
    python benchmarks/bench_models.py --models mlp gru     # some models (results are kept per model)
    python benchmarks/bench_models.py --report             # table + JSON + plot from saved results

Each run writes benchmarks/results/<model>.json (figures and the validation curve). The report
prints a table (model, parameters, steps, wall time, ms/step, train/val/test NLL), writes it to
benchmarks/results/models.json, and plots validation loss against wall time for all models
in docs/val_loss_vs_time.png. The split is the lecture series' (seed 42, 80/10/10).
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="word list (default ../shared/data/names.txt)")
    parser.add_argument("--models", nargs="+", choices=trainable_types(), help="models to train (default: all)")
    parser.add_argument("--report", action="store_true", help="only print the report of saved results")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
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
