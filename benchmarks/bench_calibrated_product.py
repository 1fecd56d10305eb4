"""Whole-name calibration of a product of trained networks: test NLL before and after, and the length of draws.

    python benchmarks/bench_calibrated_product.py DIR DIR ... [--label seed1337] [--out FILE]

The members (model directories of the same word list and split, e.g. those bench_calibrated_networks.py
trains) are combined by `NameModel.ensemble` (a product of experts, its weights fitted on validation:
namesmith.models.ensemble), then `NameModel.calibrate("auto")` tilts the product from 50,000 of its own
draws (namesmith.training.calibrate). Reported as bench_calibrated_networks.py reports a network: test
NLL uncalibrated and calibrated with standard errors, their paired difference, log Z with its standard
error, and the length TV of `--draws` draws against the training names. Appended to
benchmarks/results/calibrated_product.json under `--label`. The machine may be shared: nothing here is a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from bench_calibrated_networks import calibration_record, draws_tv, nll_and_error, test_log_probs

from namesmith.namemodel import NameModel

RESULTS = Path(__file__).resolve().parent / "results" / "calibrated_product.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("members", nargs="+")
    p.add_argument("--label", default="product")
    p.add_argument("--draws", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    members = [NameModel.load(d) for d in args.members]
    for m in members:
        m.model.calibration = None  # each member as trained: the product is calibrated as a whole
    product = NameModel.ensemble(members)
    base_logp, chars = test_log_probs(product)
    base_tv, base_draws = draws_tv(product, args.draws, args.seed)
    started = time.perf_counter()
    report = product.calibrate("auto")
    seconds = time.perf_counter() - started
    logp, _ = test_log_probs(product)
    (base_nll, base_err), (nll, err) = nll_and_error(base_logp, chars), nll_and_error(logp, chars)
    tilt = product.model.calibration
    tv, drawn = draws_tv(product, args.draws, args.seed) if tilt is not None else (base_tv, base_draws)
    result = {
        "members": [{"directory": d, "description": m.describe(), "test_nll": m.metrics["test"]["nll"]}
                    for d, m in zip(args.members, members)],
        "test_nll": base_nll, "test_nll_error": base_err, "length_tv": base_tv, "draws": base_draws,
        "calibrated_test_nll": nll, "calibrated_test_nll_error": err, "difference": nll - base_nll,
        "difference_error": math.sqrt(len(chars)) * ((base_logp - logp) / chars.sum().item()).std().item(),
        "calibrated_length_tv": tv, "calibrated_draws": drawn,
        "calibration": calibration_record(product, report, seconds),
    }
    print(json.dumps(result), flush=True)
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"draws": args.draws, "runs": {}}
    results["runs"][args.label] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
