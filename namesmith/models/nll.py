"""The one NLL path: how a model's log-probabilities of its targets are computed, for training and for evaluation.

Every figure namesmith reports or optimises is built here from one primitive, `target_log_probs`
(log P of each target token, 0 at padding): the training loss (`batch_loss`, cross-entropy over the
real target tokens), the validation loss and held-out evaluation (`nll_sum`, `mean_nll`: the mean
over every target token of every word, the end-of-name token included, in nats, as the makemore
lecture quotes it), per-word and per-row log-probabilities (`word_log_probs`, `row_log_probs`:
scores, classification, calibration), NLL per character from them (`nll_per_char`, `mean_nll_per_char`)
and the log-probabilities that the combining weights of several
models are fitted on (`position_log_probs`). Words that are held only as counts of what they are made of
(a first-order model's pair counts, an n-gram's counts of a streamed list) are scored from those counts
(`counted_nll`, and `counted_grams_nll` for n-gram counts): the same mean over target tokens.

A model is run over many words by `chunked_log_probs` alone, in chunks of `EVAL_BATCH` words, each
cropped to its longest word, so memory stays bounded whatever the list. Where a model is calibrated
(namesmith.generation.calibration), `calibrated` is the one place where the whole-word tilt enters a
likelihood. It lives beside the models (below scoring, training and adaptation) because models fit
their own weights on it: the n-gram mix, the ensemble and the conditional count models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from namesmith.core.progress import Phase
from namesmith.core.vocab import Vocab
from namesmith.data.ngram_keys import NGramCounts, gram_tokens
from namesmith.data.words import encode_words
from namesmith.models.base import CharModel

EVAL_BATCH = 4096  # words per forward pass...
# ...or fewer: a chunk's (B, T, V) log-probabilities stay within 16 MB (large vocabularies). A chunk's rows, their
# logarithm and log-softmax are held at once: at 64 MB a chunk, scoring in a 1,187-character vocabulary took 0.3 GB.
EVAL_CELLS = 1 << 22


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
def chunked_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor, chunk: int = EVAL_BATCH,
                      phase: Phase | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(log-probabilities (B, T, V) float32, targets (B, T)) for each chunk of `encode_words` rows.

    Each chunk is cropped to its longest word; targets are -1 at padding. Call it under `eval_mode`.
    Its progress is logged by `phase` (one of a longer list's), else by its own.
    """
    lengths = (y >= 0).sum(1)
    longest = int(lengths.max()) if len(lengths) else 1
    chunk = max(1, min(chunk, EVAL_CELLS // (max(longest, 1) * model.vocab_size)))
    phase = phase or Phase("scoring", x.shape[0], "names")
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
    phase = Phase("scoring", len(words), "names")  # one for the whole list, not one per chunk
    with eval_mode(model):
        for i in range(0, len(words), EVAL_BATCH):  # encode chunk by chunk: memory stays bounded
            x, y = encode_words(words[i : i + EVAL_BATCH], vocab)
            for log_probs, targets in chunked_log_probs(model, x, y, phase=phase):
                totals.append(target_log_probs(log_probs, targets).double().sum(1).cpu())
    total = torch.cat(totals) if totals else torch.zeros(0, dtype=torch.float64)
    return calibrated(model, total, words, vocab)


def calibrated(model: CharModel, log_probs: torch.Tensor, words: Sequence[str], vocab: Vocab) -> torch.Tensor:
    """Whole words' log-probabilities (float64) under the calibrated model: each plus λ·f(word) - log Z
    (namesmith.generation.calibration), the one place where calibration enters a likelihood; unchanged otherwise."""
    if model.calibration is None:
        return log_probs
    return log_probs + model.calibration.word_log_weights(words, vocab)


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


def batch_loss(logits: torch.Tensor, targets: torch.Tensor, tokens_per_batch: float | None = None) -> torch.Tensor:
    """NLL of targets (B, T) (-1: padding) under logits (B, T, V), with gradients (the training loss): the mean
    per target token, or with `tokens_per_batch` the sum over that number (by-length batches; see
    namesmith.training.trainer)."""
    if tokens_per_batch is None:
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
    total = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1, reduction="sum")
    return total / tokens_per_batch



def target_counts(words: Sequence[str]) -> np.ndarray:
    """Target tokens of each word, (len(words),) float64: its characters and its end token."""
    return np.fromiter(map(len, words), dtype=np.float64, count=len(words)) + 1


def nll_per_char(log_probs: torch.Tensor | np.ndarray, words: Sequence[str]) -> np.ndarray:
    """Each word's NLL per character (end token included) from its total log-probability: the figure scores
    rank by and percentiles compare."""
    return -np.asarray(log_probs, dtype=np.float64) / target_counts(words)


def mean_nll_per_char(log_probs: torch.Tensor | np.ndarray, words: Sequence[str]) -> float | None:
    """The NLL per character of a word list from its words' total log-probabilities: -Σ log P(word) over
    Σ (len(word) + 1), the mean over every target token (as `mean_nll`); None for no words."""
    if not len(words):
        return None
    total = float(log_probs.sum()) if isinstance(log_probs, torch.Tensor) else float(np.sum(log_probs))
    return -total / sum(len(word) + 1 for word in words)


def counted_nll(scored: Iterable[tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]]) -> float | None:
    """The mean NLL per target token of words given by the counts of what they are made of (pairs, n-grams),
    each distinct one scored once: -Σ count · log P / Σ count, from (log P, count) tensors or arrays of one
    shape, a chunk at a time. Such counts are the sufficient statistics of a model that looks no further back
    than they do, so this equals `mean_nll` on the words they were counted from. None when nothing was counted."""
    total, n = 0.0, 0.0
    for log_probs, counts in scored:
        used = counts > 0  # 0 × log 0 would be nan
        total -= float((counts[used] * log_probs[used]).sum())
        n += float(counts.sum())
    return total / n if n else None


def counted_grams_nll(counts: NGramCounts, base: int, context_size: int,
                      gram_log_probs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], chunk: int,
                      device: torch.device | str = "cpu") -> float:
    """`counted_nll` of the words some `NGramCounts` counted (a streamed part of a list of any size), under an
    n-gram model whose `gram_log_probs(contexts (M, K), targets (M,))` gives log P of each target after its
    context (float64, on the CPU): each distinct n-gram scored once, `chunk` at a time on `device`. nan when
    nothing was counted."""
    if not len(counts.keys):
        return float("nan")
    phase = Phase(f"scoring {len(counts.keys):,} distinct n-grams", len(counts.keys), "n-grams")

    def scored() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(counts.keys), chunk):
            keys = counts.keys[start : start + chunk].to(device)
            yield gram_log_probs(*gram_tokens(keys, base, context_size)), counts.counts[start : start + chunk]
            phase.advance(len(keys))

    return counted_nll(scored())
