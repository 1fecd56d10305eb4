"""The one gradient trainer of every neural model: AdamW, warm-up + cosine decay, early stopping.

Training follows the recipe of nanoGPT (Karpathy 2022) applied to words:

- minibatches of `batch_size` whole words drawn with replacement by a `torch.Generator` seeded
  from `config.seed`, cropped to the longest word of the batch;
- the loss is the mean cross-entropy over every real target token (end token included, padding
  -1 ignored): the NLL per character that evaluation reports;
- with a `teacher` (knowledge distillation, namesmith.training.distill), the loss mixes that NLL with the
  cross-entropy against the teacher's next-character distributions (`distill_weight`); the
  validation loss stays the NLL;
- `batching="by-length"` draws each batch from one bucket of words of (about) the same length
  (`LengthBuckets`), so little of a batch is padding; a batch's summed loss is divided by
  batch_size times the mean tokens per word, which keeps the objective the NLL per character;
- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices and embeddings only, never on
  biases or normalisation gains; gradient-norm clipping;
- learning rate: linear warm-up over `warmup_steps`, then a cosine decay from `learning_rate`
  to `learning_rate_end`. Progress along the cosine is the larger of steps/`max_steps` and
  seconds/`time_budget` once the pace so far says the budget will end the run before `max_steps`,
  so a run stopped by its time budget still ends with an annealed rate. Such a run depends on the
  machine's speed; a run whose pace stays within its budget is step-based only, and reproducible
  bit for bit for a given seed, thread count and torch build (tests/core/test_determinism.py);
- optionally (`ema` > 0) an exponential moving average of the weights (Polyak & Juditsky 1992)
  is what gets evaluated, kept and returned. By-length batches each pull the weights their own
  way (a batch of long names, then one of short ones); the average evens that out. Its decay
  ramps up as min(ema, (1 + step) / (10 + step)), so early averages do not drag the random
  initialisation along;
- the full validation split is evaluated every `eval_every` steps; the best weights by
  validation loss are kept and restored at the end; `patience` evaluations without improvement
  stop the run early.

The callback gets (step, max_steps, {"loss", "lr", "seconds"} plus "val_loss" after an
evaluation) after every step; returning True stops the run ("interrupted").

A `Trainer` (as minGPT's) holds the run: the model, optimiser, batch generator, weight average
and a `TrainState` (step, best validation loss, history...), and reports through the callback.
Training is resumable: `on_checkpoint(state)` receives {"tensors": flat name -> tensor,
"meta": JSON-able dict} after every evaluation and when the run is interrupted, and
`Trainer(...).fit(resume=state)` continues from it. Weights, optimiser moments, the torch RNG and
the batch generator are all restored, so an interrupted and resumed run ends with the same weights
as an uninterrupted one, unless the time budget binds (wall time is not reproducible).

A `DistributedTrainer` (namesmith.training.distributed_trainer) is the same run as one rank of several
(DistributedDataParallel, launched by torchrun: see namesmith.training.distributed): it overrides the trainer's
hooks (the step's loss, the reported loss, the clock, the stop decision, the validation loss, the random
states) and nothing else, so the recipe above is the same for both.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from namesmith.core.clock import now
from namesmith.core.config import TrainConfig
from namesmith.core.history import TrainCallback, TrainHistory
from namesmith.models.base import CharModel
from namesmith.models.nll import batch_loss, mean_nll
from namesmith.training.distill import Lessons, distill_loss

log = logging.getLogger("namesmith")

LOG_EVERY = 10  # steps per point of the train-loss curve (the mean over those steps)


def learning_rate(step: int, config: TrainConfig, seconds: float = 0.0) -> float:
    """Rate for optimiser step `step` (0-based): linear warm-up, then cosine to learning_rate_end."""
    lr, lr_end, warmup = config.learning_rate, config.learning_rate_end, config.warmup_steps
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(config.max_steps - warmup, 1)
    if config.time_budget is not None and seconds * config.max_steps > config.time_budget * max(step, 1):
        # at this pace the budget ends the run before max_steps: anneal on time instead
        progress = max(progress, seconds / config.time_budget)
    progress = min(progress, 1.0)
    return lr_end + 0.5 * (lr - lr_end) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on parameters of 2+ dimensions (matrices, embeddings) only."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is the fastest on CPU and GPU where this torch has it
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.99), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(0.9, 0.99))


class LengthBuckets:
    """Batches of words of about the same length, each word as likely as under uniform draws.

    Words are grouped by length; a group with fewer than `min_words` words joins the next longer
    one (the last joins the one before). A batch picks a word uniformly, then draws `batch_size`
    words with replacement from that word's group: a group is chosen in proportion to its size,
    so every word has the same chance as with uniform draws.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, min_words: int | None = None,
                 weights: torch.Tensor | None = None):
        min_words = 4 * batch_size if min_words is None else min_words
        order = torch.argsort(lengths, stable=True)
        sizes: list[int] = []  # words per group
        for count in torch.unique(lengths, return_counts=True)[1].tolist():  # words of each length, shortest first
            if not sizes or sizes[-1] >= min_words:
                sizes.append(0)
            sizes[-1] += count
        if len(sizes) > 1 and sizes[-1] < min_words:  # a short last group joins the one before
            last = sizes.pop()
            sizes[-1] += last
        self.batch_size = batch_size
        self.groups = list(torch.split(order, sizes))
        self.group_of = torch.empty_like(order)
        self.group_of[order] = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        # weighted rows (namesmith.data.labelled): a group in proportion to its weight, then rows by theirs
        self.weighted = None if weights is None else (weights.double().cumsum(0),
                                                      [weights[g].double().cumsum(0) for g in self.groups])

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """Row indices of one batch."""
        if self.weighted is not None:
            row_cdf, group_cdfs = self.weighted
            group = int(self.group_of[draw_weighted(row_cdf, 1, generator)])
            return self.groups[group][draw_weighted(group_cdfs[group], self.batch_size, generator)]
        group = self.groups[int(self.group_of[torch.randint(len(self.group_of), (1,), generator=generator)])]
        return group[torch.randint(len(group), (self.batch_size,), generator=generator)]


def draw_weighted(cdf: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n indices drawn with replacement, index i with probability ∝ its weight (cdf: cumulative weights)."""
    return torch.searchsorted(cdf, torch.rand(n, dtype=torch.float64, generator=generator) * cdf[-1], right=True)


class WeightAverage:
    """An exponential moving average of a model's floating-point state (parameters and buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.live = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
        self.average = {k: v.detach().clone() for k, v in self.live.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after optimiser step `step` (1-based)."""
        weight = 1.0 - min(self.decay, (1 + step) / (10 + step))
        for name, live in self.live.items():
            self.average[name].lerp_(live, weight)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's weights and the average (call again to undo)."""
        for name, live in self.live.items():
            held = live.clone()
            live.copy_(self.average[name])
            self.average[name].copy_(held)


@dataclass
class TrainState:
    """Where a run stands: everything besides tensors that resuming needs (saved as JSON)."""

    step: int = 0
    best_val: float | None = None
    bad_evals: int = 0  # evaluations since the best one
    seconds: float = 0.0  # training time so far, evaluation included
    eval_seconds: float = 0.0
    loss_window: list[float] = field(default_factory=list)  # losses of the steps since the last curve point
    history: TrainHistory = field(default_factory=TrainHistory)

    def to_meta(self) -> dict[str, Any]:
        return {"step": self.step, "best_val": self.best_val, "bad_evals": self.bad_evals, "seconds": self.seconds,
                "eval_seconds": self.eval_seconds, "loss_window": list(self.loss_window),
                "history": self.history.to_dict()}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TrainState:
        return cls(step=meta["step"], best_val=meta["best_val"], bad_evals=meta["bad_evals"],
                   seconds=meta["seconds"], eval_seconds=meta["eval_seconds"], loss_window=list(meta["loss_window"]),
                   history=TrainHistory.from_dict(meta["history"]))


class Trainer:
    """One training run of a neural model (already on its device) on a corpus' train split.

    `config` must be resolved (every field set: see namesmith.training.fitting.resolve_train_config).
    """

    def __init__(self, model: torch.nn.Module, corpus: Any, config: TrainConfig, callback: TrainCallback | None = None,
                 on_checkpoint: Any = None, teacher: CharModel | None = None):
        assert config.resolved, "the trainer needs a resolved TrainConfig"
        self.model, self.config, self.callback, self.on_checkpoint = model, config, callback, on_checkpoint
        device = model.device
        x_train, y_train = corpus.tensors("train")
        self.lengths = (y_train >= 0).sum(1)  # CPU: crop each batch to its longest word without a sync
        self.row_weights = corpus.row_weights("train")  # None: every row as likely (namesmith.data.labelled)
        self.row_weights_cdf = None if self.row_weights is None else self.row_weights.double().cumsum(0)
        self.x_train, self.y_train = x_train.to(device), y_train.to(device)
        # distillation (namesmith.training.distill): the teacher's distributions over the training words
        self.lessons = None if teacher is None else Lessons(teacher, self.x_train, self.y_train, config.distill_weight)
        x_val, y_val = corpus.tensors("val")
        self.has_val = x_val.shape[0] > 0
        if not self.has_val:
            log.warning("no validation words: training without evaluation or early stopping; "
                        "the last weights are kept")
        self.x_val, self.y_val = x_val.to(device), y_val.to(device)
        self.optimizer = make_optimizer(model, config)
        self.batch_gen = torch.Generator().manual_seed(config.seed)
        self.average = WeightAverage(model, config.ema) if config.ema else None
        self.best: dict[str, torch.Tensor] | None = None  # weights of the best validation loss
        self.state = TrainState()
        self._start = now()

    def elapsed(self) -> float:
        return now() - self._start

    # --- resumable state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"tensors": flat name -> tensor, "meta": JSON-able}: enough to continue the run exactly."""
        model, optimizer = self.model, self.optimizer
        tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        if self.best is not None:
            tensors.update({f"best.{k}": v.clone() for k, v in self.best.items()})
        if self.average is not None:
            tensors.update({f"average.{k}": v.clone() for k, v in self.average.average.items()})
        opt = optimizer.state_dict()
        for index, values in opt["state"].items():
            for key, value in values.items():
                assert torch.is_tensor(value), f"optimizer state {key} is not a tensor"
                tensors[f"optim.state.{index}.{key}"] = value.detach().clone()
        tensors.update(self.rng_states())
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
        return {"tensors": tensors, "meta": {**self.state.to_meta(), "param_groups": groups}}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Continue from a `state_dict()`: weights, optimiser moments, average, generators, progress."""
        tensors, meta, model = saved["tensors"], saved["meta"], self.model
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        self.best = {k[len("best."):]: v.to(model.device) for k, v in tensors.items() if k.startswith("best.")} or None
        if self.average is not None:
            for name, value in self.average.average.items():
                stored = tensors.get(f"average.{name}")
                # a run started without an average (or with another model) starts it from its weights
                value.copy_(stored if stored is not None else self.average.live[name])
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optim.state."):
                index, key = name[len("optim.state."):].split(".", 1)
                opt_state.setdefault(int(index), {})[key] = value
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        self.state = TrainState.from_meta(meta)
        self.load_rng_states(tensors, meta)

    def rng_states(self) -> dict[str, torch.Tensor]:
        """The random generators' states: the batch generator's, torch's (dropout), CUDA's."""
        states = {"rng.torch": torch.get_rng_state(), "rng.batch": self.batch_gen.get_state()}
        if torch.cuda.is_available() and self.model.device.type == "cuda":
            states["rng.cuda"] = torch.cuda.get_rng_state(self.model.device)
        return states

    def load_rng_states(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what `rng_states` saved."""
        torch.set_rng_state(tensors["rng.torch"].cpu())
        self.batch_gen.set_state(tensors["rng.batch"].cpu())
        if "rng.cuda" in tensors and self.model.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), self.model.device)

    def checkpoint(self) -> None:
        """Hand the resumable state to `on_checkpoint`, if anyone listens."""
        if self.on_checkpoint is None:
            return
        state = self.state
        state.seconds = self.elapsed()
        state.history.steps, state.history.seconds = state.step, state.seconds
        self.on_checkpoint(self.state_dict())

    # --- evaluation ------------------------------------------------------------------------
    def evaluate(self) -> float | None:
        """Validation loss now; keeps the best weights and counts evaluations without progress."""
        if not self.has_val:
            return None
        state, t0 = self.state, now()
        if self.average is not None:
            self.average.swap()
        val = self.val_loss()
        if state.best_val is None or val < state.best_val:
            state.best_val, state.bad_evals = val, 0
            self.best = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            state.bad_evals += 1
        if self.average is not None:
            self.average.swap()
        state.eval_seconds += now() - t0
        state.history.val_loss.append((state.step, self.elapsed(), val))
        return val

    def val_loss(self) -> float:
        """NLL per character of the validation split under the current weights."""
        return mean_nll(self.model, self.x_val, self.y_val)

    # --- the loop --------------------------------------------------------------------------
    def step_loss(self, rows: torch.Tensor, tokens_per_batch: float | None) -> torch.Tensor:
        """The loss to back-propagate for the batch of training rows `rows` (CPU indices)."""
        T = int(self.lengths[rows].max())
        rows = rows.to(self.model.device)
        return self.loss(self.model(self.x_train[rows, :T]), rows, T, tokens_per_batch)

    def loss(self, logits: torch.Tensor, rows: torch.Tensor, T: int, tokens_per_batch: float | None) -> torch.Tensor:
        """The loss of training rows `rows` (on the device), cropped to T positions, under `logits`: the
        NLL of their characters, or with a teacher the distillation loss (namesmith.training.distill)."""
        targets = self.y_train[rows, :T]
        if self.lessons is None:
            return batch_loss(logits, targets, tokens_per_batch)
        return distill_loss(logits, targets, self.lessons.probs(rows, T), self.lessons.weight, tokens_per_batch)

    def reported_loss(self, loss: torch.Tensor) -> float:
        """The batch's loss as a number, for the history and the callback."""
        return loss.item()

    def clock(self) -> float:
        """Seconds of training so far, for the time budget and the schedule."""
        return self.elapsed()

    def agree_stop(self, requested: bool) -> bool:
        """Whether to stop now, given whether the callback asked to."""
        return requested

    def train_step(self, lr: float, tokens_per_batch: float | None, buckets: LengthBuckets | None) -> float:
        """One optimiser step at learning rate `lr` on a fresh batch; returns its loss."""
        config, model = self.config, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if buckets is None:
            if self.row_weights is None:
                rows = torch.randint(self.x_train.shape[0], (config.batch_size,), generator=self.batch_gen)
            else:
                rows = draw_weighted(self.row_weights_cdf, config.batch_size, self.batch_gen)
        else:
            rows = buckets.draw(self.batch_gen)
        loss = self.step_loss(rows, tokens_per_batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.state.step += 1
        if self.average is not None:
            self.average.update(self.state.step)
        return self.reported_loss(loss)

    def fit(self, resume: dict[str, Any] | None = None) -> TrainHistory:
        """Train until max_steps, the time budget, early stopping or the callback stops it."""
        config, model = self.config, self.model
        if resume is not None:
            self.load_state_dict(resume)
        state = self.state
        model.train()
        self._start = now() - state.seconds
        stop_reason = "finished"
        last_eval = state.history.val_loss[-1][0] if state.history.val_loss else -1
        buckets, tokens_per_batch = None, None
        if config.batching == "by-length":
            buckets = LengthBuckets(self.lengths, config.batch_size, weights=self.row_weights)
            w = self.row_weights
            mean_length = self.lengths.float().mean() if w is None else (self.lengths * w).sum() / w.sum()
            tokens_per_batch = config.batch_size * float(mean_length)
        while state.step < config.max_steps:
            if config.time_budget is not None and self.clock() >= config.time_budget:
                stop_reason = "time budget"
                break
            lr = learning_rate(state.step, config, self.clock())
            loss = self.train_step(lr, tokens_per_batch, buckets)
            state.loss_window.append(loss)
            if len(state.loss_window) == LOG_EVERY:
                state.history.train_loss.append((state.step, sum(state.loss_window) / LOG_EVERY))
                state.loss_window.clear()
            metrics = {"loss": loss, "lr": lr, "seconds": self.elapsed()}
            if state.step % config.eval_every == 0:
                val = self.evaluate()
                last_eval = state.step
                if val is not None:
                    metrics["val_loss"] = val
                self.checkpoint()
            requested = self.callback is not None and bool(self.callback(state.step, config.max_steps, metrics))
            if self.agree_stop(requested):
                stop_reason = "interrupted"
                self.checkpoint()
                break
            if self.has_val and config.patience is not None and state.bad_evals >= config.patience:
                stop_reason = "early stopping"
                break
        if stop_reason != "interrupted" and last_eval != state.step and state.step > 0:
            self.evaluate()
            self.checkpoint()
        if self.best is not None:
            model.load_state_dict(self.best)
        elif self.average is not None:
            self.average.swap()  # no validation: the average of the last weights
        history = state.history
        history.steps, history.seconds, history.stop_reason = state.step, self.elapsed(), stop_reason
        best = state.best_val if state.best_val is None else round(state.best_val, 4)
        log.info(f"trained {state.step} steps in {history.seconds:.1f}s ({state.eval_seconds:.1f}s evaluating), "
                 f"stop: {stop_reason}, best val {best}")
        return history


def fit_gradient(model: torch.nn.Module, corpus: Any, config: TrainConfig, callback: TrainCallback | None = None, *,
                 resume: dict[str, Any] | None = None, on_checkpoint: Any = None) -> TrainHistory:
    """Train `model` with a `Trainer` and return its history (`config` resolved)."""
    return Trainer(model, corpus, config, callback, on_checkpoint).fit(resume)
