"""Conditions: which labels a model is conditioned on, and how a request names some of them.

A model trained with `condition=("sex", "decade")` learns P(name | sex, decade). This module holds
what every conditional model shares, whatever its type:

- `Condition`: the conditioned label columns, each with its sorted values, and how much training
  weight each value had (the prior P(value) that `classify` uses). Values are coded as integers
  0..n-1 in sorted order; code n means "unknown": the label is left out (marginalised).
- Start tokens. A conditional model reads a row's labels from the token that starts it: instead
  of the boundary token (0), the row starts with token `vocab_size + index`, where `index` is
  the row's label codes in mixed radix (n_values + 1 per label, unknown included). So labelled
  rows flow through every path that moves token tensors around (the trainer's batches, chunked
  evaluation, the n-gram mix's weight fitting) unchanged, and a row that starts with the plain
  boundary token is a row whose labels are all unknown. Only conditional models ever see them.
- `where`: a request for some labels, {"sex": "F", "decade": ["1950s", "1960s"]}. A label left
  out is marginalised. Several values of one label (unisex names: sex=F and sex=M) ask for names
  that fit all of them at once: the model's next-character distributions under each value
  combination are multiplied at every step and renormalised (a product of experts, Hinton 2002),
  so a character has to be likely under every value to be likely under the product. Several
  labels with several values each multiply every combination of them.
- `guidance` g ≥ 0 (classifier-free guidance, Ho & Salimans 2022): generate from
  P(c | h, where)^(1+g) · P(c | h)^(-g), renormalised at every step, instead of P(c | h, where):
  characters more likely under the labels than without them gain, so names come out more typical
  of the labels (a boy's name that is clearly a boy's), at some cost in variety and, for large g,
  in name-likeness. g = 0 is the model's own P(name | where).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from namesmith.core.errors import ConfigError

if TYPE_CHECKING:  # imported by the methods that make tensors: parsing and checking labels needs no torch
    import torch

Where = Mapping[str, "str | Sequence[str]"]
MAX_SHOWN_VALUES = 20  # values listed in an error message about an unknown value


@dataclass(frozen=True)
class Condition:
    """Conditioned labels and their values (sorted), with each value's share of the training weight."""

    labels: dict[str, list[str]]  # label -> sorted values
    priors: dict[str, list[float]]  # label -> training weight of each value (same order)
    # the training weight of each combination of values that training rows have: ((code, ...), weight)
    joint: tuple[tuple[tuple[int, ...], float], ...] = ()

    def __post_init__(self) -> None:
        for label, values in self.labels.items():
            assert values == sorted(set(values)) and values, f"label {label!r}: values must be sorted and distinct"
            assert len(self.priors.get(label, [])) == len(values), f"label {label!r}: one prior per value"

    @property
    def names(self) -> list[str]:
        return list(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def unknown(self) -> tuple[int, ...]:
        """The codes of a row whose labels are all left out."""
        return tuple(len(values) for values in self.labels.values())

    @property
    def radix(self) -> list[int]:
        """Codes per label, "unknown" included."""
        return [len(values) + 1 for values in self.labels.values()]

    @property
    def n_start_tokens(self) -> int:
        """How many start tokens rows of this condition can begin with."""
        n = 1
        for r in self.radix:
            n *= r
        return n

    # --- start tokens --------------------------------------------------------------------------
    def start_tokens(self, codes: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(N,) start token of each row from its label codes (N, k); see the module docstring."""
        import torch

        index = torch.zeros(len(codes), dtype=torch.long, device=codes.device)
        for j, r in enumerate(self.radix):
            index = index * r + codes[:, j]
        return vocab_size + index

    def codes_of(self, start: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """(N, k) label codes from the tokens (N,) that start rows; the boundary token means all unknown."""
        import torch

        index = start - vocab_size
        plain = index < 0
        index = index.clamp(min=0)
        codes = []
        for r in reversed(self.radix):
            codes.append(index % r)
            index = index // r
        out = torch.stack(codes[::-1], 1) if codes else torch.zeros(len(start), 0, dtype=torch.long)
        unknown = torch.tensor(self.unknown(), dtype=torch.long, device=start.device)
        return torch.where(plain.unsqueeze(1), unknown, out.to(start.device))

    # --- requests ------------------------------------------------------------------------------
    def check_where(self, where: Where | None) -> dict[str, tuple[str, ...]]:
        """`where` validated: {label: values}, labels in this condition's order, values sorted.

        An unknown label or value is one `ConfigError` naming the known ones.
        """
        if not where:
            return {}
        if not isinstance(where, Mapping):
            raise ConfigError(f"where must map labels to values, e.g. {{'sex': 'F'}}; got {type(where).__name__}",
                              field="where")
        checked: dict[str, tuple[str, ...]] = {}
        for label, values in where.items():
            if label not in self.labels:
                known = ", ".join(self.labels) or "none: the model is not conditioned (train with condition=...)"
                raise ConfigError(f"where: unknown label {label!r} (labels: {known})", field="where")
            values = (values,) if isinstance(values, str) else tuple(values)
            if not values or not all(isinstance(v, str) for v in values):
                raise ConfigError(f"where: {label} needs one or more values (strings), got {values!r}", field="where")
            known_values = self.labels[label]
            for value in values:
                if value not in known_values:
                    shown = ", ".join(known_values[:MAX_SHOWN_VALUES])
                    if len(known_values) > MAX_SHOWN_VALUES:
                        shown += f", ... ({len(known_values)} in all)"
                    raise ConfigError(f"where: {label}={value!r} is not a value of {label!r} (values: {shown})",
                                      field="where")
            checked[label] = tuple(sorted(set(values)))
        return {label: checked[label] for label in self.labels if label in checked}

    def where_codes(self, where: Where | None) -> list[tuple[int, ...]]:
        """Every combination of label codes `where` asks for (unknown for labels left out).

        One combination unless a label has several values; the model multiplies their
        distributions (see the module docstring).
        """
        checked = self.check_where(where)
        choices = []
        for label, values in self.labels.items():
            asked = checked.get(label)
            choices.append([values.index(v) for v in asked] if asked else [len(values)])
        return list(itertools.product(*choices))

    def where_of(self, codes: tuple[int, ...]) -> dict[str, str]:
        """The `where` of a combination of codes (unknown codes left out)."""
        return {label: values[c] for (label, values), c in zip(self.labels.items(), codes) if c < len(values)}

    def prior(self, label: str) -> np.ndarray:
        """P(value) of one label (float64, sums to 1): its values' share of the training weight."""
        weights = np.array(self.priors[label], dtype=np.float64)
        total = weights.sum()
        return weights / total if total > 0 else np.full_like(weights, 1.0 / len(weights))

    # --- saving --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"labels": {k: list(v) for k, v in self.labels.items()},
                "priors": {k: [float(p) for p in v] for k, v in self.priors.items()},
                "joint": [[list(codes), float(weight)] for codes, weight in self.joint]}

    @classmethod
    def from_dict(cls, record: Any) -> Condition:
        """A condition as saved by `to_dict` (a ValueError if it is malformed)."""
        if not isinstance(record, dict) or not isinstance(record.get("labels"), dict) \
                or not isinstance(record.get("priors"), dict):
            raise ValueError("the condition record needs 'labels' and 'priors'")
        labels, priors = record["labels"], record["priors"]
        for label, values in labels.items():
            ok = (isinstance(values, list) and values and all(isinstance(v, str) for v in values)
                  and values == sorted(set(values)) and isinstance(priors.get(label), list)
                  and len(priors[label]) == len(values)
                  and all(isinstance(p, (int, float)) and p >= 0 for p in priors[label]))
            if not ok:
                raise ValueError(f"the condition record's label {label!r} is malformed")
        joint = []
        radix = [len(v) for v in labels.values()]
        for item in record.get("joint", []):
            ok = (isinstance(item, list) and len(item) == 2 and isinstance(item[0], list) and len(item[0]) == len(radix)
                  and all(isinstance(c, int) and 0 <= c < r for c, r in zip(item[0], radix))
                  and isinstance(item[1], (int, float)) and item[1] >= 0)
            if not ok:
                raise ValueError(f"the condition record's joint entry {item!r:.80} is malformed")
            joint.append((tuple(item[0]), float(item[1])))
        return cls({k: list(v) for k, v in labels.items()}, {k: [float(p) for p in priors[k]] for k in labels},
                   tuple(joint))


def check_guidance(guidance: float) -> float:
    """`guidance` as a float ≥ 0, or a ConfigError naming it."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not 0 <= guidance < float("inf"):
        raise ConfigError(f"guidance must be a number >= 0 (0: the model's own P(name | where)), got {guidance!r}",
                          field="guidance")
    return float(guidance)


def parse_where_args(items: Sequence[str] | None) -> dict[str, list[str]]:
    """`--where LABEL=VALUE[,VALUE...]` options (repeatable) as a `where` mapping.

    `sex=F` asks for one value; `sex=F,M` (or `--where sex=F --where sex=M`) for names that fit
    both values at once. A value holding a comma cannot be given this way (use the Python API).
    """
    where: dict[str, list[str]] = {}
    for item in items or ():
        label, sep, values = item.partition("=")
        label = label.strip()
        parts = [v.strip() for v in values.split(",")]
        if not sep or not label or not all(parts):
            raise ConfigError(f"where: expected LABEL=VALUE (e.g. sex=F, or sex=F,M for both), got {item!r}",
                              field="where")
        where.setdefault(label, [])
        where[label] += [v for v in parts if v not in where[label]]
    return where


def where_key(where: Mapping[str, Sequence[str]]) -> tuple:
    """A hashable form of a checked `where` (for caches)."""
    return tuple((label, tuple(values)) for label, values in where.items())
