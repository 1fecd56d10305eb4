"""Training is reproducible: the same seed and thread count give bit-identical weights.

Two uninterrupted runs used to differ (max |Δ| ~1e-5) because the learning rate followed wall time
whenever a time budget was set, even one that never bound.
"""

from __future__ import annotations

import pytest
import torch

from namesmith.core.config import TrainConfig
from namesmith.data.words import Corpus, load_words
from namesmith.training.fitting import build_model, fit_model
from namesmith.training.trainer import learning_rate

WORDS = load_words("builtin")[:600]


def train_once(model_type: str, **options) -> dict[str, torch.Tensor]:
    corpus = Corpus.from_words(WORDS)
    torch.manual_seed(0)
    model = build_model(model_type, corpus.vocab.size, {"n_hidden": 32, "n_embd": 16} if model_type == "gru" else
                        {"n_layer": 1, "n_head": 2, "n_embd": 16})
    config = TrainConfig(max_steps=60, warmup_steps=30, eval_every=20, batch_size=16, ngram_mix=0, seed=3, **options)
    fit_model(model, corpus, config)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("model_type", [pytest.param("gru", marks=pytest.mark.slow), "transformer"])  # one fast
def test_same_seed_gives_identical_weights_with_a_budget_that_does_not_bind(one_thread, model_type):
    # 60 tiny steps take well under a second; a 20 s budget does not end the run, so the schedule
    # must not follow the clock (it used to at the end of warm-up, where the step-based progress is 0)
    first, second = train_once(model_type, time_budget=20.0), train_once(model_type, time_budget=20.0)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_the_schedule_ignores_the_clock_while_the_budget_is_not_binding():
    config = TrainConfig(max_steps=1000, learning_rate=1.0, learning_rate_end=0.0, warmup_steps=0, time_budget=100.0)
    # 500 steps in 10 s: the whole run takes 20 s of a 100 s budget, so the rate follows the steps alone
    assert learning_rate(500, config, seconds=10.0) == learning_rate(500, config, seconds=0.001)
    # 500 steps in 80 s: the budget will end the run first, so the rate anneals on time
    assert learning_rate(500, config, seconds=80.0) < learning_rate(500, config, seconds=10.0)
    assert learning_rate(999, config, seconds=100.0) == pytest.approx(0.0, abs=1e-12)
