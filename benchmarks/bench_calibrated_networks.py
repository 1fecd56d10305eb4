"""Whole-name calibration of the networks: test NLL uncalibrated against calibrated, and the length of draws.

    python benchmarks/bench_calibrated_networks.py                  # 5 types x 2 seeds, 90 s each
    python benchmarks/bench_calibrated_networks.py --models lstm --seeds 1337 --time-budget 60
    python benchmarks/bench_calibrated_networks.py --models gru --max-steps 1500   # steps bind, not seconds

For each network type and training seed, `NameModel.train` fits it on the lecture's split of names.txt
(80/10/10, split seed 42) for `--time-budget` seconds (or `--max-steps` steps, with no time limit: the same
network however busy the machine) on one torch thread, with its 6-gram as by default
and `--calibrate none`; then `NameModel.calibrate("auto")` (namesmith.training.calibrate: the model's
cells from 50,000 of its own draws, self-normalised importance sampling) fits and chooses the tilt on
validation. Reported, uncalibrated and calibrated: test NLL per character with its standard error (words
as the independent units), the calibration's log Z and its delta-method standard error, and the total
variation between the lengths of `--draws` draws and of the training names (what the tilt corrects).
The calibrated draws come from `NameModel.generate`, which keeps each draw with the tilt's acceptance
(rejection sampling). A model's two NLLs are of the same test words, so their difference is far more
precise than either: its standard error is given too (paired). Results go to
benchmarks/results/calibrated_networks.json. The machine may be shared: the seconds are not timings.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from namesmith.models.nll import word_log_probs
from namesmith.namemodel import NameModel

DEFAULT_DATA = "/work/shared/data/names.txt"
RESULTS = Path(__file__).resolve().parent / "results" / "calibrated_networks.json"
NETWORKS = ("mlp", "wavenet", "gru", "lstm", "transformer")


def total_variation(a: list[int], b: list[int]) -> float:
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def test_log_probs(model: NameModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Each test word's log-probability under the model as it is (calibrated or not), and its characters + end."""
    words = model.corpus.split.test
    logp = word_log_probs(model.model, words, model.vocab)
    return logp, torch.tensor([len(w) + 1 for w in words], dtype=torch.float64)


def nll_and_error(logp: torch.Tensor, chars: torch.Tensor) -> tuple[float, float]:
    """NLL per character and its standard error (a ratio estimator over the words)."""
    nll = -logp.sum().item() / chars.sum().item()
    return nll, math.sqrt(len(chars)) * (-logp - nll * chars).std().item() / chars.sum().item()


def draws_tv(model: NameModel, draws: int, seed: int) -> tuple[float, dict]:
    """The length TV of `draws` draws against the training names, and how the draws came back (a calibrated
    model's are kept by rejection: too few back would make the TV a figure of a handful of names)."""
    drawn = model.generate(draws, seed=seed, max_tries=draws * 50)
    stats = drawn.stats
    search = {"found": stats.found, "tries": stats.tries, "acceptance": stats.acceptance,
              "stop_reason": stats.stop_reason}
    if not drawn.names:
        return math.nan, search
    return total_variation([len(n) for n in drawn.names], [len(n) for n in model.corpus.split.train]), search


def calibration_record(model: NameModel, report: dict, seconds: float) -> dict:
    """The calibration's choice, log Z with its standard error, and the share of draws rejection keeps (exp(-bound))."""
    tilt = model.model.calibration
    return {**report, "seconds": round(seconds, 1), "log_z": None if tilt is None else tilt.log_z,
            "log_z_error": None if tilt is None else tilt.log_z_error,
            "expected_acceptance": None if tilt is None else math.exp(-tilt.bound)}


def run_one(model_type: str, seed: int, args: argparse.Namespace, scratch: Path) -> dict:
    budget = ({"time_budget": args.time_budget} if args.max_steps is None
              else {"max_steps": args.max_steps})
    started = time.perf_counter()
    model = NameModel.train(args.data, model_type, out=scratch / f"{model_type}-{seed}", overwrite=True,
                            seed=seed, calibrate="none", device="cpu", **budget)
    trained = time.perf_counter() - started
    base_logp, chars = test_log_probs(model)
    base_tv, base_draws = draws_tv(model, args.draws, seed)
    started = time.perf_counter()
    report = model.calibrate("auto")
    calibrated = time.perf_counter() - started
    logp, _ = test_log_probs(model)
    nll, err = nll_and_error(logp, chars)
    base_nll, base_err = nll_and_error(base_logp, chars)
    gain = (base_logp - logp) / chars.sum().item()  # per word: its share of the NLL difference
    tilt = model.model.calibration
    tv, drawn = draws_tv(model, args.draws, seed) if tilt is not None else (base_tv, base_draws)
    result = {
        "model": model_type, "seed": seed, "steps": model.history.steps, "train_seconds": round(trained, 1),
        "test_nll": base_nll, "test_nll_error": base_err, "length_tv": base_tv, "draws": base_draws,
        "calibrated_test_nll": nll, "calibrated_test_nll_error": err,
        "difference": nll - base_nll, "difference_error": math.sqrt(len(chars)) * gain.std().item(),
        "calibrated_length_tv": tv, "calibrated_draws": drawn,
        "calibration": calibration_record(model, report, calibrated),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--models", nargs="+", default=list(NETWORKS), choices=NETWORKS)
    p.add_argument("--seeds", type=int, nargs="+", default=[1337, 1])
    p.add_argument("--time-budget", type=float, default=90.0, help="training seconds of each network")
    p.add_argument("--max-steps", type=int, help="train this many steps instead, however long they take")
    p.add_argument("--draws", type=int, default=200_000)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    results: dict = {"data": Path(args.data).name, "split_seed": 42, "time_budget": args.time_budget,
                     "max_steps": args.max_steps, "draws": args.draws, "threads": 1, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-calibrated-") as scratch:
        for model_type in args.models:
            for seed in args.seeds:
                results["runs"].append(run_one(model_type, seed, args, Path(scratch)))
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # a long run keeps its part
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
