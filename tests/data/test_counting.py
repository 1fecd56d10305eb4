"""Streaming pair counts: the same table as reading the whole file, for any block size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from namesmith.core.config import TrainConfig
from namesmith.core.errors import ConfigError
from namesmith.data.counting import split_parts
from namesmith.data.pair_counts import count_file, count_pairs
from namesmith.data.words import Corpus, DataConfig, load_words
from namesmith.models.nll import counted_nll
from namesmith.namemodel import NameModel
from namesmith.scoring.evaluate import evaluate_streamed
from namesmith.training.streamed import should_stream, train_streamed

PLAIN = "\n".join(load_words("builtin")[:3000]) + "\n"
TRICKY = ("emma\r\nOlivia\n\n  ava  \nzoë\nzoe\u0308\nmary\tann\nx" + "y" * 80 + "\nbad\x07line\n"
          "Łukasz\nst. john\n\u00a0nbsp\u00a0\n😀smile\nÉmile\nli\u202eam\n\u200bzero\n🦄\nlast-without-newline")


def reference(path, **options) -> tuple[np.ndarray, Corpus]:
    corpus = Corpus.from_words(load_words(path, **options), split=False)
    return count_pairs(*corpus.tensors("train"), corpus.vocab.size).numpy(), corpus


@pytest.mark.parametrize("text", [PLAIN, TRICKY, PLAIN + TRICKY + PLAIN], ids=["plain", "tricky", "mixed"])
@pytest.mark.parametrize("block_size", [7, 1000, 1 << 20])
@pytest.mark.parametrize("lowercase", [False, True])
def test_streamed_counts_equal_in_memory_counts(tmp_path, text, block_size, lowercase):
    path = tmp_path / "words.txt"
    path.write_bytes(text.encode("utf-8"))
    # a streamed list is learned as written (or lowercased): no automatic choice of casing
    expected, corpus = reference(path, case="lower" if lowercase else "exact")
    counts = count_file(DataConfig(path=str(path), split=False, lowercase=lowercase), block_size=block_size)
    assert counts.vocab == corpus.vocab
    np.testing.assert_array_equal(counts.part("train"), expected)
    assert counts.n_words["train"] == len(corpus.split.train)
    assert counts.max_word_length == corpus.max_word_length


def test_streamed_split_is_a_deterministic_partition(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    counts = count_file(DataConfig(path=str(path), split_seed=3), block_size=999)
    expected, _ = reference(path)
    np.testing.assert_array_equal(counts.pairs.sum(0), expected)  # every pair in exactly one part
    parts = split_parts(0, 3000, 3)
    assert counts.n_words == {"train": int((parts == 0).sum()), "val": int((parts == 1).sum()),
                              "test": int((parts == 2).sum())}
    shares = np.bincount(split_parts(0, 100_000, 42), minlength=3) / 100_000
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)


def test_nll_from_pair_counts_equals_word_evaluation(tmp_path):
    from namesmith.models.bigram import BigramCounts
    from namesmith.scoring.evaluate import evaluate

    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    counts, corpus = reference(path)
    model = BigramCounts(corpus.vocab.size)
    model.fit(corpus, None)
    nll = counted_nll([(model.log_probs().double().numpy(), counts)])
    assert nll == pytest.approx(evaluate(model, corpus.split.train, corpus.vocab).nll, rel=1e-6)


@pytest.mark.parametrize("model_type", ["bigram", "bigram-counts"])
def test_train_streamed_matches_in_memory_training(tmp_path, model_type):
    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    data = DataConfig(path=str(path), split=False)
    config = TrainConfig(max_steps=30, device="cpu")
    streamed = train_streamed(model_type, data, config, None, out=tmp_path / "m")
    normal = NameModel.train(str(path), model_type, split=False, max_steps=30, device="cpu")
    torch.testing.assert_close(streamed.model.log_probs(), normal.model.log_probs(), rtol=1e-5, atol=1e-5)
    assert streamed.meta["metrics"]["train"]["nll"] == pytest.approx(normal.metrics["train"]["nll"], rel=1e-5)
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.meta["data"]["streamed"] is True
    again = loaded.evaluate()
    assert again == evaluate_streamed(loaded.model, loaded.vocab, loaded.meta["data"])
    assert again["train"]["nll"] == pytest.approx(streamed.meta["metrics"]["train"]["nll"], rel=1e-6)  # float32
    assert again["train"]["n_chars"] == streamed.meta["metrics"]["train"]["n_chars"]


def test_streaming_is_only_for_count_models_and_large_files(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    data = DataConfig(path=str(path))
    assert not should_stream("bigram", data, None)  # small file: the exact lecture split
    assert should_stream("bigram", data, True)
    assert should_stream("ngram", data, True)
    with pytest.raises(ConfigError, match="^stream works for models that learn from counts .*, not mlp") as error:
        should_stream("mlp", data, True)
    assert error.value.field == "stream"
    with pytest.raises(ConfigError, match="dedupe"):
        should_stream("bigram", DataConfig(path=str(path), dedupe=True), True)
