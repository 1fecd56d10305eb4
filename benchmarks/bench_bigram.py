"""Benchmark: namesmith's bigram path against the seed notebook's algorithm, same process, same data.

The seed (notes on part 1 of the makemore lecture series) trains W (27×27) by full-batch gradient
descent on one_hot(every pair) @ W in torch float32, lr 100 → 10 over 10,000 epochs, and samples
one character at a time with np.random.choice. Both are reimplemented faithfully below and timed
beside namesmith's sufficient-statistics loop (models/bigram.py), its alias-table sampler
(sample.py) and its streaming counter (pair_counts.py).

    python3 benchmarks/bench_bigram.py [--data PATH] [--seed-epochs 100] [--synthetic-chars 200e6]

Run long benchmarks under `flock /tmp/namesmith-long.lock`; the machine is shared, so figures are
medians of several runs. Not a test: it prints a table and optionally writes --json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "names.txt"
sys.path.insert(0, str(REPO))

from namesmith.core.config import TrainConfig  # noqa: E402
from namesmith.data.pair_counts import count_file, count_pairs  # noqa: E402
from namesmith.data.words import Corpus, DataConfig, load_words  # noqa: E402
from namesmith.generation.config import GenerateConfig  # noqa: E402
from namesmith.generation.generate import generate  # noqa: E402
from namesmith.models.bigram import BigramConfig, BigramLinear  # noqa: E402

EPOCHS = 10_000
rows: list[tuple[str, str, str, str]] = []  # (figure, seed algorithm, namesmith, namesmith / seed)


def report(figure: str, seed: float | None, ours: float, unit: str, better: str = "higher") -> None:
    ratio = "" if seed is None else f"{(ours / seed if better == 'higher' else seed / ours):,.0f}×"
    fmt = lambda v: "" if v is None else (f"{v:,.4g} {unit}" if abs(v) < 1e4 else f"{v:,.0f} {unit}")  # noqa: E731
    rows.append((figure, fmt(seed), fmt(ours), ratio))
    print(f"  {figure}: seed {fmt(seed) or '-'}, namesmith {fmt(ours)} {ratio}", flush=True)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- the seed notebook, faithfully -----------------------------------------------------------
def seed_data(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    words = Path(path).read_text().splitlines()  # the notebook: open(...).read().splitlines()
    words = ["." + w + "." for w in words]
    chars = sorted(set("".join(words)))
    ctoi = {c: i for i, c in enumerate(chars)}
    xs, ys = [], []
    for w in words:
        for a, b in zip(w, w[1:]):
            xs.append(a)
            ys.append(b)
    return torch.tensor([ctoi[x] for x in xs]), torch.tensor([ctoi[y] for y in ys]), chars


def seed_train(xs: torch.Tensor, ys: torch.Tensor, epochs: int, W0: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The notebook's full-batch cell (its per-epoch print left out); returns W and its final NLL."""
    num = xs.numel()
    xenc = F.one_hot(xs, num_classes=W0.size(0)).float()
    W = W0.clone().requires_grad_()
    for i in range(epochs):
        lr_start, lr_end = 100, 10
        lr = lr_start - (lr_start - lr_end) * i / epochs
        logit = xenc @ W
        counts = logit.exp()
        probs = counts / counts.sum(1, keepdim=True)
        loss = -probs[torch.arange(num), ys].log().mean()
        W.grad = None
        loss.backward()
        W.data += -lr * W.grad
        W.grad.data.zero_()
    with torch.no_grad():
        probs = (xenc @ W).softmax(1)
        return W.detach(), float(-probs[torch.arange(num), ys].log().mean())


def seed_sample(W: torch.Tensor, chars: list[str], n: int) -> list[str]:
    """The notebook's generation cell: np.random.choice per character."""
    ctoi = {c: i for i, c in enumerate(chars)}
    counts = W.exp()
    weightsN = (counts / counts.sum(1, keepdim=True)).numpy().astype(np.float64)
    weightsN /= weightsN.sum(1, keepdims=True)  # float32 rows may miss 1 by more than choice allows
    out = []
    for _ in range(n):
        genWord, nxt, nextchar = "", 0, ""
        while nextchar != ".":
            nextchar = np.random.choice(chars, p=weightsN[nxt, :])
            genWord += nextchar
            nxt = ctoi[nextchar]
        out.append(genWord[:-1])
    return out


# --- namesmith --------------------------------------------------------------------------------
def ours_train(corpus: Corpus, epochs: int) -> tuple[BigramLinear, float]:
    model = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=0))
    config = TrainConfig(max_steps=epochs, device="cpu")
    model.fit(corpus, config.with_defaults(model.train_defaults(config)))
    x, y = corpus.tensors("train")
    mask = y >= 0
    with torch.no_grad():
        return model, float(-model.log_probs()[x[mask], y[mask]].double().mean())


RSS_CHILD = """
import json, sys, time
from namesmith.data.pair_counts import count_file
base = int(next(l.split()[1] for l in open("/proc/self/status").read().splitlines() if l.startswith("VmHWM")))
from namesmith.data.words import DataConfig
start = time.perf_counter()
counts = count_file(DataConfig(path=sys.argv[1], split=sys.argv[2] == "split"))
seconds = time.perf_counter() - start
status = open("/proc/self/status").read()
hwm = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
print(json.dumps({"seconds": seconds, "bytes": counts.n_bytes, "vmhwm_kb": hwm, "import_kb": base,
                  "words": sum(counts.n_words.values())}))
"""


def count_in_subprocess(path: str, split: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, path, "split" if split else "nosplit"], check=True,
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--seed-epochs", type=int, default=100, help="epochs of the seed's loop (≥ 50)")
    parser.add_argument("--seed-names", type=int, default=5_000, help="names drawn by the seed's sampler")
    parser.add_argument("--names", type=int, default=1_000_000, help="names drawn by namesmith per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--synthetic-chars", type=float, default=200e6, help="0 skips the large-file figures")
    parser.add_argument("--e2e-runs", type=int, default=3)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    print(f"data {args.data}; torch {torch.__version__}; {os.cpu_count()} CPUs; {torch.get_num_threads()} threads",
          flush=True)

    # 1. full-batch training: same data (every word, no split), same initial W, same schedule
    xs, ys, chars = seed_data(Path(args.data))
    corpus = Corpus.from_words(load_words(args.data), split=False)
    assert "".join(chars[1:]) == "".join(corpus.vocab.chars) and chars[0] == ".", "vocabularies differ"
    W0 = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=0)).W.detach()
    print(f"training: {xs.numel():,} pairs, vocabulary {len(chars)}", flush=True)
    start = time.perf_counter()
    W_seed, nll_seed = seed_train(xs, ys, args.seed_epochs, W0)
    seed_epoch = (time.perf_counter() - start) / args.seed_epochs
    _, nll_short = ours_train(corpus, args.seed_epochs)
    ours_total = median_time(lambda: ours_train(corpus, EPOCHS), args.repeats)
    model, nll_final = ours_train(corpus, EPOCHS)
    report("seconds per full-batch epoch", seed_epoch, ours_total / EPOCHS, "s", better="lower")
    report(f"seconds for {EPOCHS:,} epochs (seed extrapolated from {args.seed_epochs})", seed_epoch * EPOCHS,
           ours_total, "s", better="lower")
    rows.append((f"NLL after {args.seed_epochs} epochs", f"{nll_seed:.6f}", f"{nll_short:.6f}",
                 f"|Δ| = {abs(nll_seed - nll_short):.1e}"))
    print(f"  NLL after {args.seed_epochs} epochs: seed {nll_seed:.6f}, namesmith {nll_short:.6f}", flush=True)
    rows.append((f"NLL after {EPOCHS:,} epochs", "(not run)", f"{nll_final:.6f}", ""))
    assert abs(nll_seed - nll_short) < 1e-4, "the two formulations disagree"

    # 2. sampling names (decoded to Python strings) from the same kind of model
    np.random.seed(0)
    seed_rate = args.seed_names / median_time(lambda: seed_sample(W_seed, chars, args.seed_names), 1)
    seeds = iter(range(1000))
    ours_rate = args.names / median_time(
        lambda: generate(model, corpus.vocab, GenerateConfig(num=args.names, seed=next(seeds)), max_word_length=15),
        args.repeats)
    report("names sampled per second", seed_rate, ours_rate, "names/s")

    # 3. counting pairs: names.txt in memory and streamed, then a large synthetic list
    x, y = corpus.tensors("train")
    n_chars = Path(args.data).stat().st_size
    t_mem = median_time(lambda: count_pairs(*Corpus.from_words(load_words(args.data), split=False)
                                            .tensors("train"), corpus.vocab.size), args.repeats)
    t_stream = median_time(lambda: count_file(DataConfig(path=args.data, split=False)), args.repeats)
    report("count matrix, names.txt, in memory (read+parse+encode+count)", None, t_mem, "s", better="lower")
    report("count matrix, names.txt, streamed", None, t_stream, "s", better="lower")
    report("  characters/s streamed, names.txt", None, n_chars / t_stream, "chars/s")
    if args.synthetic_chars:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "synthetic.txt")
            start, written, chunk = time.perf_counter(), 0, 0
            with open(path, "w") as f:
                while written < args.synthetic_chars:
                    names = generate(model, corpus.vocab, GenerateConfig(num=1_000_000, seed=10_000 + chunk),
                                     max_word_length=15).names
                    text = "\n".join(names) + "\n"
                    f.write(text)
                    written += len(text)
                    chunk += 1
            print(f"  wrote {written:,} characters in {time.perf_counter() - start:.1f} s", flush=True)
            runs = [count_in_subprocess(path, split=True) for _ in range(3)]
            seconds = statistics.median(r["seconds"] for r in runs)
            report(f"count matrix, {written / 1e6:.0f}M-character list, streamed + split", None, seconds, "s",
                   better="lower")
            report("  characters/s streamed, synthetic list", None, written / seconds, "chars/s")
            report("  peak RSS (VmHWM) of the counting process", None, max(r["vmhwm_kb"] for r in runs) / 1024, "MB",
                   better="lower")
            report("  of which after `import namesmith` (torch)", None, max(r["import_kb"] for r in runs) / 1024,
                   "MB", better="lower")

    # 4. end to end: `namesmith train --model bigram` on names.txt, process start to exit
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "namesmith.cli", "-q", "train", "--model", "bigram", "--data", args.data,
               "--out", os.path.join(tmp, "model")]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        walls = []
        for _ in range(args.e2e_runs):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            walls.append(time.perf_counter() - start)
        report("`namesmith train --model bigram` wall time (median)", None, statistics.median(walls), "s",
               better="lower")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import namesmith"], check=True, env=env)
        report("  of which `import namesmith` (python start + torch)", None, time.perf_counter() - start, "s",
               better="lower")

    width = [max(len(r[i]) for r in rows + [("figure", "seed algorithm", "namesmith", "ratio")]) for i in range(4)]
    print()
    for r in [("figure", "seed algorithm", "namesmith", "namesmith / seed"), *rows]:
        print(" | ".join(c.ljust(w) for c, w in zip(r, width)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
