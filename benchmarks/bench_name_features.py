"""Do other whole-name features earn their keep beside the length and end of the calibration?

    python benchmarks/bench_name_features.py                    # names.txt, split seeds 42 and 1337
    python benchmarks/bench_name_features.py --seeds 42 --draws 100000

The default n-gram (order 6) is trained on the lecture's split and calibrated as `train` does
(`--calibrate auto`: length and end, exactly by the DP; namesmith.training.calibrate). Each candidate
feature g (one-hot over its values) is then fitted on top of it as `calibrate` fits the others:
P''(x) ∝ P'(x)·exp(μ·g(x)), μ maximising the training names' likelihood with a Gaussian prior of
variance σ², E_P'[exp(μ·g)] estimated from `--draws` of the calibrated model's own draws
(self-normalised importance sampling). Reported per feature and σ²: the change of validation and
test NLL per character (negative: the feature helps), the test change's standard error (paired, the
words as units). Candidates: vowel groups (runs of a, e, i, o, u, y: a syllable proxy), vowel groups
× length, the first letter's class (vowel or not) × length, the first letter, the last two letters,
doubled letters. Results go to benchmarks/results/name_features.json; nothing here is a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch

from namesmith.core.config import TrainConfig
from namesmith.data.words import Corpus, load_words
from namesmith.generation.config import GenerateConfig, length_limit
from namesmith.generation.generate import generate
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.training.calibrate import calibrate

DEFAULT_DATA = "/work/shared/data/names.txt"
RESULTS = Path(__file__).resolve().parent / "results" / "name_features.json"
VOWEL_GROUPS = re.compile("[aeiouy]+")
VOWELS = set("aeiouy")


def vowel_groups(name: str) -> int:
    return len(VOWEL_GROUPS.findall(name))


FEATURES: dict[str, Callable[[str], str]] = {
    "vowel groups": lambda w: f"{min(vowel_groups(w), 7)}",
    "vowel groups x length": lambda w: f"{min(vowel_groups(w), 7)},{min(len(w), 12)}",
    "first class x length": lambda w: f"{w[:1] in VOWELS},{min(len(w), 12)}",
    "first letter": lambda w: w[:1],
    "last two letters": lambda w: w[-2:],
    "doubled letters": lambda w: f"{min(sum(a == b for a, b in zip(w, w[1:])), 3)}",
}
SIGMA2 = (0.01, 0.1, 1.0)


def fit_tilt(train_values: list[str], drawn_values: list[str], sigma2: float) -> tuple[dict[str, float], float]:
    """μ·g - log Z of each value of the feature, and of a value no draw had (the floor)."""
    values = sorted(set(drawn_values) | set(train_values))
    index = {v: i for i, v in enumerate(values)}
    wanted = torch.bincount(torch.tensor([index[v] for v in train_values]), minlength=len(values)).double()
    drawn = torch.bincount(torch.tensor([index[v] for v in drawn_values]), minlength=len(values)).double()
    log_m = (drawn / drawn.sum()).clamp_min(1e-12).log()
    mu = torch.zeros(len(values), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([mu], max_iter=200, line_search_fn="strong_wolfe")
    n = wanted.sum()

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (-(wanted * mu).sum() + n * torch.logsumexp(log_m + mu, 0) + (mu**2).sum() / (2 * sigma2)) / n
        loss.backward()
        return loss

    optimiser.step(closure)
    mu = mu.detach()
    log_z = float(torch.logsumexp(log_m + mu, 0))
    return {v: float(mu[i]) - log_z for v, i in index.items()}, float(mu.min()) - log_z


def nll_change(tilt: dict[str, float], floor: float, feature: Callable[[str], str],
               words: list[str]) -> tuple[float, float]:
    """The change of NLL per character the tilt makes on `words`, and its standard error (words as units)."""
    change = torch.tensor([-tilt.get(feature(w), floor) for w in words], dtype=torch.float64)
    chars = torch.tensor([len(w) + 1 for w in words], dtype=torch.float64)
    mean = float(change.sum() / chars.sum())
    return mean, math.sqrt(len(words)) * float((change - mean * chars).std()) / float(chars.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1337], help="split seeds")
    p.add_argument("--draws", type=int, default=400_000)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    words = load_words(args.data)
    results: dict = {"data": Path(args.data).name, "draws": args.draws, "runs": {}}
    for seed in args.seeds:
        corpus = Corpus.from_words(words, seed=seed)
        model = NGram(corpus.vocab.size, NGramConfig(order=6))
        model.fit(corpus, TrainConfig())
        model.eval()
        model.calibration, report = calibrate(model, corpus.vocab, corpus.split.train, corpus.split.val,
                                              choice="auto", max_len=length_limit(model, None, corpus.max_word_length),
                                              seed=seed)
        draws = generate(model, corpus.vocab, GenerateConfig(num=args.draws, seed=seed),
                         max_word_length=corpus.max_word_length).names
        run: dict = {"calibration": report.choice}
        for name, feature in FEATURES.items():
            drawn, train = [feature(w) for w in draws], [feature(w) for w in corpus.split.train]
            run[name] = {}
            for sigma2 in SIGMA2:
                tilt, floor = fit_tilt(train, drawn, sigma2)
                val, _ = nll_change(tilt, floor, feature, corpus.split.val)
                test, error = nll_change(tilt, floor, feature, corpus.split.test)
                run[name][f"{sigma2:g}"] = {"val_change": val, "test_change": test, "test_change_error": error}
            print(f"seed {seed} {name}: {json.dumps(run[name])}", flush=True)
        results["runs"][str(seed)] = run
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
