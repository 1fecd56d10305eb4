"""A network combined with a Kneser-Ney n-gram (namesmith.models.ngram_mix)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from model_support import assert_step_equals_forward

from namesmith import NameModel
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.data.words import Corpus
from namesmith.models.ngram_mix import NGramMix, fit_weights, mix_with_ngram
from namesmith.models.nll import mean_nll, word_log_probs
from namesmith.models.transformer import Transformer, TransformerConfig
from namesmith.training.checkpoint import META_FILE, load_checkpoint, read_meta, save_checkpoint
from namesmith.training.fitting import fit_model

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
    fit_model(model, corpus, TrainConfig(**QUICK))
    model.eval()
    mix = mix_with_ngram(model, corpus, order=3)
    assert isinstance(mix, NGramMix)
    return mix.eval()


@pytest.mark.slow  # a trained network: 28-49 s, busy machine
def test_step_equals_forward_and_select_state(mixed, corpus):
    x, _ = corpus.tensors("val")
    full = assert_step_equals_forward(mixed, x[:6, :8], rows=[1, 4], at=3)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(full.shape[:2]))  # normalised


@pytest.mark.slow  # a trained network: 28-49 s, busy machine
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


@pytest.mark.slow  # a trained network: 28-49 s, busy machine
def test_checkpoint_round_trip_and_sampling(tmp_path):
    out = tmp_path / "m"
    result = NameModel.train(model="gru", words=WORDS * 3, out=out, n_embd=8, n_hidden=16, **QUICK, ngram_mix=4,
                             prior="none")
    assert isinstance(result.model, NGramMix) and result.model_type == result.model.model_type == "ngram-mix"
    assert result.model.model.model_type == "gru" and result.model.config.model_type == "gru"
    assert result.describe() == "gru + 4-gram"
    assert set(result.meta["metrics_without_ngram"]) == {"train", "val", "test"}
    saved = NameModel.load(out)
    assert isinstance(saved.model, NGramMix) and saved.model.ngram.config.order == 4
    assert saved.meta["model_type"] == "ngram-mix" and saved.meta["model_config"]["model_type"] == "gru"
    assert saved.meta["model_config"]["weights"] == result.model.config_dict()["weights"]
    assert saved.model.weights().keys() == result.model.weights().keys()
    for name, tensor in result.model.weights().items():
        assert torch.equal(saved.model.weights()[name], tensor), name
    generated = saved.generate(20, seed=0)
    assert len(generated.names) == 20 and generated.names == saved.generate(20, seed=0).names
    names = ["emma", "zoey", "bella"] + generated.names
    torch.testing.assert_close(word_log_probs(saved.model, names, saved.vocab),
                               word_log_probs(result.model, names, result.vocab))
    alone = NameModel.train(model="gru", words=WORDS * 3, n_embd=8, n_hidden=16, **QUICK, ngram_mix=0, prior="none")
    assert not isinstance(alone.model, NGramMix) and "metrics_without_ngram" not in alone.meta
    assert alone.model_type == "gru" and alone.describe() == "gru"


@pytest.mark.slow  # a trained network: 28-49 s, busy machine
def test_malformed_mix_in_a_checkpoint_is_refused(mixed, corpus, tmp_path):
    # format 2: the mix is its own type, "ngram-mix", with a nested config
    data = {"path": "words.txt", "sha256": "0" * 64, "lowercase": True, "encoding": "utf-8", "max_line_length": 64,
            "dedupe": False, "split_seed": 42, "max_word_length": corpus.max_word_length}
    save_checkpoint(tmp_path / "m", mixed, corpus.vocab, {"data": data})
    good = read_meta(tmp_path / "m")
    assert good["model_type"] == "ngram-mix" and good["model_config"]["model_type"] == "transformer"
    assert good["model_config"]["weights"] == [float(w) for w in mixed.mix_weights]
    x, _ = corpus.tensors("val")
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "m").model(x), mixed(x))
    config = good["model_config"]
    for bad in ({**config, "weights": [1.0]}, {k: v for k, v in config.items() if k != "ngram"},
                {**config, "model_type": "quantum"}, {**config, "model_type": "ngram-mix", "model": config},
                {**config, "ngram": {"order": 3, "smoothing": 1}}):
        (tmp_path / "m" / META_FILE).write_text(json.dumps({**good, "model_config": bad}))
        with pytest.raises(CheckpointError, match="namesmith.json: .*(ngram-mix|quantum)"):
            load_checkpoint(tmp_path / "m")
    # an inner model's config with a format-1 style "ngram_mix" entry is not that model's config
    config = {**TINY_TRANSFORMER, "block_size": 8, "ngram_mix": {"ngram": {"order": 3}, "weights": [1.0]}}
    with pytest.raises(CheckpointError, match="ngram_mix"):
        Transformer.from_config_dict(10, config)


def test_refused_for_count_models_and_bad_orders():
    with pytest.raises(ConfigError, match="^ngram_mix applies to neural models; bigram-counts") as error:
        NameModel.train(model="bigram-counts", words=WORDS, ngram_mix=3, device="cpu")
    assert error.value.field == "ngram_mix"
    with pytest.raises(ConfigError, match="^ngram_mix must be") as error:
        TrainConfig(ngram_mix=-1)
    assert error.value.field == "ngram_mix"
    with pytest.raises(ConfigError, match="not trained by itself") as error:
        NameModel.train(model="ngram-mix", words=WORDS, device="cpu")


def test_without_validation_words_the_network_stays_alone(caplog):
    corpus = Corpus.from_words(WORDS, split=False)
    model = Transformer(corpus.vocab.size, TransformerConfig(block_size=16, **TINY_TRANSFORMER))
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        assert mix_with_ngram(model, corpus, order=3) is model
    assert "no validation words" in caplog.text
