"""Held-out evaluation: mean negative log-likelihood per character, and per-name log-probabilities.

The figure is the one the lecture series quotes: the mean over every target token of every
word, the end-of-name token included, in nats. Perplexity is its exponential.

The log-probabilities come from the one NLL path (namesmith.models.nll): this module turns them into
the figures reported per split and per part of a labelled table. First-order models are evaluated
from their (V, V) table and pair counts instead (`counted_nll`: the counts are their sufficient statistics,
O(V²) whatever the words), and streamed word lists from the counts of the file (`evaluate_streamed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from namesmith.core.errors import DataError
from namesmith.core.vocab import Vocab
from namesmith.data.counting import PARTS, NGramFileCounts, count_ngrams_file
from namesmith.data.pair_counts import StreamCounts, count_file, count_pairs
from namesmith.data.words import Corpus, DataConfig, fingerprint
from namesmith.models.base import CharModel
from namesmith.models.nll import (
    calibrated,
    counted_nll,
    labelled_row_log_probs,
    mean_nll_per_char,
    target_counts,
    word_log_probs,
)


@dataclass(frozen=True)
class Evaluation:
    """NLL per character over one word list (nll is None when the list is empty)."""

    nll: float | None
    n_words: int
    n_chars: int  # target tokens, one end token per word included

    @property
    def perplexity(self) -> float | None:
        return None if self.nll is None else math.exp(self.nll)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"nll": self.nll, "perplexity": self.perplexity, "n_words": self.n_words, "n_chars": self.n_chars}


def calibrated_rows(model: CharModel, log_probs: torch.Tensor, corpus: Any, part: str) -> torch.Tensor:
    """`calibrated` for the rows of a labelled corpus's part: a conditional model's rows each tilted by their
    own label node's calibration (namesmith.generation.calibration.LabelCalibrations), a plain model's by its own."""
    if model.label_calibrations is not None:
        return log_probs + model.label_calibrations.row_log_weights(corpus.codes[part], corpus.words(part),
                                                                    corpus.vocab)
    return calibrated(model, log_probs, corpus.words(part), corpus.vocab)


def evaluate_labelled(model: CharModel, corpus: Any) -> dict[str, dict[str, Any]]:
    """Per part of a labelled corpus (namesmith.data.labelled): the NLL per character of its rows, each
    distinct (name, conditioned labels) once, and, for tables with counts, `nll_per_count`: each row
    weighted by its count (births), the NLL per character of a name drawn as the data draws them."""
    metrics = {}
    for part in PARTS:
        x, y = corpus.tensors(part)
        if not len(x):
            metrics[part] = {**Evaluation(None, 0, 0).to_dict(), "nll_per_count": None}
            continue
        log_probs = calibrated_rows(model, labelled_row_log_probs(model, x, y), corpus, part)
        chars = (y >= 0).sum(1).double()
        result = Evaluation(float(-log_probs.sum() / chars.sum()), len(x), int(chars.sum())).to_dict()
        counts = torch.from_numpy(corpus.counts[part]).double()
        weighted = float((counts * chars).sum())
        result["nll_per_count"] = float(-(counts * log_probs).sum() / weighted) if corpus.has_counts and weighted \
            else None
        metrics[part] = result
    return metrics


def evaluate(model: CharModel, words: list[str], vocab: Vocab) -> Evaluation:
    """Mean NLL per character of `words` under `model`."""
    if not words:
        return Evaluation(None, 0, 0)
    return Evaluation(mean_nll_per_char(word_log_probs(model, words, vocab), words), len(words),
                      int(target_counts(words).sum()))


def _table_log_probs(model: CharModel) -> np.ndarray | None:
    """log P(next | previous) (V, V) in float64 for first-order models, else None."""
    table = model.transition_table()
    if table is None:
        return None
    with torch.no_grad():
        return table.double().log().cpu().numpy()


def evaluate_splits(model: CharModel, corpus: Corpus) -> dict[str, dict[str, Any]]:
    """NLL per character and perplexity on train, val and test (from pair counts where that suffices)."""
    log_probs = _table_log_probs(model) if model.calibration is None else None  # pair counts miss whole names
    metrics = {}
    for part in PARTS:
        if log_probs is None:
            metrics[part] = evaluate(model, corpus.words(part), corpus.vocab).to_dict()
            continue
        counts = count_pairs(*corpus.tensors(part), model.vocab_size).double().numpy()
        nll = counted_nll([(log_probs, counts)])
        metrics[part] = Evaluation(nll, len(corpus.words(part)), int(counts.sum())).to_dict()
    return metrics


def count_metrics(model: CharModel, counts: StreamCounts) -> dict[str, dict[str, Any]]:
    """NLL per character (end token included) and perplexity of each part, from its pair counts."""
    log_probs = _table_log_probs(model)
    if log_probs is None:
        raise DataError(f"a {model.model_type} model cannot be evaluated from pair counts")
    return {part: Evaluation(counted_nll([(log_probs, counts.part(part))]), counts.n_words[part],
                             int(counts.part(part).sum())).to_dict() for part in PARTS}


def ngram_count_metrics(model: Any, counts: NGramFileCounts) -> dict[str, dict[str, Any]]:
    """NLL per character and perplexity of each part of a streamed list, from its n-gram counts (and, where the
    model is calibrated, its words' cells: `tilted_count_metrics`)."""
    metrics = {}
    for part in PARTS:
        part_counts = counts.part(part)
        nll = model.nll_counts(part_counts) if part_counts.n_tokens else None
        metrics[part] = Evaluation(nll, part_counts.n_words, int(part_counts.n_tokens)).to_dict()
    if model.calibration is not None and counts.cells is not None:
        return tilted_count_metrics(model.calibration, {part: counts.word_cells(part) for part in PARTS}, metrics)
    return metrics


def tilted_count_metrics(calibration: Any, cells: dict[str, torch.Tensor], metrics: dict[str, dict[str, Any]]
                         ) -> dict[str, dict[str, Any]]:
    """`metrics` of a model's n-grams alone, each part's NLL under the model's whole-name `calibration` (a
    namesmith.generation.calibration.Calibration): the words' tilt λ·f - log Z depends on their cells alone
    (`cells[part]`: `NGramFileCounts.word_cells`), so it adds -Σ over cells of count × tilt to the part's total
    NLL (the words themselves are not held)."""
    tilted = {}
    for part, evaluation in metrics.items():
        nll, n_chars = evaluation["nll"], evaluation["n_chars"]
        if nll is not None and n_chars:
            nll -= calibration.counted_log_weight(cells[part]) / n_chars
        tilted[part] = Evaluation(nll, evaluation["n_words"], n_chars).to_dict()
    return tilted


def evaluate_streamed(model: CharModel, vocab: Vocab, data: dict[str, Any], path: str | None = None) -> dict[str, Any]:
    """Evaluation of a model trained on a streamed word list (`data` is its data record): recount it."""
    source = path or data["path"]
    if fingerprint(source) != data["sha256"]:
        raise DataError(f"{source}: is not the word list this model was trained on (its sha256 differs)")
    config = DataConfig(path=source, case="lower" if data["lowercase"] else "exact", encoding=data["encoding"],
                        max_line_length=data["max_line_length"], split_seed=data["split_seed"], split=data["split"])
    if model.model_type == "ngram":
        counts = count_ngrams_file(config, model.config.order)
        if counts.vocab != vocab:
            raise DataError(f"{source}: its characters differ from the model's vocabulary")
        return ngram_count_metrics(model, counts)
    counts = count_file(config)
    if counts.vocab != vocab:
        raise DataError(f"{source}: its characters differ from the model's vocabulary")
    return count_metrics(model, counts)
