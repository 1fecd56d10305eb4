"""Training options shared by every model type, validated when built.

A field left as None takes the model type's own default (`CharModel.train_defaults`: its
`default_train_config` over `TRAIN_DEFAULTS`), so `TrainConfig()` means "train this model the way
its row in docs/models.md says". `namesmith.training.fitting.resolve_train_config` is the one place that fills them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from namesmith.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
BIGRAM_MODES = ("full-batch", "one-hot", "per-example-nll", "per-example-l1")
BATCHINGS = ("random", "by-length")
COMBINES = ("product", "mixture")  # how an ensemble combines its members (namesmith.models.ensemble); first: default
CALIBRATIONS = ("none", "length", "auto")  # whole-name calibration (namesmith.training.calibrate); auto: where it helps
# What a field left unset takes when the model type has no default of its own for it
# (`CharModel.train_defaults` lays each model's `default_train_config` over these).
TRAIN_DEFAULTS: dict[str, Any] = {
    "max_steps": 10_000, "learning_rate": 1e-3, "learning_rate_end": 1e-4, "batch_size": 64, "weight_decay": 0.01,
    "warmup_steps": 100, "eval_every": 500, "ema": 0.0, "batching": "random", "ngram_mix": 0, "distill_weight": 0.7,
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train; None means "the model's default"."""

    max_steps: int | None = None  # full-batch epochs for `bigram`, optimiser steps for neural models
    learning_rate: float | None = None
    learning_rate_end: float | None = None  # end of the bigram's linear decay / floor of the cosine
    batch_size: int | None = None
    weight_decay: float | None = None  # L2 penalty for `bigram`, AdamW decay for neural models
    warmup_steps: int | None = None
    grad_clip: float | None = None
    eval_every: int | None = None  # steps between validation evaluations
    patience: int | None = None  # evaluations without improvement before stopping early
    time_budget: float | None = None  # seconds of training, then stop (and keep the best)
    ema: float | None = None  # decay of an exponential moving average of the weights (0: off)
    batching: str | None = None  # neural models: see BATCHINGS and namesmith.training.trainer
    ngram_mix: int | None = None  # neural models: combine with an n-gram of this order (0: off)
    label_dropout: float | None = None  # conditional neural models: P(a label is hidden) per row and label
    distill_weight: float | None = None  # with a teacher: weight of its distributions in the loss (training.distill)
    mode: str = "full-batch"  # `bigram` only: see BIGRAM_MODES
    subset: int | None = None  # per-example `bigram` modes: use only the first N pairs
    seed: int = 1337
    device: str = "auto"
    calibrate: str = "auto"  # see CALIBRATIONS and namesmith.training.calibrate

    def __post_init__(self) -> None:
        positive = ("max_steps", "learning_rate", "batch_size", "eval_every", "patience", "subset",
                    "time_budget", "grad_clip")
        for name in positive:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}", field=name)
        if self.ema is not None and not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1) (0 turns it off), got {self.ema}", field="ema")
        for name in ("learning_rate_end", "weight_decay", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name} must not be negative, got {value}", field=name)
        if not -(2**63) <= self.seed < 2**63:
            raise ConfigError(f"seed must fit in 64 bits (-2**63 to 2**63-1), got {self.seed}", field="seed")
        if self.distill_weight is not None and not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight must be in [0, 1], got {self.distill_weight}", field="distill_weight")
        if self.label_dropout is not None and not 0.0 <= self.label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {self.label_dropout}", field="label_dropout")
        if self.ngram_mix is not None and (not isinstance(self.ngram_mix, int) or self.ngram_mix < 0):
            raise ConfigError(f"ngram_mix must be an n-gram order (1 or more) or 0 for none, got {self.ngram_mix}",
                              field="ngram_mix")
        if self.batching is not None and self.batching not in BATCHINGS:
            raise ConfigError(f"batching must be one of {', '.join(BATCHINGS)}; got {self.batching!r}",
                              field="batching")
        if self.calibrate not in CALIBRATIONS:
            raise ConfigError(f"calibrate must be one of {', '.join(CALIBRATIONS)}; got {self.calibrate!r}",
                              field="calibrate")
        if self.mode not in BIGRAM_MODES:
            raise ConfigError(f"mode must be one of {', '.join(BIGRAM_MODES)}; got {self.mode!r}", field="mode")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or cuda:N); got {self.device!r}",
                              field="device")

    def with_defaults(self, defaults: dict[str, Any]) -> TrainConfig:
        """A copy where every None field takes its value from `defaults`."""
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return dataclasses.replace(self, **filled)

    @property
    def resolved(self) -> bool:
        """Whether every field the trainers read has a value."""
        return all(getattr(self, name) is not None for name in TRAIN_DEFAULTS)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
