"""Fine-tuning a pretrained recurrent network on a short list (namesmith.adaptation.adapt's neural path).

A pretrained recurrent network (the catalogue's GRU prior, or any trained rnn/gru/lstm)
is fine-tuned on the list: its embedding and output rows are cut to the adapted vocabulary (new
characters start from the mean row), then AdamW runs on the list. How many steps is chosen by
cross-validation (`NEURAL_FOLDS` folds: each fine-tunes on the other folds and is evaluated on its own
every `NEURAL_EVAL_EVERY` steps; the step with the lowest mean held-out loss wins, 0 meaning the prior
itself), then the network is fine-tuned on the whole list for that many steps.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from namesmith.core.errors import ConfigError
from namesmith.core.minimize import with_autograd
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel
from namesmith.models.nll import (
    batch_loss,
    mean_nll,
)

log = logging.getLogger("namesmith")

NEURAL_TYPES = ("rnn", "gru", "lstm")  # adapted by fine-tuning a pretrained network of the same type
NEURAL_FOLDS = 5
NEURAL_EVAL_EVERY = 25
NEURAL_MAX_STEPS = 1000
NEURAL_PATIENCE = 4  # evaluations without a better held-out loss end a fold
NEURAL_BATCH = 32
NEURAL_LR = 1e-3


# --- the neural model: fine-tuning a pretrained network ------------------------------------------------
def resize_vocab(model: CharModel, old: Vocab, new: Vocab) -> CharModel:
    """A copy of a recurrent network over vocabulary `new`: embedding and output rows of the shared
    characters are kept, new characters start from the mean row (and the lowest output bias)."""
    if model.model_type not in NEURAL_TYPES:
        raise ConfigError(f"fine-tuning works for {', '.join(NEURAL_TYPES)} networks, not {model.model_type}",
                          field="prior")
    resized = type(model)(new.size, model.config).to(model.device)
    index = torch.tensor([BOUNDARY] + [old.stoi.get(c, -1) for c in new.chars], device=model.device)
    known = index >= 0
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for name in ("wte.weight", "lm_head.weight", "lm_head.bias"):
        rows = state[name]
        fill = rows.min(0).values if name == "lm_head.bias" else rows.mean(0)
        state[name] = torch.where(known.view(-1, *[1] * (rows.dim() - 1)), rows[index.clamp(min=0)], fill)
    resized.load_state_dict(state)
    return resized


def _fine_tune(model: CharModel, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int,
               held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
               callback: Callable[[int, float], None] | None = None) -> list[tuple[int, float]]:
    """AdamW on batches of the list for `steps` steps; with `held_out`, its NLL every
    NEURAL_EVAL_EVERY steps (and at step 0), stopping after NEURAL_PATIENCE evaluations without a
    better one. Returns [(step, held-out NLL)]."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=NEURAL_LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    x, y = x.to(device), y.to(device)
    curve: list[tuple[int, float]] = []
    best, since_best = math.inf, 0
    for step in range(steps + 1):
        if held_out is not None and step % NEURAL_EVAL_EVERY == 0:
            loss = mean_nll(model, *held_out)
            curve.append((step, loss))
            best, since_best = (loss, 0) if loss < best else (best, since_best + 1)
            if since_best >= NEURAL_PATIENCE:
                break
        if step == steps:
            break
        model.train()
        rows = torch.randint(len(x), (min(NEURAL_BATCH, len(x)),), generator=generator).to(device)
        T = int((y[rows] >= 0).sum(1).max())
        loss = batch_loss(model(x[rows, :T]), y[rows, :T])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if callback:
            callback(step + 1, loss.item())
    model.eval()
    return curve


@with_autograd
def adapt_neural(words: Sequence[str], vocab: Vocab, pretrained: CharModel, pretrained_vocab: Vocab, *,
                 seed: int = 0, max_steps: int | None = None,
                 callback: Callable[[int, float], None] | None = None) -> tuple[CharModel, dict[str, Any]]:
    """The pretrained network fine-tuned on `words`, for a number of steps chosen by cross-validation
    (at most `max_steps`, default NEURAL_MAX_STEPS)."""
    start = time.perf_counter()
    max_steps = NEURAL_MAX_STEPS if max_steps is None else max_steps
    base = resize_vocab(pretrained, pretrained_vocab, vocab).eval()
    x, y = encode_words(list(words), vocab)
    k = min(NEURAL_FOLDS, len(words))
    fold = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)) % k
    curves = []
    for f in range(k):
        model = copy.deepcopy(base)
        curves.append(dict(_fine_tune(model, x[fold != f], y[fold != f], max_steps, seed + f,
                                      held_out=(x[fold == f], y[fold == f]))))
    # the mean held-out loss at each evaluated step; a fold that stopped early keeps its last loss
    steps = sorted(set().union(*curves))
    mean = [sum(c.get(s, c[max(c)]) for c in curves) / k for s in steps]
    best = steps[min(range(len(steps)), key=mean.__getitem__)]
    model = copy.deepcopy(base)
    if best:
        _fine_tune(model, x, y, best, seed, callback=callback)
    record = {"method": "fine-tune", "folds": k, "steps": best, "learning_rate": NEURAL_LR, "batch_size": NEURAL_BATCH,
              "cv_curve": [[s, round(v, 4)] for s, v in zip(steps, mean)], "cv_nll": round(min(mean), 4),
              "cv_nll_background": round(mean[0], 4), "seconds": round(time.perf_counter() - start, 3)}
    log.info(f"fine-tuned the {pretrained.model_type} prior on {len(words)} names for {best} steps (chosen by "
             f"{k}-fold cross-validation: held-out NLL {record['cv_nll']:.4f}, the prior alone {mean[0]:.4f})")
    return model, record
