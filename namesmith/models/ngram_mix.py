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

A registered wrapper type ("ngram-mix"): saved with a nested config, {"model_type": the inner
model's type, "model": its config, "ngram": the n-gram's config, "weights": [a, b]}, the inner
model's tensors as they are and the n-gram's under "ngram.*". (Checkpoints of format 1 stored the
inner type with an "ngram_mix" entry in its config; namesmith.training.checkpoint reads them as this type.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError
from namesmith.models import model_class
from namesmith.models.base import CharModel, DelegatingModel, Shapes, Sizes, State, under
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import position_log_probs

log = logging.getLogger("namesmith")


@dataclass(frozen=True)
class NGramMixConfig:
    """The inner model's type and config, the n-gram's config and the two weights."""

    model_type: str
    model: dict[str, Any]
    ngram: dict[str, Any]
    weights: tuple[float, float] = (1.0, 0.0)


class NGramMix(DelegatingModel):
    """`model` and `ngram` combined as a weighted product of experts (see the module docstring)."""

    model_type: ClassVar[str] = "ngram-mix"
    config_class: ClassVar[type] = NGramMixConfig
    wrapper: ClassVar[bool] = True

    def __init__(self, model: CharModel, ngram: NGram, weights: tuple[float, float] = (1.0, 0.0)):
        config = NGramMixConfig(model.model_type, model.config_dict(), ngram.config_dict(), tuple(weights))
        super().__init__(model.vocab_size, config)
        self.model = model
        self.ngram = ngram
        self.register_buffer("mix_weights", torch.tensor(weights, dtype=torch.float32, device=model.device))

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

    @property
    def condition(self) -> Any:
        return self.model.condition

    def given(self, where: Any = None, guidance: float = 0.0) -> CharModel:
        """Both models under the same labels and guidance, combined with the same weights (a weighted product
        of guided models is the guided product)."""
        if not self.labels:
            return super().given(where, guidance)
        return NGramMix(self.model.given(where, guidance), self.ngram.given(where, guidance),
                        tuple(float(w) for w in self.mix_weights))

    # --- saving -----------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        c = self.config
        config = {"model_type": c.model_type, "model": self.model.config_dict(), "ngram": self.ngram.config_dict(),
                  "weights": [float(w) for w in self.mix_weights]}
        if self.ngram.model_type != NGram.model_type:  # a conditional n-gram beside a conditional network
            config["ngram_type"] = self.ngram.model_type
        return config

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        """The network's sizes in the tensors not named ngram.*, the n-gram's in those that are."""
        network = {name: shape for name, shape in shapes.items() if not name.startswith("ngram.")}
        yield from model_class(config["model_type"]).declared_sizes(vocab_size, config["model"], network)
        ngram_type = config.get("ngram_type", NGram.model_type)
        yield from model_class(ngram_type).declared_sizes(vocab_size, config["ngram"], under(shapes, "ngram."))

    @classmethod
    def from_config_dict(cls, vocab_size: int, config: dict[str, Any]) -> NGramMix:
        """An unfitted mix as saved by `config_dict` (the weights are loaded as they were saved)."""
        try:
            inner = model_class(config["model_type"])
            weights = tuple(float(w) for w in config["weights"])
            ngram_type = config.get("ngram_type", NGram.model_type)
            if ngram_type not in (NGram.model_type, "conditional-counts"):
                raise ValueError(f"ngram_type {ngram_type!r} is not an n-gram")
            ngram = model_class(ngram_type).from_config_dict(vocab_size, config["ngram"])
            model = inner.from_config_dict(vocab_size, config["model"])
        except (TypeError, KeyError, ValueError, CheckpointError) as e:
            raise CheckpointError(f"malformed ngram-mix model config: {e}") from None
        if len(weights) != 2 or not inner.neural:  # a network (a conditional one too), never another mix
            raise CheckpointError(f"malformed ngram-mix model config: {config!r:.200}")
        return cls(model, ngram, weights)  # type: ignore[arg-type]

    def weights(self) -> dict[str, torch.Tensor]:
        return {**self.model.weights(), **{f"ngram.{k}": v for k, v in self.ngram.weights().items()}}

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        self.model.load_weights({k: v for k, v in tensors.items() if not k.startswith("ngram.")})
        self.ngram.load_weights({k[len("ngram."):]: v for k, v in tensors.items() if k.startswith("ngram.")})


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


def mix_with_ngram(model: CharModel, corpus: Any, order: int, ngram: CharModel | None = None) -> CharModel:
    """`model` (trained) combined with an order-`order` n-gram counted on the corpus' train split.

    The weights are fitted on the validation split; without validation words the model is
    returned alone (there is nothing to fit the weights on). `ngram`: an n-gram already fitted
    (a conditional one, for a conditional network: namesmith.training.train fits it).
    """
    x_val, y_val = corpus.tensors("val")
    if x_val.shape[0] == 0:
        log.warning("no validation words to fit the n-gram mix on: keeping the model alone")
        return model
    if ngram is None:
        ngram = NGram(model.vocab_size, NGramConfig(order=order)).to(model.device)
        ngram.fit(corpus, TrainConfig())  # counting: no training options apply
    model_logprobs, targets = position_log_probs(model, x_val, y_val)
    ngram_logprobs, _ = position_log_probs(ngram, x_val, y_val)
    a, b = fit_weights(model_logprobs, ngram_logprobs, targets)
    log.info(f"mixed with an order-{order} n-gram: weights {a:.3f} (model), {b:.3f} (n-gram)")
    return NGramMix(model, ngram.to(model.device), (a, b))
