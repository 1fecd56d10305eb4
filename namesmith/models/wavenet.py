"""A hierarchical (WaveNet-like) model: neighbours are fused in pairs, level by level
(van den Oord et al. 2016, "WaveNet"; part 5 of the makemore lecture series).

The context of `block_size` = 2^L tokens is embedded; each level concatenates pairs of
neighbouring vectors and applies Linear -> LayerNorm -> tanh, halving their number, until one
vector remains after L levels; a linear head gives the logits. The lecture's
FlattenConsecutive(2) tree for one context is the same computation as a stack of causal
convolutions of kernel 2 and dilations 1, 2, 4, ..., which is how `forward` runs it on a whole
sequence: a pair fused at level l is shared by every position whose tree contains it, so each
level costs one Linear per position instead of 2^(L-l).

LayerNorm rather than the lecture's BatchNorm: it normalises each vector on its own, so training
and evaluation compute the same function and padded positions never leak into the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from namesmith.core.vocab import BOUNDARY
from namesmith.models.base import NEURAL_TRAIN_DEFAULTS, Shapes, Sizes, WindowModel, check_config, count_numbered, dim


@dataclass(frozen=True)
class WaveNetConfig:
    block_size: int = 8  # tokens of context: a power of 2; log2(block_size) levels of fusion
    n_embd: int = 32  # embedding size per token
    n_hidden: int = 192  # width of every level
    dropout: float = 0.0  # after each level (training only)

    def __post_init__(self) -> None:
        for name in ("block_size", "n_embd", "n_hidden"):
            value = getattr(self, name)
            check_config(isinstance(value, int) and value >= 1,
                         f"{name} must be a positive integer, got {value!r}")
        check_config(self.block_size >= 2 and self.block_size & (self.block_size - 1) == 0,
                     f"block_size must be a power of 2 (at least 2) for wavenet, got {self.block_size}")
        check_config(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class FusePairs(nn.Module):
    """One level: h[t] = tanh(LayerNorm(W [x[t - dilation], x[t]])), shortening T by `dilation`."""

    def __init__(self, n_in: int, n_out: int, dilation: int, dropout: float):
        super().__init__()
        self.dilation = dilation
        self.linear = nn.Linear(2 * n_in, n_out, bias=False)  # LayerNorm's bias follows
        self.norm = nn.LayerNorm(n_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation
        pairs = torch.cat([x[:, :-d], x[:, d:]], dim=-1)  # (B, T - d, 2 * n_in)
        return self.dropout(torch.tanh(self.norm(self.linear(pairs))))


class WaveNet(WindowModel):
    """Embeddings -> log2(block_size) levels of pairwise fusion -> next-token logits."""

    model_type: ClassVar[str] = "wavenet"
    config_class: ClassVar[type] = WaveNetConfig
    neural: ClassVar[bool] = True
    default_train_config: ClassVar[dict[str, Any]] = {
        **NEURAL_TRAIN_DEFAULTS,
        # the cosine anneals over max_steps or the time budget, whichever ends first (see rnn.py)
        "max_steps": 5_000,
        "patience": None,  # no early stopping; the best weights by validation are restored
        "time_budget": 560.0,
    }

    def __init__(self, vocab_size: int, config: WaveNetConfig | None = None):
        config = config or WaveNetConfig()
        super().__init__(vocab_size, config)
        self.wte = nn.Embedding(vocab_size, config.n_embd)
        levels, width, dilation = [], config.n_embd, 1
        while dilation < config.block_size:
            levels.append(FusePairs(width, config.n_hidden, dilation, config.dropout))
            width, dilation = config.n_hidden, dilation * 2
        self.levels = nn.Sequential(*levels)
        self.lm_head = nn.Linear(config.n_hidden, vocab_size)
        with torch.no_grad():
            self.lm_head.weight.mul_(0.1)
            self.lm_head.bias.zero_()

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        c = WaveNetConfig(**config)
        yield "vocabulary size", vocab_size, dim(shapes, "wte.weight", 0)
        yield "n_embd", c.n_embd, dim(shapes, "wte.weight", 1)
        yield "block_size", c.block_size, 2 ** count_numbered(shapes, "levels.", ".linear.weight")  # a level a doubling
        yield "n_hidden", c.n_hidden, dim(shapes, "levels.0.linear.weight", 0)
        yield "vocabulary size", vocab_size, dim(shapes, "lm_head.weight", 0)

    def _logits(self, padded: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T + block_size - 1) -> logits (B, T, V) of the last T positions."""
        return self.lm_head(self.levels(self.wte(padded)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self._logits(F.pad(idx, (self.config.block_size - 1, 0), value=BOUNDARY))

    def window_logits(self, window: torch.Tensor) -> torch.Tensor:
        return self._logits(window)[:, -1]
