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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel
from namesmith.models.nll import word_log_probs

MAX_JOINT = 64  # combinations of values up to which names are classified by the joint posterior


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
    if hasattr(model, "combination_log_likelihoods"):
        x, y = encode_words(list(names), vocab)
        log_likelihoods = model.combination_log_likelihoods(x, y, combinations)
        if model.label_calibrations is not None:
            log_likelihoods = log_likelihoods + model.label_calibrations.combination_log_weights(
                list(names), vocab, combinations)
        return log_likelihoods
    where_of = model.condition.where_of
    return torch.stack([word_log_probs(model.given(where_of(codes)), list(names), vocab) for codes in combinations], 1)


def label_log_likelihoods(model: CharModel, vocab: Vocab, names: Sequence[str], label: str) -> torch.Tensor:
    """(N, values) log P(name | label=value) of each name under each value of one label (float64)."""
    values = model.condition.labels[label]
    combinations = [model.condition.where_codes({label: value})[0] for value in values]
    return combination_log_likelihoods(model, vocab, names, combinations)


def posteriors(model: CharModel, vocab: Vocab, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """{label: (N, values) P(value | name)} for every conditioned label; each row sums to 1.

    Every name must be readable (`Vocab.readable`, "raise"): `classify` sets the others apart ("fail")."""
    check_conditional(model)
    vocab.readable(names, "raise")
    condition = model.condition
    combinations = [(codes, weight) for codes, weight in condition.joint if weight > 0]
    out = {}
    if 0 < len(combinations) <= MAX_JOINT:
        weights = torch.tensor([weight for _, weight in combinations], dtype=torch.float64)
        joint = combination_log_likelihoods(model, vocab, names, [codes for codes, _ in combinations]) + weights.log()
        posterior = torch.softmax(joint, 1)  # (N, combinations)
        for j, (label, values) in enumerate(condition.labels.items()):
            of = torch.tensor([codes[j] for codes, _ in combinations])
            out[label] = torch.zeros(len(names), len(values), dtype=torch.float64).index_add_(1, of, posterior)
        return out
    for label in model.labels:
        joint = label_log_likelihoods(model, vocab, names, label) + condition.prior(label).log()
        out[label] = torch.softmax(joint, 1)
    return out


def check_conditional(model: CharModel) -> None:
    """A ConfigError unless the model is conditioned on some label (only then is there anything to classify)."""
    if model.condition is None or not model.labels:
        raise ConfigError("classify needs a conditional model: this one is not conditioned on any label "
                          "(train it on a table with condition=..., --condition LABEL)", field="model")


def classify(model: CharModel, vocab: Vocab, names: Sequence[str]) -> list[Classification]:
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
            order = torch.argsort(probs[i], descending=True, stable=True).tolist()
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
