"""What a model's record (namesmith.json) takes and says: `NameModel.train`'s keyword options sorted into the data,
training and model configs, a model's short description, and whether two models were trained on the same data
(ensemble members must be)."""

from __future__ import annotations

import dataclasses
from typing import Any

from namesmith.core.config import TrainConfig
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import DataConfig
from namesmith.models import model_class

_DATA_FIELDS = {f.name for f in dataclasses.fields(DataConfig)} - {"path"}
_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def split_options(model_type: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """`NameModel.train`'s keyword options sorted into data, training and model options."""
    model_fields = {f.name for f in dataclasses.fields(model_class(model_type).config_class)}
    data, training, model = {}, {}, {}
    for name, value in options.items():
        if name in _DATA_FIELDS:
            data[name] = value
        elif name in _TRAIN_FIELDS:
            training[name] = value
        elif name in model_fields:
            model[name] = value
        else:
            known = sorted(_DATA_FIELDS | _TRAIN_FIELDS | model_fields)
            raise ConfigError(f"unknown option {name!r} for model {model_type} (options: {', '.join(known)})",
                              field=name)
    return data, training, model


def describe(model_type: str, config: dict[str, Any]) -> str:
    """'lstm', 'lstm + 6-gram' (a network combined with an n-gram) or 'ensemble of [lstm, ...]'."""
    if model_type == "ngram-mix":
        return f"{config['model_type']} + {config['ngram'].get('order', '?')}-gram"
    if model_type == "ensemble":
        return f"ensemble of [{', '.join(describe(m['model_type'], m['model']) for m in config['members'])}]"
    return model_type


def check_same_data(first: tuple[str, Vocab, dict[str, Any]], other: tuple[str, Vocab, dict[str, Any]]) -> None:
    """Refuse ensemble members (each: how the user knows it, its vocabulary, its record) that do not share their
    vocabulary, training data and split."""
    (first_name, first_vocab, first_meta), (name, vocab, meta) = first, other
    if vocab != first_vocab:
        raise ConfigError(f"models: {name} has another vocabulary than {first_name}; ensemble members must share one",
                          field="models")
    from namesmith.training.provenance import data_difference  # torch: only where an ensemble is built

    key = data_difference(meta["data"], first_meta["data"])
    if key is not None:
        raise ConfigError(f"models: {name} was trained on other data than {first_name} ({key} differs); ensemble "
                          "members must share their training data and split", field="models")
