"""Trained models combined into one (namesmith.models.ensemble, NameModel.ensemble, `namesmith ensemble`)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from model_support import assert_step_equals_forward

from namesmith.cli import main
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.data.words import Corpus, load_words
from namesmith.models.ensemble import Ensemble, build_ensemble, fit_mixture_weights, fit_product_weights
from namesmith.models.mlp import MLP, MLPConfig
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import mean_nll
from namesmith.models.rnn import GRU, RNNConfig
from namesmith.models.transformer import Transformer, TransformerConfig
from namesmith.namemodel import NameModel
from namesmith.training.fitting import fit_model

QUICK = dict(max_steps=40, batch_size=16, eval_every=20, time_budget=1e9, seed=0, device="cpu", ngram_mix=0)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_words(load_words("builtin")[:600], seed=42)


@pytest.fixture(scope="module")
def members(corpus):
    from namesmith.core.config import TrainConfig

    torch.manual_seed(0)
    V = corpus.vocab.size
    models = [Transformer(V, TransformerConfig(block_size=corpus.max_word_length + 1, n_layer=1, n_head=2,
                                               n_embd=16)),
              GRU(V, RNNConfig(n_embd=8, n_hidden=16)), MLP(V, MLPConfig(block_size=3, n_embd=4, n_hidden=16)),
              NGram(V, NGramConfig(order=3))]
    for model in models:
        fit_model(model, corpus, TrainConfig(**QUICK))
        model.eval()
    return models


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
@pytest.mark.parametrize("combine", ["mixture", "product"])
def test_fitted_weights_beat_every_member_on_validation(members, corpus, combine):
    ensemble = build_ensemble(members, corpus, combine).eval()
    x, y = corpus.tensors("val")
    combined = mean_nll(ensemble, x, y)
    alone = [mean_nll(member, x, y) for member in members]
    # each member alone is one choice of weights (a corner), so the fitted optimum is at least as good;
    # and better, as these members' mistakes differ
    assert combined < min(alone) - 1e-4, (combined, alone)
    weights = ensemble.config.weights
    assert len(weights) == len(members)
    if combine == "mixture":
        assert min(weights) >= 0 and sum(weights) == pytest.approx(1.0)


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
@pytest.mark.parametrize("combine", ["mixture", "product"])
def test_step_equals_forward_and_select_state(members, corpus, combine):
    ensemble = Ensemble(members, [0.4, 0.3, 0.2, 0.1], combine).eval()
    x, _ = corpus.tensors("val")
    idx = x[:6, :7]
    full = assert_step_equals_forward(ensemble, idx, rows=[1, 4], at=3, inference=True)
    torch.testing.assert_close(full.exp().sum(-1), torch.ones(full.shape[:2]))  # normalised
    # the combination rule itself, against a direct computation
    member_logprobs = torch.stack([F.log_softmax(m(idx).float(), -1) for m in members])  # (K, B, T, V)
    w = torch.tensor([0.4, 0.3, 0.2, 0.1]).view(-1, 1, 1, 1)
    expected = ((member_logprobs.exp() * w).sum(0).log() if combine == "mixture"
                else F.log_softmax((member_logprobs * w).sum(0), -1))
    torch.testing.assert_close(full, expected, atol=1e-5, rtol=1e-5)


def test_em_finds_the_mixture_that_made_the_data():
    torch.manual_seed(0)
    n, V = 20_000, 6
    a, b, c = (F.log_softmax(2 * torch.randn(n, V), -1) for _ in range(3))
    truth = torch.tensor([0.6, 0.3, 0.1])
    probs = truth[0] * a.exp() + truth[1] * b.exp() + truth[2] * c.exp()
    targets = torch.multinomial(probs, 1).squeeze(1)
    target_logp = torch.stack([lp.gather(1, targets[:, None])[:, 0] for lp in (a, b, c)], 1)
    pi = torch.tensor(fit_mixture_weights(target_logp))
    assert torch.allclose(pi, truth, atol=0.03)

    def nll(weights: torch.Tensor) -> float:
        return -(target_logp.double() + weights.double().log()).logsumexp(1).mean().item()

    for direction in ([1, -1, 0], [0, 1, -1], [-1, 0, 1]):  # the maximum: no step along the simplex improves
        assert nll(pi) <= nll(pi + 0.01 * torch.tensor(direction)) + 1e-9


def test_product_weights_minimise_the_nll():
    torch.manual_seed(1)
    n, V = 3000, 7
    a, b = F.log_softmax(torch.randn(n, V), -1), F.log_softmax(torch.randn(n, V), -1)
    targets = torch.multinomial(F.log_softmax(0.8 * a + 0.5 * b, -1).exp(), 1).squeeze(1)
    wa, wb = fit_product_weights([a, b], targets)

    def nll(x: float, y: float) -> float:
        return F.nll_loss(F.log_softmax(x * a + y * b, -1), targets).item()

    for da, db in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
        assert nll(wa, wb) <= nll(wa + da, wb + db) + 1e-7
    assert abs(wa - 0.8) < 0.15 and abs(wb - 0.5) < 0.15


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
def test_bad_weights_and_configs_are_refused(members):
    with pytest.raises(ConfigError, match="sum to 1"):
        Ensemble(members[:2], [0.7, 0.7], "mixture")
    with pytest.raises(ConfigError, match="combine"):
        Ensemble(members[:2], [0.5, 0.5], "average")
    with pytest.raises(CheckpointError, match="malformed ensemble"):
        Ensemble.from_config_dict(10, {"members": [{"model_type": "ngram", "model": {"order": 2}}], "weights": [2.0],
                                     "combine": "mixture"})
    with pytest.raises(CheckpointError, match="malformed ensemble"):
        Ensemble.from_config_dict(10, {"weights": [1.0]})


# --- through NameModel and the CLI ----------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    words = root / "names.txt"
    words.write_text("\n".join(load_words("builtin")[:500]) + "\n")
    options = dict(max_steps=30, eval_every=10, batch_size=16, ngram_mix=0, seed=1, device="cpu", prior="none")
    NameModel.train(words, "gru", out=root / "gru", n_embd=8, n_hidden=16, **options)
    NameModel.train(words, "transformer", out=root / "tf", n_layer=1, n_head=2, n_embd=16, **options)
    NameModel.train(words, "ngram", out=root / "ngram", order=3, prior="none")
    return root


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
def test_round_trip_sample_score_eval_constraints(trained, tmp_path):
    dirs = [trained / "gru", trained / "tf", trained / "ngram"]
    built = NameModel.ensemble(dirs, out=tmp_path / "ens")
    loaded = NameModel.load(tmp_path / "ens")
    assert loaded.model_type == "ensemble" and loaded.describe() == "ensemble of [gru, transformer, ngram]"
    assert loaded.meta["model_config"] == built.meta["model_config"]
    assert loaded.metrics == built.metrics
    assert loaded.evaluate()["val"]["nll"] == pytest.approx(built.metrics["val"]["nll"], rel=1e-6)
    assert built.metrics["val"]["nll"] <= min(m["metrics"]["val"]["nll"] for m in loaded.meta["members"]) + 1e-7
    names = loaded.generate(8, starts_with="a", ends_with="n", min_len=4, seed=3).names
    assert len(names) == 8 and all(n.startswith("a") and n.endswith("n") and len(n) >= 4 for n in names)
    assert names == NameModel.load(tmp_path / "ens").generate(8, starts_with="a", ends_with="n", min_len=4,
                                                               seed=3).names
    scores = [s.log_prob for s in loaded.score(["emma", *names])]
    assert scores == pytest.approx([s.log_prob for s in built.score(["emma", *names])], rel=1e-6)
    # an ensemble of ensembles is still a model
    nested = NameModel.ensemble([loaded, trained / "ngram"], combine="product")
    assert nested.describe() == "ensemble of [ensemble of [gru, transformer, ngram], ngram]"


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
def test_members_must_share_vocabulary_and_data(trained, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("\n".join(load_words("builtin")[500:900]) + "\n")
    NameModel.train(other, "ngram", out=tmp_path / "other", order=3, prior="none")
    with pytest.raises(ConfigError, match=r"other data .* ensemble members must share|another vocabulary"):
        NameModel.ensemble([trained / "ngram", tmp_path / "other"])
    with pytest.raises(ConfigError, match="at least two"):
        NameModel.ensemble([trained / "ngram"])


@pytest.mark.slow  # trained members: 20-40 s of fixtures, busy machine
def test_cli(trained, tmp_path, capsys):
    out = str(tmp_path / "ens")
    assert main(["ensemble", "-m", str(trained / "gru"), "-m", str(trained / "ngram"), "--out", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "ensemble" and len(info["model_config"]["weights"]) == 2
    assert main(["ensemble", "-m", str(trained / "gru"), "-m", str(trained / "tf"), "--out", out]) == 1
    assert "already holds a trained model" in capsys.readouterr().err  # a different model is not replaced
    assert main(["ensemble", "-m", str(trained / "gru"), "--out", str(tmp_path / "one")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "-m/--models: an ensemble needs at least two" in err
    assert main(["sample", "-m", out, "-n", "3", "--seed", "1", "-q"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
