"""Recurrent models: a vanilla RNN (Elman 1990), a GRU (Cho et al. 2014) and an LSTM
(Hochreiter & Schmidhuber 1997), as in makemore's RNN and GRU models.

Embeddings -> `n_layer` recurrent layers (torch.nn.RNN / GRU / LSTM, batch first) -> a linear
head. The hidden state summarises the whole prefix, so sampling carries it from step to step:
`step` feeds one token and never re-reads the prefix. States are (n_layer, B, n_hidden) tensors
(a pair of them, hidden and cell, for the LSTM).

`step` (sampling, in eval mode) computes the cells by hand instead of calling the torch.nn
module: torch's one-step CPU path (oneDNN) builds a new primitive for every new batch size,
and a sampler's batch shrinks at every step. The first layer's input projection depends on the
token only, so it is one (V, gates) table, computed once per step and gathered. The hidden-side
product U h depends on the previous state only, so siblings (names with the same prefix that
draw different characters, namesmith.generation.sample) share it: `select_state` only notes which rows to
take (`Selected`), and `step` multiplies each distinct parent state once (on names.txt about 1.8
products per name instead of 2.7). The rest runs in blocks of `STEP_ROWS` rows per thread, so that the
(rows, gates) activations stay in the CPU's cache between the matrix product and the gate
nonlinearities. Same arithmetic, same results (to float rounding: tests/models/test_neural_models.py
compares step with forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from namesmith.models.base import (
    NEURAL_TRAIN_DEFAULTS,
    CharModel,
    Shapes,
    Sizes,
    State,
    check_config,
    count_numbered,
    dim,
)

# rows per block of a CPU sampling step and thread: (256, 4 x 256) float32 gates fit in a 1 MiB L2 cache
STEP_ROWS = 256


class Selected(NamedTuple):
    """Some rows of a state (`select_state`), not copied yet: `step` reads each distinct row once."""

    state: State
    rows: torch.Tensor  # (B,) sorted


def tanh(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """tanh as 2 sigmoid(2x) - 1 (into `out`, which may be x): the same function to float rounding,
    and torch's CPU sigmoid is several times faster than its tanh."""
    return torch.mul(x, 2, out=out).sigmoid_().mul_(2).sub_(1)


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
    fold_hidden_bias: ClassVar[bool] = True  # b_hh only ever adds to the input gates (not the GRU's)

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

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        c = RNNConfig(**config)
        yield "vocabulary size", vocab_size, dim(shapes, "wte.weight", 0)
        yield "n_embd", c.n_embd, dim(shapes, "wte.weight", 1)
        yield "n_layer", c.n_layer, count_numbered(shapes, "rnn.weight_hh_l")
        yield "n_hidden", c.n_hidden, dim(shapes, "rnn.weight_hh_l0", 1)
        yield "vocabulary size", vocab_size, dim(shapes, "lm_head.weight", 0)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.wte(idx))  # (B, T, n_hidden), from the zero state
        return self.lm_head(self.drop(out))  # (B, T, V)

    def init_state(self, batch_size: int) -> State:
        return torch.zeros(self.config.n_layer, batch_size, self.config.n_hidden, device=self.device)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        state, rows = state if isinstance(state, Selected) else (state, None)
        if self.training or torch.is_grad_enabled():  # dropout, or gradients wanted: the module's own path
            state = state if rows is None else self._take(state, rows)
            out, state = self.rnn(self.wte(token.view(-1, 1)), state)  # out (B, 1, n_hidden)
            return self.lm_head(self.drop(out[:, 0])), state
        token = token.view(-1)
        B = len(token)
        rows = torch.arange(B, device=token.device) if rows is None else rows
        parents, parent_of = torch.unique_consecutive(rows, return_inverse=True)  # rows are sorted (select_state)
        layers = [self._layer_weights(layer) for layer in range(self.config.n_layer)]
        if self.fold_hidden_bias:  # b_ih + b_hh once, into the input side
            layers = [(w_ih, w_hh, b_ih + b_hh, None) for w_ih, w_hh, b_ih, b_hh in layers]
        w_ih, w_hh, b_ih, b_hh = layers[0]
        # first layer: x W_ih^T + b_ih for every token at once (V, gates), gathered block by block
        # (wte of every token rather than its weight: a conditional network adds its labels there)
        input_table = torch.addmm(b_ih, self.wte(torch.arange(self.vocab_size, device=token.device)), w_ih.t())
        states = state if isinstance(state, tuple) else (state,)
        new_states = tuple(s.new_empty(s.shape[0], B, s.shape[2]) for s in states)
        logits = torch.empty(B, self.vocab_size, device=token.device)
        size = STEP_ROWS * torch.get_num_threads() if token.device.type == "cpu" else B
        starts = range(0, B, size)
        # the parents of rows start..end are parents[first:last] (rows are sorted)
        firsts = parent_of[list(starts)].tolist()
        lasts = (parent_of[[min(start + size, B) - 1 for start in starts]] + 1).tolist()
        for start, first, last in zip(starts, firsts, lasts):
            block = slice(start, start + size)
            own = parents[first:last]
            parent = parent_of[block] - first  # each row's parent among `own`
            x = None
            for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
                gates_x = input_table.index_select(0, token[block]) if layer == 0 else torch.addmm(b_ih, x, w_ih.t())
                x = self._cell(gates_x, w_hh, b_hh, [s[layer].index_select(0, own) for s in states], parent,
                               [s[layer, block] for s in new_states])
            torch.addmm(self.lm_head.bias, x, self.lm_head.weight.t(), out=logits[block])
        return logits, new_states if isinstance(state, tuple) else new_states[0]

    def _layer_weights(self, layer: int) -> tuple[torch.Tensor, ...]:
        return tuple(getattr(self.rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def _cell(self, gates_x: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, old: list[torch.Tensor],
              parent: torch.Tensor, new: list[torch.Tensor]) -> torch.Tensor:
        """One layer on one block of rows: input gates (b, gates), the parents' states `old` (p, n_hidden)
        and each row's parent (b,) → `new` (written); returns the layer's output (b, n_hidden). The
        hidden-side product runs once per parent. b_hh is None when `fold_hidden_bias` put it in gates_x."""
        raise NotImplementedError

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        if isinstance(state, Selected):
            state, rows = state.state, state.rows[rows]
        if len(rows) > 1 and not bool((rows[1:] >= rows[:-1]).all()):
            return self._take(state, rows)  # rows out of order: copied now (`step` wants them sorted)
        return Selected(state, rows)

    @staticmethod
    def _take(state: State, rows: torch.Tensor) -> State:
        return tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]


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

    def _cell(self, gates_x: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, old: list[torch.Tensor],
              parent: torch.Tensor, new: list[torch.Tensor]) -> torch.Tensor:
        (h,), (h_new,) = old, new
        torch.add(gates_x, (h @ w_hh.t()).index_select(0, parent), out=h_new)  # W x + b + U h + b'
        return tanh(h_new, out=h_new)


class GRU(_Recurrent):
    """Gated recurrent unit: update and reset gates decide how much of the state to keep."""

    model_type: ClassVar[str] = "gru"
    cell = nn.GRU
    fold_hidden_bias: ClassVar[bool] = False  # r multiplies U_n h + b'_n
    default_train_config: ClassVar[dict[str, Any]] = {**RNN.default_train_config, "max_steps": 4_000,
                                                      "time_budget": 560.0}

    def _cell(self, gates_x: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, old: list[torch.Tensor],
              parent: torch.Tensor, new: list[torch.Tensor]) -> torch.Tensor:
        # torch's gate order: reset r, update z, new n; n = tanh(W_n x + b_n + r * (U_n h + b'_n))
        (h,), (h_new,) = old, new
        H = h.size(1)
        gates_h = torch.addmm(b_hh, h, w_hh.t()).index_select(0, parent)
        rz = torch.sigmoid(gates_x[:, : 2 * H] + gates_h[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = torch.addcmul(gates_x[:, 2 * H :], r, gates_h[:, 2 * H :])
        tanh(n, out=n)
        torch.addcmul(n, z, h.index_select(0, parent) - n, out=h_new)  # (1 - z) n + z h
        return h_new


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

    def _cell(self, gates_x: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, old: list[torch.Tensor],
              parent: torch.Tensor, new: list[torch.Tensor]) -> torch.Tensor:
        # gates in torch's order: input i, forget f, cell g, output o; c' = f c + i g, h' = o tanh(c')
        (h, c), (h_new, c_new) = old, new
        H = h.size(1)
        gates = (h @ w_hh.t()).index_select(0, parent).add_(gates_x)
        gates[:, 2 * H : 3 * H].mul_(2)  # one sigmoid for all four gates: tanh(x) = 2σ(2x) - 1
        i, f, g, o = gates.sigmoid_().chunk(4, 1)
        g.mul_(2).sub_(1)
        torch.addcmul(f * c.index_select(0, parent), i, g, out=c_new)
        return tanh(c_new, out=h_new).mul_(o)

