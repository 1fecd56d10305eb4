"""The Kneser-Ney n-gram on names.txt: NLL, fitting time, sampling speed, and the choice of order.

    python benchmarks/bench_ngram.py                          # default model (order 6), then orders 3..8
    python benchmarks/bench_ngram.py --orders 5 6 7 --repeats 5
    python benchmarks/bench_ngram.py --discounts tuned modified-kn kn 0.75

NLL is per character: the mean over every target token, end tokens included (the loss the
neural models report). Split: the lecture series' (seed 42, 80/10/10). Fitting time and
sampling speed are medians of --repeats runs, with one torch thread by default (the machine is
shared: single runs are noisy, and two threads on two busy cores wait on each other).
Sampling uses the model's `step()` in a plain vectorised loop (every unfinished name of the
batch advances together, inverse-CDF draws), and also the package's generic sampler.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from namesmith.core.config import TrainConfig
from namesmith.core.vocab import BOUNDARY
from namesmith.data.words import Corpus, load_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draws import decode_batch
from namesmith.generation.generate import generate
from namesmith.models.ngram import NGram, NGramConfig

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "names.txt"


def nll(model: NGram, corpus: Corpus, part: str) -> float:
    x, y = corpus.tensors(part)
    with torch.no_grad():
        logits = model(x)  # (N, L+1, V)
    return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1).item()


@torch.inference_mode()
def sample_with_steps(model: NGram, corpus: Corpus, num: int, max_length: int, seed: int) -> list[str]:
    """`num` names: one `step()` per character for the whole batch, finished names leave it."""
    generator = torch.Generator().manual_seed(seed)
    tokens = np.zeros((num, max_length), dtype=np.int64)
    lengths = np.full(num, max_length, dtype=np.int64)  # names still going at max_length are cut there
    active = torch.arange(num)
    state = model.init_state(num)
    token = torch.full((num,), BOUNDARY, dtype=torch.long)
    for t in range(max_length):
        logits, state = model.step(state, token)
        cdf = logits.exp().cumsum(1)  # (B, V): rows are normalised distributions
        u = torch.rand(len(cdf), 1, generator=generator) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)  # inverse CDF
        going = token != BOUNDARY
        lengths[active[~going].numpy()] = t
        keep = going.nonzero().squeeze(1)
        active, token, state = active[keep], token[keep], model.select_state(state, keep)
        tokens[active.numpy(), t] = token.numpy()
        if len(active) == 0:
            break
    return decode_batch(tokens, lengths, corpus.vocab)


def timed(fn, repeats: int) -> tuple[float, object]:  # noqa: ANN001
    """Median seconds of `repeats` calls, and the last call's result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def fitted(corpus: Corpus, order: int, discount: str) -> NGram:
    model = NGram(corpus.vocab.size, NGramConfig(order=order, discount=discount))
    model.fit(corpus, TrainConfig())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="word list (default: ../shared/data/names.txt)")
    parser.add_argument("--orders", type=int, nargs="*", default=[3, 4, 5, 6, 7, 8],
                        help="orders to compare on val/test NLL (none: skip)")
    parser.add_argument("--discounts", nargs="+", default=["tuned", "modified-kn"], help="discount methods")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (the median is reported)")
    parser.add_argument("--num", type=int, default=50_000, help="names per sampling run")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy machine more threads wait on each other)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    corpus = Corpus.from_words(load_words(args.data), seed=42)
    sizes = {part: len(corpus.words(part)) for part in ("train", "val", "test")}
    print(f"data: {args.data}  words: {sizes}  vocab: {corpus.vocab.size}  torch threads: {torch.get_num_threads()}")
    max_length = 2 * corpus.max_word_length

    config = GenerateConfig(num=args.num, seed=0)
    for discount in args.discounts:
        fit_seconds, model = timed(lambda discount=discount: fitted(corpus, 6, discount), args.repeats)
        losses = {part: nll(model, corpus, part) for part in ("train", "val", "test")}
        eval_seconds, _ = timed(lambda model=model: nll(model, corpus, "test"), args.repeats)
        table_seconds, _ = timed(model._transitions, 1)  # built once, on the first sampling step
        step_seconds, names = timed(lambda model=model: sample_with_steps(model, corpus, args.num, max_length, 0),
                                    args.repeats)
        generic_seconds, _ = timed(lambda model=model: generate(model, corpus.vocab, config,
                                                                max_word_length=corpus.max_word_length), args.repeats)
        discounts = [[round(d, 3) for d in row] for row in model.discounts.tolist()]
        print(f"\norder 6, discount {discount}: D1/D2/D3+ per order {discounts}")
        print(f"  NLL train {losses['train']:.4f}  val {losses['val']:.4f}  test {losses['test']:.4f}")
        print(f"  fit {fit_seconds:.2f} s   test-split evaluation {eval_seconds * 1000:.0f} ms   "
              f"contexts stored {len(model.context_keys):,}")
        print(f"  sampling: step() loop {args.num / step_seconds:,.0f} names/s   generic sampler "
              f"{args.num / generic_seconds:,.0f} names/s   (transition table: {table_seconds * 1000:.0f} ms, once)")
        print(f"  e.g. {', '.join(names[:10])}")

    if args.orders:
        print("\nNLL by order (val / test):")
        print("order  " + "  ".join(f"{d:>22}" for d in args.discounts))
        for order in args.orders:
            cells = []
            for discount in args.discounts:
                model = fitted(corpus, order, discount)
                cells.append(f"{nll(model, corpus, 'val'):.4f} / {nll(model, corpus, 'test'):.4f}")
            print(f"{order:>5}  " + "  ".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
