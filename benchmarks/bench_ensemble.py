"""How much an ensemble of trained models gains, combined as a mixture or as a product.

    python benchmarks/bench_ensemble.py -m out/lstm -m out/gru -m out/ngram6
    python benchmarks/bench_ensemble.py -m A -m B --subsets      # also every pair of members

The members must be trained on one word list with one split (`namesmith train ... --out DIR`).
For each member, then for the weights fitted on the validation split under each rule
(namesmith.models.ensemble: "mixture" by EM, "product" by L-BFGS), prints the validation and
test NLL per character and the weights. The test figure's standard error over words is printed
too (the spread of per-word NLL sums, divided by the characters), so a gain can be judged.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import torch

from namesmith.models.ensemble import COMBINES, build_ensemble
from namesmith.models.nll import word_log_probs
from namesmith.namemodel import NameModel


def nll_and_error(model: torch.nn.Module, words: list[str], vocab) -> tuple[float, float]:  # noqa: ANN001
    """NLL per character and its standard error (words as the independent units)."""
    logp = word_log_probs(model, words, vocab)
    chars = torch.tensor([len(w) + 1 for w in words], dtype=torch.float64)
    nll = -logp.sum().item() / chars.sum().item()
    # ratio estimator: per-word residuals of -logp - nll * chars
    resid = -logp - nll * chars
    return nll, math.sqrt(len(words)) * resid.std().item() / chars.sum().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--models", action="append", required=True, metavar="DIR")
    p.add_argument("--subsets", action="store_true", help="also every pair of members")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    members = [NameModel.load(d) for d in args.models]
    corpus = members[0].corpus
    split = corpus.split

    def row(label: str, model: torch.nn.Module, extra: str = "") -> None:
        val, _ = nll_and_error(model, split.val, corpus.vocab)
        test, err = nll_and_error(model, split.test, corpus.vocab)
        print(f"{label:<44} val {val:.4f}  test {test:.4f} ± {err:.4f}  {extra}", flush=True)

    for d, m in zip(args.models, members):
        row(f"{m.describe()} ({d})", m.model)
    groups = [list(range(len(members)))]
    if args.subsets and len(members) > 2:
        groups += [list(g) for g in itertools.combinations(range(len(members)), 2)]
    for group in groups:
        for combine in COMBINES:
            start = time.perf_counter()
            ensemble = build_ensemble([members[i].model for i in group], corpus, combine).eval()
            weights = ", ".join(f"{w:.3f}" for w in ensemble.config.weights)
            row(f"{combine} of {'+'.join(str(i) for i in group)}", ensemble,
                f"weights [{weights}] (fitted in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
