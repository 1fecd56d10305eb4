"""A neural model and a Kneser-Ney n-gram as one model: a weighted product of their predictions.

    log P(c | prefix) = a · log P_model(c | prefix) + b · log P_ngram(c | prefix) - log Z(prefix)

A product of experts (Hinton 2002) in its log-linear form, as language models have long been
combined (Klakow 1998): the n-gram (`namesmith.models.ngram`) remembers exactly which short
contexts were seen how often and smooths the rest, the network generalises from character
patterns; their errors differ, so together they predict held-out names better than either.
On names.txt (benchmarks/bench_models.py) a Transformer with test NLL 1.9221 and the order-6
n-gram (1.9728) make 1.8928; an LSTM with 1.9285 makes 1.8999.

The weights (a, b) are fitted on the validation split after training: the negative
log-likelihood is convex in (a, b) (a log-sum-exp of linear functions minus a linear one), so
L-BFGS finds its minimum. `train(..., TrainConfig(ngram_mix=ORDER))` builds one of these around
any neural model (`mix_with_ngram`); ngram_mix=0 keeps the network alone.

Saved as the inner model's type and config plus an "ngram_mix" entry ({"ngram": its config,
"weights": [a, b]}) and the n-gram's tables under "ngram.*" (see CharModel.from_config_dict).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F

from namesmith.config import TrainConfig
from namesmith.errors import CheckpointError
from namesmith.evaluate import EVAL_BATCH
from namesmith.models.base import CharModel, State
from namesmith.models.ngram import NGram, NGramConfig

log = logging.getLogger("namesmith")


class NGramMix(CharModel):
    """`model` and `ngram` combined as a weighted product of experts (see the module docstring)."""

    def __init__(self, model: CharModel, ngram: NGram, weights: tuple[float, float] = (1.0, 0.0)):
        super().__init__(model.vocab_size, model.config)
        self.model_type = model.model_type  # saved as the inner model, plus the "ngram_mix" entry
        self.config_class = model.config_class
        self.default_train_config = model.default_train_config
        self.model = model
        self.ngram = ngram
        self.register_buffer("mix_weights", torch.tensor(weights, dtype=torch.float32, device=model.device))

    @property
    def context_size(self) -> int | None:
        return self.model.context_size

    @property
    def max_length(self) -> int | None:
        return self.model.max_length

    def combine(self, logits: torch.Tensor, ngram_logprobs: torch.Tensor) -> torch.Tensor:
        """Normalised log-probabilities of the product (the n-gram's are already log-probabilities)."""
        a, b = self.mix_weights
        return F.log_softmax(a * F.log_softmax(logits.float(), -1) + b * ngram_logprobs, -1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.combine(self.model(idx), self.ngram(idx))

    def init_state(self, batch_size: int) -> State:
        return self.model.init_state(batch_size), self.ngram.init_state(batch_size)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        logits, model_state = self.model.step(state[0], token)
        ngram_logprobs, ngram_state = self.ngram.step(state[1], token)
        return self.combine(logits, ngram_logprobs), (model_state, ngram_state)

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return self.model.select_state(state[0], rows), self.ngram.select_state(state[1], rows)

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("train the inner model, then build the mix with mix_with_ngram")

    # --- saving -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        mix = {"ngram": self.ngram.config_dict(), "weights": [float(w) for w in self.mix_weights]}
        return {**self.model.config_dict(), "ngram_mix": mix}

    def weights(self) -> dict[str, torch.Tensor]:
        return {**self.model.weights(), **{f"ngram.{k}": v for k, v in self.ngram.weights().items()}}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        self.model.load_weights({k: v for k, v in tensors.items() if not k.startswith("ngram.")})
        self.ngram.load_weights({k[len("ngram."):]: v for k, v in tensors.items() if k.startswith("ngram.")})


def from_config(cls: type[CharModel], vocab_size: int, config: dict[str, Any]) -> NGramMix:
    """An unfitted NGramMix of a `cls` model, as saved by `NGramMix.config_dict`."""
    config = dict(config)
    mix = config.pop("ngram_mix")
    try:
        weights = tuple(float(w) for w in mix["weights"])
        ngram = NGram(vocab_size, NGramConfig(**mix["ngram"]))
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"malformed ngram_mix entry in the model config: {e}") from None
    if len(weights) != 2:
        raise CheckpointError(f"ngram_mix weights must be two numbers, got {mix['weights']!r}")
    return NGramMix(cls.from_config_dict(vocab_size, config), ngram, weights)  # type: ignore[arg-type]


@torch.no_grad()
def _validation_logprobs(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Log-probabilities (N, V) of every real validation target position, and the targets (N,).

    In chunks of EVAL_BATCH words, as evaluation runs, so a large validation split is not one
    forward pass."""
    was_training = model.training
    model.eval()
    mask = y >= 0
    logprobs = [F.log_softmax(model(x[i : i + EVAL_BATCH].to(model.device)).float(), -1).cpu()[mask[i : i + EVAL_BATCH]]
                for i in range(0, len(x), EVAL_BATCH)]
    model.train(was_training)
    return torch.cat(logprobs), y[mask]


def fit_weights(model_logprobs: torch.Tensor, ngram_logprobs: torch.Tensor,
                targets: torch.Tensor) -> tuple[float, float]:
    """The (a, b) minimising the NLL of targets under the product (convex: L-BFGS finds it)."""
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    model_logprobs, ngram_logprobs = model_logprobs.double(), ngram_logprobs.double()
    optimizer = torch.optim.LBFGS([weights], max_iter=200, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        mixed = F.log_softmax(weights[0] * model_logprobs + weights[1] * ngram_logprobs, -1)
        loss = F.nll_loss(mixed, targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    a, b = weights.detach().tolist()
    return a, b


def mix_with_ngram(model: CharModel, corpus: Any, order: int) -> CharModel:
    """`model` (trained) combined with an order-`order` n-gram counted on the corpus' train split.

    The weights are fitted on the validation split; without validation words the model is
    returned alone (there is nothing to fit the weights on).
    """
    x_val, y_val = corpus.tensors("val")
    if x_val.shape[0] == 0:
        log.warning("no validation words to fit the n-gram mix on: keeping the model alone")
        return model
    ngram = NGram(model.vocab_size, NGramConfig(order=order)).to(model.device)
    ngram.fit(corpus, TrainConfig())  # counting: no training options apply
    model_logprobs, targets = _validation_logprobs(model, x_val, y_val)
    ngram_logprobs, _ = _validation_logprobs(ngram, x_val, y_val)
    a, b = fit_weights(model_logprobs, ngram_logprobs, targets)
    log.info(f"mixed with an order-{order} n-gram: weights {a:.3f} (model), {b:.3f} (n-gram)")
    return NGramMix(model, ngram, (a, b))
