"""Held-out evaluation: mean negative log-likelihood per character, and per-name scores.

The figure is the one the lecture series quotes: the mean over every target token of every
word, the end-of-name token included, in nats. Perplexity is its exponential.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from namesmith.data import encode_words
from namesmith.models.base import CharModel
from namesmith.vocab import Vocab

EVAL_BATCH = 4096  # words per forward pass


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


@torch.inference_mode()
def token_log_probs(model: CharModel, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log P(y[b, t] | x[b, :t+1]) for every position; 0 where y is padding. Shape (B, T)."""
    logits = model(x.to(model.device)).float()  # (B, T, V)
    target = y.to(model.device)
    logp = F.log_softmax(logits, dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(target >= 0, logp, torch.zeros_like(logp)).cpu()


def word_log_probs(model: CharModel, words: list[str], vocab: Vocab) -> torch.Tensor:
    """Total log-probability of each whole word (end token included). Shape (len(words),)."""
    was_training = model.training
    model.eval()
    totals = []
    for i in range(0, len(words), EVAL_BATCH):
        x, y = encode_words(words[i : i + EVAL_BATCH], vocab)
        totals.append(token_log_probs(model, x, y).double().sum(1))
    model.train(was_training)
    return torch.cat(totals) if totals else torch.zeros(0, dtype=torch.float64)


def evaluate(model: CharModel, words: list[str], vocab: Vocab) -> Evaluation:
    """Mean NLL per character of `words` under `model`."""
    n_chars = sum(len(w) + 1 for w in words)
    if not words:
        return Evaluation(None, 0, 0)
    total = word_log_probs(model, words, vocab).sum().item()
    return Evaluation(-total / n_chars, len(words), n_chars)


def pair_nll(log_probs: np.ndarray, pair_counts: np.ndarray) -> float | None:
    """Mean NLL per character of a bigram table from pair counts: -Σ N ∘ log P / Σ N.

    The counts are the sufficient statistics of a first-order model, so this equals `evaluate`
    on the words they were counted from, in O(V²). None when there are no pairs.
    """
    n = pair_counts.sum()
    if not n:
        return None
    used = pair_counts > 0  # 0 × log 0 would be nan
    return float(-(pair_counts[used] * log_probs[used]).sum() / n)
