"""The model sampler draws whole names from a network's own distribution.

The sampler shares one state among the names with the same prefix (a trie, namesmith.generation.sample.
ModelSampler), so a bug could hand a name another prefix's distribution. On a three-letter
alphabet every name of at most four letters can be enumerated with its exact probability from the
network's `forward` (the product of its next-letter probabilities, the end included); sampled
frequencies of every such name (and of "unfinished") are compared by a chi-square test.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sampling_support import chi_square_p

from namesmith.core.vocab import Vocab
from namesmith.generation.sample import ModelSampler
from namesmith.models import model_class

VOCAB = Vocab(("a", "b", "c"))
MAX_LENGTH = 4
NETWORKS = {
    "transformer": {"block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 16},
    "lstm": {"n_embd": 8, "n_hidden": 16, "n_layer": 2},
    "gru": {"n_embd": 8, "n_hidden": 16},
    "mlp": {"block_size": 3, "n_embd": 4, "n_hidden": 16},
}


def network(name: str, scale: float = 0.5):
    torch.manual_seed(3)
    cls = model_class(name)
    model = cls(VOCAB.size, cls.config_class(**NETWORKS[name])).eval()
    with torch.no_grad():  # weights larger than at initialisation: the prefix matters, names end
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return model


def exact_name_probs(model) -> dict[str, float]:
    """P(name) for every name of at most MAX_LENGTH letters, and P("unfinished") for the rest."""
    probs = {}
    with torch.no_grad():
        for length in range(MAX_LENGTH + 1):
            names = ["".join(letters) for letters in itertools.product(VOCAB.chars, repeat=length)]
            idx = torch.tensor([[0, *VOCAB.encode(n)] for n in names]).view(len(names), length + 1)
            logp = F.log_softmax(model(idx).double(), -1)  # (N, length + 1, V)
            targets = torch.cat([idx[:, 1:], torch.zeros(len(names), 1, dtype=torch.long)], 1)  # letters, then end
            total = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(1).exp()
            probs.update(zip(names, total.tolist()))
    probs["unfinished"] = 1.0 - sum(probs.values())
    return probs


def sampled_counts(model, num: int, seed: int, sampler_class: type = ModelSampler) -> Counter:
    batch = sampler_class(model, VOCAB, "", MAX_LENGTH, seed).run(num)
    counts = Counter(batch.names)
    counts["unfinished"] = batch.unfinished
    return counts


@pytest.mark.parametrize("name", list(NETWORKS))
def test_whole_names_follow_the_network(name):
    model = network(name)
    exact = exact_name_probs(model)
    assert 0.01 < exact["unfinished"] < 0.9 and max(exact.values()) < 0.7  # a test with something to detect
    counts = sampled_counts(model, 20_000, seed=7)
    keys = list(exact)
    assert set(counts) <= set(keys)
    assert chi_square_p(np.array([counts[k] for k in keys], dtype=float), np.array([exact[k] for k in keys])) > 1e-3


class MixedUpSampler(ModelSampler):
    """A trie bookkeeping bug: names continue from other names' states."""

    def advance(self, state, slot, token, n_slots):  # noqa: ANN001, ANN201
        state, probs, new_slot, origin, fed = super().advance(state, slot, token, n_slots)
        return state, probs, new_slot.flip(0), origin, fed


@pytest.mark.parametrize("name", ["transformer", "gru", "mlp"])  # (the random LSTM's prefixes matter less)
def test_a_name_given_another_prefix_state_is_detected(name):
    model = network(name)
    exact = exact_name_probs(model)
    counts = sampled_counts(model, 20_000, seed=7, sampler_class=MixedUpSampler)
    keys = list(exact)
    assert chi_square_p(np.array([counts[k] for k in keys], dtype=float), np.array([exact[k] for k in keys])) < 1e-6
