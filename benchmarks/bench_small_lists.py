"""Small lists: a model of 30-300 names alone, the catalogue prior alone, and the two adapted.

    python benchmarks/bench_small_lists.py                      # every list, k = 30, 100, 300, 5 draws
    python benchmarks/bench_small_lists.py --lists world:tr_TR --sizes 30 --draws 2
    python benchmarks/bench_small_lists.py --lists surnames:en_US --neural    # adds the fine-tuned GRU

Protocol (issue "small lists"): from a list, draw k names at random (`--draws` draws, seeds 0..),
train on them, and evaluate on the rest of the list: the mean NLL per character (end token
included) of

- (a) the small list alone: a Kneser-Ney n-gram of the k names, at its best order (the order
  1-6 with the lowest mean held-out NLL over the draws: the best the list alone can do);
- (b) the prior alone: the n-gram of every other name of the catalogue (namesmith.adaptation.prior);
- (b') the prior's mixture as the adapted model re-weighed it (the model without the list's table,
  for the record);
- (c) the adapted model (namesmith.adaptation.adapt): the list's counts over the re-weighed prior, its
  weights chosen by cross-validation on the k names.

All three read the same vocabulary: the k names' characters and the prior's characters of the
same scripts (namesmith.adaptation.background.adapted_vocab); a held-out character outside it costs the same
documented fallback under each (namesmith.scoring.open_vocabulary.open_word_log_probs: UNKNOWN_CHAR_LOG_PROB, and what
follows it read as after the known characters of its script), so its cost does not differ between
columns (the `unk` column counts such characters per draw).

Lists: leave-one-locale-out on `world` — the list is one locale's names — for locales in several
scripts; and `surnames:en_US`, a list of another kind that the project ships (faker's US surnames,
namesmith/catalogue/surnames.tsv.gz). The prior of a list never sees the list's names: it is built
from the catalogue without the list's locale AND without any of the list's names (casefolded exact
match) in every other group and set (`catalogue_groups(exclude_locales=..., exclude_names=...)`).
Leaving the locale out is not enough: the `israel` set holds 592 of he_IL's 593 names, and 784 of
the 1,000 surnames are first names of `us` or `world`, so (b) would measure memorised test names.
The surnames' prior is thus the catalogue less those 784 names: the held-out surnames that are
also first names are still real first names, but a prior that knew them would score them from
memory, not from what names look like.
Targets: (c) beats the better of (a) and (b) by >= 0.10 nats at k = 100 and >= 0.05 at k = 30.
The gain's standard error is over the draws (each draw's gain against the column with the better
mean).
`--neural` also fine-tunes the catalogue's GRU prior (built or read from the cache; minutes the
first time) on each draw and reports it as (d), for the surnames only; that prior is the full
catalogue's (it saw the surnames that are first names), so (d) is not held out as (b) and (c) are.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch

from namesmith.adaptation.adapt import adapt_ngram
from namesmith.adaptation.background import adapted_vocab, background_model
from namesmith.adaptation.fine_tune import adapt_neural
from namesmith.adaptation.prior import build_ngram_prior, catalogue_groups, catalogue_prior
from namesmith.core.config import TrainConfig
from namesmith.data.catalogue import load_dataset
from namesmith.data.words import Corpus, Split
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.scoring.open_vocabulary import open_word_log_probs

LISTS = ("world:tr_TR", "world:ru_RU", "world:ar_AA", "world:ne_NP", "world:zh_TW", "world:he_IL", "surnames:en_US")
SIZES = (30, 100, 300)
TARGETS = {30: 0.05, 100: 0.10}


def list_names(spec: str) -> list[str]:
    """The distinct names of `set:locale`, lowercased as the prior's are (casing folded)."""
    name, locale = spec.split(":")
    table = load_dataset(name)
    return list(dict.fromkeys(w.lower() for w, loc in zip(table.names, table.labels["locale"]) if loc == locale))


def nll(model: torch.nn.Module, words: list[str], vocab) -> float:  # noqa: ANN001
    return -open_word_log_probs(model, words, vocab).sum().item() / sum(len(w) + 1 for w in words)


def run_list(spec: str, sizes: list[int], draws: int, neural: bool) -> list[dict]:
    names = list_names(spec)
    start = time.perf_counter()
    # the prior never sees the list's names: without the list's locale (a `world` list), and without
    # any of its names in any other group or set (see the module docstring)
    locales = (spec.split(":")[1],) if spec.startswith("world:") else ()
    prior = build_ngram_prior(catalogue_groups(exclude_locales=locales, exclude_names=names))
    labels = prior.meta["prior"]["components"]
    print(f"{spec}: {len(names):,} names; prior of {prior.meta['prior']['n_words']:,} names with "
          f"{len(labels)} components ({time.perf_counter() - start:.1f} s)", flush=True)
    gru = catalogue_prior("gru") if neural and not locales else None
    rows = []
    for k in sizes:
        if len(names) < k + 30:
            print(f"  k={k}: skipped (the list has {len(names)} names; at least 30 must be left to evaluate on)")
            continue
        results: dict[str, list] = {"a": [], "b": [], "b2": [], "c": [], "d": [], "unk": [], "seconds": []}
        for draw in range(draws):
            shuffled = names[:]
            random.Random(draw).shuffle(shuffled)
            train, test = shuffled[:k], shuffled[k:]
            vocab = adapted_vocab(train, prior.vocab)
            results["unk"].append(sum(c not in vocab.stoi for w in test for c in w))
            by_order = {}
            for order in range(1, 7):
                model = NGram(vocab.size, NGramConfig(order=order))
                model.fit(Corpus(Split(train, [], []), vocab), TrainConfig())
                by_order[order] = nll(model.eval(), test, vocab)
            results["a"].append(by_order)
            results["b"].append(nll(background_model(prior.model, prior.vocab, vocab, 6), test, vocab))
            t = time.perf_counter()
            adapted, record = adapt_ngram(train, vocab, prior.model, prior.vocab, seed=draw, labels=labels)
            results["seconds"].append(time.perf_counter() - t)
            results["c"].append(nll(adapted, test, vocab))
            reweighed = SparseNGram.from_tables(vocab.size, 6, [], list(adapted.components), adapted.mixture)
            results["b2"].append(nll(reweighed.eval(), test, vocab))  # without the list's own table
            if gru is not None:
                network, _ = adapt_neural(train, vocab, gru.model, gru.vocab, seed=draw)
                results["d"].append(nll(network, test, vocab))
        order = min(range(1, 7), key=lambda o: statistics.mean(r[o] for r in results["a"]))
        row = {"list": spec, "k": k, "draws": draws, "a_order": order,
               "a": statistics.mean(r[order] for r in results["a"]),
               **{key: statistics.mean(results[key]) for key in ("b", "b2", "c")},
               "d": statistics.mean(results["d"]) if results["d"] else None,
               "unk": statistics.mean(results["unk"]), "seconds": statistics.mean(results["seconds"]),
               "c_draws": results["c"]}
        row["gain"] = min(row["a"], row["b"]) - row["c"]
        # its standard error over the draws: each draw's gain against the column with the better mean
        better = [r[order] for r in results["a"]] if row["a"] <= row["b"] else results["b"]
        gains = [x - c for x, c in zip(better, results["c"])]
        row["gain_se"] = statistics.stdev(gains) / len(gains) ** 0.5 if len(gains) > 1 else float("nan")
        row["target"] = TARGETS.get(k)
        rows.append(row)
        met = "" if row["target"] is None else ("  target met" if row["gain"] >= row["target"] else "  TARGET MISSED")
        d = "" if row["d"] is None else f"  (d) {row['d']:.4f}"
        print(f"  k={k:>3}: (a) {row['a']:.4f} (order {order})  (b) {row['b']:.4f}  (b') {row['b2']:.4f}"
              f"  (c) {row['c']:.4f}{d}  gain {row['gain']:+.4f} ± {row['gain_se']:.4f}{met}"
              f"  [{row['seconds']:.2f} s to adapt]", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", nargs="+", default=list(LISTS), help="set:locale lists (default: %(default)s)")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES))
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--neural", action="store_true", help="also fine-tune the GRU prior (lists without a "
                                                               "left-out locale)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "small_lists.json",
                        help="where the rows go as JSON (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = [row for spec in args.lists for row in run_list(spec, args.sizes, args.draws, args.neural)]
    print("\n| list | k | (a) list alone (order) | (b) prior alone | (b') re-weighed prior | (c) adapted | "
          "gain vs best of (a), (b) ± s.e. | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        target = "" if r["target"] is None else f"≥ {r['target']:.2f} {'met' if r['gain'] >= r['target'] else 'MISSED'}"
        print(f"| {r['list']} | {r['k']} | {r['a']:.3f} ({r['a_order']}) | {r['b']:.3f} | {r['b2']:.3f} "
              f"| **{r['c']:.3f}** | {r['gain']:+.3f} ± {r['gain_se']:.3f} | {target} |")
    seconds = time.perf_counter() - start
    print(f"\n{len(rows)} rows, {seconds:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"protocol": "benchmarks/bench_small_lists.py", "lists": args.lists, "sizes": args.sizes,
              "draws": args.draws, "threads": args.threads, "cpu_count": os.cpu_count(),
              "seconds": round(seconds, 1), "rows": rows}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
