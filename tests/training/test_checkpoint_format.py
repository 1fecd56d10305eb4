"""Checkpoints written before the n-gram mix became its own model type (format 1) still load."""

from __future__ import annotations

import json

import pytest
import torch

from namesmith.core.errors import CheckpointError
from namesmith.data.words import load_words
from namesmith.namemodel import NameModel
from namesmith.training.checkpoint import FORMAT_VERSION, META_FILE


def as_format_1(directory) -> dict:
    """Rewrite a saved ngram-mix directory the way namesmith wrote it before format 2."""
    path = directory / META_FILE
    meta = json.loads(path.read_text())
    config = meta["model_config"]
    meta.update(format_version=1, model_type=config["model_type"],
                model_config={**config["model"], "ngram_mix": {"ngram": config["ngram"], "weights": config["weights"]}})
    path.write_text(json.dumps(meta))
    return meta


def test_a_format_1_mix_loads_as_an_ngram_mix(one_thread, tmp_path):
    words = load_words("builtin")[:300]
    trained = NameModel.train(model="gru", words=words, prior="none", out=tmp_path / "m", max_steps=20, eval_every=10,
                              n_hidden=16, n_embd=8, ngram_mix=3)
    assert trained.model_type == "ngram-mix" and FORMAT_VERSION == 2
    old = as_format_1(tmp_path / "m")
    assert old["model_type"] == "gru" and "ngram_mix" in old["model_config"]
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.model_type == "ngram-mix" and loaded.describe() == "gru + 3-gram"
    x = torch.tensor([[0, 1, 2, 3]])
    torch.testing.assert_close(loaded.model(x), trained.model(x), rtol=0, atol=0)
    assert loaded.generate(5, seed=3).names == trained.generate(5, seed=3).names


def test_a_newer_format_is_refused_with_its_version(tmp_path):
    NameModel.train(model="bigram-counts", words=["ab", "ba"], out=tmp_path / "m")
    path = tmp_path / "m" / META_FILE
    meta = json.loads(path.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1} is newer"):
        NameModel.load(tmp_path / "m")


def test_a_model_of_words_given_in_python_does_not_claim_the_builtin_list(tmp_path):
    words = ["anna", "bella", "carla", "dora", "emma"] * 5
    NameModel.train(model="ngram", words=words, order=3, out=tmp_path / "m", prior="none")
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.meta["data"]["path"] == "<words>" and loaded.meta["data"]["words"] == words
    assert loaded.generate(3, seed=1).novelty.unavailable is None  # the words are kept in the directory
    assert not set(loaded.generate(3, novel=True, seed=1).names) & set(words)
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n")
    with_data = NameModel.load(tmp_path / "m", data=str(tmp_path / "words.txt"))
    assert with_data.generate(3, seed=1).novelty.unavailable is None
    (tmp_path / "other.txt").write_text("\n".join(words[:-1]) + "\n")
    other = NameModel.load(tmp_path / "m", data=str(tmp_path / "other.txt"))
    assert "is not the word list" in other.generate(3, seed=1).novelty.line()
