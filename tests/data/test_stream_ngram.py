"""`train --stream` for the n-gram: counted in shards, fitted and evaluated from counts, reloadable."""

from __future__ import annotations

import torch

from namesmith.cli import main
from namesmith.data.counting import streamed_split
from namesmith.data.words import Corpus, DataConfig, load_words
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import mean_nll_per_char, word_log_probs
from namesmith.namemodel import NameModel


def test_a_streamed_ngram_is_the_ngram_of_its_streamed_split(tmp_path):
    words = load_words("builtin")[:2000]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    streamed = NameModel.train(str(path), "ngram", order=4, stream=True, out=tmp_path / "m")
    split = streamed_split(load_words(DataConfig(path=str(path), case="exact")))
    corpus = Corpus(split, streamed.vocab)
    reference = NGram(streamed.vocab.size, NGramConfig(order=4))
    reference.fit(corpus, None)
    assert torch.equal(streamed.model.context_keys, reference.context_keys)
    assert torch.equal(streamed.model.next_token_logprobs, reference.next_token_logprobs)
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.meta["data"]["streamed"] and loaded.evaluate() == streamed.metrics
    # calibrated as the words in memory would be (tests/training/test_streamed_calibration.py): its test NLL is
    # the reference's under the same calibration, word by word
    assert streamed.model.calibration is not None
    reference.calibration = streamed.model.calibration
    test_words = corpus.words("test")
    expected = mean_nll_per_char(word_log_probs(reference, test_words, corpus.vocab), test_words)
    assert abs(streamed.metrics["test"]["nll"] - expected) < 1e-6


def test_cli_streams_the_ngram(tmp_path, capsys):
    path = tmp_path / "words.txt"
    path.write_text("\n".join(load_words("builtin")[:500]) + "\n")
    out = str(tmp_path / "m")
    assert main(["train", "--model", "ngram", "--order", "3", "--data", str(path), "--stream", "--out", out,
                 "--samples", "0"]) == 0
    assert main(["sample", "-m", out, "-n", "3", "--ends-with", "a", "--seed", "1", "-q"]) == 0
    names = capsys.readouterr().out.split()[-3:]
    assert len(names) == 3 and all(n.endswith("a") for n in names)
    assert main(["train", "--model", "ngram", "--data", str(path), "--stream", "--workers", "0", "--out", out]) == 1
    assert "--workers must be an integer of at least 1" in capsys.readouterr().err
