"""Training speed with DistributedDataParallel: 1 rank × 2 threads, 1 rank × 1 thread, 2 ranks × 1 thread.

    python3 benchmarks/bench_ddp.py [--models lstm transformer] [--steps 1500 800] [--json OUT]

Each configuration trains the model type with its default size and recipe (no n-gram mix) for the
same number of steps of the same global batch size, so every configuration sees the same number
of examples (the 2-rank run draws the very same batches and splits each between its ranks). It
reports steps/s and examples/s of the training loop (evaluation excluded) and the validation NLL
per character at the end. A configuration that would run longer than `--cap` seconds is stopped
there by the time budget, and flagged: it saw fewer examples. The LSTM's result is the same
whatever the configuration, up to rounding; the Transformer's differs a little because its
dropout draws differ per rank.

Every configuration runs in fresh processes (torch.multiprocessing "spawn"); the 2 ranks meet
over gloo through the environment variables torchrun would set. Data: ../shared/data/names.txt
when it exists, else the built-in list, split 80/10/10 with the lecture's seed (42).

The figures depend on what else the machine runs. On a shared machine they are noisy; for
figures worth quoting, rerun on a quiet machine, e.g.
    nice -n -5 python3 benchmarks/bench_ddp.py --json benchmarks/results/ddp.json
with nothing else running (check `uptime`'s load average first).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from namesmith.core.config import TrainConfig  # noqa: E402
from namesmith.data.words import Corpus, load_words  # noqa: E402
from namesmith.training.distributed import setup  # noqa: E402
from namesmith.training.distributed_trainer import DistributedTrainer  # noqa: E402
from namesmith.training.fitting import build_model, resolve_train_config  # noqa: E402
from namesmith.training.trainer import Trainer  # noqa: E402

# ../shared/data/names.txt beside the checkout (a worktree sits one level deeper)
NAMES = next((p for p in (Path(__file__).resolve().parents[i] / "shared" / "data" / "names.txt" for i in (2, 3))
              if p.exists()), None)
CONFIGS = [("1 rank x 2 threads", 1, 2), ("1 rank x 1 thread", 1, 1), ("2 ranks x 1 thread", 2, 1)]
DEFAULT_STEPS = {"lstm": 1500, "transformer": 800}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_rank(rank: int, ranks: int, threads: int, port: int, model_type: str, steps: int, cap: float, data: str,
             result_file: str) -> None:
    """One process of a configuration: train, and (rank 0) write the figures to `result_file`."""
    torch.set_num_threads(threads)
    if ranks > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                          WORLD_SIZE=str(ranks))
    corpus = Corpus.from_words(load_words(data), seed=42)
    torch.manual_seed(1337)
    model = build_model(model_type, corpus.vocab.size, {}, corpus)
    config = resolve_train_config(model, TrainConfig(max_steps=steps, eval_every=steps, time_budget=cap, ngram_mix=0,
                                                     device="cpu"))
    world = setup(torch.device("cpu"))
    trainer = (Trainer(model, corpus, config) if world is None
               else DistributedTrainer(model, corpus, config, world=world))
    history = trainer.fit()
    if rank == 0:
        seconds = history.seconds - trainer.state.eval_seconds
        Path(result_file).write_text(json.dumps({
            "steps": history.steps, "capped": history.stop_reason == "time budget", "train_seconds": seconds,
            "steps_per_s": history.steps / seconds,
            "examples_per_s": history.steps * config.batch_size / seconds, "batch_size": config.batch_size,
            "examples": history.steps * config.batch_size, "val_nll": history.val_loss[-1][2],
            "parameters": sum(p.numel() for p in model.parameters())}))


def run_config(model_type: str, steps: int, cap: float, ranks: int, threads: int, data: str, scratch: Path) -> dict:
    result_file = scratch / f"{model_type}-{ranks}-{threads}.json"
    context = torch.multiprocessing.get_context("spawn")
    port = free_port()
    processes = [context.Process(target=run_rank, args=(rank, ranks, threads, port, model_type, steps, cap, data,
                                                         str(result_file))) for rank in range(ranks)]
    start = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode != 0 for process in processes):
        raise SystemExit(f"{model_type}, {ranks} rank(s) x {threads} thread(s) failed")
    return {**json.loads(result_file.read_text()), "wall_seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_STEPS), choices=list(DEFAULT_STEPS))
    parser.add_argument("--steps", nargs="+", type=int, help="steps per model (default: 1500 lstm, 800 transformer)")
    parser.add_argument("--data", default=str(NAMES) if NAMES else "builtin")
    parser.add_argument("--cap", type=float, default=120.0,
                        help="seconds of training per configuration at most (a capped run sees fewer examples)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    steps = dict(zip(args.models, args.steps)) if args.steps else DEFAULT_STEPS
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_ddp-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"data {args.data}; {os.cpu_count()} cores; load average {load:.2f} at the start (figures are noisy "
          "when other work runs)")
    results: dict[str, dict] = {}
    for model_type in args.models:
        results[model_type] = {}
        for name, ranks, threads in CONFIGS:
            r = run_config(model_type, steps[model_type], args.cap, ranks, threads, args.data, scratch)
            results[model_type][name] = r
            print(f"{model_type:>11} {name:>19}: {r['steps']} steps x {r['batch_size']} words in "
                  f"{r['train_seconds']:6.1f} s  {r['steps_per_s']:6.1f} steps/s  {r['examples_per_s']:8.0f} examples/s"
                  f"  val NLL {r['val_nll']:.4f}  (wall {r['wall_seconds']:.1f} s)"
                  + ("  CAPPED: fewer examples, time-annealed" if r["capped"] else ""), flush=True)
        one = results[model_type]["1 rank x 1 thread"]["examples_per_s"]
        for r in results[model_type].values():
            r["speed_vs_1x1"] = r["examples_per_s"] / one
        print(f"{model_type:>11} examples/s vs 1 rank x 1 thread: " + ", ".join(
            f"{name} {r['speed_vs_1x1']:.2f}x" for name, r in results[model_type].items()), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "load_average_at_start": load,
                                               "cpu_count": os.cpu_count(), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
