"""The units of progress of counting a long list are bounded by counted work, not by the list: a busy core waits
at most `every` plus one unit for a line (issue 26). Counted here: what runs between two steps of progress."""

from __future__ import annotations

import random

import numpy as np
import pytest

import namesmith.data.counting as counting
import namesmith.data.tally as tally
from namesmith.core.progress import Phase
from namesmith.data.words import DataConfig


def events_between_steps(monkeypatch, targets: dict[str, tuple[object, str]]) -> list[list[str]]:
    """Record each call of the `targets` (name: (owner, attribute)) and cut the record at every step of progress."""
    record: list[list[str]] = [[]]
    advance = Phase.advance

    def counted_advance(self, n=1):
        record.append([])
        return advance(self, n)

    monkeypatch.setattr(Phase, "advance", counted_advance)
    for name, (owner, attribute) in targets.items():
        original = getattr(owner, attribute)

        def counted(*args, _original=original, _name=name, **kwargs):
            record[-1].append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attribute, counted)
    return record


def test_gathering_a_tally_merges_one_range_per_step(monkeypatch):
    rng = np.random.default_rng(0)
    counts = tally.Tally(1 << 30, np.int64)
    for _ in range(20):  # runs that wait in their ranges to be merged
        keys = np.unique(rng.integers(0, 1 << 30, 5000))
        counts.add_counts(keys, np.ones(len(keys), np.int64))
    waiting = sum(1 for runs in counts.pending if runs)
    assert waiting > 10
    record = events_between_steps(monkeypatch, {"merge": (tally.Tally, "_flush")})
    counts.result()
    assert sum(len(step) for step in record) == waiting  # every waiting range merged...
    assert record[0] == [] and max(len(step) for step in record) == 1  # ...in a step of its own (was: all in one)


def test_counting_a_block_is_two_steps_its_keys_and_their_tally(monkeypatch, tmp_path):
    rng = random.Random(1)
    words = tmp_path / "words.txt"
    words.write_text("\n".join("".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 9)))
                               for _ in range(20_000)) + "\n")
    record = events_between_steps(monkeypatch, {"keys": (counting, "block_ngram_keys"),
                                                "tally": (tally.Tally, "add_keys")})
    counts = counting.count_ngrams_file(DataConfig(path=str(words)), 4, block_size=16 << 10)
    assert counts.train.counts.sum() > 0
    steps = [step for step in record if step]
    assert sum(step.count("keys") for step in steps) > 5  # many blocks
    assert all(step in (["keys"], ["tally"]) for step in steps)  # never a block's keys and its tally in one step


@pytest.mark.parametrize("tables", [1, 3])
def test_a_chain_too_large_is_known_without_building_its_states(monkeypatch, tables):
    """A long list's sparse n-gram (9M contexts) is saved without the union of its contexts being built first."""
    import torch

    from namesmith.models import sparse_ngram
    from namesmith.models.backoff_table import kn_table
    from namesmith.models.sparse_ngram import SparseNGram

    windows = torch.randint(0, 5, (400, 3))
    model = SparseNGram.from_tables(5, 3, [], [kn_table(windows, 5) for _ in range(tables)])
    monkeypatch.setattr(sparse_ngram, "MAX_CHAIN_CELLS", 5 * len(model.components[0].keys) - 1)
    monkeypatch.setattr(SparseNGram, "_states", lambda self: pytest.fail("the states were built"))
    assert model.markov_chain() is None


def test_the_held_out_features_take_one_running_sum_per_step(monkeypatch):
    """Tuning the discounts reads, per order, four running sums over every k-gram seen (28M of a long list's)."""
    from namesmith.data.words import Corpus
    from namesmith.models import kneser_ney
    from namesmith.models.ngram import NGram, NGramConfig

    rng = random.Random(2)
    words = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 9))) for _ in range(600)]
    corpus = Corpus.from_words(words, split=False)
    model = NGram(corpus.vocab.size, NGramConfig(order=4))
    counts = held = model.count(*corpus.tensors("train"))  # (held out or not: the same features to count)
    keys_by_order, counts_by_order = kneser_ney.continuation_counts(counts)
    steps: list[int] = [0]
    run_sums = kneser_ney._run_sums

    def counted(*args):
        steps[-1] += 1
        return run_sums(*args)

    monkeypatch.setattr(kneser_ney, "_run_sums", counted)
    shares: list[float] = []
    kneser_ney.held_out_features(keys_by_order, counts_by_order, held, lambda share: (shares.append(share),
                                                                                     steps.append(0)))
    assert sum(steps) == 4 * 4 and max(steps) == 1  # 4 orders, 4 sums each, one per step (was: 4 per step)
    assert sum(shares) == pytest.approx(4)  # a step per order in all, as the phase counts them
