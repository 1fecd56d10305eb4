"""Guided sampling (namesmith.generation.guided): every name valid, and names distributed as rejection's.

A small random network on a three-letter alphabet, where rejection sampling is cheap: the
guided sampler's name frequencies (N = 20,000) against rejection sampling's by a two-sample
chi-square test, and against the exact conditional distribution enumerated from the network;
the same test catches the twisted proposal kept without its importance-weight correction.
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sampling_support import chi_square_p, two_sample_p

from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import Corpus
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draws import Batch
from namesmith.generation.generate import generate
from namesmith.generation.guided import Guide, GuidedSampler, find_twist, fit_twist
from namesmith.generation.sample import ModelSampler
from namesmith.models.ensemble import Ensemble
from namesmith.models.ngram import NGram
from namesmith.models.transformer import Transformer, TransformerConfig

VOCAB = Vocab(("a", "b", "c"))
MAX_LEN = 6
N = 20_000
CONSTRAINTS = {"ends_with": "ab", "min_len": 3}


@pytest.fixture(scope="module")
def network() -> Transformer:
    torch.manual_seed(5)
    model = Transformer(VOCAB.size, TransformerConfig(block_size=8, n_layer=2, n_head=2, n_embd=16)).eval()
    with torch.no_grad():  # larger weights than at initialisation: the prefix matters
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return model


@pytest.fixture(scope="module")
def twist(network) -> NGram:
    """A 3-gram of 2,000 of the network's own names: close to it, not equal."""
    names = ModelSampler(network, VOCAB, "", MAX_LEN, seed=0).run(2000).names
    return fit_twist(Corpus.from_words([n for n in names if n], vocab=VOCAB), order=3)


def draw(network, twist, method: str, num: int = N, seed: int = 1, **options):  # noqa: ANN201
    config = GenerateConfig(num=num, seed=seed, max_len=MAX_LEN, method=method, max_tries=10**7,
                            **{**CONSTRAINTS, **options})
    return generate(network, VOCAB, config, max_word_length=MAX_LEN, guide=Guide(network, lambda: twist))


def exact_conditional(network) -> dict[str, float]:
    """π(name) ∝ P_network(name) over the names meeting CONSTRAINTS, enumerated."""
    probs = {}
    with torch.no_grad():
        for length in range(CONSTRAINTS["min_len"], MAX_LEN + 1):
            names = ["".join(c) for c in itertools.product(VOCAB.chars, repeat=length)]
            names = [n for n in names if n.endswith(CONSTRAINTS["ends_with"])]
            idx = torch.tensor([[0, *VOCAB.encode(n)] for n in names])
            logp = F.log_softmax(network(idx).double(), -1)
            targets = torch.cat([idx[:, 1:], torch.zeros(len(names), 1, dtype=torch.long)], 1)
            probs.update(zip(names, logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(1).exp().tolist()))
    total = sum(probs.values())
    return {n: p / total for n, p in probs.items()}


def test_guided_names_follow_the_network_conditioned_on_the_constraints(network, twist):
    guided = draw(network, twist, "guided")
    assert guided.method == "guided" and guided.complete and len(guided.names) == N
    assert all(n.endswith("ab") and 3 <= len(n) <= MAX_LEN for n in guided.names)  # exact, always
    assert 0 < guided.effective_sample_size <= guided.particles and guided.particles >= guided.tries
    rejection = draw(network, twist, "rejection", seed=2)
    assert rejection.method == "rejection" and len(rejection.names) == N
    assert two_sample_p(Counter(guided.names), Counter(rejection.names)) > 1e-3
    exact = exact_conditional(network)
    keys = list(exact)
    counts = Counter(guided.names)
    assert chi_square_p(np.array([counts[k] for k in keys], float), np.array([exact[k] for k in keys])) > 1e-3


class Uncorrected(GuidedSampler):
    """The twisted proposal's draws kept as they are: valid names, the wrong distribution."""

    def _correct(self, tokens, lengths, log_weights):  # noqa: ANN001, ANN202
        batch = super()._correct(tokens, lengths, torch.zeros_like(log_weights))
        return Batch(batch.names, batch.finished, batch.rejected, batch.effective_sample_size)


@pytest.mark.slow  # checks the test above, not the code
def test_the_test_catches_a_proposal_without_the_correction(network, twist, monkeypatch):
    import namesmith.generation.guided as guided

    rejection = draw(network, twist, "rejection", seed=2)
    monkeypatch.setattr(guided, "GuidedSampler", Uncorrected)
    uncorrected = draw(network, twist, "guided")
    assert all(n.endswith("ab") for n in uncorrected.names)
    assert two_sample_p(Counter(uncorrected.names), Counter(rejection.names)) < 1e-6


def test_statistics_and_refusals(network, twist):
    result = draw(network, twist, "guided", num=50)
    stats = result.to_dict()
    assert stats["method"] == "guided" and stats["particles"] >= 50 and stats["effective_sample_size"] > 0
    assert "effective sample size" in result.message()
    assert draw(network, twist, "auto", num=5).method == "guided"  # a network with a guide: guided
    no_guide = generate(network, VOCAB, GenerateConfig(num=5, seed=0, method="auto", max_len=MAX_LEN, **CONSTRAINTS),
                        max_word_length=MAX_LEN)
    assert no_guide.method == "rejection"
    with pytest.raises(ConfigError, match="^method 'guided' needs an n-gram") as error:
        generate(network, VOCAB, GenerateConfig(num=5, method="guided", **CONSTRAINTS), max_word_length=MAX_LEN)
    assert error.value.field == "method"
    with pytest.raises(ConfigError, match="no name satisfies"):  # "cc" and then "ab": 4 letters at least
        generate(network, VOCAB, GenerateConfig(num=5, method="guided", max_len=3, contains=("cc",), **CONSTRAINTS),
                 max_word_length=MAX_LEN, guide=Guide(network, lambda: twist))


def test_auto_guides_only_while_that_keeps_more_names_per_draw(network, twist, monkeypatch):
    """Guided sampling keeps P(valid) / B of its particles (B the largest weight seen), rejection P(valid) of its
    draws: "auto" turns to rejection once B passes 1 / GUIDED_COST, and says so."""
    import namesmith.generation.generate as generate_module

    monkeypatch.setattr(generate_module, "GUIDED_COST", 1e-9)  # guidance always pays
    kept = draw(network, twist, "auto", num=2000)
    assert kept.method == "guided" and kept.particles >= kept.tries
    monkeypatch.setattr(generate_module, "GUIDED_COST", 1e9)  # never: rejection after the first batch
    switched = draw(network, twist, "auto", num=2000)
    assert switched.method == "rejection" and switched.complete
    assert 0 < switched.particles < switched.tries and switched.effective_sample_size > 0
    assert all(n.endswith("ab") and 3 <= len(n) <= MAX_LEN for n in switched.names)
    assert "rejection sampling after" in switched.message() and "guided particles" in switched.message()
    assert draw(network, twist, "guided", num=2000).method == "guided"  # asked for: guided to the end


def test_find_twist_looks_inside_mixes_and_ensembles(network, twist):
    assert find_twist(network) is None and find_twist(twist) is twist
    assert find_twist(Ensemble([network, twist], [1.0, 1.0])) is twist


def test_through_name_model_and_the_cli(tmp_path, capsys):
    import json

    from namesmith.cli import main
    from namesmith.data.words import load_words
    from namesmith.namemodel import NameModel

    words = tmp_path / "names.txt"
    words.write_text("\n".join(load_words("builtin")[:400]) + "\n")
    out = tmp_path / "gru"
    model = NameModel.train(words, "gru", out=out, n_embd=8, n_hidden=16, max_steps=30, eval_every=10,
                            batch_size=16, ngram_mix=0, seed=1, device="cpu", prior="none")
    found = model.generate(10, ends_with="lyn", min_len=5, method="guided", seed=3)
    assert found.stats.method == "guided" and found.complete and found.stats.particles >= found.stats.tries
    assert all(n.endswith("lyn") and len(n) >= 5 for n in found.names)
    assert model._twist is not None and model._twist.config.order == 6  # counted on the training words, kept
    capsys.readouterr()
    assert main(["sample", "-m", str(out), "-n", "5", "--ends-with", "lyn", "--method", "guided", "--seed", "3",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generation"]["method"] == "guided" and result["generation"]["effective_sample_size"] > 0
    assert all(n.endswith("lyn") for n in result["names"])


def test_auto_samples_by_rejection_when_the_guide_is_late_and_keeps_the_tables(network, twist, monkeypatch):
    """"auto" spends at most half its budget on a guide's tables; if they are not ready it samples by
    rejection in the rest (before, a late guide ended the search with no names). Built tables are cached."""
    import namesmith.generation.exact as exact_module
    from namesmith.generation.config import OutOfTime
    from namesmith.generation.exact_cache import ExactCache

    def late(*args, **kwargs):
        raise OutOfTime

    monkeypatch.setattr(exact_module, "_build_exact_sampler", late)
    config = GenerateConfig(num=5, seed=0, method="auto", max_len=MAX_LEN, time_budget=5.0, **CONSTRAINTS)
    result = generate(network, VOCAB, config, max_word_length=MAX_LEN, guide=Guide(network, lambda: twist))
    assert result.complete and result.method == "rejection" and len(result.names) == 5
    monkeypatch.undo()

    built = []
    build = exact_module._build_exact_sampler

    def counted(model, *args, **kwargs):
        built.append(type(model).__name__)
        return build(model, *args, **kwargs)

    monkeypatch.setattr(exact_module, "_build_exact_sampler", counted)
    guide = Guide(network, lambda: twist, ExactCache())
    first = generate(network, VOCAB, config, max_word_length=MAX_LEN, guide=guide)
    again = generate(network, VOCAB, config, max_word_length=MAX_LEN, guide=guide)
    assert first.method == again.method == "guided" and again.names == first.names
    assert built.count("FlooredChain") == 1  # the twist's tables were built once


def test_a_conditional_ngram_steers_by_its_model_of_every_name(tmp_path):
    from namesmith import NameModel

    table = tmp_path / "names.csv"
    table.write_text("name,sex\n" + "".join(f"{n}{i},{s}\n" for i in "abcdefghij" for n, s in
                                             [("anna", "F"), ("abby", "F"), ("bob", "M"), ("carl", "M")]))
    model = NameModel.train(str(table), "ngram", order=3, condition=("sex",), prior="none")
    twist = find_twist(model.model)
    assert isinstance(twist, NGram) and twist is model.model.component(0)
