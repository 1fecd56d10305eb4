"""Bigram models: the sufficient-statistics full-batch loop follows the seed's one-hot loop exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from namesmith.core.config import TrainConfig
from namesmith.core.history import TrainHistory
from namesmith.data.pair_counts import count_pairs
from namesmith.data.words import Corpus, load_words
from namesmith.models.bigram import BigramConfig, BigramCounts, BigramCountsConfig, BigramLinear


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_words(load_words("builtin")[:300], seed=42)


def fitted(corpus: Corpus, mode: str, epochs: int, **train) -> tuple[BigramLinear, TrainHistory]:
    model = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3))
    config = TrainConfig(max_steps=epochs, mode=mode, device="cpu", **train)
    history = model.fit(corpus, config.with_defaults(model.train_defaults(config)))
    return model, history


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_full_batch_follows_the_one_hot_trajectory(corpus, weight_decay):
    # lr 100 → 10 over 40 epochs, the seed's schedule compressed: W must agree after every epoch count
    for epochs in (1, 7, 40):
        fast, fast_history = fitted(corpus, "full-batch", epochs, weight_decay=weight_decay)
        slow, slow_history = fitted(corpus, "one-hot", epochs, weight_decay=weight_decay)
        assert fast_history.steps == slow_history.steps == epochs
        assert relative_error(fast.W.detach(), slow.W.detach()) < 1e-5
        slow_loss = dict(slow_history.train_loss)
        for epoch, loss in fast_history.train_loss:  # logged every LOG_EVERY epochs and at the last
            assert loss == pytest.approx(slow_loss[epoch], rel=1e-5)


def test_full_batch_is_the_default_and_starts_from_the_same_w(corpus):
    model = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3))
    w0 = model.W.detach().clone()
    assert torch.equal(w0, BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3)).W.detach())
    assert TrainConfig().mode == "full-batch"
    defaults = model.train_defaults(TrainConfig())
    assert (defaults["learning_rate"], defaults["learning_rate_end"], defaults["max_steps"]) == (100.0, 10.0, 10_000)


def test_learning_rate_decays_linearly_like_the_seed():
    config = TrainConfig(max_steps=10_000, learning_rate=100.0, learning_rate_end=10.0)
    assert BigramLinear._learning_rate(config, 0) == 100.0
    assert BigramLinear._learning_rate(config, 5_000) == pytest.approx(55.0)
    assert BigramLinear._learning_rate(config, 9_999) == pytest.approx(100 - 90 * 9_999 / 10_000)


def test_stopping_and_resuming_gives_the_same_weights(corpus):
    full, _ = fitted(corpus, "full-batch", 30)
    model = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3))
    config = TrainConfig(max_steps=30, device="cpu")
    config = config.with_defaults(model.train_defaults(config))
    saved = {}
    history = model.fit(corpus, config, callback=lambda step, total, metrics: step > 10,
                        on_checkpoint=lambda state: saved.update(state))
    assert history.stop_reason == "interrupted" and saved["meta"]["epoch"] == history.steps < 30
    resumed = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3))
    history = resumed.fit(corpus, config, resume=saved)
    assert history.steps == 30
    assert relative_error(resumed.W.detach(), full.W.detach()) < 1e-6  # W is saved in float32


def test_fit_pair_counts_equals_fit_on_the_corpus(corpus):
    reference, _ = fitted(corpus, "full-batch", 25)
    model = BigramLinear(corpus.vocab.size, BigramConfig(init_seed=3))
    config = TrainConfig(max_steps=25).with_defaults(model.train_defaults(TrainConfig()))
    counts = count_pairs(*corpus.tensors("train"), corpus.vocab.size).numpy()
    assert model.fit_pair_counts(counts, config) == 25
    assert torch.equal(model.W, reference.W)


def test_long_training_approaches_the_maximum_likelihood_counts(corpus):
    model, history = fitted(corpus, "full-batch", 3000)
    counts = BigramCounts(corpus.vocab.size, BigramCountsConfig(smoothing=0))
    counts.fit(corpus, None)
    x, y = corpus.tensors("train")
    mask = y >= 0
    nll = lambda m: float(-m.log_probs().detach()[x[mask], y[mask]].mean())  # noqa: E731
    assert history.train_loss[-1][1] == pytest.approx(nll(model), rel=1e-6)
    assert nll(model) == pytest.approx(nll(counts), abs=2e-3)  # unseen pairs keep a little mass


def test_count_model_rows_are_add_k_estimates(corpus):
    model = BigramCounts(corpus.vocab.size, BigramCountsConfig(smoothing=0.5))
    model.fit(corpus, None)
    counts = count_pairs(*corpus.tensors("train"), corpus.vocab.size).double().numpy()
    expected = (counts + 0.5) / (counts + 0.5).sum(1, keepdims=True)
    np.testing.assert_allclose(model.transition_probs().double().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("model_type", ["bigram", "bigram-counts"])
def test_evaluation_from_pair_counts_equals_word_evaluation(corpus, model_type):
    from namesmith.scoring.evaluate import evaluate, evaluate_splits

    model = (BigramLinear(corpus.vocab.size) if model_type == "bigram"
             else BigramCounts(corpus.vocab.size, BigramCountsConfig(smoothing=0.5)))
    if model_type == "bigram-counts":
        model.fit(corpus, None)
    fast = evaluate_splits(model, corpus)
    for part in ("train", "val", "test"):
        slow = evaluate(model, corpus.words(part), corpus.vocab).to_dict()
        assert fast[part]["nll"] == pytest.approx(slow["nll"], rel=1e-6)
        assert (fast[part]["n_words"], fast[part]["n_chars"]) == (slow["n_words"], slow["n_chars"])
