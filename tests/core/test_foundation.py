"""Vocabulary, split, encoding, evaluation and the bigram models against independent computations."""

import math
import random

import pytest
import torch

import namesmith
from namesmith import NameModel
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.pair_counts import count_pairs
from namesmith.data.words import Corpus, encode_words, load_words, read_builtin_table, split_words
from namesmith.models.bigram import BigramCounts, BigramCountsConfig
from namesmith.models.nll import word_log_probs
from namesmith.scoring.evaluate import evaluate
from namesmith.scoring.score import score_names

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "harper", "evelyn", "abigail"]


def test_vocab_reserves_boundary_and_labels_it():
    vocab = Vocab.from_words(["st. john", "ann"])
    assert vocab.chars == (" ", ".", "a", "h", "j", "n", "o", "s", "t")
    assert vocab.size == len(vocab.chars) + 1
    assert BOUNDARY not in vocab.itos  # no character maps to the boundary id
    assert vocab.boundary_label == "#"  # '.' is a data character here
    assert Vocab.from_words(["ann"]).boundary_label == "."
    assert vocab.decode(vocab.encode("st. john")) == "st. john"


def test_a_vocabulary_is_built_one_way():
    """Token ids follow the characters' sorted order, whoever builds the vocabulary (issue 28: one constructor)."""
    assert Vocab.from_chars("cabba") == Vocab.from_chars(["a", "b", "c"]) == Vocab.from_words(["cab"])
    assert Vocab.from_chars("жaZ").chars == ("Z", "a", "ж")
    for bad in (("b", "a"), ("a", "a"), ("ab",)):
        with pytest.raises(namesmith.DataError):
            Vocab(bad)


def test_one_unknown_character_policy():
    """Every caller that meets a name with a character outside the vocabulary says what to do with it, in one
    parameter (issue 28): raise, drop it, fail it alone, or keep it for an open vocabulary's fallback."""
    vocab = Vocab.from_chars("abn")
    names = ["ann", "anné", "", "bab"]
    assert vocab.readable(names, "drop") == ([0, 3], {})
    assert vocab.readable(names, "fail") == ([0, 3], {1: "'é' is not in the model's vocabulary", 2: "empty name"})
    assert vocab.readable(names, "fallback") == ([0, 1, 3], {2: "empty name"})
    with pytest.raises(namesmith.DataError, match="^words: 'anné': 'é' is not in the model's vocabulary$"):
        vocab.readable(names, "raise", source="words")
    with pytest.raises(ValueError):
        vocab.readable(names, "ignore")
    model = BigramCounts(vocab.size, BigramCountsConfig())
    failed = score_names(model, vocab, names)
    assert [s.name for s in failed] == names and [s.error is None for s in failed] == [True, False, False, True]
    assert [s.name for s in score_names(model, vocab, names, unknown="drop")] == ["ann", "bab"]
    opened = score_names(model, vocab, names, unknown="fallback", fallback=lambda w: torch.full((len(w),), -9.0))
    assert opened[1].log_prob == -9.0 and opened[1].nll_per_char == 9.0 / 5 and opened[2].error == "empty name"
    assert opened[0].log_prob == failed[0].log_prob
    with pytest.raises(namesmith.DataError):
        score_names(model, vocab, names, unknown="raise")


def test_split_reproduces_the_lecture_series_split():
    words = [f"w{i}" for i in range(1000)]
    split = split_words(words, seed=42)
    expected = list(words)
    random.Random(42).shuffle(expected)
    assert split.train == expected[:800] and split.val == expected[800:900] and split.test == expected[900:]


@pytest.mark.parametrize("n", [1, 2, 3, 9])
def test_split_keeps_training_words_for_tiny_lists(n):
    split = split_words([f"w{i}" for i in range(n)])
    assert split.train and sorted(split.train + split.val + split.test) == sorted(f"w{i}" for i in range(n))


def test_encode_words_layout():
    vocab = Vocab.from_words(["emma", "al"])
    x, y = encode_words(["emma", "al"], vocab)
    e, m, a, el = (vocab.stoi[c] for c in "emal")
    assert x.tolist() == [[0, e, m, m, a], [0, a, el, 0, 0]]
    assert y.tolist() == [[e, m, m, a, 0], [a, el, 0, -1, -1]]


def test_count_pairs_matches_python_counting():
    vocab = Vocab.from_words(WORDS)
    x, y = encode_words(WORDS, vocab)
    counts = count_pairs(x, y, vocab.size)
    expected = torch.zeros(vocab.size, vocab.size, dtype=torch.long)
    for w in WORDS:
        ids = [0, *vocab.encode(w), 0]
        for a, b in zip(ids, ids[1:]):
            expected[a, b] += 1
    assert torch.equal(counts, expected)


@pytest.mark.parametrize("k", [0.0, 1.0, 0.5])
def test_bigram_counts_nll_equals_formula(k):
    corpus = Corpus.from_words(WORDS, split=False)
    model = BigramCounts(corpus.vocab.size, BigramCountsConfig(smoothing=k))
    model.fit(corpus, None)
    counts = count_pairs(*corpus.tensors("train"), corpus.vocab.size).double()
    probs = (counts + k) / (counts + k).sum(1, keepdim=True)
    rows, cols = counts.nonzero(as_tuple=True)
    expected = -(counts[rows, cols] * probs[rows, cols].log()).sum() / counts.sum()
    assert evaluate(model, WORDS, corpus.vocab).nll == pytest.approx(expected.item(), rel=1e-6)


def test_word_log_probs_is_sum_of_next_char_log_probs():
    result = NameModel.train(model="bigram-counts", words=WORDS)
    table = result.model.transition_probs()
    torch.testing.assert_close(result.transition_table(), table, rtol=0, atol=0)
    ids = [0, *result.vocab.encode("emma"), 0]
    expected = sum(math.log(table[a, b].item()) for a, b in zip(ids, ids[1:]))
    assert word_log_probs(result.model, ["emma"], result.vocab).item() == pytest.approx(expected, rel=1e-5)


def test_neural_bigram_converges_to_counts_model():
    """The seed's trained linear layer equals the k=0 count model (its loss minimum)."""
    counts = NameModel.train(model="bigram-counts", words=WORDS, smoothing=0.0, split=False)
    linear = NameModel.train(model="bigram", words=WORDS, split=False, max_steps=3000)
    assert linear.metrics["train"]["nll"] == pytest.approx(counts.metrics["train"]["nll"], abs=2e-3)


def test_evaluation_of_empty_list_is_reported_not_crashed():
    result = NameModel.train(model="bigram-counts", words=["ab", "ba", "aa"])
    assert result.metrics["val"]["nll"] is None and result.metrics["val"]["n_words"] == 0
    assert result.metrics["train"]["nll"] > 0


def test_builtin_data_set():
    rows = read_builtin_table()
    assert len(rows) > 20_000
    assert all(name.isalpha() and name == name.lower() for name, _, _ in rows[:1000])
    assert load_words("builtin")[0] == rows[0][0]


def test_train_is_reproducible():
    a = NameModel.train(model="bigram", words=WORDS, max_steps=50)
    b = NameModel.train(model="bigram", words=WORDS, max_steps=50)
    assert torch.equal(a.model.W, b.model.W)
    assert a.history.steps == b.history.steps == 50


def test_sampling_same_seed_same_names():
    result = NameModel.train(model="bigram-counts", words=WORDS)
    samples = result.generate(50, seed=7)
    first = samples.names
    assert first == result.generate(50, seed=7).names
    assert first != result.generate(50, seed=8).names
    assert len(first) == 50 and samples.complete  # names over the length guard are dropped and drawn again
    assert all(set(n) <= set(result.vocab.chars) and len(n) <= 32 for n in first)  # guard: max(2 × 8, 32)
    short = result.generate(50, seed=7, max_len=3).names
    assert len(short) == 50 and all(1 <= len(n) <= 3 for n in short)


@pytest.mark.parametrize("seed, message", [(-1, "^seed must not be negative"),
                                           (2**53, "^seed must be at most 9,007,199,254,740,991"),
                                           (2**64, "^seed must be at most 9,007,199,254,740,991")])
def test_sampling_seed_out_of_range_is_a_config_error(seed, message):
    """One seed range for every caller, GenerateConfig's: 0 to 2**53 - 1 (exact in JavaScript, as the page keeps it)."""
    from namesmith.generation.config import GenerateConfig

    model = NameModel.train(model="bigram-counts", words=WORDS)
    for make in (lambda: GenerateConfig(seed=seed), lambda: model.generate(5, seed=seed)):
        with pytest.raises(namesmith.ConfigError, match=message) as error:
            make()
        assert error.value.field == "seed"
