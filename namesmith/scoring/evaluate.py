"""Held-out evaluation: mean negative log-likelihood per character, and per-name log-probabilities.

The figure is the one the lecture series quotes: the mean over every target token of every
word, the end-of-name token included, in nats. Perplexity is its exponential.

`chunked_log_probs` is the one path by which a model is run over many words: the trainer's
validation loss, evaluation, scoring and the n-gram mix's weight fitting all use it, in chunks of
`EVAL_BATCH` words, each cropped to its longest word. First-order models are evaluated from pair
counts instead (`pair_nll`: the counts are their sufficient statistics), and streamed word lists
from the counts of the file (`evaluate_streamed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from namesmith.core.errors import DataError
from namesmith.core.progress import Phase
from namesmith.core.vocab import Vocab
from namesmith.data.counting import PARTS, NGramFileCounts, StreamCounts, count_file, count_ngrams_file, count_pairs
from namesmith.data.words import Corpus, DataConfig, encode_words, fingerprint
from namesmith.models.base import CharModel

EVAL_BATCH = 4096  # words per forward pass...
EVAL_CELLS = 1 << 24  # ...or fewer: a chunk's (B, T, V) log-probabilities stay within 64 MB (large vocabularies)


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


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """The model in eval mode (no dropout) for the block, then back to the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def chunked_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor,
                      chunk: int = EVAL_BATCH) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(log-probabilities (B, T, V) float32, targets (B, T)) for each chunk of `encode_words` rows.

    Each chunk is cropped to its longest word; targets are -1 at padding. Call it under `eval_mode`.
    """
    lengths = (y >= 0).sum(1)
    longest = int(lengths.max()) if len(lengths) else 1
    chunk = max(1, min(chunk, EVAL_CELLS // (max(longest, 1) * model.vocab_size)))
    phase = Phase("scoring", x.shape[0], "names")
    for i in range(0, x.shape[0], chunk):
        T = max(int(lengths[i : i + chunk].max()), 1)
        xb, yb = x[i : i + chunk, :T].to(model.device), y[i : i + chunk, :T].to(model.device)
        yield F.log_softmax(model(xb).float(), dim=-1), yb
        phase.advance(len(xb))


def target_log_probs(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log P(targets) (B, T) from log-probabilities (B, T, V); 0 where the target is padding (-1)."""
    logp = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(targets >= 0, logp, torch.zeros_like(logp))


def position_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities (N, V) of every real target position of `encode_words` tensors, and the
    targets (N,), on the CPU: what the combining weights of several models are fitted on."""
    log_probs, targets = [], []
    with eval_mode(model):
        for chunk_log_probs, chunk_targets in chunked_log_probs(model, x, y):
            mask = chunk_targets >= 0
            log_probs.append(chunk_log_probs[mask].cpu())
            targets.append(chunk_targets[mask].cpu())
    if not log_probs:
        return torch.zeros(0, model.vocab_size), torch.zeros(0, dtype=torch.long)
    return torch.cat(log_probs), torch.cat(targets)


def nll_sum(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Summed NLL and number of target tokens of `encode_words` tensors (padding ignored), in eval mode.

    Sums, not a mean, so that shares of a split (one per rank) add up to the whole."""
    total, count = 0.0, 0
    with eval_mode(model):
        for log_probs, targets in chunked_log_probs(model, x, y):
            total += -target_log_probs(log_probs, targets).double().sum().item()
            count += int((targets >= 0).sum())
    return total, count


def mean_nll(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean NLL per target token of `encode_words` tensors (padding ignored), in eval mode."""
    total, count = nll_sum(model, x, y)
    return total / max(count, 1)


def word_log_probs(model: CharModel, words: list[str], vocab: Vocab) -> torch.Tensor:
    """Total log-probability of each whole word (end token included), under the calibrated model where
    the model is calibrated (namesmith.generation.calibration). Shape (len(words),), float64."""
    totals = []
    with eval_mode(model):
        for i in range(0, len(words), EVAL_BATCH):  # encode chunk by chunk: memory stays bounded
            x, y = encode_words(words[i : i + EVAL_BATCH], vocab)
            for log_probs, targets in chunked_log_probs(model, x, y):
                totals.append(target_log_probs(log_probs, targets).double().sum(1).cpu())
    total = torch.cat(totals) if totals else torch.zeros(0, dtype=torch.float64)
    return calibrated(model, total, words, vocab)


def calibrated(model: CharModel, log_probs: torch.Tensor, words: Sequence[str], vocab: Vocab) -> torch.Tensor:
    """Whole words' log-probabilities (float64) under the calibrated model: each plus λ·f(word) - log Z
    (namesmith.generation.calibration), the one place where calibration enters a likelihood; unchanged otherwise."""
    if model.calibration is None:
        return log_probs
    return log_probs + model.calibration.word_log_weights(words, vocab)


def calibrated_rows(model: CharModel, log_probs: torch.Tensor, corpus: Any, part: str) -> torch.Tensor:
    """`calibrated` for the rows of a labelled corpus's part: a conditional model's rows each tilted by their
    own label node's calibration (namesmith.generation.calibration.LabelCalibrations), a plain model's by its own."""
    if model.label_calibrations is not None:
        return log_probs + model.label_calibrations.row_log_weights(corpus.codes[part], corpus.words(part),
                                                                    corpus.vocab)
    return calibrated(model, log_probs, corpus.words(part), corpus.vocab)


def row_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Total log-probability (float64) of each row of `encode_words`-style tensors (a labelled corpus's
    rows carry their labels in their start token)."""
    totals = []
    with eval_mode(model):
        for log_probs, targets in chunked_log_probs(model, x, y):
            totals.append(target_log_probs(log_probs, targets).double().sum(1).cpu())
    return torch.cat(totals) if totals else torch.zeros(0, dtype=torch.float64)


def labelled_row_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`row_log_probs`, a count model's rows scored in order of their labels (their start token): a
    conditional count model mixes each label combination's rows for the contexts of a batch, so a batch
    of one combination shares the most (namesmith.models.conditional_counts). Networks keep the order."""
    if not model.counts_only:
        return row_log_probs(model, x, y)
    order = torch.argsort(x[:, 0], stable=True)
    log_probs = torch.empty(len(x), dtype=torch.float64)
    log_probs[order] = row_log_probs(model, x[order], y[order])
    return log_probs


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
    n_chars = sum(len(w) + 1 for w in words)
    if not words:
        return Evaluation(None, 0, 0)
    total = word_log_probs(model, words, vocab).sum().item()
    return Evaluation(-total / n_chars, len(words), n_chars)


def pair_nll(log_probs: np.ndarray, counts: np.ndarray) -> float | None:
    """Mean NLL per character of a bigram table from pair counts: -Σ N ∘ log P / Σ N.

    The counts are the sufficient statistics of a first-order model, so this equals `evaluate`
    on the words they were counted from, in O(V²). None when there are no pairs.
    """
    n = counts.sum()
    if not n:
        return None
    used = counts > 0  # 0 × log 0 would be nan
    return float(-(counts[used] * log_probs[used]).sum() / n)


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
        metrics[part] = Evaluation(pair_nll(log_probs, counts), len(corpus.words(part)), int(counts.sum())).to_dict()
    return metrics


def count_metrics(model: CharModel, counts: StreamCounts) -> dict[str, dict[str, Any]]:
    """NLL per character (end token included) and perplexity of each part, from its pair counts."""
    log_probs = _table_log_probs(model)
    if log_probs is None:
        raise DataError(f"a {model.model_type} model cannot be evaluated from pair counts")
    return {part: Evaluation(pair_nll(log_probs, counts.part(part)), counts.n_words[part],
                             int(counts.part(part).sum())).to_dict() for part in PARTS}


def ngram_count_metrics(model: Any, counts: NGramFileCounts) -> dict[str, dict[str, Any]]:
    """NLL per character and perplexity of each part of a streamed list, from its n-gram counts."""
    metrics = {}
    for part in PARTS:
        part_counts = counts.part(part)
        nll = model.nll_counts(part_counts) if part_counts.n_tokens else None
        metrics[part] = Evaluation(nll, part_counts.n_words, int(part_counts.n_tokens)).to_dict()
    return metrics


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
