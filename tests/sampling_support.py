"""What the sampling tests share: Pearson's test of draws against probabilities (by name or by category),
the exact distribution of a model's names by enumeration, and a model whose state is not a small Markov one
(generation, models, calibration and syllables test their samplers with them)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import torch

from namesmith.core.vocab import Vocab
from namesmith.models.base import CharModel
from namesmith.models.nll import word_log_probs


def chi_square_pvalue(observed: Counter, expected: dict[str, float], n: int) -> float:
    """Pearson's test of counts against probabilities; cells expected < 5 are pooled."""
    assert set(observed) <= {k for k, p in expected.items() if p > 0}, "a name outside the support"
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for key, p in expected.items():
        if n * p >= 5:
            cells.append((observed.get(key, 0), n * p))
        else:
            pooled_obs, pooled_exp = pooled_obs + observed.get(key, 0), pooled_exp + n * p
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    dof = len(cells) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def exact_distribution(model, vocab: Vocab, valid, max_len: int, temperature: float = 1.0) -> dict[str, float]:
    """P(name | valid, len ≤ max_len) by enumerating every name, scored by the model's own forward."""
    names = ["".join(t) for n in range(1, max_len + 1) for t in itertools.product(vocab.chars, repeat=n)]
    names = [n for n in names if valid(n)]
    if temperature == 1.0:
        weights = word_log_probs(model, names, vocab).exp()
    else:  # each step's distribution is softmax(log p / T): score the names by hand
        logp = model.transition_probs().double().log() / temperature
        step = torch.softmax(logp, 1)
        weights = torch.tensor([float(torch.prod(torch.stack(
            [step[a, b] for a, b in itertools.pairwise([0, *vocab.encode(n), 0])]))) for n in names])
    total = float(weights.sum())
    return {n: float(w) / total for n, w in zip(names, weights)}


class PositionModel(CharModel):
    """Not Markov: the logits depend on the position and on how many 'a's came before."""

    model_type = "test-position"
    config_class = dict

    def __init__(self, vocab_size: int = 4):
        super().__init__(vocab_size, {})
        self.register_buffer("base", torch.tensor([-1.0, 0.5, 0.0, -0.5])[:vocab_size])

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        B, T = idx.shape
        position = torch.arange(T, dtype=torch.float32).view(1, T, 1)
        a_count = (idx == 1).cumsum(1).float().unsqueeze(-1)
        logits = self.base.expand(B, T, -1).clone()
        logits[..., 0] += 0.8 * position.squeeze(-1) - 2.0
        logits[..., 1:] += 0.7 * a_count * torch.tensor([-1.0, 1.0, 0.5])
        return logits


def chi_square_p(observed: np.ndarray, expected_probs: np.ndarray, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square test; categories with small expectation are pooled."""
    expected = expected_probs * observed.sum()
    small = expected < min_expected
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    keep = expected > 0
    assert observed[~keep].sum() == 0, "drew something of probability 0"
    stat = float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum())
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))


def two_sample_p(a: Counter, b: Counter, min_count: int = 10) -> float:
    """p-value of the chi-square test that two equal-sized samples come from one distribution."""
    keys = sorted(set(a) | set(b))
    x, y = np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
    small = x + y < min_count
    x, y = np.append(x[~small], x[small].sum()), np.append(y[~small], y[small].sum())
    keep = x + y > 0
    stat = float(((x[keep] - y[keep]) ** 2 / (x[keep] + y[keep])).sum())
    df = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(stat / 2, dtype=torch.float64)))
