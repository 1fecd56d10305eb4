"""Train one neural model with its defaults and report size, speed and train/val/test NLL.

    python3 benchmarks/bench_neural.py --model gru [--data /work/shared/data/names.txt]
        [--time-budget S] [--max-steps N] [--seed 1337] [--json OUT] [--set KEY=VALUE ...]

The split is the lecture's (`Corpus.from_words(words, seed=42)`), so figures compare with
makemore's. `--set n_hidden=128` overrides a model hyperparameter (tuning only).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from namesmith.cli.options import parse_scalar  # noqa: E402
from namesmith.core.config import TrainConfig  # noqa: E402
from namesmith.data.words import Corpus, load_words  # noqa: E402
from namesmith.models import model_class  # noqa: E402
from namesmith.scoring.evaluate import evaluate  # noqa: E402
from namesmith.training.fitting import fit_model, resolve_train_config  # noqa: E402

DEFAULT_DATA = "/work/shared/data/names.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--time-budget", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    torch.manual_seed(args.seed)
    corpus = Corpus.from_words(load_words(args.data), seed=42)
    cls = model_class(args.model)
    overrides = dict(item.split("=", 1) for item in args.set)
    model = cls(corpus.vocab.size, cls.config_class(**{k: parse_scalar(v) for k, v in overrides.items()}))
    config = TrainConfig(time_budget=args.time_budget, max_steps=args.max_steps, learning_rate=args.learning_rate,
                         batch_size=args.batch_size, weight_decay=args.weight_decay, seed=args.seed, device="cpu")
    config = resolve_train_config(model, config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.model}: {n_params:,} parameters, {model.config}")
    print(f"train config: {config}")

    last = [time.perf_counter()]

    def progress(step: int, total: int, metrics: dict[str, float]) -> None:
        if "val_loss" in metrics:
            now = time.perf_counter()
            print(f"step {step:6d}  loss {metrics['loss']:.4f}  val {metrics['val_loss']:.4f}  "
                  f"lr {metrics['lr']:.2e}  ({now - last[0]:.1f}s)", flush=True)
            last[0] = now

    history = fit_model(model, corpus, config, progress)
    nll = {part: evaluate(model, corpus.words(part), corpus.vocab).nll for part in ("train", "val", "test")}
    result = {
        "model": args.model, "params": n_params, "model_config": model.config_dict(),
        "train_config": config.to_dict(), "steps": history.steps, "seconds": round(history.seconds, 1),
        "ms_per_step": round(1000 * history.seconds / max(history.steps, 1), 2),
        "stop_reason": history.stop_reason, **{f"{k}_nll": round(v, 4) for k, v in nll.items()},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
