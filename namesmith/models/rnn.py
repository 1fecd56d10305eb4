"""Recurrent models: a vanilla RNN (Elman 1990), a GRU (Cho et al. 2014) and an LSTM
(Hochreiter & Schmidhuber 1997), as in makemore's RNN and GRU models.

Embeddings -> `n_layer` recurrent layers (torch.nn.RNN / GRU / LSTM, batch first) -> a linear
head. The hidden state summarises the whole prefix, so sampling carries it from step to step:
`step` feeds one token and never re-reads the prefix. States are (n_layer, B, n_hidden) tensors
(a pair of them, hidden and cell, for the LSTM); `select_state` indexes their batch dimension 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from namesmith.models.base import NEURAL_TRAIN_DEFAULTS, CharModel, State, check_config


@dataclass(frozen=True)
class RNNConfig:
    n_embd: int = 64  # embedding size per token
    n_hidden: int = 256  # hidden state size of each layer
    n_layer: int = 1  # stacked recurrent layers
    dropout: float = 0.0  # between stacked layers and before the head (training only)

    def __post_init__(self) -> None:
        for name in ("n_embd", "n_hidden", "n_layer"):
            value = getattr(self, name)
            check_config(isinstance(value, int) and value >= 1,
                         f"{name} must be a positive integer, got {value!r}")
        check_config(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class _Recurrent(CharModel):
    """Shared by the three cells; subclasses set `cell` (the torch.nn recurrent module class)."""

    cell: ClassVar[type[nn.Module]]
    config_class: ClassVar[type] = RNNConfig
    neural: ClassVar[bool] = True

    def __init__(self, vocab_size: int, config: RNNConfig | None = None):
        config = config or RNNConfig()
        super().__init__(vocab_size, config)
        self.wte = nn.Embedding(vocab_size, config.n_embd)
        self.rnn = self.cell(config.n_embd, config.n_hidden, num_layers=config.n_layer, batch_first=True,
                             dropout=config.dropout if config.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.n_hidden, vocab_size)
        with torch.no_grad():
            self.lm_head.weight.mul_(0.1)
            self.lm_head.bias.zero_()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.wte(idx))  # (B, T, n_hidden), from the zero state
        return self.lm_head(self.drop(out))  # (B, T, V)

    def init_state(self, batch_size: int) -> State:
        return torch.zeros(self.config.n_layer, batch_size, self.config.n_hidden, device=self.device)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        out, state = self.rnn(self.wte(token.view(-1, 1)), state)  # out (B, 1, n_hidden)
        return self.lm_head(self.drop(out[:, 0])), state

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return state[:, rows]


class RNN(_Recurrent):
    """Vanilla (Elman) RNN with tanh: h_t = tanh(W x_t + U h_{t-1} + b)."""

    model_type: ClassVar[str] = "rnn"
    cell = nn.RNN
    default_train_config: ClassVar[dict[str, Any]] = {
        **NEURAL_TRAIN_DEFAULTS,
        # The cosine anneals over max_steps or the time budget, whichever ends first: ~20 epochs
        # of names.txt take under a minute on an idle 2-core CPU, and the budget binds on a busy
        # one. Early stopping after 4 evaluations (2,000 steps) without a better validation loss:
        # on names.txt the annealed loss improves to the end and it never binds, but a small list
        # overfits within a thousand steps and then only wastes time (the best weights are kept).
        "max_steps": 4_500,
        "patience": 4,
        "time_budget": 270.0,
    }


class GRU(_Recurrent):
    """Gated recurrent unit: update and reset gates decide how much of the state to keep."""

    model_type: ClassVar[str] = "gru"
    cell = nn.GRU
    default_train_config: ClassVar[dict[str, Any]] = {**RNN.default_train_config, "max_steps": 4_000,
                                                      "time_budget": 560.0}


class LSTM(_Recurrent):
    """Long short-term memory: a gated cell state alongside the hidden state."""

    model_type: ClassVar[str] = "lstm"
    cell = nn.LSTM
    default_train_config: ClassVar[dict[str, Any]] = {**GRU.default_train_config, "max_steps": 4_500}

    def __init__(self, vocab_size: int, config: RNNConfig | None = None):
        super().__init__(vocab_size, config)
        # forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015): remember by default.
        # torch orders the gates input, forget, cell, output.
        H = self.config.n_hidden
        with torch.no_grad():
            for name, bias in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    bias[H : 2 * H].fill_(1.0)

    def init_state(self, batch_size: int) -> State:
        h = super().init_state(batch_size)
        return h, torch.zeros_like(h)

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        h, c = state
        return h[:, rows], c[:, rows]
