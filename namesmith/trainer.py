"""The one gradient trainer of every neural model: AdamW, warm-up + cosine decay, early stopping.

Training follows the recipe of nanoGPT (Karpathy 2022) applied to words:

- minibatches of `batch_size` whole words drawn with replacement by a `torch.Generator` seeded
  from `config.seed`, cropped to the longest word of the batch;
- the loss is the mean cross-entropy over every real target token (end token included, padding
  -1 ignored): the NLL per character that evaluation reports;
- `batching="by-length"` draws each batch from one bucket of words of (about) the same length
  (`LengthBuckets`), so little of a batch is padding; a batch's summed loss is divided by
  batch_size times the mean tokens per word, which keeps the objective the NLL per character;
- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices and embeddings only, never on
  biases or normalisation gains; gradient-norm clipping;
- learning rate: linear warm-up over `warmup_steps`, then a cosine decay from `learning_rate`
  to `learning_rate_end`. Progress along the cosine is the larger of steps/`max_steps` and
  seconds/`time_budget`, so a run stopped by its time budget still ends with an annealed rate
  (such a run depends on the machine's speed; with a budget that never binds it is reproducible);
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

Training is resumable: `on_checkpoint(state)` receives {"tensors": flat name -> tensor,
"meta": JSON-able dict} after every evaluation and when the run is interrupted, and
`fit_gradient(..., resume=state)` continues from it. Weights, optimiser moments, the torch RNG and
the batch generator are all restored, so an interrupted and resumed run ends with the same weights
as an uninterrupted one, unless the time budget binds (wall time is not reproducible).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from namesmith.config import TrainConfig
from namesmith.history import TrainHistory

log = logging.getLogger("namesmith")

LOG_EVERY = 10  # steps per point of the train-loss curve (the mean over those steps)
EVAL_CHUNK = 2048  # words per forward pass when evaluating
# Used only when neither the user nor the model type chose a value.
FALLBACK = {"max_steps": 10_000, "learning_rate": 1e-3, "learning_rate_end": 1e-4, "batch_size": 64,
            "weight_decay": 0.01, "warmup_steps": 100, "eval_every": 500, "ema": 0.0, "batching": "random",
            "ngram_mix": 0}


def learning_rate(step: int, config: TrainConfig, seconds: float = 0.0) -> float:
    """Rate for optimiser step `step` (0-based): linear warm-up, then cosine to learning_rate_end."""
    lr, lr_end, warmup = config.learning_rate, config.learning_rate_end, config.warmup_steps
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(config.max_steps - warmup, 1)
    if config.time_budget is not None:
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


@torch.no_grad()
def mean_nll(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean NLL per target token of (x, y) (padding ignored), in eval mode, in chunks."""
    was_training = model.training
    model.eval()
    lengths = (y >= 0).sum(1)
    total, count = 0.0, 0
    for i in range(0, x.shape[0], EVAL_CHUNK):
        T = int(lengths[i : i + EVAL_CHUNK].max())
        xb, yb = x[i : i + EVAL_CHUNK, :T], y[i : i + EVAL_CHUNK, :T]
        logits = model(xb)
        total += F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), ignore_index=-1,
                                 reduction="sum").item()
        count += int((yb >= 0).sum())
    model.train(was_training)
    return total / max(count, 1)


class LengthBuckets:
    """Batches of words of about the same length, each word as likely as under uniform draws.

    Words are grouped by length; a group with fewer than `min_words` words joins the next longer
    one (the last joins the one before). A batch picks a word uniformly, then draws `batch_size`
    words with replacement from that word's group: a group is chosen in proportion to its size,
    so every word has the same chance as with uniform draws.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, min_words: int | None = None):
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

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """Row indices of one batch."""
        group = self.groups[int(self.group_of[torch.randint(len(self.group_of), (1,), generator=generator)])]
        return group[torch.randint(len(group), (self.batch_size,), generator=generator)]


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


def batch_loss(logits: torch.Tensor, targets: torch.Tensor, tokens_per_batch: float | None = None) -> torch.Tensor:
    """NLL of targets (B, T) (-1: padding) under logits (B, T, V): the mean per target token, or
    with `tokens_per_batch` the sum over that number (by-length batches; see the module docstring)."""
    if tokens_per_batch is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1, reduction="sum")
    return total / tokens_per_batch


def complete_config(model: Any, config: TrainConfig) -> TrainConfig:
    """Fill fields still None from the model's defaults, then from FALLBACK."""
    config = config.with_defaults(model.train_defaults(config))
    return config.with_defaults(FALLBACK)


# --- resumable state -----------------------------------------------------------------------------
def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch_gen: torch.Generator,
           best: dict[str, torch.Tensor] | None, average: WeightAverage | None,
           meta: dict[str, Any]) -> dict[str, Any]:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v.clone() for k, v in best.items()})
    if average is not None:
        tensors.update({f"average.{k}": v.clone() for k, v in average.average.items()})
    opt = optimizer.state_dict()
    for index, values in opt["state"].items():
        for key, value in values.items():
            assert torch.is_tensor(value), f"optimizer state {key} is not a tensor"
            tensors[f"optim.state.{index}.{key}"] = value.detach().clone()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batch"] = batch_gen.get_state()
    if torch.cuda.is_available() and model.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(model.device)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    return {"tensors": tensors, "meta": {**meta, "param_groups": groups}}


def _restore(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             batch_gen: torch.Generator, average: WeightAverage | None) -> dict[str, torch.Tensor] | None:
    """Load a `_state` into the model, optimiser, average and generators; return the best weights."""
    tensors, meta = state["tensors"], state["meta"]
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[len("best."):]: v.to(model.device) for k, v in tensors.items() if k.startswith("best.")}
    if average is not None:
        for name, value in average.average.items():
            saved = tensors.get(f"average.{name}")
            # a run started without an average (or with another model) starts it from its weights
            value.copy_(saved if saved is not None else average.live[name])
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim.state."):
            index, key = name[len("optim.state."):].split(".", 1)
            opt_state.setdefault(int(index), {})[key] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"].cpu())
    batch_gen.set_state(tensors["rng.batch"].cpu())
    if "rng.cuda" in tensors and model.device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), model.device)
    return best or None


# --- the training loop ---------------------------------------------------------------------------
def fit_gradient(model: Any, corpus: Any, config: TrainConfig, callback: Any = None, *,
                 resume: dict[str, Any] | None = None, on_checkpoint: Any = None) -> TrainHistory:
    """Train `model` (already on its device) on corpus' train split; return its `TrainHistory`."""
    config = complete_config(model, config)
    device = model.device
    x_train, y_train = corpus.tensors("train")
    lengths = (y_train >= 0).sum(1)  # CPU: crop each batch to its longest word without a sync
    x_train, y_train = x_train.to(device), y_train.to(device)
    x_val, y_val = corpus.tensors("val")
    has_val = x_val.shape[0] > 0
    if not has_val:
        log.warning("no validation words: training without evaluation or early stopping; "
                    "the last weights are kept")
    x_val, y_val = x_val.to(device), y_val.to(device)

    optimizer = make_optimizer(model, config)
    batch_gen = torch.Generator().manual_seed(config.seed)
    history = TrainHistory()
    step, best_val, bad_evals, prior_seconds, eval_seconds = 0, None, 0, 0.0, 0.0
    best: dict[str, torch.Tensor] | None = None
    window: list[float] = []
    average = WeightAverage(model, config.ema) if config.ema else None
    if resume is not None:
        best = _restore(resume, model, optimizer, batch_gen, average)
        meta = resume["meta"]
        step, best_val, bad_evals = meta["step"], meta["best_val"], meta["bad_evals"]
        prior_seconds, eval_seconds = meta["seconds"], meta["eval_seconds"]
        window = list(meta["loss_window"])
        history = TrainHistory.from_dict(meta["history"])
    model.train()
    start = time.perf_counter() - prior_seconds

    def elapsed() -> float:
        return time.perf_counter() - start

    def checkpoint() -> None:
        if on_checkpoint is None:
            return
        history.steps, history.seconds = step, elapsed()
        meta = {"step": step, "best_val": best_val, "bad_evals": bad_evals, "seconds": elapsed(),
                "eval_seconds": eval_seconds, "loss_window": list(window), "history": history.to_dict()}
        on_checkpoint(_state(model, optimizer, batch_gen, best, average, meta))

    def evaluate() -> float | None:
        """Validation loss now; keeps the best weights and counts evaluations without progress."""
        nonlocal best_val, best, bad_evals, eval_seconds
        if not has_val:
            return None
        t0 = time.perf_counter()
        if average is not None:
            average.swap()
        val = mean_nll(model, x_val, y_val)
        if best_val is None or val < best_val:
            best_val, bad_evals = val, 0
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_evals += 1
        if average is not None:
            average.swap()
        eval_seconds += time.perf_counter() - t0
        history.val_loss.append((step, elapsed(), val))
        return val

    stop_reason = "finished"
    last_eval = history.val_loss[-1][0] if history.val_loss else -1
    n_train = x_train.shape[0]
    buckets, tokens_per_batch = None, None
    if config.batching == "by-length":
        buckets = LengthBuckets(lengths, config.batch_size)
        tokens_per_batch = config.batch_size * float(lengths.float().mean())
    while True:
        if step >= config.max_steps:
            break
        if config.time_budget is not None and elapsed() >= config.time_budget:
            stop_reason = "time budget"
            break
        lr = learning_rate(step, config, elapsed())
        for group in optimizer.param_groups:
            group["lr"] = lr
        if buckets is None:
            rows = torch.randint(n_train, (config.batch_size,), generator=batch_gen)
        else:
            rows = buckets.draw(batch_gen)
        T = int(lengths[rows].max())
        rows = rows.to(device)
        xb, yb = x_train[rows, :T], y_train[rows, :T]
        loss = batch_loss(model(xb), yb, tokens_per_batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        if average is not None:
            average.update(step)

        loss_value = loss.item()
        window.append(loss_value)
        if len(window) == LOG_EVERY:
            history.train_loss.append((step, sum(window) / len(window)))
            window.clear()
        metrics = {"loss": loss_value, "lr": lr, "seconds": elapsed()}
        if step % config.eval_every == 0:
            val = evaluate()
            last_eval = step
            if val is not None:
                metrics["val_loss"] = val
            checkpoint()
        if callback is not None and callback(step, config.max_steps, metrics):
            stop_reason = "interrupted"
            checkpoint()
            break
        if has_val and config.patience is not None and bad_evals >= config.patience:
            stop_reason = "early stopping"
            break

    if stop_reason != "interrupted" and last_eval != step and step > 0:
        evaluate()
        checkpoint()
    if best is not None:
        model.load_state_dict(best)
    elif average is not None:
        average.swap()  # no validation: the average of the last weights
    history.steps, history.seconds, history.stop_reason = step, elapsed(), stop_reason
    log.info(f"trained {step} steps in {history.seconds:.1f}s ({eval_seconds:.1f}s evaluating), "
             f"stop: {stop_reason}, best val {best_val if best_val is None else round(best_val, 4)}")
    return history
