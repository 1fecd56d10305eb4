"""A streamed word list gets whole-name calibration, from its words' cells (issue 26).

Calibration's features depend on a word's length and last token alone, so counting tallies each word's cell
beside its n-grams ((4, 65, V) numbers, whatever the list's size), and the fit and the choice on validation are
made from those tallies (`calibrate_counted`). Checked against `calibrate` of the words themselves, held in memory.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from namesmith.cli import main
from namesmith.core.vocab import Vocab
from namesmith.data.counting import count_ngrams_file, streamed_split
from namesmith.data.tally import CELL_LENGTHS
from namesmith.data.words import DataConfig
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import word_log_probs
from namesmith.training.calibrate import calibrate, calibrate_counted, counted_length_bins, length_bins
from namesmith.training.fitting import fit_ngram_counts


def odd_lengths(n: int, seed: int = 5) -> list[str]:
    """Words of 3 or 11 letters: an order-4 n-gram cannot count to 11, so calibration has lengths to fix."""
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefgh") for _ in range(rng.choice((3, 11)))) + rng.choice("xyz")
            for _ in range(n)]


def test_counting_tallies_each_words_length_and_last_token_by_part(tmp_path):
    words = odd_lengths(3000) + ["q" * 70]  # one word longer than the tally's last row
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    config = DataConfig(path=str(path), max_line_length=80)
    counts = count_ngrams_file(config, 4, shards=3)  # three shards, merged
    split = streamed_split(words)
    vocab = counts.vocab
    assert counts.cells.shape == (4, CELL_LENGTHS + 1, vocab.size)  # bounded whatever the list's size
    for part, part_words in (("train", split.train), ("val", split.val), ("test", split.test)):
        expected = torch.zeros(CELL_LENGTHS + 1, vocab.size, dtype=torch.long)
        for w in part_words:
            expected[min(len(w), CELL_LENGTHS), vocab.stoi[w[-1]]] += 1
        assert torch.equal(counts.word_cells(part), expected), part
    assert int(counts.word_cells("held_out").sum()) == counts.held_out.n_words
    assert torch.equal(count_ngrams_file(config, 4, workers=2).cells, counts.cells)  # in two processes: the same


def test_the_length_quantile_of_counted_words_is_that_of_the_words():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 200, 5000):
        lengths = rng.integers(1, 40, n)
        words = ["a" * int(k) for k in lengths]
        assert counted_length_bins(np.bincount(lengths, minlength=CELL_LENGTHS + 1)) == length_bins(words)


def test_a_calibration_from_counted_cells_is_the_one_from_the_words(tmp_path):
    words = odd_lengths(4000)
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    counts = count_ngrams_file(DataConfig(path=str(path)), 4)
    model = fit_ngram_counts(NGram(counts.vocab.size, NGramConfig(order=4)), counts.train, counts.held_out)
    split, vocab = streamed_split(words), counts.vocab
    assert isinstance(vocab, Vocab)
    val_log_prob = float(word_log_probs(model, split.val, vocab).sum())
    val_tokens = sum(len(w) + 1 for w in split.val)
    counted, counted_report = calibrate_counted(model, vocab, counts.word_cells("train"), counts.word_cells("val"),
                                                val_log_prob, val_tokens, max_len=30)
    held, held_report = calibrate(model, vocab, split.train, split.val, max_len=30)
    assert held is not None and counted_report.choice == held_report.choice != "none"
    assert counted_report.validation.keys() == held_report.validation.keys()
    for key, nll in held_report.validation.items():
        assert abs(counted_report.validation[key] - nll) < 1e-9, key
    assert np.allclose(counted.length_weights, held.length_weights, atol=1e-9)
    assert abs(counted.log_z - held.log_z) < 1e-9


def test_a_streamed_list_is_calibrated_and_its_metrics_are_the_calibrated_models(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(odd_lengths(4000)) + "\n")
    out = tmp_path / "model"
    assert main(["train", "--data", str(path), "--stream", "--order", "4", "--prior", "none", "--samples", "0",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "namesmith.json").read_text())
    report = meta["calibration_report"]
    assert report["choice"] != "none" and report["method"] == "exact"
    # the calibrated model's NLL (to the last bits: two sums of the same terms in another order, e.g. on one thread)
    assert meta["metrics"]["val"]["nll"] == pytest.approx(report["validation"][report["choice"]], rel=1e-12, abs=0)
    assert meta["metrics"]["val"]["nll"] < report["validation"]["none"]
