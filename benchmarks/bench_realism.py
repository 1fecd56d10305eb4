"""How real do generated names look? Whole-name calibration against an uncalibrated model and markov-namegen.

    python benchmarks/bench_realism.py                      # names.txt, split seeds 42 and 1337
    python benchmarks/bench_realism.py --seeds 42 --draws 20000 --no-gru

For each split seed (the lecture series' 80/10/10 split), the default n-gram (order 6) is trained on
the training names, uncalibrated and calibrated (`--calibrate auto`, namesmith.training.calibrate), and
markov-namegen's algorithm (Twidale's order-3 Markov chains with a Dirichlet prior and Katz-style
back-off, re-implemented below in a few lines) on the same names. For each generator:

- test NLL per character with its standard error (the n-grams; markov-namegen has no likelihood here);
- total variation between the lengths of `--draws` draws and of the training names, and the same for
  the number of vowel groups (runs of a, e, i, o, u, y: a syllable proxy);
- share novel (in no split), share distinct, copy rate (draws that are training names);
- a classifier two-sample test (Lopez-Paz & Oquab 2017): held-out real names (validation and test)
  against as many draws, 5-fold accuracy with its standard error over the folds (0.5: the classifier
  cannot tell them apart), with two discriminators: logistic regression on hashed character 1-5-grams,
  and a small GRU.

Results go to benchmarks/results/realism.json. The machine may be shared: nothing here is a timing.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from namesmith.core.config import TrainConfig
from namesmith.data.words import Corpus, load_words
from namesmith.generation.config import GenerateConfig, length_limit
from namesmith.generation.generate import generate
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import word_log_probs
from namesmith.training.calibrate import calibrate

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "names.txt"
RESULTS = Path(__file__).resolve().parent / "results" / "realism.json"
VOWEL_GROUPS = re.compile("[aeiouy]+")


# --- markov-namegen's algorithm (github.com/Tw1ddle/MarkovNameGenerator) ----------------------------
class MarkovNamegen:
    """Order-k character chains, every letter's count raised by `prior` in each context seen, and back-off
    to the next lower order where a context was never seen; names padded with '#'."""

    def __init__(self, words: list[str], order: int = 3, prior: float = 0.01, seed: int = 0):
        self.order, self.rng = order, random.Random(seed)
        alphabet = sorted({c for w in words for c in w} | {"#"})
        self.models = []
        for k in range(order, 0, -1):
            counts: dict[str, Counter] = defaultdict(Counter)
            for w in words:
                padded = "#" * k + w + "#"
                for i in range(len(padded) - k):
                    counts[padded[i:i + k]][padded[i + k]] += 1
            chains = {ctx: ([c for c in alphabet], [c_counts[c] + prior for c in alphabet])
                      for ctx, c_counts in counts.items()}
            self.models.append((k, chains))

    def name(self, max_len: int = 64) -> str:
        word = "#" * self.order
        while len(word) - self.order < max_len:
            for k, chains in self.models:
                chain = chains.get(word[-k:])
                if chain is not None:
                    letter = self.rng.choices(*chain)[0]
                    break
            if letter == "#":
                break
            word += letter
        return word[self.order:]


# --- the statistics -------------------------------------------------------------------------------
def total_variation(a: list[int], b: list[int]) -> float:
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def vowel_groups(name: str) -> int:
    return len(VOWEL_GROUPS.findall(name))


def nll_and_error(model: torch.nn.Module, words: list[str], vocab) -> tuple[float, float]:  # noqa: ANN001
    """NLL per character and its standard error (words as the independent units: a ratio estimator)."""
    logp = word_log_probs(model, words, vocab)
    chars = torch.tensor([len(w) + 1 for w in words], dtype=torch.float64)
    nll = -logp.sum().item() / chars.sum().item()
    return nll, math.sqrt(len(words)) * (-logp - nll * chars).std().item() / chars.sum().item()


# --- the two discriminators -----------------------------------------------------------------------
HASH_BUCKETS = 1 << 16


def ngram_ids(name: str) -> list[int]:
    padded = f"^{name}$"
    return [zlib.crc32(padded[i:i + n].encode()) % HASH_BUCKETS for n in range(1, 6)
            for i in range(len(padded) - n + 1)]


def logistic_accuracy(train: list[list[int]], y_train: np.ndarray, test: list[list[int]], y_test: np.ndarray) -> float:
    """Logistic regression on hashed character 1-5-grams (`ngram_ids` of each name: an EmbeddingBag of one weight
    per bucket), L2."""
    def bags(ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.tensor([0, *np.cumsum([len(i) for i in ids])[:-1]])
        return torch.tensor([j for i in ids for j in i]), offsets

    weights = nn.EmbeddingBag(HASH_BUCKETS, 1, mode="sum")
    nn.init.zeros_(weights.weight)
    bias = torch.zeros(1, requires_grad=True)
    x, off = bags(train)
    target = torch.tensor(y_train, dtype=torch.float32)
    optimiser = torch.optim.LBFGS([weights.weight, bias], max_iter=60, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.binary_cross_entropy_with_logits(weights(x, off).squeeze(1) + bias, target) \
            + 1e-4 * weights.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        xt, ot = bags(test)
        predicted = (weights(xt, ot).squeeze(1) + bias > 0).numpy()
    return float((predicted == y_test.astype(bool)).mean())


class GRUDiscriminator(nn.Module):
    def __init__(self, vocab_size: int, n_embd: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, n_embd, padding_idx=0)
        self.gru = nn.GRU(n_embd, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(x), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)
        return self.head(h[-1]).squeeze(1)


def gru_accuracy(train: list[str], y_train: np.ndarray, test: list[str], y_test: np.ndarray, stoi: dict[str, int],
                 epochs: int, seed: int) -> float:
    """A small GRU over the characters (start and end markers included), trained with Adam."""
    torch.manual_seed(seed)

    def encode(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [[1] + [stoi.get(c, 2) for c in n] + [1] for n in names]
        x = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, :len(r)] = torch.tensor(r)
        return x, torch.tensor([len(r) for r in rows])

    model = GRUDiscriminator(len(stoi) + 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, lengths = encode(train)
    target = torch.tensor(y_train, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(256):
            optimiser.zero_grad()
            F.binary_cross_entropy_with_logits(model(x[batch], lengths[batch]), target[batch]).backward()
            optimiser.step()
    with torch.no_grad():
        xt, lt = encode(test)
        predicted = (model(xt, lt) > 0).numpy()
    return float((predicted == y_test.astype(bool)).mean())


def two_sample_test(real: list[str], fake: list[str], discriminator: str, stoi: dict[str, int], seed: int,
                    gru_epochs: int) -> tuple[float, float]:
    """5-fold accuracy of telling `real` from as many `fake` names, and its standard error over the folds."""
    rng = np.random.default_rng(seed)
    names = real + fake[:len(real)]
    labels = np.array([1] * len(real) + [0] * len(real))
    order = rng.permutation(len(names))
    folds = np.array_split(order, 5)
    features = [ngram_ids(n) for n in names] if discriminator == "logistic" else names
    accuracies = []
    for k, held in enumerate(folds):
        rest = np.concatenate([f for j, f in enumerate(folds) if j != k])
        args = ([features[i] for i in rest], labels[rest], [features[i] for i in held], labels[held])
        accuracies.append(logistic_accuracy(*args) if discriminator == "logistic"
                          else gru_accuracy(*args, stoi, gru_epochs, seed + k))
    return float(np.mean(accuracies)), float(np.std(accuracies, ddof=1) / math.sqrt(len(accuracies)))


def realism(draws: list[str], corpus: Corpus, args: argparse.Namespace, seed: int) -> dict[str, float]:
    train, held_out = corpus.split.train, corpus.split.val + corpus.split.test
    known, train_set = set(train) | set(held_out), set(train)
    stoi = {c: i + 3 for i, c in enumerate(corpus.vocab.chars)}
    result = {
        "length_tv": total_variation([len(n) for n in draws], [len(n) for n in train]),
        "vowel_group_tv": total_variation([vowel_groups(n) for n in draws], [vowel_groups(n) for n in train]),
        "share_novel": sum(n not in known for n in draws) / len(draws),
        "share_distinct": len(set(draws)) / len(draws),
        "copy_rate": sum(n in train_set for n in draws) / len(draws),
        "short_le3": sum(len(n) <= 3 for n in draws) / len(draws),
        "long_ge10": sum(len(n) >= 10 for n in draws) / len(draws),
    }
    held_out = held_out[:len(draws)]
    fake = random.Random(seed).sample(draws, len(held_out))
    result["lr_accuracy"], result["lr_error"] = two_sample_test(held_out, fake, "logistic", stoi, seed, 0)
    if args.gru:
        result["gru_accuracy"], result["gru_error"] = two_sample_test(held_out, fake, "gru", stoi, seed,
                                                                      args.gru_epochs)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 1337], help="split seeds")
    p.add_argument("--draws", type=int, default=200_000)
    p.add_argument("--gru", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--gru-epochs", type=int, default=6)
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    words = load_words(args.data)
    results: dict[str, dict] = {"data": Path(args.data).name, "draws": args.draws, "runs": {}}
    for seed in args.seeds:
        corpus = Corpus.from_words(words, seed=seed)
        model = NGram(corpus.vocab.size, NGramConfig(order=6))
        model.fit(corpus, TrainConfig())
        model.eval()
        max_len = length_limit(model, None, corpus.max_word_length)
        started = time.perf_counter()
        calibration, report = calibrate(model, corpus.vocab, corpus.split.train, corpus.split.val, choice="auto",
                                        max_len=max_len, seed=seed)
        fit_seconds = time.perf_counter() - started
        run: dict[str, dict] = {}
        for label, tilt in (("ngram", None), ("ngram calibrated", calibration)):
            model.calibration = tilt
            nll, err = nll_and_error(model, corpus.split.test, corpus.vocab)
            result = generate(model, corpus.vocab, GenerateConfig(num=args.draws, seed=seed),
                              max_word_length=corpus.max_word_length)
            run[label] = {"test_nll": nll, "test_nll_error": err, **realism(result.names, corpus, args, seed)}
            print(f"seed {seed} {label}: {json.dumps(run[label])}", flush=True)
        run["ngram calibrated"]["calibration"] = {**report.to_dict(), "seconds": fit_seconds}
        namegen = MarkovNamegen(corpus.split.train, order=3, prior=0.01, seed=seed)
        draws = [namegen.name() for _ in range(args.draws)]
        run["markov-namegen (order 3)"] = realism([d for d in draws if d], corpus, args, seed)
        print(f"seed {seed} markov-namegen: {json.dumps(run['markov-namegen (order 3)'])}", flush=True)
        results["runs"][str(seed)] = run
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")  # after each seed: a long run keeps its part
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
