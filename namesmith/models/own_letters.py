"""A model that draws only some of its characters: an adapted model's list's own letters.

namesmith.adaptation.adapt adapts a short list onto a prior of many names; the prior knows letters the list never
uses (`é`, `ø`, ...), and its names should not hold them unless asked for (`prior_letters`). `OwnLetters` wraps
the adapted model: the other tokens' logits are -inf, so the rest share their probability in proportion.
Sampling only: scoring keeps the open vocabulary. Its plain names are drawn as the model it holds allows: from
its finite chain where that is small enough, else from a sparse n-gram's rows assembled in NumPy
(namesmith.models.sparse_rows), the same rule that a model directory's saved entry follows
(namesmith.generation.saved_tables).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from namesmith.core.vocab import Vocab
from namesmith.models.base import CharModel, DelegatingModel
from namesmith.models.sparse_rows import SparseRows, own_letters


class OwnLetters(DelegatingModel):
    """A model that draws only some characters (an adapted model's list's own, `alphabet`) and the end:
    the other tokens' logits are -inf, so the rest share their probability in proportion. Sampling
    only: the background still shapes which of the list's letters follow which, and scoring keeps the
    open vocabulary (a name with other letters is scored by the model itself). A Markov chain stays
    one, so exact constraints work as before."""

    model_type: ClassVar[str] = "own-letters"
    config_class: ClassVar[type] = dict

    def __init__(self, model: CharModel, allowed: torch.Tensor):
        super().__init__(model.vocab_size, {})
        self.model = model
        self.neural = model.neural
        self.training = model.training
        self.register_buffer("blocked", ~allowed.to(torch.bool))

    @classmethod
    def of(cls, model: CharModel, vocab: Vocab, alphabet: str) -> OwnLetters:
        """`model` (vocabulary `vocab`) drawing only the characters of `alphabet`."""
        return cls(model, torch.from_numpy(own_letters(vocab, alphabet)).to(model.device))

    def sampling_rows(self) -> SparseRows | None:
        """A sparse n-gram's rows restricted to these letters, in NumPy (namesmith.models.sparse_rows): how an adapted
        model's names are drawn where its chain is too large, in memory as from its directory (no torch there)."""
        numpy_rows = getattr(self.model, "numpy_rows", None)
        return None if numpy_rows is None else numpy_rows(~self.blocked.cpu().numpy())

    def _only(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits.float().masked_fill(self.blocked, -math.inf), -1)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self._only(self.model(idx))

    def init_state(self, batch_size: int) -> Any:
        return self.model.init_state(batch_size)

    def step(self, state: Any, token: torch.Tensor) -> tuple[torch.Tensor, Any]:
        logits, state = self.model.step(state, token)
        return self._only(logits), state

    def select_state(self, state: Any, rows: torch.Tensor) -> Any:
        return self.model.select_state(state, rows)

    def markov_chain(self) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        chain = self.model.markov_chain()
        if chain is None:
            return None
        log_probs, next_state, start = chain
        return self._only(log_probs.to(self.blocked.device)), next_state, start
