"""The one gradient trainer of every neural model: AdamW, warm-up + cosine decay, early stopping.

Training follows the recipe of nanoGPT (Karpathy 2022) applied to words:

- minibatches of `batch_size` whole words drawn with replacement by a `torch.Generator` seeded
  from `config.seed`, cropped to the longest word of the batch;
- the loss is the mean cross-entropy over every real target token (end token included, padding
  -1 ignored): the NLL per character that evaluation reports;
- AdamW (Loshchilov & Hutter 2019) with weight decay on matrices and embeddings only, never on
  biases or normalisation gains; gradient-norm clipping;
- learning rate: linear warm-up over `warmup_steps`, then a cosine decay from `learning_rate`
  to `learning_rate_end`. Progress along the cosine is the larger of steps/`max_steps` and
  seconds/`time_budget`, so a run stopped by its time budget still ends with an annealed rate
  (such a run depends on the machine's speed; with a budget that never binds it is reproducible);
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
            "weight_decay": 0.01, "warmup_steps": 100, "eval_every": 500}


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


def complete_config(model: Any, config: TrainConfig) -> TrainConfig:
    """Fill fields still None from the model's defaults, then from FALLBACK."""
    config = config.with_defaults(model.train_defaults(config))
    return config.with_defaults(FALLBACK)


# --- resumable state -----------------------------------------------------------------------------
def _state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch_gen: torch.Generator,
           best: dict[str, torch.Tensor] | None, meta: dict[str, Any]) -> dict[str, Any]:
    tensors = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    if best is not None:
        tensors.update({f"best.{k}": v.clone() for k, v in best.items()})
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
             batch_gen: torch.Generator) -> dict[str, torch.Tensor] | None:
    """Load a `_state` into the model, optimiser and generators; return the best weights."""
    tensors, meta = state["tensors"], state["meta"]
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[len("best."):]: v.to(model.device) for k, v in tensors.items() if k.startswith("best.")}
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
    if resume is not None:
        best = _restore(resume, model, optimizer, batch_gen)
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
        on_checkpoint(_state(model, optimizer, batch_gen, best, meta))

    def evaluate() -> float | None:
        """Validation loss now; keeps the best weights and counts evaluations without progress."""
        nonlocal best_val, best, bad_evals, eval_seconds
        if not has_val:
            return None
        t0 = time.perf_counter()
        val = mean_nll(model, x_val, y_val)
        eval_seconds += time.perf_counter() - t0
        history.val_loss.append((step, elapsed(), val))
        if best_val is None or val < best_val:
            best_val, bad_evals = val, 0
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_evals += 1
        return val

    stop_reason = "finished"
    last_eval = history.val_loss[-1][0] if history.val_loss else -1
    n_train = x_train.shape[0]
    while True:
        if step >= config.max_steps:
            break
        if config.time_budget is not None and elapsed() >= config.time_budget:
            stop_reason = "time budget"
            break
        lr = learning_rate(step, config, elapsed())
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = torch.randint(n_train, (config.batch_size,), generator=batch_gen)
        T = int(lengths[rows].max())
        rows = rows.to(device)
        xb, yb = x_train[rows, :T], y_train[rows, :T]
        logits = model(xb)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1

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
    history.steps, history.seconds, history.stop_reason = step, elapsed(), stop_reason
    log.info(f"trained {step} steps in {history.seconds:.1f}s ({eval_seconds:.1f}s evaluating), "
             f"stop: {stop_reason}, best val {best_val if best_val is None else round(best_val, 4)}")
    return history
