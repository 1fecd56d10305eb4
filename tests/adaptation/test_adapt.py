"""Small lists over a background prior (namesmith.adaptation.adapt, namesmith.adaptation.prior, models/sparse_ngram.py).

The backgrounds here are tiny models trained in the tests on made-up names (syllables of one
"language"), the lists names of another; only the end-to-end CLI test builds the catalogue prior.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import random
import subprocess
import sys

import pytest
import torch

from namesmith import NameModel
from namesmith.adaptation.background import adapted_vocab, background_model, remap_table
from namesmith.adaptation.class_table import held_out_class_shares, token_classes
from namesmith.adaptation.fine_tune import resize_vocab
from namesmith.adaptation.list_table import (
    _adapted_prob,
    _bagged_table,
    backoff_table,
    level_weights,
    list_levels,
    word_folds,
)
from namesmith.adaptation.prior import build_ngram_prior, cache_dir, catalogue_groups, catalogue_prior, catalogue_words
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.catalogue import load_dataset
from namesmith.data.words import Corpus, encode_words
from namesmith.models.backoff_table import kn_table
from namesmith.models.base import ngram_windows
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.sparse_ngram import SparseNGram
from namesmith.scoring.open_vocabulary import STAND_INS, UNKNOWN_CHAR_LOG_PROB, open_word_log_probs
from namesmith.training.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def made_up(syllables: list[str], n: int, seed: int) -> list[str]:
    """`n` distinct names of 2-4 syllables."""
    rng, names = random.Random(seed), {}
    while len(names) < n:
        names["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))] = None
    return list(names)


BACKGROUND = made_up(["ka", "ri", "to", "ma", "ne", "lo", "sa", "ku", "mi", "ta"], 600, 0)
ELVISH = made_up(["el", "ri", "dor", "an", "il", "wen", "gal", "thi", "ro", "las"], 140, 1)
LIST, HELD_OUT = ELVISH[:40], ELVISH[40:]


@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    """A prior of the background names (one group), saved as a model directory."""
    out = tmp_path_factory.mktemp("prior")
    prior = build_ngram_prior({"all": BACKGROUND}, order=4)
    save_checkpoint(out, prior.model, prior.vocab, prior.meta)
    return out


@pytest.fixture(scope="module")
def adapted(prior_dir):
    return NameModel.train(words=LIST, model="ngram", order=4, prior=prior_dir, split=False)


def nll(model: NameModel, words: list[str]) -> float:
    return model.evaluate(words)["all"]["nll"]


def background_nll(background: NameModel, vocab: Vocab, words: list[str]) -> float:
    """NLL per character of the background alone, over the adapted model's vocabulary (as the
    benchmark compares them)."""
    restricted = background_model(background.model, background.vocab, vocab, 4)
    return -open_word_log_probs(restricted, words, vocab).sum().item() / sum(len(w) + 1 for w in words)


def test_sparse_ngram_equals_the_dense_kneser_ney_ngram():
    corpus = Corpus.from_words(BACKGROUND)
    x, y = corpus.tensors("val")
    for order in (1, 3, 5):
        dense = NGram(corpus.vocab.size, NGramConfig(order=order, discount="modified-kn"))
        dense.fit(corpus, TrainConfig())
        table = kn_table(ngram_windows(*corpus.tensors("train"), order), corpus.vocab.size)
        sparse = SparseNGram.from_tables(corpus.vocab.size, order, [], [table])
        mask = y >= 0
        assert torch.allclose(dense(x)[mask], sparse(x)[mask], atol=1e-5)


def test_cross_validation_equals_refitting_without_each_name(prior_dir):
    """The held-out probabilities the weights are chosen on (all folds at once, from count
    differences) equal those of tables counted again without each name."""
    background = NameModel.load(prior_dir)
    vocab = adapted_vocab(LIST, background.vocab)
    bg = background_model(background.model, background.vocab, vocab, 4)
    words = LIST[:12]
    x, y = encode_words(words, vocab)
    windows = ngram_windows(x, y, 4)
    word_of = torch.arange(len(words)).unsqueeze(1).expand_as(y)[y >= 0]
    fold_of_word, k = word_folds(len(words), seed=0)
    assert k == len(words)  # leave-one-out for a short list
    with torch.no_grad():
        background_prob = bg.next_token_probs(windows[:, :-1]).gather(1, windows[:, -1:]).squeeze(1).double()
    base = vocab.size + 1
    levels = list_levels(windows, fold_of_word[word_of], k, base, max_levels=3)
    theta = torch.randn(9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weights = level_weights(theta, 3)
    held_out = _adapted_prob(background_prob, levels, *weights)
    # affine in the background's probability, a + b · P: what re-fitting the mixture to it relies on
    offset = _adapted_prob(torch.zeros_like(background_prob), levels, *weights)
    slope = _adapted_prob(torch.ones_like(background_prob), levels, *weights) - offset
    assert torch.allclose(held_out, offset + slope * background_prob)
    for i, word in enumerate(words):
        others = [w for j, w in enumerate(words) if j != i]
        xo, yo = encode_words(others, vocab)
        other_levels = list_levels(ngram_windows(xo, yo, 4), torch.zeros(int((yo >= 0).sum()), dtype=torch.long), 1,
                                   base, max_levels=3)
        table = backoff_table(other_levels, *weights, base)
        model = SparseNGram.from_tables(vocab.size, 4, [table], list(bg.components), bg.mixture)
        xi, yi = encode_words([word], vocab)
        expected = model(xi)[0].exp().gather(1, yi[0].clamp(min=0).unsqueeze(1)).squeeze(1)[yi[0] >= 0]
        assert torch.allclose(held_out[word_of == i].float(), expected, rtol=1e-4), word


def test_bagged_table_is_the_shared_mean_of_its_tables(prior_dir, monkeypatch):
    """The bagged table predicts λ · (the mean of the tables' models) + (1 - λ) · the background, after
    the list's own contexts and after others; assembled a few rows at a time, the same table."""
    background = NameModel.load(prior_dir)
    vocab = adapted_vocab(LIST, background.vocab)
    bg = background_model(background.model, background.vocab, vocab, 4)
    x, y = encode_words(LIST[:12], vocab)
    windows, base = ngram_windows(x, y, 4), vocab.size + 1
    levels = list_levels(windows, torch.zeros(len(windows), dtype=torch.long), 1, base, max_levels=3)
    generator = torch.Generator().manual_seed(0)
    tables = [backoff_table(levels, *level_weights(torch.randn(9, generator=generator, dtype=torch.float64), 3), base)
              for _ in range(3)]

    def over_background(table):
        return SparseNGram.from_tables(vocab.size, 4, [table], list(bg.components), bg.mixture).eval()

    contexts = torch.cat([windows[:, :-1], torch.randint(vocab.size, (50, 3), generator=generator)])
    with torch.no_grad():
        expected = 0.7 * sum(over_background(t).next_token_probs(contexts) for t in tables) / 3 + (
            0.3 * bg.next_token_probs(contexts))
        bagged = over_background(_bagged_table(tables, base, 0.7)).next_token_probs(contexts)
        monkeypatch.setattr("namesmith.adaptation.list_table.BAGGING_CELLS", 3 * vocab.size)  # 3 rows at a time
        in_pieces = over_background(_bagged_table(tables, base, 0.7)).next_token_probs(contexts)
    assert torch.allclose(bagged, expected, atol=1e-5)
    assert torch.equal(in_pieces, bagged)


def test_held_out_rows_give_the_held_out_probabilities(prior_dir):
    """The class table's weights are chosen against the adapted model's held-out rows: with every
    token its own class, those rows, and at each target the held-out probability that chose the
    table's weights (here with λ = 0.6 of the table)."""
    background = NameModel.load(prior_dir)
    vocab = adapted_vocab(LIST, background.vocab)
    bg = background_model(background.model, background.vocab, vocab, 4)
    x, y = encode_words(LIST[:12], vocab)
    windows, base = ngram_windows(x, y, 4), vocab.size + 1
    word_of = torch.arange(12).unsqueeze(1).expand_as(y)[y >= 0]
    fold_of_word, k = word_folds(12, seed=0)
    fold_of = fold_of_word[word_of]
    with torch.no_grad():
        background_prob = bg.next_token_probs(windows[:, :-1]).gather(1, windows[:, -1:]).squeeze(1).double()
    theta = torch.randn(9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rows = held_out_class_shares(windows, fold_of, k, bg, torch.arange(vocab.size), 3, theta, 0.6)
    held_out = _adapted_prob(background_prob, list_levels(windows, fold_of, k, base, max_levels=3),
                             *level_weights(theta, 3))
    assert torch.allclose(rows.sum(1), torch.ones(len(rows), dtype=torch.float64), atol=1e-5)
    assert torch.allclose(rows.gather(1, windows[:, -1:]).squeeze(1), 0.6 * held_out + 0.4 * background_prob,
                          rtol=1e-4)


FOUR = made_up(["ko", "ra", "ni", "te", "su", "mo", "la", "vi"], 120, 2)  # 4-8 letters
FOUR_LETTERS = [w for w in FOUR if len(w) == 4][:25] + [w[:4] for w in FOUR if len(w) > 4][:35]


@pytest.fixture(scope="module")
def four_letters(prior_dir):
    """An order-6 model (the default) adapted to 40 names of exactly four letters (the background's
    have 4-8), and held-out names of four letters."""
    words = list(dict.fromkeys(FOUR_LETTERS))
    return NameModel.train(words=words[:40], model="ngram", prior=prior_dir, split=False), words[40:]


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_class_table_learns_how_long_the_names_are(prior_dir, four_letters, monkeypatch):
    """Every name of the list has four letters: the n-gram backs off to contexts that end names of
    any length, the class table (end, LATIN) knows that names end after four letters."""
    adapted, held_out = four_letters
    assert adapted.meta["adaptation"]["classes"]["kept"] and adapted.model.config.classes == 2
    assert adapted.meta["adaptation"]["classes"]["names"] == ["END", "LATIN"]
    monkeypatch.setattr("namesmith.adaptation.class_table.CLASS_MIN_GAIN", math.inf)  # the same, no class table
    without = NameModel.train(words=list(adapted.meta["data"]["words"]), model="ngram", prior=prior_dir, split=False)
    assert without.model.config.classes == 0 and not without.meta["adaptation"]["classes"]["kept"]
    assert nll(adapted, held_out) < nll(without, held_out) - 0.05
    lengths = collections.Counter(len(n) for n in adapted.generate(500, seed=0).names)
    assert lengths[4] > 0.9 * sum(lengths.values())
    assert collections.Counter(len(n) for n in without.generate(500, seed=0).names)[4] < lengths[4]


def test_token_classes_are_the_end_and_each_script_capitals_and_marks_apart():
    v = Vocab(tuple(sorted("aBcß -жЖ\u0301")))  # (U+0301: a combining acute, script COMMON)
    class_of, names = token_classes(v, ["aB", "ж-Ж", "Жж"])  # Cyrillic capitals in 2 names of 3, Latin in 1
    assert names == ["END", "COMMON", "CYRILLIC", "CYRILLIC CAPITAL", "LATIN"]
    assert [names[int(class_of[v.stoi[c]])] for c in "aBß -Жж\u0301"] == [
        "LATIN", "LATIN", "LATIN", "COMMON", "COMMON", "CYRILLIC CAPITAL", "CYRILLIC", "COMMON"]
    assert int(class_of[0]) == 0  # the end token
    tamil = Vocab(tuple(sorted("கடாி்")))
    class_of, names = token_classes(tamil, ["கடா", "கி", "கட"])  # vowel signs in 2 names of 3
    assert names == ["END", "TAMIL", "TAMIL MARK"]
    assert [names[int(class_of[tamil.stoi[c]])] for c in "கா்"] == ["TAMIL", "TAMIL MARK", "TAMIL MARK"]
    assert token_classes(tamil, ["கடா", "கட", "டக"])[1] == ["END", "TAMIL"]  # in 1 of 3: with the letters


@pytest.mark.slow  # builds a class table; test_class_chain_at_short_orders keeps its chain fast
def test_exact_constraints_with_a_class_table(four_letters):
    """With a class table the chain's state is (the tables' state, the last classes): its rows are the
    model's after any history, and exact sampling matches sampling and filtering."""
    adapted = four_letters[0]
    model, vocab = adapted.model, adapted.vocab
    log_probs, next_state, start = model.markov_chain()
    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.randrange(1, vocab.size) for _ in range(rng.randrange(0, 9))]
        state = start
        for t in tokens:
            state = int(next_state[state, t])
        assert torch.allclose(model(torch.tensor([[0, *tokens]]))[0, -1], log_probs[state], atol=1e-5)
    exact = adapted.generate(3000, starts_with="r", seed=1, method="exact")
    filtered = adapted.generate(3000, starts_with="r", seed=2, method="rejection")
    assert exact.stats.method == "exact" and all(n.startswith("r") for n in exact.names)
    a, b = collections.Counter(exact.names), collections.Counter(filtered.names)
    for name, count in a.most_common(5):
        assert abs(count - b[name]) < 5 * math.sqrt(count + b[name]) + 5, name


@pytest.mark.parametrize("order", [1, 2])
def test_class_chain_at_short_orders(prior_dir, order, monkeypatch):
    """At order 1 the class context is empty and at order 2 one class long: the chain's pairs still
    give the model's rows after any history."""
    monkeypatch.setattr("namesmith.adaptation.class_table.CLASS_MIN_GAIN", -math.inf)  # kept, helpful or not
    words = [a + b for a in "kortn" for b in "aeiou"][:24]  # two letters each
    adapted = NameModel.train(words=words, model="ngram", order=order, prior=prior_dir, split=False)
    assert adapted.model.config.classes
    log_probs, next_state, start = adapted.model.markov_chain()
    rng = random.Random(order)
    for _ in range(100):
        tokens = [rng.randrange(1, adapted.vocab.size) for _ in range(rng.randrange(0, 5))]
        state = start
        for t in tokens:
            state = int(next_state[state, t])
        assert torch.allclose(adapted.model(torch.tensor([[0, *tokens]]))[0, -1], log_probs[state], atol=1e-5)


def test_class_table_round_trips_and_is_checked(four_letters, tmp_path):
    adapted = four_letters[0]
    adapted.save(tmp_path / "m")
    loaded = NameModel.load(tmp_path / "m")
    x, _ = encode_words(four_letters[1], adapted.vocab)
    assert loaded.model.config.classes == 2 and torch.equal(loaded.model(x), adapted.model(x))
    tensors = adapted.model.weights()
    tensors["class_of"] = tensors["class_of"].clone()
    tensors["class_of"][3] = 2  # no such class
    with pytest.raises(CheckpointError, match="class_of must give each"):
        SparseNGram(adapted.vocab.size, adapted.model.config).load_weights(tensors)


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_adaptation_beats_the_list_alone_and_the_background_alone(prior_dir, adapted):
    alone = NameModel.train(words=LIST, model="ngram", order=4, prior="none", split=False)
    background = NameModel.load(prior_dir)
    record = adapted.meta["adaptation"]
    assert record["folds"] == len(LIST) and record["cv_nll"] < record["cv_nll_background"]
    assert nll(adapted, HELD_OUT) < background_nll(background, adapted.vocab, HELD_OUT) - 0.3  # the list differs
    assert nll(adapted, HELD_OUT) < nll(alone, HELD_OUT)
    # a list drawn from the background itself: the weights trust the background
    same = NameModel.train(words=BACKGROUND[:40], model="ngram", order=4, prior=prior_dir, split=False)
    assert same.meta["adaptation"]["cv_nll"] == pytest.approx(same.meta["adaptation"]["cv_nll_background"], abs=0.05)


def test_vocabulary_follows_the_scripts_of_the_list():
    background = Vocab(tuple(sorted("abcdeйиква-'")))
    assert set(adapted_vocab(["иван"], background).chars) == set("йиква-'н")  # Cyrillic, punctuation, its own
    assert set(adapted_vocab(["abe"], background).chars) == set("abcde-'")
    joiners = Vocab(tuple(sorted("abc\u200c\u200dکی")))  # a background of Persian names has zero-width joiners
    assert set(adapted_vocab(["abe"], joiners).chars) == set("abce")  # not a Latin list's: invisible
    assert set(adapted_vocab(["ک\u200cی"], joiners).chars) == set("کی\u200c\u200d")  # a list that has one


def test_an_unseen_format_character_costs_the_fallback_and_is_skipped(adapted):
    """A zero-width joiner the vocabulary lacks joins the letters around it: the name is read without it."""
    assert "\u200d" not in adapted.vocab.stoi
    joined, plain = open_word_log_probs(adapted.model, ["ga\u200dlas", "galas"], adapted.vocab)
    assert joined.item() == pytest.approx(plain.item() + UNKNOWN_CHAR_LOG_PROB, rel=1e-9)


def test_remapping_onto_the_same_vocabulary_changes_nothing(prior_dir):
    background = NameModel.load(prior_dir)
    model = background.model
    same = SparseNGram.from_tables(model.vocab_size, 4, [], [remap_table(model.components[0], background.vocab,
                                                                         background.vocab, 3)], model.mixture)
    x, _ = encode_words(BACKGROUND[:50], background.vocab)
    assert torch.allclose(model(x), same(x), atol=1e-6)


def test_open_vocabulary_scores_characters_the_list_never_had(adapted):
    assert set(adapted.vocab.chars) - set("".join(LIST)) == {"k", "m", "u"}  # from the background
    known, snowman = adapted.score(["kumaki", "el☃"])
    assert known.error is None and math.isfinite(known.log_prob)
    assert snowman.error is None
    # by hand: e, l; then ☃ costs the fallback and is read as the boundary; then the end
    v = adapted.vocab
    log_probs = adapted.model(torch.tensor([[0, v.stoi["e"], v.stoi["l"], 0]]))[0]
    expected = (log_probs[0, v.stoi["e"]] + log_probs[1, v.stoi["l"]] + UNKNOWN_CHAR_LOG_PROB + log_probs[3, 0]).item()
    assert snowman.log_prob == pytest.approx(expected, rel=1e-5)
    result = adapted.evaluate(["el☃", "kumaki", "galas"])["all"]
    assert result["unknown_chars"] == 1 and math.isfinite(result["nll"])
    plain = NameModel.train(words=LIST, model="ngram", order=4, prior="none", split=False)
    assert plain.score(["kumaki"])[0].error  # a model without a prior keeps its closed vocabulary


def test_an_unseen_letter_is_read_as_any_known_letter_of_its_script(adapted):
    """What follows an unseen Latin letter is predicted as after any of the vocabulary's Latin
    letters (the mean over them, by hand), not as the start of a name."""
    v = adapted.vocab
    latin = [c for c in v.chars if c.isalpha()]
    assert 1 < len(latin) <= STAND_INS  # all of them are stand-ins here
    (score,) = adapted.score(["elꝏ"])  # U+A74F LATIN SMALL LETTER OO: a letter no model here has seen
    x = torch.tensor([[0, v.stoi["e"], v.stoi["l"], v.stoi[c]] for c in latin])
    log_probs = adapted.model(x)  # (L, 4, V)
    head = (log_probs[0, 0, v.stoi["e"]] + log_probs[0, 1, v.stoi["l"]]).item() + UNKNOWN_CHAR_LOG_PROB
    expected = head + (torch.logsumexp(log_probs[:, 3, 0].double(), 0) - math.log(len(latin))).item()
    assert score.log_prob == pytest.approx(expected, rel=1e-5)
    boundary = adapted.model(torch.tensor([[0, v.stoi["e"], v.stoi["l"], 0]]))[0, 3, 0].item()
    assert abs(score.log_prob - (head + boundary)) > 0.1  # not read as a break in the name
    # two unseen letters: every pair of stand-ins, each pair equally likely
    total = open_word_log_probs(adapted.model, ["ꝏaꝏ"], v).item()
    pairs = torch.tensor([[0, v.stoi[a], v.stoi["a"], v.stoi[b]] for a in latin for b in latin])
    log_probs = adapted.model(pairs)
    readings = log_probs[:, 1, v.stoi["a"]] + log_probs[:, 3, 0]  # "a" after the first, the end after the second
    expected = (torch.logsumexp(readings.double(), 0) - math.log(len(pairs))).item() + 2 * UNKNOWN_CHAR_LOG_PROB
    assert total == pytest.approx(expected, rel=1e-5)


def test_prior_is_built_once_and_cached(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NAMESMITH_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    first = catalogue_prior("ngram", sets=("israel",))
    (directory,) = (tmp_path / "cache").iterdir()
    assert directory.name.startswith("prior-ngram-") and (directory / "namesmith.json").is_file()
    assert first.meta["prior"]["components"][:2] == ["all", "israel:Christian-Arab:1940s"]

    def no_build(*args, **kwargs):
        raise AssertionError("built again instead of read from the cache")

    monkeypatch.setattr("namesmith.adaptation.prior.build_ngram_prior", no_build)
    again = catalogue_prior("ngram", sets=("israel",))
    assert torch.equal(again.model.components[0].keys, first.model.components[0].keys)
    monkeypatch.undo()
    monkeypatch.setenv("NAMESMITH_CACHE", str(tmp_path / "cache"))
    weights = next(directory.glob("weights-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a truncated cache file is rebuilt, with a warning
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        rebuilt = catalogue_prior("ngram", sets=("israel",))
    assert "building it again" in caplog.text
    assert torch.equal(rebuilt.model.components[0].alpha, first.model.components[0].alpha)
    monkeypatch.delenv("NAMESMITH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "namesmith"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "namesmith"


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_held_out_priors_never_see_the_excluded_names():
    """Leaving a locale out is not enough (the israel set holds he_IL's names); exclude_names is."""
    world = load_dataset("world")
    hebrew = {w for w, loc in zip(world.names, world.labels["locale"]) if loc == "he_IL"}
    no_locale = catalogue_groups(("world", "israel"), exclude_locales=("he_IL",))
    assert "world:he_IL" not in no_locale
    shared = {w.casefold() for words in no_locale.values() for w in words} & {w.casefold() for w in hebrew}
    assert len(shared) > len(hebrew) / 2  # what the benchmark's prior used to memorise
    upper = [w.upper() for w in hebrew] + ["ELIZABETH"]  # matched casefolded (Hebrew has no case: "elizabeth" does)
    clean = catalogue_groups(("world", "israel"), exclude_locales=("he_IL",), exclude_names=upper)
    left = {w.casefold() for words in clean.values() for w in words}
    assert not left & {w.casefold() for w in upper}
    assert set(clean) <= set(no_locale) and all(clean.values())  # nothing added, no empty group
    assert sum(map(len, clean.values())) < sum(map(len, no_locale.values()))
    us = {w.casefold() for w in catalogue_words(("us",))}
    assert "noa" in us and "noa" not in {w.casefold() for w in catalogue_words(("us",), exclude_names=["NOA"])}


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_prior_options(prior_dir, tmp_path):
    assert NameModel.train(words=LIST, model="ngram", prior="none").model_type == "ngram"
    assert NameModel.train(words=LIST, model="bigram-counts").model_type == "bigram-counts"  # auto: no prior for it
    many = made_up(["el", "ri", "dor", "an", "il", "wen", "gal", "thi", "ro", "las", "mo"], 1300, 2)
    assert NameModel.train(words=many, model="ngram", order=3).model_type == "ngram"  # >= 1,000 training names
    model = NameModel.train(words=LIST, model="ngram", prior=prior_dir)
    assert model.model_type == "sparse-ngram" and model.describe() == "sparse-ngram adapted to 32 names"
    assert model.meta["adaptation"]["prior"]["directory"] == str(prior_dir.resolve())
    with pytest.raises(ConfigError, match="prior: a mlp model cannot be adapted") as e:
        NameModel.train(words=LIST, model="mlp", prior=prior_dir)
    assert e.value.field == "prior"
    with pytest.raises(ConfigError, match="holds a sparse-ngram model; a gru is fine-tuned from a pretrained gru"):
        NameModel.train(words=LIST, model="gru", prior=prior_dir)
    with pytest.raises(CheckpointError, match="no such model directory"):
        NameModel.train(words=LIST, model="ngram", prior=tmp_path / "missing")
    with pytest.raises(ConfigError, match="discount does not apply when adapting") as e:
        NameModel.train(words=LIST, model="ngram", discount="kn", prior=prior_dir)
    assert e.value.field == "discount"


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_prior_flag_of_the_cli(prior_dir, tmp_path, capsys):
    from namesmith.cli import main

    (tmp_path / "list.txt").write_text("\n".join(LIST) + "\n", encoding="utf-8")
    base = ["-q", "train", "--data", str(tmp_path / "list.txt"), "--samples", "0", "--json"]
    assert main([*base, "--out", str(tmp_path / "a"), "--prior", str(prior_dir), "--order", "4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_type"] == "sparse-ngram" and result["adaptation"]["method"] == "ngram"
    assert main([*base, "--out", str(tmp_path / "b"), "--model", "mlp", "--prior", str(prior_dir)]) == 1
    assert capsys.readouterr().err.strip() == ("namesmith: error: --prior: a mlp model cannot be adapted to a list "
                                               "(adapted: ngram, rnn, gru, lstm); use prior none")


def test_adapted_model_round_trips(adapted, tmp_path):
    adapted.save(tmp_path / "m")
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.model_type == "sparse-ngram" and loaded.vocab == adapted.vocab
    x, _ = encode_words(HELD_OUT[:20], adapted.vocab)
    assert torch.equal(loaded.model(x), adapted.model(x))
    assert loaded.generate(30, seed=3).names == adapted.generate(30, seed=3).names
    assert loaded.meta["adaptation"] == adapted.meta["adaptation"] and loaded.open_vocabulary
    names = loaded.generate(300, seed=1, novel=True).names  # the list's words come back from the directory
    assert names and not set(names) & set(LIST)
    assert loaded.score(["el☃"])[0].log_prob == pytest.approx(adapted.score(["el☃"])[0].log_prob)
    meta = json.loads((tmp_path / "m" / "namesmith.json").read_text())
    assert meta["data"]["words"] == LIST and meta["data"]["path"] == "<words>"


def test_exact_constraints_on_the_adapted_ngram(adapted):
    model, vocab = adapted.model, adapted.vocab
    chain = model.markov_chain()
    assert chain is not None
    log_probs, next_state, start = chain
    rng = random.Random(0)
    for _ in range(200):  # the chain's state gives the model's own distribution after any history
        tokens = [rng.randrange(1, vocab.size) for _ in range(rng.randrange(0, 7))]
        state = start
        for t in tokens:
            state = int(next_state[state, t])
        assert torch.allclose(model(torch.tensor([[0, *tokens]]))[0, -1], log_probs[state], atol=1e-5)
    exact = adapted.generate(4000, ends_with="il", max_len=7, seed=1, method="exact")
    assert exact.stats.method == "exact" and all(n.endswith("il") and len(n) <= 7 for n in exact.names)
    filtered = adapted.generate(4000, ends_with="il", max_len=7, seed=2, method="rejection")
    a, b = collections.Counter(exact.names), collections.Counter(filtered.names)
    for name, count in a.most_common(5):  # the same conditional distribution, within sampling noise
        assert abs(count - b[name]) < 5 * math.sqrt(count + b[name]) + 5, name


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_more_like_these(prior_dir, tmp_path):
    base = NameModel.load(prior_dir)
    more = base.adapt(LIST[:10], order=4, out=tmp_path / "more")
    assert more.model_type == "sparse-ngram" and more.meta["adaptation"]["folds"] == 10
    assert nll(more, HELD_OUT) < background_nll(base, more.vocab, HELD_OUT)
    names = more.generate(50, seed=0, novel=True).names
    assert len(names) == 50 and not set(names) & set(LIST[:10])
    again = more.adapt(LIST[10:20])  # a chain: the new list over the first over the background
    assert again.model.config.tables == 2 and nll(again, HELD_OUT) < background_nll(base, again.vocab, HELD_OUT)
    with pytest.raises(ConfigError, match="already holds a trained model"):
        base.adapt(LIST[:5], out=tmp_path / "more")


@pytest.mark.slow  # 13-33 s on the busy 2-core machine
def test_fine_tuning_a_pretrained_network(tmp_path, monkeypatch):
    monkeypatch.setattr("namesmith.adaptation.fine_tune.NEURAL_MAX_STEPS", 100)
    pretrained = tmp_path / "gru"
    NameModel.train(words=BACKGROUND, model="gru", n_embd=8, n_hidden=32, max_steps=150, eval_every=50,
                    ngram_mix=0, prior="none", out=pretrained)
    tuned = NameModel.train(words=LIST, model="gru", prior=pretrained, split=False)
    record = tuned.meta["adaptation"]
    assert tuned.model_type == "gru" and record["method"] == "fine-tune" and record["folds"] == 5
    curve = dict(record["cv_curve"])
    assert record["steps"] == min(curve, key=curve.get) > 0  # the step with the lowest held-out loss
    prior = NameModel.load(pretrained)
    resized = resize_vocab(prior.model, prior.vocab, tuned.vocab)  # the prior over the list's characters
    n_chars = sum(len(w) + 1 for w in HELD_OUT)
    assert nll(tuned, HELD_OUT) < -open_word_log_probs(resized, HELD_OUT, tuned.vocab).sum().item() / n_chars
    tuned.save(tmp_path / "tuned")
    loaded = NameModel.load(tmp_path / "tuned")
    x, _ = encode_words(HELD_OUT[:10], tuned.vocab)
    assert torch.equal(loaded.model(x), tuned.model(x))
    with pytest.raises(ConfigError, match="n_hidden does not apply when adapting"):
        NameModel.train(words=LIST, model="gru", n_hidden=8, prior=pretrained)


@pytest.mark.slow
def test_cli_adapts_a_short_list_onto_the_catalogue_prior(tmp_path):
    """The default path: `namesmith train` on 30 names builds the catalogue prior (once, into the
    session's cache) and adapts to them; `eval` reads characters the list never had; `sample` takes
    constraints."""
    (tmp_path / "list.txt").write_text("\n".join(n.title() for n in ELVISH[:30]) + "\n", encoding="utf-8")
    (tmp_path / "other.txt").write_text("Jax\nQuinn\nZoë\n", encoding="utf-8")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "namesmith.cli", *argv], capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)

    trained = run("train", "--data", "list.txt", "--out", "m", "--no-split", "--samples", "5")
    assert trained.returncode == 0, trained.stderr
    assert "adapted catalogue:us+world+israel to the list" in trained.stdout
    assert all(name[0].isupper() for name in trained.stdout.split("samples:\n")[1].split())  # title case kept
    evaluated = run("eval", "-m", "m", "--data", "other.txt", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["all"]["n_words"] == 3
    # constraints on a model too large for an exact chain: sampled and filtered (this once raised a TypeError)
    constrained = run("sample", "-m", "m", "-n", "5", "--ends-with", "el", "--seed", "1")
    assert constrained.returncode == 0, constrained.stderr
    assert len(constrained.stdout.split()) == 5 and all(n.lower().endswith("el") for n in constrained.stdout.split())
    alone = run("train", "--data", "list.txt", "--out", "alone", "--prior", "none", "--json")
    assert alone.returncode == 0 and json.loads(alone.stdout)["model_type"] == "ngram"
    bad = run("train", "--data", "list.txt", "--out", "x", "--prior", "nowhere")
    assert bad.returncode == 1 and "no such model directory" in bad.stderr


# --- issue 27: "more like these" on a conditional model, names that resemble the shortlist, own letters ---
SHORTLIST = ["aurelia", "aurora", "amara", "amelia", "aria", "arabella", "aurelie", "amaya"]


@pytest.fixture(scope="module")
def sexed(tmp_path_factory):
    """The built-in names' bigram counts, conditioned on sex (a tenth of a second)."""
    return NameModel.train(data="builtin", model="bigram-counts", out=tmp_path_factory.mktemp("sexed") / "m")


def likeness(names: list[str], shortlist: list[str]) -> float:
    """Mean over `names` of the similarity (difflib's ratio, 0-1) to the most similar name of the shortlist."""
    import difflib

    return sum(max(difflib.SequenceMatcher(None, n, s).ratio() for s in shortlist) for n in names) / len(names)


def test_more_like_these_keeps_the_condition_of_a_conditional_model(sexed):
    tuned = sexed.more_like(SHORTLIST[:3], where={"sex": "F"})
    names = tuned.generate(50, seed=0, where={"sex": "F"}, novel=True).names  # the page sends the condition again
    assert len(names) == 50 and not set(names) & set(SHORTLIST[:3])
    scores = tuned.score(names, where={"sex": "F"})  # by the model they came from, among its girls' names
    assert scores == sexed.score(names, where={"sex": "F"})
    with pytest.raises(ConfigError, match="adapted to its list under sex=F"):
        tuned.generate(5, where={"sex": "M"})
    assert tuned.meta["adaptation"]["where"] == {"sex": ["F"]} and tuned.meta["adaptation"]["method"] == "more-like"
    with pytest.raises(ConfigError, match="where: unknown label 'era'"):
        sexed.more_like(SHORTLIST, where={"era": "1950s"})


def test_more_like_these_resembles_the_shortlist_and_keeps_names_name_like(sexed):
    plain = sexed.generate(300, seed=1, where={"sex": "F"}).names
    tuned = sexed.more_like(SHORTLIST, where={"sex": "F"})
    names = tuned.generate(300, seed=1, novel=True).names
    assert likeness(names, SHORTLIST) > likeness(plain, SHORTLIST) + 0.15
    percentiles = [s.percentile for s in tuned.score(names)]
    assert sum(p == 0 for p in percentiles) < len(names) / 4  # not the adapted model's own training names


def test_an_adapted_model_draws_only_its_list_letters(adapted):
    own = set("".join(LIST))
    assert set(adapted.vocab.chars) - own  # the prior's other letters are in its vocabulary: scoring reads them
    assert all(set(name) <= own for name in adapted.generate(2000, seed=0).names)
    assert any(set(name) - own for name in adapted.generate(2000, seed=0, prior_letters=True).names)
    exact = adapted.generate(200, seed=1, ends_with="il", max_len=8, method="exact")
    assert exact.stats.method == "exact" and all(set(name) <= own for name in exact.names)
    other = sorted(set(adapted.vocab.chars) - own)[0]
    assert math.isfinite(adapted.score([f"el{other}a"])[0].log_prob)  # scoring keeps the open vocabulary


def test_a_dense_ngram_background_is_read_row_by_row_as_it_predicts():
    """The background of "more like these" is often a dense n-gram: its table of whole rows is read by
    the longest stored context (sparse_ngram's fast path), with the dense model's own predictions."""
    corpus = Corpus.from_words(BACKGROUND)
    dense = NGram(corpus.vocab.size, NGramConfig(order=4))
    dense.fit(corpus, TrainConfig())
    converted = background_model(dense, corpus.vocab, corpus.vocab, 4)
    assert converted.components[0]._whole_rows(corpus.vocab.size)
    assert background_model(dense, corpus.vocab, corpus.vocab, 4) is converted  # kept for the next shortlist
    x, y = corpus.tensors("val")
    mask = y >= 0
    assert torch.allclose(dense(x).log_softmax(-1)[mask], converted(x).log_softmax(-1)[mask], atol=1e-5)
