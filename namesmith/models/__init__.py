"""The model registry: --model NAME → the class that implements it (imported on first use)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from namesmith.core.errors import ConfigError

if TYPE_CHECKING:  # the registry itself needs no torch: a model directory's JSON is checked without it
    from namesmith.models.base import CharModel

# name → (module, class). One model per file; a new model is one line here.
MODEL_TYPES: dict[str, tuple[str, str]] = {
    "bigram-counts": ("namesmith.models.bigram", "BigramCounts"),
    "bigram": ("namesmith.models.bigram", "BigramLinear"),
    "ngram": ("namesmith.models.ngram", "NGram"),
    "sparse-ngram": ("namesmith.models.sparse_ngram", "SparseNGram"),
    "mlp": ("namesmith.models.mlp", "MLP"),
    "wavenet": ("namesmith.models.wavenet", "WaveNet"),
    "rnn": ("namesmith.models.rnn", "RNN"),
    "gru": ("namesmith.models.rnn", "GRU"),
    "lstm": ("namesmith.models.rnn", "LSTM"),
    "transformer": ("namesmith.models.transformer", "Transformer"),
    # wrappers: built from trained models, not trained with --model
    "ngram-mix": ("namesmith.models.ngram_mix", "NGramMix"),
    "conditional-counts": ("namesmith.models.conditional_counts", "ConditionalCounts"),
    "conditional-network": ("namesmith.models.conditional_network", "ConditionalNetwork"),
    "ensemble": ("namesmith.models.ensemble", "Ensemble"),
}


def model_class(name: str) -> type[CharModel]:
    """The class registered as `name`, or a ConfigError listing the known names."""
    if name not in MODEL_TYPES:
        raise ConfigError(f"unknown model type {name!r}; choose one of {', '.join(MODEL_TYPES)}")
    module, cls = MODEL_TYPES[name]
    return getattr(import_module(module), cls)


def trainable_types() -> list[str]:
    """The names `--model` accepts: every registered type but the wrappers."""
    return [name for name in MODEL_TYPES if not model_class(name).wrapper]


__all__ = ["MODEL_TYPES", "model_class", "trainable_types"]
