"""The plain models a conditional count model hands out, and the rows its components give.

`ConditionalCounts.given(where)` (namesmith.models.conditional_counts) is a plain model of one label
combination: an `NGram` with mixed rows, a `BigramTableModel` (a fixed bigram table), or, for a large
vocabulary, a `ConditionedNGram` that mixes the components' rows of the contexts it is asked about, when
asked (below). The helpers below read a component's rows after full
contexts, the way every one of these models and the mixture's fitting read them.

Large vocabularies. A table of names in many scripts (`world`: 1,004 characters, 150,000 contexts)
would need 600 MB for one dense (contexts, V) table, and one per label combination asked for: the
built-in `world` set once took 11 GB and 20 minutes to train. So where the pooled model's table would
pass DENSE_CELLS, every component is the same Kneser-Ney model held sparsely (a back-off weight per
context and an α per n-gram seen: namesmith.models.sparse_ngram), and `given(where)` is a
`ConditionedNGram` that mixes the rows of the contexts it is asked about, when asked. Scoring and
evaluation (`forward`) always mix only the rows of the contexts at hand, whatever the size. The
conditioned models of a large vocabulary are then no finite Markov chain that exact constraints could
use: generation samples and filters instead (namesmith.generation.generate).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from namesmith.core.vocab import BOUNDARY
from namesmith.models.base import CharModel, State, boundary_context, context_windows
from namesmith.models.bigram import BigramTable
from namesmith.models.ngram import NGram
from namesmith.models.sparse_ngram import SparseNGram


class BigramTableModel(BigramTable):
    """A fixed (V, V) table of log P(next | previous): a conditioned bigram (never saved by itself)."""

    model_type: ClassVar[str] = "bigram-table"
    config_class: ClassVar[type] = dict
    table_name: ClassVar[str] = "table"
    counts_only: ClassVar[bool] = True

    def __init__(self, log_probs: torch.Tensor):
        super().__init__(log_probs.shape[0], {})
        self.register_buffer("table", log_probs.float())

    def log_probs(self) -> torch.Tensor:
        return self.table

    def config_dict(self) -> dict[str, Any]:
        return {}


class ConditionedNGram(CharModel):
    """P(name | labels) of a conditional n-gram over a large vocabulary (`ConditionalCounts.sparse`): its
    rows are mixed from the components' when asked for, as a dense conditioned model holds them all.
    Its state is the last order-1 tokens. Never saved by itself (its conditional model is)."""

    model_type: ClassVar[str] = "conditioned-ngram"
    config_class: ClassVar[type] = dict
    counts_only: ClassVar[bool] = True

    def __init__(self, conditional: CharModel, combinations: list[tuple[int, ...]], guidance: float):
        super().__init__(conditional.vocab_size, {})
        # a ConditionalCounts (whose module imports this one), in a list: not a submodule, not part of this model
        self._conditional = [conditional]
        self.combinations, self.guidance = list(combinations), guidance

    @property
    def context_size(self) -> int:
        return self._conditional[0].context_size

    @property
    def device(self) -> torch.device:
        return self._conditional[0].device

    def config_dict(self) -> dict[str, Any]:
        return {}

    def next_log_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """(N, V) log P(next | the full contexts (N, K), the labels)."""
        return self._conditional[0].mixed_after(self.combinations, self.guidance, contexts)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        contexts = context_windows(idx, self.context_size)  # (B, T, K)
        return self.next_log_probs(contexts.reshape(-1, contexts.size(-1))).view(*idx.shape, self.vocab_size)

    def init_state(self, batch_size: int) -> State:
        return boundary_context(batch_size, self.context_size, self.device)  # (B, K): the last K tokens

    def step(self, state: State, token: torch.Tensor) -> tuple[torch.Tensor, State]:
        window = torch.cat([state[:, 1:], token.view(-1, 1)], 1) if self.context_size else state
        return self.next_log_probs(window), window


def model_bytes(model: CharModel) -> int:
    """The memory a component holds: its tensors, and a sparse one's (V + 1, V) table of the α's after
    the shortest contexts, built when first used (namesmith.models.sparse_ngram)."""
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if isinstance(model, SparseNGram):
        size += len(model.components) * (model.vocab_size + 1) * model.vocab_size * 4
    return size


def live_context_windows(idx: torch.Tensor, K: int) -> torch.Tensor:
    """`context_windows`, but a position past the end of a name (a boundary after the first token: the padding
    of a batch of names) reads as the start of a name. Nothing is predicted there, and its rows are then
    built once per batch, not once per padded position (a third of the positions of a batch of names)."""
    windows = context_windows(idx, K)
    ended = idx == BOUNDARY
    ended[:, 0] = False
    return torch.where(ended.unsqueeze(-1), torch.full_like(windows, BOUNDARY), windows)


def log_probs_after(model: CharModel, contexts: torch.Tensor) -> torch.Tensor:
    """(N, V) the next-token log-probabilities (or a bigram's logits) of a component after full contexts
    (N, K), boundary-padded: one row each, not one per position of the context."""
    if isinstance(model, SparseNGram):
        return model.next_token_probs(contexts).log()
    if isinstance(model, NGram):
        return model.next_token_logprobs[model._rows(contexts)]
    return model(contexts)[:, -1]
