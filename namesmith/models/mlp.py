"""The multilayer perceptron language model of Bengio et al. 2003 ("A Neural Probabilistic
Language Model"), as in part 2 of the makemore lecture series.

The previous `block_size` tokens (left-padded with the boundary token) are embedded, their
embeddings concatenated, passed through `n_layer` hidden layers (Linear + tanh) and a linear
output layer. `forward` builds every position's context at once by unfolding the left-padded
sequence; sampling keeps the last `block_size` tokens as its state.

Initialisation keeps the first loss near log V: the output layer starts small (×0.1, zero bias),
and the hidden layers' default uniform init keeps tanh out of saturation.
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
class MLPConfig:
    block_size: int = 8  # tokens of context
    n_embd: int = 32  # embedding size per token
    n_hidden: int = 512  # width of each hidden layer
    n_layer: int = 1  # hidden layers
    dropout: float = 0.0  # on the hidden activations (training only)

    def __post_init__(self) -> None:
        for name in ("block_size", "n_embd", "n_hidden", "n_layer"):
            value = getattr(self, name)
            check_config(isinstance(value, int) and value >= 1,
                         f"{name} must be a positive integer, got {value!r}")
        check_config(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class MLP(WindowModel):
    """Concatenated context embeddings -> tanh hidden layers -> next-token logits."""

    model_type: ClassVar[str] = "mlp"
    config_class: ClassVar[type] = MLPConfig
    neural: ClassVar[bool] = True
    default_train_config: ClassVar[dict[str, Any]] = {
        **NEURAL_TRAIN_DEFAULTS,
        "max_steps": 10_000,  # ~5 min on an idle 2-core CPU; the time budget binds on a busy one
        "patience": 6,
        "time_budget": 270.0,
    }

    def __init__(self, vocab_size: int, config: MLPConfig | None = None):
        config = config or MLPConfig()
        super().__init__(vocab_size, config)
        self.wte = nn.Embedding(vocab_size, config.n_embd)
        layers: list[nn.Module] = []
        width = config.block_size * config.n_embd
        for _ in range(config.n_layer):
            layers += [nn.Linear(width, config.n_hidden), nn.Tanh(), nn.Dropout(config.dropout)]
            width = config.n_hidden
        self.hidden = nn.Sequential(*layers)
        self.lm_head = nn.Linear(width, vocab_size)
        with torch.no_grad():
            self.lm_head.weight.mul_(0.1)
            self.lm_head.bias.zero_()

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        c = MLPConfig(**config)
        n_embd = dim(shapes, "wte.weight", 1)
        yield "vocabulary size", vocab_size, dim(shapes, "wte.weight", 0)
        yield "n_embd", c.n_embd, n_embd
        yield "n_layer", c.n_layer, count_numbered(shapes, "hidden.", ".weight")
        yield "n_hidden", c.n_hidden, dim(shapes, "hidden.0.weight", 0)
        width = dim(shapes, "hidden.0.weight", 1)  # block_size × n_embd
        yield "block_size", c.block_size, width // n_embd if width and n_embd else None
        yield "vocabulary size", vocab_size, dim(shapes, "lm_head.weight", 0)

    def _logits(self, context: torch.Tensor) -> torch.Tensor:
        """context (..., block_size) token ids -> logits (..., V)."""
        emb = self.wte(context)  # (..., block_size, n_embd)
        return self.lm_head(self.hidden(emb.flatten(-2)))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        padded = F.pad(idx, (self.config.block_size - 1, 0), value=BOUNDARY)
        context = padded.unfold(1, self.config.block_size, 1)  # (B, T, block_size)
        return self._logits(context)  # (B, T, V)

    def window_logits(self, window: torch.Tensor) -> torch.Tensor:
        return self._logits(window)
