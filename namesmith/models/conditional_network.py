"""Conditional neural models: learned label embeddings added to every position's input.

Any neural model of namesmith embeds its input tokens with `wte`; conditioning adds, at every
position, one learned vector per conditioned label for the row's value of that label:

    input(t) = wte(token_t) + Σ_label E_label[value]

the way a conditional language model feeds its condition to every step (as char-rnn conditioned
on a language, or the class embeddings of conditional GANs, Mirza & Osindero 2014). The sum
reaches every model unchanged — the MLP's and WaveNet's windows, the RNN's steps and the
Transformer's positions — through `LabelledEmbedding`, which replaces the model's `wte`.

Each label table has one row per value plus an "unknown" row. In training each label of each
row is replaced by "unknown" with probability `label_dropout` (as classifier-free guidance drops
its condition, Ho & Salimans 2022), so the same network also models names with any labels left
out: `given({"sex": "F"})` is the network with sex=F and the other labels unknown, and
`given({})` the unconditional model. Several values of a label multiply the distributions of
each (see namesmith.core.conditional). The vectors start at zero: training starts from the
unconditional network.

Rows carry their labels in their start token (namesmith.core.conditional), so the trainer, the
evaluation and the n-gram mix run a conditional network as any other; `given(where)` returns a
plain `CharModel` (`Conditioned`) with the labels fixed, for sampling and scoring.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from namesmith.core.conditional import Condition, Where, check_guidance
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import BOUNDARY
from namesmith.models import model_class
from namesmith.models.base import CharModel, DelegatingModel, Shapes, Sizes, State, count_numbered, dim, under

DEFAULT_LABEL_DROPOUT = 0.25


class LabelledEmbedding(nn.Module):
    """A token embedding plus the embeddings of the current rows' labels (set by the conditional network)."""

    def __init__(self, tok: nn.Embedding, sizes: list[int]):
        super().__init__()
        self.tok = tok
        self.labels = nn.ModuleList(nn.Embedding(n + 1, tok.embedding_dim) for n in sizes)  # + "unknown"
        for table in self.labels:
            nn.init.zeros_(table.weight)
        self.register_buffer("unknown", torch.tensor([[n for n in sizes]], dtype=torch.long), persistent=False)
        self.condition: torch.Tensor | None = None  # (B or 1, k) label codes of the rows being run

    @property
    def weight(self) -> torch.Tensor:
        return self.tok.weight  # the token table, for models that tie it to their output layer

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Embeddings of tokens idx (B, ...) plus each row's label vectors: (B, ..., C)."""
        codes = self.unknown if self.condition is None else self.condition
        label = sum(table(codes[:, j]) for j, table in enumerate(self.labels))  # (B or 1, C)
        emb = self.tok(idx)
        if not isinstance(label, torch.Tensor):  # no labels
            return emb
        return emb + label.view(label.shape[0], *([1] * (idx.dim() - 1)), -1)


@dataclass(frozen=True)
class ConditionalNetworkConfig:
    model_type: str  # the network's type (mlp, wavenet, rnn, gru, lstm, transformer)
    model: dict[str, Any]  # its config
    condition: dict[str, Any]  # Condition.to_dict(): labels and priors
    label_dropout: float = DEFAULT_LABEL_DROPOUT


class ConditionalNetwork(DelegatingModel):
    """A neural model conditioned on labels through label embeddings (see the module docstring)."""

    model_type: ClassVar[str] = "conditional-network"
    config_class: ClassVar[type] = ConditionalNetworkConfig
    neural: ClassVar[bool] = True
    wrapper: ClassVar[bool] = True  # built by namesmith.training.train around a neural model type, not by --model

    def __init__(self, model: CharModel, condition: Condition, label_dropout: float = DEFAULT_LABEL_DROPOUT):
        if not model.neural or not isinstance(getattr(model, "wte", None), nn.Embedding):
            raise ConfigError(f"a {model.model_type} model cannot take label embeddings", field="model")
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1), got {label_dropout}", field="label_dropout")
        config = ConditionalNetworkConfig(model.model_type, model.config_dict(), condition.to_dict(), label_dropout)
        super().__init__(model.vocab_size, config)
        self.model = model
        self.condition = condition
        self.label_dropout = label_dropout
        model.wte = LabelledEmbedding(model.wte, [len(v) for v in condition.labels.values()])

    def train_defaults(self, config: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.model.train_defaults(config)

    @contextlib.contextmanager
    def conditioned(self, codes: torch.Tensor) -> Iterator[None]:
        """Run the network on rows with these label codes ((B, k), or (1, k) for every row)."""
        embedding = self.model.wte
        embedding.condition = codes.to(self.device)
        try:
            yield
        finally:
            embedding.condition = None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        codes = self.condition.codes_of(idx[:, 0], self.vocab_size)
        if self.training and self.label_dropout > 0:
            dropped = torch.rand(codes.shape, device=codes.device) < self.label_dropout
            codes = torch.where(dropped, self.model.wte.unknown.to(codes.device), codes)
        idx = torch.cat([torch.full_like(idx[:, :1], BOUNDARY), idx[:, 1:]], 1)
        with self.conditioned(codes):
            return self.model(idx)

    def given(self, where: Where | None = None, guidance: float = 0.0) -> CharModel:
        """The network with the labels of `where` fixed (the others unknown): a plain model; with `guidance`,
        guided by the network with every label unknown (namesmith.core.conditional)."""
        return Conditioned(self, self.condition.where_codes(where), check_guidance(guidance))

    # sampling the conditional network itself samples the unconditional one (every label unknown)
    def init_state(self, batch_size: int) -> State:
        return self.model.init_state(batch_size)

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self.model.step(state, token)

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return self.model.select_state(state, rows)

    # --- saving --------------------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"model_type": self.model.model_type, "model": self.model.config_dict(),
                "condition": self.condition.to_dict(), "label_dropout": self.label_dropout}

    @classmethod
    def declared_sizes(cls, vocab_size: int, config: dict[str, Any], shapes: Shapes) -> Sizes:
        """The network's own sizes (its token table is model.wte.tok), then one label table per label, with a row
        per value and one for "unknown"."""
        labels = Condition.from_dict(config["condition"]).labels
        network = {("wte.weight" if name == "wte.tok.weight" else name): shape
                   for name, shape in under(shapes, "model.").items() if not name.startswith("wte.labels.")}
        yield from model_class(config["model_type"]).declared_sizes(vocab_size, config["model"], network)
        yield "labels", len(labels), count_numbered(shapes, "model.wte.labels.", ".weight")
        for j, (label, values) in enumerate(labels.items()):
            yield f"values of {label} (and unknown)", len(values) + 1, dim(shapes, f"model.wte.labels.{j}.weight", 0)

    @classmethod
    def from_config_dict(cls, vocab_size: int, config: dict[str, Any]) -> ConditionalNetwork:
        try:
            inner = model_class(config["model_type"])
            condition = Condition.from_dict(config["condition"])
            label_dropout = float(config.get("label_dropout", DEFAULT_LABEL_DROPOUT))
            if inner.wrapper or not inner.neural:
                raise ValueError(f"{config['model_type']} is not a neural model type")
            model = inner.from_config_dict(vocab_size, config["model"])
        except (TypeError, KeyError, ValueError, ConfigError) as e:
            raise CheckpointError(f"malformed conditional-network model config: {e}") from None
        return cls(model, condition, label_dropout)


class Conditioned(DelegatingModel):
    """A conditional network with its labels fixed: forward and step as any plain model.

    With several code combinations (several values of a label) the next-token distribution is
    the renormalised product of the network's distributions under each; with `guidance` g it is
    then raised to 1 + g and divided by the network's distribution with every label unknown to g.
    """

    model_type: ClassVar[str] = "conditioned-network"
    config_class: ClassVar[type] = dict

    def __init__(self, network: ConditionalNetwork, combinations: list[tuple[int, ...]], guidance: float = 0.0):
        super().__init__(network.vocab_size, {})
        self.network = network
        self.training = network.training  # the network's mode (train(mode) would set the network's too)
        self.guidance = guidance
        self.codes = [torch.tensor([c], dtype=torch.long) for c in combinations]  # each (1, k)
        if guidance:  # the last pass: every label unknown
            self.codes.append(torch.tensor([network.condition.unknown()], dtype=torch.long))

    @property
    def inner(self) -> CharModel:
        return self.network

    def config_dict(self) -> dict[str, Any]:
        return {"where_codes": [c.tolist()[0] for c in self.codes], "guidance": self.guidance}

    def _combine(self, logits: list[torch.Tensor]) -> torch.Tensor:
        if self.guidance:
            *logits, unconditional = logits
        combined = logits[0] if len(logits) == 1 else sum(F.log_softmax(lg.float(), -1) for lg in logits)
        if self.guidance:
            g = self.guidance
            combined = (1 + g) * F.log_softmax(combined.float(), -1) - g * F.log_softmax(unconditional.float(), -1)
        return combined if len(logits) == 1 and not self.guidance else F.log_softmax(combined, -1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        outputs = []
        for codes in self.codes:
            with self.network.conditioned(codes):
                outputs.append(self.network.model(idx))
        return self._combine(outputs)

    def init_state(self, batch_size: int) -> State:
        return [self.network.model.init_state(batch_size) for _ in self.codes]

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        logits, states = [], []
        for codes, inner in zip(self.codes, state):
            with self.network.conditioned(codes):
                out, new = self.network.model.step(inner, token)
            logits.append(out)
            states.append(new)
        return self._combine(logits), states

    def select_state(self, state: State, rows: torch.Tensor) -> State:
        return [self.network.model.select_state(inner, rows) for inner in state]
