"""MLP, WaveNet and the recurrent models: shapes, step() == forward(), learning, saving, configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_support import assert_step_equals_forward

from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import Corpus
from namesmith.models import model_class
from namesmith.models.nll import mean_nll
from namesmith.training.checkpoint import load_checkpoint, save_checkpoint
from namesmith.training.fitting import fit_model

TINY = {
    "mlp": {"block_size": 3, "n_embd": 8, "n_hidden": 64},
    "wavenet": {"block_size": 4, "n_embd": 8, "n_hidden": 32},
    "rnn": {"n_embd": 8, "n_hidden": 32},
    "gru": {"n_embd": 8, "n_hidden": 32, "n_layer": 2},
    "lstm": {"n_embd": 8, "n_hidden": 32, "n_layer": 2},
}
NAMES = list(TINY)
V = 12


def make(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cls = model_class(name)
    return cls(V, cls.config_class(**{**TINY[name], **overrides}))


def sequences(B: int = 5, T: int = 11, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(1, V, (B, T), generator=g)
    idx[:, 0] = 0  # every sequence starts with the boundary
    return idx


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_and_initial_loss(name):
    model = make(name)
    idx = sequences()
    logits = model(idx)
    assert logits.shape == (5, 11, V)
    loss = F.cross_entropy(logits.flatten(0, 1), torch.randint(0, V, (55,)))
    assert abs(loss.item() - math.log(V)) < 0.1  # no confident wrong guesses at init


@pytest.mark.parametrize("name", NAMES)
def test_step_equals_forward(name):
    assert_step_equals_forward(make(name).eval(), sequences())


@pytest.mark.parametrize("name", ["rnn", "gru", "lstm"])
def test_recurrent_step_in_blocks_of_rows_equals_forward(name, monkeypatch):
    import namesmith.models.rnn as rnn

    monkeypatch.setattr(rnn, "STEP_ROWS", 2)  # 5 rows: blocks of 2, 2 and 1
    model = make(name).eval()
    idx = sequences()
    full = assert_step_equals_forward(model, idx, inference=True)
    model.train()  # training mode (dropout between layers) steps through the torch module: the same numbers
    with torch.no_grad():
        logits, _ = model.step(model.init_state(5), idx[:, 0])
    torch.testing.assert_close(logits, full[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_select_state_keeps_rows(name):
    model = make(name).eval()
    idx = sequences()
    rows = torch.tensor([0, 3])
    with torch.no_grad():
        state = model.init_state(5)
        for t in range(4):
            _, state = model.step(state, idx[:, t])
        state = model.select_state(state, rows)
        logits, _ = model.step(state, idx[rows, 4])
        torch.testing.assert_close(logits, model(idx[rows, :5])[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_forward_is_causal(name):
    model = make(name).eval()
    idx = sequences()
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] % (V - 1)) + 1
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[:, :6], model(changed)[:, :6])


@pytest.mark.parametrize("name", NAMES)
def test_overfits_ten_words(name):
    words = ["anna", "bob", "carla", "dave", "eve", "fiona", "gil", "hank", "ida", "jon"]
    corpus = Corpus.from_words(words)
    torch.manual_seed(0)
    cls = model_class(name)
    model = cls(corpus.vocab.size, cls.config_class(**TINY[name]))
    config = TrainConfig(max_steps=120, learning_rate=3e-2, learning_rate_end=3e-3, batch_size=10,
                         weight_decay=0.0, warmup_steps=10, grad_clip=1.0, eval_every=1000, patience=100, seed=0)
    history = fit_model(model, corpus, config)
    x, y = corpus.tensors("train")
    assert history.steps == 120
    assert mean_nll(model, x, y) < 0.5 * math.log(corpus.vocab.size)


def step_logits(model, idx: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits fed one token at a time through `step` (the sampling path)."""
    with torch.no_grad():
        state, steps = model.init_state(idx.shape[0]), []
        for t in range(idx.shape[1]):
            logits, state = model.step(state, idx[:, t])
            steps.append(logits)
    return torch.stack(steps, 1)


def assert_same_outputs(model, other) -> None:
    """Bit for bit the same logits, through forward and through step."""
    idx = sequences()
    model.eval()
    other.eval()
    with torch.no_grad():
        assert torch.equal(model(idx), other(idx))
    assert torch.equal(step_logits(model, idx), step_logits(other, idx))


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip(name, tmp_path):
    model, other = make(name, seed=0), make(name, seed=1)
    with torch.no_grad():  # different initial weights: the comparisons below can fail
        assert not torch.equal(model.eval()(sequences()), other.eval()(sequences()))
    other.load_weights(model.weights())
    assert_same_outputs(model, other)
    rebuilt = type(model).from_config_dict(V, model.config_dict())
    assert rebuilt.config == model.config
    rebuilt.load_weights(model.weights())
    assert_same_outputs(model, rebuilt)
    # and through a model directory on disk
    vocab = Vocab.from_words(["abcdefghijk"])
    assert vocab.size == V
    data = {"path": "words.txt", "sha256": "0" * 64, "lowercase": True, "encoding": "utf-8", "max_line_length": 64,
            "dedupe": False, "split_seed": 42, "max_word_length": 11}  # what load_checkpoint checks
    save_checkpoint(tmp_path / "m", model, vocab, {"data": data})
    loaded = load_checkpoint(tmp_path / "m")
    assert type(loaded.model) is type(model) and loaded.model.config == model.config
    assert_same_outputs(model, loaded.model)
    with pytest.raises(CheckpointError):
        make(name, n_hidden=16).load_weights(model.weights())


@pytest.mark.parametrize("name", NAMES)
def test_default_train_config_is_complete(name):
    cls = model_class(name)
    defaults = cls.default_train_config
    for key in ("max_steps", "learning_rate", "learning_rate_end", "batch_size", "weight_decay", "warmup_steps",
                "grad_clip", "eval_every", "patience", "time_budget"):
        assert key in defaults, key
    TrainConfig(**defaults)  # valid values


@pytest.mark.parametrize("name,bad", [
    ("mlp", {"block_size": 0}), ("mlp", {"n_hidden": -1}), ("mlp", {"dropout": 1.0}),
    ("wavenet", {"block_size": 6}), ("wavenet", {"block_size": 1}), ("wavenet", {"n_embd": 0}),
    ("rnn", {"n_layer": 0}), ("gru", {"n_hidden": 2.5}), ("lstm", {"dropout": -0.1}),
])
def test_bad_configs_raise(name, bad):
    cls = model_class(name)
    with pytest.raises(ConfigError):
        cls.config_class(**bad)


def test_lstm_state_holds_hidden_and_cell():
    model = make("lstm")
    h, c = model.init_state(3)
    assert h.shape == c.shape == (2, 3, 32)
    assert model.context_size is None
    assert make("mlp").context_size == 3 and make("wavenet").context_size == 4


@pytest.mark.parametrize("name", NAMES)
def test_selected_rows_may_repeat_and_come_in_any_order(name):
    """Siblings share a parent row (the sampler's branching) and a caller may pick rows in any order."""
    model = make(name).eval()
    idx = sequences()
    with torch.inference_mode():
        state = model.init_state(5)
        for t in range(3):
            _, state = model.step(state, idx[:, t])
        for rows, then in ((torch.tensor([1, 1, 4, 4]), torch.tensor([0, 2, 3])),
                           (torch.tensor([4, 1, 1, 0]), torch.tensor([3, 1, 1]))):
            picked = model.select_state(model.select_state(state, rows), then)  # twice: rows[then]
            x = idx[rows[then]]
            logits, _ = model.step(picked, x[:, 3])
            torch.testing.assert_close(logits, model(x[:, :4])[:, -1], atol=1e-5, rtol=1e-5)
