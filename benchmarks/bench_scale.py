"""Counting n-grams at scale: a large word list, counted in 1 and 2 processes, fitted and evaluated.

    python benchmarks/bench_scale.py                 # a 1 GB word list (made once, kept in --dir)
    python benchmarks/bench_scale.py --mb 100        # a quick run
    python benchmarks/bench_scale.py --mb 50 --workers 1 2 4

The word list is made here: names sampled from an order-6 n-gram fitted on the built-in data set
(US baby names), written once to --dir and reused. Then, for each --workers count, the order-6
n-gram counts of the whole file (`namesmith.counting.count_ngrams_file`: two passes, see there),
timed, with the peak resident memory of the counting processes; the counts must be identical
whatever the number of processes. Then the model is fitted from the counts and evaluated on the
held-out parts, and a few names are sampled from it. Last, on a prefix small enough to hold in
memory, the streamed n-gram is compared with `NGram.fit` on the same split (`streamed_split`):
the tables must be equal, and so must the held-out NLL.

Targets (issue 17): at least 20M characters/s per process, 2 processes at least 1.7x one, peak
resident memory at most 2 GB. Each count runs in a fresh process (a spawned worker) so that its
peak memory is its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from namesmith.config import TrainConfig
from namesmith.counting import count_ngrams_file, streamed_split
from namesmith.data import Corpus, DataConfig, load_words
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.vocab import BOUNDARY, Vocab

ORDER = 6


def make_word_list(path: Path, mb: float, seed: int = 0) -> None:
    """Write about `mb` megabytes of names sampled from an order-6 n-gram of the built-in data."""
    words = load_words("builtin")
    vocab = Vocab.from_words(words)
    model = NGram(vocab.size, NGramConfig(order=ORDER))
    model.fit(Corpus.from_words(words, split=False), TrainConfig())
    code_of = np.array([ord("\n")] + [ord(c) for c in vocab.chars], dtype=np.uint32)  # token → code point
    generator = torch.Generator().manual_seed(seed)
    batch, room = 1 << 16, 48  # names per batch; longer names are dropped (rare)
    target, written = int(mb * 1e6), 0
    with open(path, "wb") as f:
        while written < target:
            tokens = np.zeros((batch, room), dtype=np.int64)
            lengths = np.full(batch, room, dtype=np.int64)
            active = torch.arange(batch)
            state, token = model.init_state(batch), torch.full((batch,), BOUNDARY, dtype=torch.long)
            for t in range(room):
                logprobs, state = model.step(state, token)
                cdf = logprobs.exp().cumsum(1)
                u = torch.rand(len(cdf), 1, generator=generator) * cdf[:, -1:]
                token = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)
                ended = token == BOUNDARY
                lengths[active[ended].numpy()] = t
                keep = (~ended).nonzero().squeeze(1)
                active, token, state = active[keep], token[keep], model.select_state(state, keep)
                tokens[active.numpy(), t] = token.numpy()
                if not len(active):
                    break
            finished = lengths < room
            tokens, lengths = tokens[finished], lengths[finished]
            kept = np.arange(room) <= lengths[:, None]  # each name and the end token after it (a newline)
            data = code_of[tokens[kept]].tobytes().decode("utf-32-le").encode("utf-8")
            f.write(data)
            written += len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=1000, help="size of the word list in MB (default 1000)")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "namesmith-bench-scale"),
                        help="where the word list is written and kept")
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sampled-{args.mb:g}mb.txt"
    if not path.exists():
        start = time.perf_counter()
        partial = path.with_suffix(".partial")
        make_word_list(partial, args.mb)
        partial.rename(path)
        print(f"made {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
