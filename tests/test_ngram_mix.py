"""A network combined with a Kneser-Ney n-gram (namesmith.models.ngram_mix)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from namesmith.checkpoint import load_checkpoint
from namesmith.config import TrainConfig
from namesmith.data import Corpus
from namesmith.errors import CheckpointError, ConfigError
from namesmith.evaluate import word_log_probs
from namesmith.generate import GenerateConfig, generate
from namesmith.models.ngram_mix import NGramMix, fit_weights, mix_with_ngram
from namesmith.models.transformer import Transformer, TransformerConfig
from namesmith.train import train
from namesmith.trainer import mean_nll

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "elizabeth", "mila", "ella", "avery", "sofia", "camila", "aria", "scarlett",
         "victoria", "madison", "luna", "grace", "chloe", "penelope", "layla", "riley", "zoey", "nora"]
TINY_TRANSFORMER = {"n_layer": 1, "n_head": 2, "n_embd": 16}
QUICK = dict(max_steps=60, batch_size=8, eval_every=30, time_budget=1e9, seed=0, device="cpu")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_words(WORDS * 3, seed=42)


@pytest.fixture(scope="module")
def mixed(corpus) -> NGramMix:
    torch.manual_seed(0)
    model = Transformer(corpus.vocab.size, TransformerConfig(block_size=16, **TINY_TRANSFORMER))
    model.fit(corpus, TrainConfig(**QUICK))
    model.eval()
    mix = mix_with_ngram(model, corpus, order=3)
    assert isinstance(mix, NGramMix)
    return mix.eval()


def test_step_equals_forward_and_select_state(mixed, corpus):
    x, _ = corpus.tensors("val")
    idx = x[:6, :8]
    with torch.no_grad():
        full = mixed(idx)
        state, steps = mixed.init_state(6), []
        for t in range(idx.shape[1]):
            logprobs, state = mixed.step(state, idx[:, t])
            steps.append(logprobs)
            if t == 3:
                kept = mixed.select_state(state, torch.tensor([1, 4]))
                later, _ = mixed.step(kept, idx[[1, 4], 4])
                torch.testing.assert_close(later, full[[1, 4], 4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(full.shape[:2]))  # normalised


def test_fitted_weights_beat_either_model_alone_on_validation(mixed, corpus):
    x, y = corpus.tensors("val")
    both = mean_nll(mixed, x, y)
    assert both <= mean_nll(mixed.model, x, y) + 1e-6  # weights (1, 0) were a choice
    assert both <= mean_nll(mixed.ngram, x, y) + 1e-6  # and (0, 1)


def test_fit_weights_finds_the_minimum():
    torch.manual_seed(0)
    n, V = 2000, 7
    a_logp = F.log_softmax(torch.randn(n, V), -1)
    b_logp = F.log_softmax(torch.randn(n, V), -1)
    truth = F.log_softmax(0.7 * a_logp + 0.4 * b_logp, -1)
    targets = torch.multinomial(truth.exp(), 1).squeeze(1)
    a, b = fit_weights(a_logp, b_logp, targets)

    def nll(wa: float, wb: float) -> float:
        return F.nll_loss(F.log_softmax(wa * a_logp + wb * b_logp, -1), targets).item()

    best = nll(a, b)
    for da, db in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
        assert best <= nll(a + da, b + db) + 1e-7
    assert abs(a - 0.7) < 0.15 and abs(b - 0.4) < 0.15  # and it is near the weights that made the data


def test_checkpoint_round_trip_and_sampling(tmp_path):
    out = tmp_path / "m"
    result = train("gru", words=WORDS * 3, out=out, model_config={"n_embd": 8, "n_hidden": 16},
                   train_config=TrainConfig(**QUICK, ngram_mix=4))
    assert isinstance(result.model, NGramMix) and result.model.model_type == "gru"
    assert set(result.meta["metrics_without_ngram"]) == {"train", "val", "test"}
    saved = load_checkpoint(out)
    assert isinstance(saved.model, NGramMix) and saved.model.ngram.config.order == 4
    assert saved.meta["model_config"]["ngram_mix"]["weights"] == result.model.config_dict()["ngram_mix"]["weights"]
    names = ["emma", "zoey", "bella"] + generate(saved.model, saved.vocab, GenerateConfig(num=20, seed=0),
                                               max_word_length=12).names
    torch.testing.assert_close(word_log_probs(saved.model, names, saved.vocab),
                               word_log_probs(result.model, names, result.vocab))
    alone = train("gru", words=WORDS * 3, model_config={"n_embd": 8, "n_hidden": 16},
                  train_config=TrainConfig(**QUICK, ngram_mix=0))
    assert not isinstance(alone.model, NGramMix) and "metrics_without_ngram" not in alone.meta


def test_malformed_mix_in_a_checkpoint_is_refused():
    config = {**TINY_TRANSFORMER, "block_size": 8, "ngram_mix": {"ngram": {"order": 3}, "weights": [1.0]}}
    with pytest.raises(CheckpointError, match="ngram_mix"):
        Transformer.from_config_dict(10, config)
    config["ngram_mix"] = {"weights": [1.0, 0.5]}
    with pytest.raises(CheckpointError, match="ngram_mix"):
        Transformer.from_config_dict(10, config)


def test_refused_for_count_models_and_bad_orders():
    with pytest.raises(ConfigError, match="--ngram-mix"):
        train("bigram-counts", words=WORDS, train_config=TrainConfig(ngram_mix=3, device="cpu"))
    with pytest.raises(ConfigError, match="--ngram-mix"):
        TrainConfig(ngram_mix=-1)


def test_without_validation_words_the_network_stays_alone(caplog):
    corpus = Corpus.from_words(WORDS, split=False)
    model = Transformer(corpus.vocab.size, TransformerConfig(block_size=16, **TINY_TRANSFORMER))
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        assert mix_with_ngram(model, corpus, order=3) is model
    assert "no validation words" in caplog.text
