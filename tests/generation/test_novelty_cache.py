"""The novelty summary reads a model's training list once: later processes find its words in the cache.

Reading and splitting a large table again took seconds on every `namesmith sample` (issue 26); the cache
must give the same summary, be used only while the list keeps the fingerprint the model recorded, and
never trust a damaged file.
"""

from __future__ import annotations

import random

import pytest

import namesmith.training.provenance as provenance
from namesmith import NameModel
from namesmith.generation.novelty import cache_path


@pytest.fixture()
def trained(tmp_path):
    rng = random.Random(5)
    words = sorted({"".join(rng.choice("bdklmnrst") + rng.choice("aeiou") for _ in range(rng.randint(1, 3)))
                    for _ in range(600)})
    data = tmp_path / "names.txt"
    data.write_text("\n".join(words) + "\n")
    NameModel.train(data, "ngram", order=3, prior="none", out=tmp_path / "model")
    return data, tmp_path / "model"


def _no_reading(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("the training list was read again")

    monkeypatch.setattr(provenance, "corpus_for_checkpoint", refuse)  # NameModel imports it when it reads the list


def test_a_second_process_finds_the_training_words_in_the_cache(trained, monkeypatch):
    data, directory = trained
    first = NameModel.load(directory).generate(200, seed=1)
    assert first.novelty.unavailable is None and first.novelty.in_train > 0
    assert cache_path(NameModel.load(directory).meta["data"]).is_file()
    _no_reading(monkeypatch)
    again = NameModel.load(directory).generate(200, seed=1)  # a fresh object: as the next `namesmith sample`
    assert again.novelty == first.novelty
    assert NameModel.load(directory).generate(20, seed=2, novel=True).novelty.new == 20


def test_a_list_changed_since_training_makes_novelty_unavailable_whatever_the_cache(trained):
    data, directory = trained
    NameModel.load(directory).generate(5, seed=1)  # the cache is written
    data.write_text(data.read_text() + "zzzzq\n")
    result = NameModel.load(directory).generate(5, seed=1)
    assert result.novelty.unavailable is not None and "sha256" in result.novelty.unavailable


def test_a_damaged_cache_file_is_not_trusted(trained):
    data, directory = trained
    expected = NameModel.load(directory).generate(200, seed=1).novelty
    path = cache_path(NameModel.load(directory).meta["data"])
    text = path.read_bytes()
    path.write_bytes(text.replace(b"\n", b"\nzz", 1))  # one word more, the header's hash unchanged
    assert NameModel.load(directory).generate(200, seed=1).novelty == expected
    assert path.read_bytes() == text  # written again, whole
