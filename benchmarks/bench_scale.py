"""Counting n-grams at scale: a large word list, counted in 1 and 2 processes, fitted and evaluated.

    python benchmarks/bench_scale.py                 # a 1 GB word list (made once, kept in --dir)
    python benchmarks/bench_scale.py --mb 100        # a quick run
    python benchmarks/bench_scale.py --mb 50 --workers 1 2 4

The word list is made here: names sampled from an order-6 n-gram fitted on the built-in data set
(US baby names), written once to --dir and reused. Then, for each --workers count, the order-6
n-gram counts of the whole file (`namesmith.data.counting.count_ngrams_file`: two passes, see there),
timed, with the peak resident memory of the counting processes; the counts must be identical
whatever the number of processes. Then the model is fitted from the counts and evaluated on the
held-out parts, and a few names are sampled from it. Last, on a prefix small enough to hold in
memory, the streamed n-gram is compared with `NGram.fit` on the same split (`streamed_split`):
the tables must be equal, and so must the held-out NLL.

Targets (issue 17): at least 20M characters/s per process, 2 processes at least 1.7x one, peak
resident memory at most 2 GB. Each count runs in a fresh process (a spawned worker) so that its
peak memory is its own. Characters are those of the words kept plus one newline per word. CPU
seconds (the counting process and its workers, their start-up included) are printed too: on a
shared machine wall time measures the neighbours as much as the code.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from namesmith.core.config import TrainConfig
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.counting import PARTS, count_ngrams_file, streamed_split
from namesmith.data.words import Corpus, DataConfig, load_words
from namesmith.models.ngram import NGram, NGramConfig

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


def sample_names(model: NGram, vocab: Vocab, num: int, seed: int = 0) -> list[str]:
    """`num` names from the model, one `step()` per character for the whole batch."""
    generator = torch.Generator().manual_seed(seed)
    names = [""] * num
    active = torch.arange(num)
    state, token = model.init_state(num), torch.full((num,), BOUNDARY, dtype=torch.long)
    for _ in range(64):
        logprobs, state = model.step(state, token)
        token = torch.multinomial(logprobs.exp(), 1, generator=generator).squeeze(1)
        keep = (token != BOUNDARY).nonzero().squeeze(1)
        active, token, state = active[keep], token[keep], model.select_state(state, keep)
        for row, t in zip(active.tolist(), token.tolist()):
            names[row] += vocab.itos[t]
        if not len(active):
            break
    return names


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def count_job(path: str, workers: int, save: str | None, results: multiprocessing.Queue) -> None:
    """Count in a process of its own, so that its peak memory (and its workers') is this count's."""
    torch.set_num_threads(1)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    counts = count_ngrams_file(DataConfig(path=path), ORDER, workers=workers)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    digest = hashlib.sha256()
    for part in ("train", "held_out", "val", "test"):
        digest.update(counts.part(part).keys.numpy().tobytes())
        digest.update(counts.part(part).counts.numpy().tobytes())
    if save:
        torch.save(counts, save)
    results.put({
        "seconds": seconds,
        "cpu_seconds": cpu,  # this process and its workers (their start-up included)
        "characters": sum(counts.part(p).n_tokens for p in PARTS),  # kept characters and one newline per word
        "bytes": counts.n_bytes,
        "distinct_train": len(counts.train.keys),
        "distinct_all": sum(len(counts.part(p).keys) for p in ("train", "val", "test")),
        "sha256": digest.hexdigest(),
        # ru_maxrss: KiB on Linux; for children, the largest one (a worker)
        "rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0,
    })


def run_count(path: Path, workers: int, save: Path | None) -> dict:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    job = context.Process(target=count_job, args=(str(path), workers, str(save) if save else None, results))
    job.start()
    result = results.get()
    job.join()
    return result


def prefix_file(path: Path, mb: float) -> Path:
    """The first `mb` megabytes of a word list, cut after a newline."""
    prefix = path.with_name(f"{path.stem}-first-{mb:g}mb.txt")
    if not prefix.exists():
        with open(path, "rb") as f:
            data = f.read(int(mb * 1e6))
        prefix.write_bytes(data[: data.rfind(b"\n") + 1])
    return prefix


def compare_in_memory(path: Path) -> None:
    """The streamed n-gram against `NGram.fit` on the same split, for a list that fits in memory."""
    start = time.perf_counter()
    counts = count_ngrams_file(DataConfig(path=str(path)), ORDER)
    streamed = NGram(counts.vocab.size, NGramConfig(order=ORDER))
    streamed.fit_counts(counts.train, counts.held_out)
    streamed_seconds = time.perf_counter() - start
    start = time.perf_counter()
    words = load_words(path)
    corpus = Corpus(streamed_split(words), Vocab.from_words(words))
    in_memory = NGram(corpus.vocab.size, NGramConfig(order=ORDER))
    in_memory.fit(corpus, TrainConfig())
    memory_seconds = time.perf_counter() - start
    equal = all(torch.equal(tensor, streamed.state_dict()[name]) for name, tensor in in_memory.state_dict().items())
    print(f"\nin memory vs streamed, {path.name} ({path.stat().st_size / 1e6:.1f} MB, {len(words):,} words): "
          f"tables equal bit for bit: {equal}")
    for part in ("val", "test"):
        print(f"  {part} NLL: in memory {in_memory.nll(*corpus.tensors(part)):.6f}   "
              f"streamed {streamed.nll_counts(counts.part(part)):.6f}")
    print(f"  read + fit: in memory {memory_seconds:.2f} s   streamed {streamed_seconds:.2f} s "
          f"(in memory: includes evaluating the train and val splits)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=1000, help="size of the word list in MB (default 1000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="processes to count with")
    parser.add_argument("--compare-mb", type=float, default=2,
                        help="size of the prefix compared with the in-memory n-gram (default 2 MB: the in-memory "
                             "fit needs about 250 bytes per character)")
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "namesmith-bench-scale"),
                        help="where the word list is written and kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"sampled-{args.mb:g}mb.txt"
    if not path.exists():
        start = time.perf_counter()
        partial = path.with_suffix(".partial")
        make_word_list(partial, args.mb)
        partial.rename(path)
        print(f"made {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")
    print(f"data: {path} ({path.stat().st_size / 1e6:.1f} MB); order {ORDER}; {os.cpu_count()} CPUs; "
          f"torch {torch.__version__}")

    saved = directory / "counts.pt"
    runs = {}
    for workers in args.workers:
        runs[workers] = run = run_count(path, workers, saved if workers == args.workers[-1] else None)
        rate = run["characters"] / run["seconds"]
        print(f"count, {workers} process{'es' if workers > 1 else ''}: {run['seconds']:.2f} s   "
              f"{rate / 1e6:.1f}M characters/s ({rate / workers / 1e6:.1f}M per process)   "
              f"CPU {run['cpu_seconds']:.2f} s ({run['characters'] / run['cpu_seconds'] / 1e6:.1f}M characters "
              f"per CPU-second)\n  peak RSS: main {run['rss_main_mb']:.0f} MB, largest worker "
              f"{run['rss_worker_mb']:.0f} MB   distinct 6-grams: train {run['distinct_train']:,}, all parts "
              f"{run['distinct_all']:,}", flush=True)
    first = runs[args.workers[0]]
    for workers, run in runs.items():
        if workers != args.workers[0]:
            print(f"  {workers} vs {args.workers[0]}: {first['seconds'] / run['seconds']:.2f}x faster; "
                  f"counts identical: {run['sha256'] == first['sha256']}")

    counts = torch.load(saved, weights_only=False)
    start = time.perf_counter()
    model = NGram(counts.vocab.size, NGramConfig(order=ORDER))
    model.fit_counts(counts.train, counts.held_out)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    nll = {part: model.nll_counts(counts.part(part)) for part in PARTS}
    print(f"\nfit from counts {fit_seconds:.2f} s ({len(model.context_keys):,} contexts); evaluate "
          f"{time.perf_counter() - start:.2f} s: NLL train {nll['train']:.4f}  val {nll['val']:.4f}  "
          f"test {nll['test']:.4f}")
    print(f"  e.g. {', '.join(sample_names(model, counts.vocab, 10))}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process (loading the counts, fit, evaluate): {peak:.0f} MB")
    saved.unlink()
    compare_in_memory(prefix_file(path, args.compare_mb))


if __name__ == "__main__":
    main()
