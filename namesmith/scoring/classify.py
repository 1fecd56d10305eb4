"""Which label values fit a name: the posterior over each conditioned label, by Bayes' rule.

    P(value | name) = P(name | value) · P(value) / Σ_v P(name | v) · P(v)

computed from the joint posterior over the combinations of values the training rows have,

    P(combination | name) ∝ P(name | combination) · P(combination),

summed over the combinations that have the value: P(name | value) is then the mixture of the
value's combinations, each in proportion to its prior (the other labels marginalised exactly),
and names are judged by the most specific models (a girl's name of the 1950s is told from a
boy's by the 1950s' names). P(combination) is its share of the training weight (with weighting
`none`, of the distinct training rows; with `share`, of the distinct names; with `count`, of the
births). With more than MAX_JOINT combinations each label is judged alone, by the model with that
one label given (`model.given({label: value})`) and the value's share of the training weight.

The likelihoods come from the model, or, for a conditional count model loaded from its directory, from the
tables saved beside it (namesmith.scoring.classify_tables), without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab

if TYPE_CHECKING:  # torch is imported where a model classifies (a model's saved tables need none)
    import torch

    from namesmith.core.conditional import Condition
    from namesmith.models.base import CharModel

MAX_JOINT = 64  # combinations of values up to which names are classified by the joint posterior


class LabelTilts(Protocol):
    """The calibrations of a conditional model's label nodes (namesmith.generation.calibration.LabelCalibrations)."""

    def combination_log_weights(self, words: Sequence[str], vocab: Vocab,
                                combinations: Sequence[tuple[int, ...]]) -> np.ndarray: ...


class SavedScores(Protocol):
    """What classifies without the model: a conditional count model's saved tables
    (namesmith.scoring.classify_tables.ClassifyTables)."""

    condition: Condition
    labels: dict[str, list[str]]

    def saved_log_likelihoods(self, vocab: Vocab, names: list[str], combinations: list[tuple[int, ...]]
                              ) -> np.ndarray: ...


@dataclass(frozen=True)
class Classification:
    """One name's posterior over each label, {label: {value: P(value | name)}}, values from most to
    least likely; `error` says why it has none (the name is empty or has characters the model lacks)."""

    name: str
    labels: dict[str, dict[str, float]] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "labels": self.labels, "error": self.error}


def combination_log_likelihoods(model: CharModel, vocab: Vocab, names: Sequence[str],
                                combinations: list[tuple[int, ...]]) -> torch.Tensor:
    """(N, C) log P(name | combination of label codes) of each name under each combination (float64).

    A model that can score many combinations at once (conditional counts) does, each combination's
    likelihoods tilted by its calibration where it has one (namesmith.generation.calibration.LabelCalibrations);
    otherwise each combination's plain model scores the names (calibrated as it samples).
    """
    import torch

    from namesmith.data.words import encode_words
    from namesmith.models.nll import word_log_probs

    if hasattr(model, "combination_log_likelihoods"):
        x, y = encode_words(list(names), vocab)
        log_likelihoods = model.combination_log_likelihoods(x, y, combinations)
        if model.label_calibrations is not None:
            log_likelihoods = log_likelihoods + torch.from_numpy(model.label_calibrations.combination_log_weights(
                list(names), vocab, combinations))
        return log_likelihoods
    where_of = model.condition.where_of
    return torch.stack([word_log_probs(model.given(where_of(codes)), list(names), vocab) for codes in combinations], 1)


def asked_combinations(condition: Condition) -> tuple[list[tuple[int, ...]], np.ndarray | None]:
    """The combinations of codes whose likelihoods classification compares, with their prior weights: the
    joint combinations the training rows have, up to MAX_JOINT of them; else (weights None) every value of
    every label alone, label by label."""
    joint = [(codes, weight) for codes, weight in condition.joint if weight > 0]
    if 0 < len(joint) <= MAX_JOINT:
        return [codes for codes, _ in joint], np.array([weight for _, weight in joint], dtype=np.float64)
    return [condition.where_codes({label: value})[0] for label, values in condition.labels.items()
            for value in values], None


def posteriors(model: CharModel | SavedScores, vocab: Vocab, names: Sequence[str]) -> dict[str, np.ndarray]:
    """{label: (N, values) P(value | name)} for every conditioned label; each row sums to 1.

    Every name must be readable (`Vocab.readable`, "raise"): `classify` sets the others apart ("fail")."""
    check_conditional(model)
    vocab.readable(names, "raise")
    condition = model.condition
    combinations, weights = asked_combinations(condition)
    if hasattr(model, "saved_log_likelihoods"):  # namesmith.scoring.classify_tables: no torch
        log_likelihoods = model.saved_log_likelihoods(vocab, list(names), combinations)
    else:
        log_likelihoods = combination_log_likelihoods(model, vocab, names, combinations).numpy()
    out = {}
    if weights is not None:
        posterior = _softmax(log_likelihoods + np.log(weights))  # (N, combinations)
        for j, (label, values) in enumerate(condition.labels.items()):
            out[label] = np.zeros((len(names), len(values)))
            np.add.at(out[label].T, np.array([codes[j] for codes in combinations]), posterior.T)
        return out
    start = 0
    for label, values in condition.labels.items():
        joint = log_likelihoods[:, start : start + len(values)] + np.log(condition.prior(label))
        out[label], start = _softmax(joint), start + len(values)
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float64)."""
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def check_conditional(model: CharModel | SavedScores) -> None:
    """A ConfigError unless the model is conditioned on some label (only then is there anything to classify)."""
    if model.condition is None or not model.labels:
        raise ConfigError("classify needs a conditional model: this one is not conditioned on any label "
                          "(train it on a table with condition=..., --condition LABEL)", field="model")


def classify(model: CharModel | SavedScores, vocab: Vocab, names: Sequence[str]) -> list[Classification]:
    """Each name's posterior over each label; a name the model cannot read gets an `error` instead, as in
    scoring (namesmith.scoring.score), so one such name never fails the batch."""
    check_conditional(model)
    kept, problems = vocab.readable(names, "fail")
    posterior = posteriors(model, vocab, [names[i] for i in kept]) if kept else {}
    found = iter(range(len(kept)))
    result = []
    for at, name in enumerate(names):
        if at in problems:
            result.append(Classification(name, error=problems[at]))
            continue
        i, row = next(found), {}
        for label, probs in posterior.items():
            values = model.condition.labels[label]
            order = np.argsort(-probs[i], kind="stable").tolist()
            row[label] = {values[j]: float(probs[i, j]) for j in order}
        result.append(Classification(name, row))
    return result


def format_classification(results: Sequence[Classification], top: int = 3) -> str:
    """`leslie: sex F 61% M 39%; decade 1950s 18% 1960s 15% 1940s 12% ...`, one line per name
    (`olivié: error: 'é' is not in the model's vocabulary` for a name without a posterior)."""
    lines = []
    for result in results:
        if result.error is not None:
            lines.append(f"{result.name}: error: {result.error}")
            continue
        parts = []
        for label, probs in result.labels.items():
            shown = list(probs.items())[:top]
            text = " ".join(f"{value} {100 * p:.0f}%" for value, p in shown)
            parts.append(f"{label} {text}" + (" ..." if len(probs) > top else ""))
        lines.append(f"{result.name}: " + "; ".join(parts))
    return "\n".join(lines)
