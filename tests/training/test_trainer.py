"""The gradient trainer: stopping rules, schedule, best-weights restore, resumable state."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from clock_support import fake_clock
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from namesmith.core.config import TrainConfig
from namesmith.data.words import Corpus
from namesmith.models.mlp import MLP, MLPConfig
from namesmith.models.nll import batch_loss, mean_nll
from namesmith.training.fitting import fit_model, resolve_train_config
from namesmith.training.trainer import LengthBuckets, Trainer, WeightAverage, learning_rate, make_optimizer

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "charlotte", "mia", "amelia", "harper", "evelyn",
         "abigail", "emily", "elizabeth", "mila", "ella", "avery", "sofia", "camila", "aria", "scarlett",
         "victoria", "madison", "luna", "grace", "chloe", "penelope", "layla", "riley", "zoey", "nora",
         "lily", "eleanor", "hannah", "lillian", "addison", "aubrey", "ellie", "stella", "natalie", "zoe",
         "leah", "hazel", "violet", "aurora", "savannah", "audrey", "brooklyn", "bella", "claire", "skylar"]


def base_config(**overrides) -> TrainConfig:
    values = dict(max_steps=40, learning_rate=1e-2, learning_rate_end=1e-3, batch_size=8, weight_decay=0.01,
                  warmup_steps=5, grad_clip=1.0, eval_every=10, patience=100, seed=3, ema=0.0, batching="random",
                  ngram_mix=0, time_budget=1e9)  # a budget that never binds keeps the schedule step-based
    values.update(overrides)
    return TrainConfig(**values)


def tiny_mlp(seed: int = 0, dropout: float = 0.1) -> MLP:
    torch.manual_seed(seed)
    return MLP(27, MLPConfig(block_size=3, n_embd=8, n_hidden=32, dropout=dropout))


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.from_words(WORDS, seed=42)


def test_max_steps_and_history(corpus):
    model = tiny_mlp()
    history = fit_model(model, corpus, base_config(max_steps=35))
    assert history.steps == 35
    assert history.stop_reason == "finished"
    assert [s for s, _ in history.train_loss] == [10, 20, 30]
    assert [s for s, _, _ in history.val_loss] == [10, 20, 30, 35]  # plus one at the end
    assert history.seconds > 0


def test_time_budget_stops(monkeypatch):
    """The budgets' clock stands still until step 7 moves it past the budget: training stops after that step,
    however fast the machine runs the steps."""
    corpus = Corpus.from_words(WORDS * 4, seed=1)
    clock = fake_clock(monkeypatch)

    def callback(step, total, metrics):
        if step == 7:
            clock.now += 0.5

    history = fit_model(tiny_mlp(), corpus, base_config(max_steps=100, time_budget=0.3, eval_every=50), callback)
    assert history.stop_reason == "time budget" and history.steps == 7
    assert history.seconds == pytest.approx(0.5)


def test_callback_stops_and_sees_metrics(corpus):
    seen = []

    def callback(step, total, metrics):
        seen.append((step, total, dict(metrics)))
        return step == 7

    history = fit_model(tiny_mlp(), corpus, base_config(eval_every=5), callback)
    assert history.steps == 7 and history.stop_reason == "interrupted"
    assert [s for s, _, _ in seen] == list(range(1, 8))
    assert all(total == 40 and "loss" in m and "lr" in m for _, total, m in seen)
    assert "val_loss" in seen[4][2] and "val_loss" not in seen[3][2]


def test_best_weights_restored_and_early_stopping(corpus):
    # A big learning rate on a few words overfits: validation loss rises after a while.
    model = tiny_mlp(dropout=0.0)
    config = base_config(max_steps=600, learning_rate=3e-2, learning_rate_end=3e-2, eval_every=20, patience=3,
                         weight_decay=0.0)
    history = fit_model(model, corpus, config)
    assert history.stop_reason == "early stopping"
    vals = [v for _, _, v in history.val_loss]
    assert vals[-1] > min(vals)
    x, y = corpus.tensors("val")
    assert mean_nll(model, x, y) == pytest.approx(min(vals), abs=1e-6)


def test_no_validation_words_keeps_last_weights(caplog):
    corpus = Corpus.from_words(["ab", "ba", "abba"], seed=0)
    assert corpus.words("val") == []
    with caplog.at_level(logging.WARNING, logger="namesmith"):
        history = fit_model(tiny_mlp(), corpus, base_config(max_steps=12, eval_every=4))
    assert "no validation words" in caplog.text
    assert history.steps == 12 and history.val_loss == []


def test_learning_rate_schedule():
    config = base_config(max_steps=110, learning_rate=1.0, learning_rate_end=0.1, warmup_steps=10)
    rates = [learning_rate(s, config) for s in range(110)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert rates[10] == pytest.approx(1.0)
    assert rates[60] == pytest.approx(0.55)  # half-way down the cosine
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert learning_rate(110, config) == pytest.approx(0.1)
    # with a time budget, elapsed time also moves along the cosine
    timed = base_config(max_steps=10**6, learning_rate=1.0, learning_rate_end=0.0, warmup_steps=0, time_budget=10)
    assert learning_rate(5, timed, seconds=5.0) == pytest.approx(0.5)


def test_weight_decay_only_on_matrices():
    model = tiny_mlp()
    optimizer = make_optimizer(model, base_config(weight_decay=0.5))
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def roundtrip(state: dict) -> dict:
    """What a checkpoint file does to a state: safetensors for tensors, JSON for meta."""
    tensors = st_load(st_save({k: v.contiguous() for k, v in state["tensors"].items()}))
    return {"tensors": tensors, "meta": json.loads(json.dumps(state["meta"]))}


PLAIN = {"ema": 0.0, "batching": "random"}


@pytest.mark.parametrize("stop_at, options", [(17, PLAIN), (20, PLAIN), (17, {"ema": 0.9, "batching": "by-length"})])
def test_resume_gives_identical_weights(corpus, stop_at, options):
    config = base_config(max_steps=40, eval_every=10, **options)
    reference = tiny_mlp(seed=0)
    ref_history = fit_model(reference, corpus, config)

    states = []
    model = tiny_mlp(seed=0)
    history = fit_model(model, corpus, config, lambda step, total, m: step == stop_at,
                           on_checkpoint=states.append)
    assert history.stop_reason == "interrupted" and history.steps == stop_at
    state = roundtrip(states[-1])
    assert state["meta"]["step"] == stop_at
    assert {"rng.torch", "rng.batch"} <= set(state["tensors"])
    assert any(k.startswith("average.") for k in state["tensors"]) == (options["ema"] > 0)
    assert any(k.startswith("optim.state.") and k.endswith(".exp_avg") for k in state["tensors"])

    torch.manual_seed(123)  # the global RNG (dropout) must come from the state, not from here
    resumed = tiny_mlp(seed=99)
    resumed_history = fit_model(resumed, corpus, config, resume=state)
    assert resumed_history.steps == 40 and resumed_history.stop_reason == "finished"
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert resumed_history.train_loss == ref_history.train_loss
    assert [(s, v) for s, _, v in resumed_history.val_loss] == [(s, v) for s, _, v in ref_history.val_loss]


def test_checkpoints_after_each_evaluation(corpus):
    states = []
    fit_model(tiny_mlp(), corpus, base_config(max_steps=30, eval_every=10), on_checkpoint=states.append)
    assert [s["meta"]["step"] for s in states] == [10, 20, 30]
    assert all(math.isfinite(s["meta"]["best_val"]) for s in states)
    assert all(any(k.startswith("best.") for k in s["tensors"]) for s in states)


def test_length_buckets_partition_words_by_length():
    lengths = torch.tensor([3] * 5 + [4] * 30 + [5] * 40 + [6] * 3 + [9] * 2 + [7] * 25)
    buckets = LengthBuckets(lengths, batch_size=4, min_words=20)
    rows = torch.cat(buckets.groups)
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every word in exactly one group
    spans = [(int(lengths[g].min()), int(lengths[g].max()), len(g)) for g in buckets.groups]
    assert spans == [(3, 4, 35), (5, 5, 40), (6, 9, 30)]  # 3 joins 4; 6, 7 and 9 join up to 20 words
    for index, group in enumerate(buckets.groups):
        assert (buckets.group_of[group] == index).all()
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(lengths))
    for _ in range(3000):
        batch = buckets.draw(generator)
        assert len(batch) == 4 and len(set(buckets.group_of[batch].tolist())) == 1  # one group per batch
        counts += torch.bincount(batch, minlength=len(lengths))
    share = counts / counts.sum()  # each word as likely as under uniform draws: 1/100 each
    assert share.min() > 0.006 and share.max() < 0.014
    assert LengthBuckets(torch.tensor([5, 6]), batch_size=8).groups[0].tolist() == [0, 1]  # all in one


def test_by_length_loss_is_the_nll_per_character_on_average(corpus):
    model = tiny_mlp(dropout=0.0).eval()
    x, y = corpus.tensors("train")
    lengths = (y >= 0).sum(1)
    buckets = LengthBuckets(lengths, batch_size=4, min_words=8)
    tokens_per_batch = 4 * float(lengths.float().mean())
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        losses = []
        for _ in range(4000):
            rows = buckets.draw(generator)
            T = int(lengths[rows].max())
            losses.append(batch_loss(model(x[rows, :T]), y[rows, :T], tokens_per_batch).item())
    assert sum(losses) / len(losses) == pytest.approx(mean_nll(model, x, y), rel=0.01)


def test_weight_average_update_and_swap():
    model = torch.nn.Linear(2, 1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(2.0)
    average.update(step=100)  # decay min(0.5, 101/110) = 0.5: half-way to the new weights
    assert torch.allclose(average.average["weight"], start["weight"] + 1.0)
    live = model.weight.detach().clone()
    average.swap()
    assert torch.allclose(model.weight, start["weight"] + 1.0)
    average.swap()
    assert torch.equal(model.weight, live)
    early = WeightAverage(model, decay=0.999)
    with torch.no_grad():
        model.weight.add_(1.0)
    early.update(step=1)  # the decay ramps up: (1 + 1) / (10 + 1) at the first step
    assert torch.allclose(early.average["weight"], live + 9 / 11)


def test_ema_weights_are_the_ones_evaluated_and_kept(corpus):
    model = tiny_mlp()
    history = fit_model(model, corpus, base_config(max_steps=60, ema=0.95, eval_every=20))
    x, y = corpus.tensors("val")
    assert mean_nll(model, x, y) == pytest.approx(min(v for _, _, v in history.val_loss), abs=1e-6)
    # the same run without the average trains identically but evaluates (and keeps) the raw weights
    raw = fit_model(tiny_mlp(), corpus, base_config(max_steps=60, ema=0.0, eval_every=20))
    assert raw.train_loss == history.train_loss
    assert all(a != b for (_, _, a), (_, _, b) in zip(raw.val_loss, history.val_loss))


def test_fit_model_resolves_the_config_and_runs_the_trainer(corpus):
    config = base_config(max_steps=25, ema=None, batching=None, ngram_mix=None)  # left to the model type
    resolved = resolve_train_config(tiny_mlp(), config)
    assert resolved.resolved and not config.resolved
    assert (resolved.ema, resolved.batching) == (0.999, "by-length")  # the neural defaults fill what was unset
    assert resolved.max_steps == 25 and resolved.learning_rate == 1e-2  # what was set stays
    with pytest.raises(AssertionError, match="resolved"):
        Trainer(tiny_mlp(), corpus, config)
    by_trainer = tiny_mlp()
    history = Trainer(by_trainer, corpus, resolved).fit()
    by_fit_model = tiny_mlp()
    assert fit_model(by_fit_model, corpus, config).train_loss == history.train_loss
    for name, tensor in by_trainer.state_dict().items():
        assert torch.equal(tensor, by_fit_model.state_dict()[name]), name
