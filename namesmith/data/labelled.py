"""Labelled rows: a table's names with their labels, counts and training weights, split by name.

What conditional and weighted models train on. A table (namesmith.data.tables) is aggregated to one
row per distinct (name, conditioned labels), so with `condition=("sex",)` a unisex name is two
rows and without a condition every distinct name is one row. The rows are split by distinct
name (`tables.split_by_name`): every row of a held-out name is held out, so a held-out name is
unseen in training under every label and held-out figures are honest.

`LabelledCorpus` is a `Corpus` (the words of each part, one per row, and the vocabulary) plus,
per part, each row's label codes, raw count and training weight:

- `weighting` (tables.weights): `none` counts each row once, `count` by its count (births:
  realistic frequencies), `log` by 1 + ln(count), `share` by its share of its name's count (each
  distinct name weighs 1 in all, split among its label values by births). Neural models draw
  training rows in proportion to their weights (`row_weights`); count models count each row's
  n-grams with its weight (namesmith.models.weighted_kn).
- Label codes (see namesmith.core.conditional): a row's value index per conditioned label. The values
  are those of the training rows; a held-out row with a value no training row has gets the
  "unknown" code, so it is scored with that label marginalised.
- `tensors(part)` starts each row with its start token (its label codes) instead of the boundary
  token when the corpus is conditioned: that is how labels reach the models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from namesmith.core.conditional import Condition, Where
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.tables import PARTS, WEIGHTINGS, Table, aggregate, split_by_name, weights
from namesmith.data.words import Corpus, Split

log = logging.getLogger("namesmith")

MAX_LABELS = 6  # conditioned labels at most (count models keep a component per subset of them)


@dataclass
class LabelledCorpus(Corpus):
    """A split table: words per row (as `Corpus`), with label codes, counts and weights per row."""

    condition: Condition = field(default_factory=lambda: Condition({}, {}))
    codes: dict[str, torch.Tensor] = field(default_factory=dict)  # part -> (N, k) int64
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # part -> (N,) int64 raw counts
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # part -> (N,) float64 training weights
    weighting: str = "share"
    has_counts: bool = False  # the table had a count column

    @property
    def conditioned(self) -> bool:
        return len(self.condition) > 0

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) with each row's start token in x[:, 0] when conditioned (see the module docstring)."""
        x, y = self.word_tensors(part)
        if not self.conditioned:
            return x, y
        key = part + "+labels"
        if key not in self._tensors:
            x = x.clone()
            x[:, 0] = self.condition.start_tokens(self.codes[part], self.vocab.size)
            self._tensors[key] = (x, y)
        return self._tensors[key]

    def train_words_where(self, condition: Condition, where: Where) -> list[str]:
        """The training words of the rows of the labels `where` asks for, read under `condition` (a model's: a
        label `where` leaves out matches every value)."""
        codes, unknown = self.codes["train"], condition.unknown()
        keep = torch.zeros(len(codes), dtype=torch.bool)
        for combination in condition.where_codes(where):
            match = torch.ones(len(codes), dtype=torch.bool)
            for j, (code, missing) in enumerate(zip(combination, unknown)):
                if code != missing:
                    match &= codes[:, j] == code
            keep |= match
        return [w for w, k in zip(self.split.train, keep.tolist()) if k]

    def row_weights(self, part: str) -> torch.Tensor | None:
        """Training weight of each row (float64), or None when every row weighs the same."""
        w = self.weights[part]
        if len(w) == 0 or bool((w == w[0]).all()):
            return None
        return torch.from_numpy(w)



def labelled_corpus(table: Table, condition: Sequence[str] | None = None, weighting: str = "share", *,
                    seed: int = 42, split: bool = True, vocab: Vocab | None = None) -> LabelledCorpus:
    """The table's rows aggregated by (name, `condition` labels), split by distinct name.

    `condition` None conditions on every label column of the table; () on none. `vocab` defaults
    to the characters of every row (as `Corpus.from_words`).
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}", field="weighting")
    columns = tuple(table.label_columns) if condition is None else tuple(condition)
    if len(columns) > MAX_LABELS:
        raise ConfigError(f"condition: at most {MAX_LABELS} labels, got {len(columns)} ({', '.join(columns)})",
                          field="condition")
    if weighting != "none" and not table.has_counts:
        log.warning(f"{table.source}: has no count column; every row counts 1, so weighting {weighting} is "
                    "the same as none")
    rows = aggregate(table, columns)  # raises for an unknown column, naming the known ones
    none = rows.select([])
    parts = split_by_name(rows, seed) if split else {"train": rows, "val": none, "test": none}
    # rows of one label combination together (stable: names keep their order within it), so that
    # chunked passes over a part meet few combinations per chunk
    parts = {part: t.select(np.lexsort([t.labels[c] for c in reversed(columns)])) if columns else t
             for part, t in parts.items()}
    train = parts["train"]
    train_weights = weights(train, weighting)
    labels, priors = {}, {}
    for column in columns:
        values = train.label_values(column)
        labels[column] = values
        column_codes = np.searchsorted(values, train.labels[column])
        priors[column] = np.bincount(column_codes, weights=train_weights, minlength=len(values)).tolist()
    codes = {part: _codes(parts[part], Condition(labels, priors)) for part in PARTS}
    joint: tuple = ()
    if columns and len(train):  # the training weight of each combination of values present
        combos, combo_of = np.unique(codes["train"].numpy(), axis=0, return_inverse=True)
        totals = np.bincount(combo_of.reshape(-1), weights=train_weights, minlength=len(combos))
        joint = tuple((tuple(int(c) for c in combo), float(t)) for combo, t in zip(combos, totals))
    cond = Condition(labels, priors, joint)
    split_words = Split(*(list(parts[part].names) for part in PARTS))
    characters = set().union(*(set("".join(parts[part].names)) for part in PARTS))
    return LabelledCorpus(split=split_words, vocab=vocab or Vocab.from_chars(characters), condition=cond,
                          codes=codes,
                          counts={part: parts[part].counts.copy() for part in PARTS},
                          weights={part: weights(parts[part], weighting) for part in PARTS},
                          weighting=weighting, has_counts=table.has_counts)


def _codes(table: Table, condition: Condition) -> torch.Tensor:
    """(N, k) value index of each row per label; values the training rows lack get the unknown code."""
    columns = []
    for label, values in condition.labels.items():
        index = {v: i for i, v in enumerate(values)}
        unknown = len(values)
        columns.append(np.fromiter((index.get(v, unknown) for v in table.labels[label]), dtype=np.int64,
                                   count=len(table)))
    if not columns:
        return torch.zeros(len(table), 0, dtype=torch.long)
    return torch.from_numpy(np.stack(columns, 1))
