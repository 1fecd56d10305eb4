"""Streaming pair counts: the same table as reading the whole file, for any block size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from namesmith.config import TrainConfig
from namesmith.counting import count_file, evaluate_streamed, should_stream, split_parts, train_streamed
from namesmith.data import Corpus, DataConfig, load_words
from namesmith.errors import ConfigError
from namesmith.evaluate import pair_nll
from namesmith.models.bigram import count_pairs

PLAIN = "\n".join(load_words("builtin")[:3000]) + "\n"
TRICKY = ("emma\r\nOlivia\n\n  ava  \nzoë\nzoe\u0308\nmary\tann\nx" + "y" * 80 + "\nbad\x07line\n"
          "Łukasz\nst. john\n\u00a0nbsp\u00a0\n😀smile\nÉmile\nlast-without-newline")


def reference(path, **options) -> tuple[np.ndarray, Corpus]:
    corpus = Corpus.from_words(load_words(path, **options), split=False)
    return count_pairs(*corpus.tensors("train"), corpus.vocab.size).numpy(), corpus


@pytest.mark.parametrize("text", [PLAIN, TRICKY, PLAIN + TRICKY + PLAIN], ids=["plain", "tricky", "mixed"])
@pytest.mark.parametrize("block_size", [7, 1000, 1 << 20])
@pytest.mark.parametrize("lowercase", [False, True])
def test_streamed_counts_equal_in_memory_counts(tmp_path, text, block_size, lowercase):
    path = tmp_path / "words.txt"
    path.write_bytes(text.encode("utf-8"))
    expected, corpus = reference(path, lowercase=lowercase)
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


def test_pair_nll_equals_word_evaluation(tmp_path):
    from namesmith.evaluate import evaluate
    from namesmith.models.bigram import BigramCounts

    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    counts, corpus = reference(path)
    model = BigramCounts(corpus.vocab.size)
    model.fit(corpus, None)
    nll = pair_nll(model.log_probs().double().numpy(), counts)
    assert nll == pytest.approx(evaluate(model, corpus.split.train, corpus.vocab).nll, rel=1e-6)


@pytest.mark.parametrize("model_type", ["bigram", "bigram-counts"])
def test_train_streamed_matches_in_memory_training(tmp_path, model_type):
    import namesmith

    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    data = DataConfig(path=str(path), split=False)
    config = TrainConfig(max_steps=30, device="cpu")
    streamed = train_streamed(model_type, data, config, None, out=tmp_path / "m")
    normal = namesmith.train(model_type, data, config)
    torch.testing.assert_close(streamed.model.log_probs(), normal.model.log_probs(), rtol=1e-5, atol=1e-5)
    assert streamed.metrics["train"]["nll"] == pytest.approx(normal.metrics["train"]["nll"], rel=1e-5)
    ckpt = namesmith.load_checkpoint(tmp_path / "m")
    assert ckpt.meta["data"]["streamed"] is True
    again = evaluate_streamed(ckpt.model, ckpt.vocab, ckpt.meta)
    assert again["train"]["nll"] == pytest.approx(streamed.metrics["train"]["nll"], rel=1e-6)  # float32 weights
    assert again["train"]["n_chars"] == streamed.metrics["train"]["n_chars"]


def test_streaming_is_only_for_count_models_and_large_files(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(PLAIN)
    data = DataConfig(path=str(path))
    assert not should_stream("bigram", data, None)  # small file: the exact lecture split
    assert should_stream("bigram", data, True)
    with pytest.raises(ConfigError, match="--stream"):
        should_stream("mlp", data, True)
    with pytest.raises(ConfigError, match="dedupe"):
        should_stream("bigram", DataConfig(path=str(path), dedupe=True), True)
