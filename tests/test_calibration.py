"""Whole-name calibration: the DP equals enumeration, the tilted model is normalised, samplers draw from it,
old model directories load untilted, and --calibrate is checked."""

import itertools
import json
import math
from collections import Counter

import pytest
import torch
from test_generate import chi_square_pvalue

from namesmith.calibrate import CellDistribution, calibrate, chain_cells, fit_calibration
from namesmith.calibration import Calibration
from namesmith.cli import main
from namesmith.config import TrainConfig
from namesmith.data import Corpus
from namesmith.errors import ConfigError
from namesmith.evaluate import word_log_probs
from namesmith.generate import GenerateConfig, MarkovChain, generate, markov_chain
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.namemodel import NameModel
from namesmith.vocab import Vocab

WORDS = ["abc", "ba", "cab", "acca", "b", "bbc", "cabba", "ac", "aab", "cc", "a", "abcab", "bcca", "caab"]


@pytest.fixture(scope="module")
def tiny():
    """An order-3 n-gram of WORDS (vocabulary a, b, c) and its corpus."""
    corpus = Corpus.from_words(WORDS, split=False)
    model = NGram(corpus.vocab.size, NGramConfig(order=3))
    model.fit(corpus, TrainConfig())
    return model.eval(), corpus


def all_names(vocab: Vocab, max_len: int) -> list[str]:
    return ["".join(t) for n in range(max_len + 1) for t in itertools.product(vocab.chars, repeat=n)]


def tilted(model, corpus, features: str) -> Calibration:
    cells = CellDistribution(chain_cells(markov_chain(model, corpus.vocab.size, GenerateConfig()), 4), "exact")
    return fit_calibration(cells, corpus.words("train"), corpus.vocab, features, sigma2=1.0, L=3, E=2)


def test_the_dp_equals_enumeration_on_a_chain_with_short_names():
    """A chain whose names have at most 3 letters (its state counts them): the DP's cells, and so log Z and
    E[f] of any λ, equal the sum over every name of P(name) in its cell."""
    V, longest = 3, 3
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(longest + 1, V, dtype=torch.float64), 1)
    probs[longest] = torch.tensor([1.0, 0.0, 0.0])  # after 3 letters the name ends
    next_state = torch.arange(1, longest + 2).clamp(max=longest).unsqueeze(1).expand(longest + 1, V).clone()
    cells = chain_cells(MarkovChain(probs, next_state, 0), T=2)
    expected = torch.zeros(3, V, dtype=torch.float64)
    for n in range(longest + 1):
        for tokens in itertools.product(range(1, V), repeat=n):
            p = math.prod(float(probs[i, t]) for i, t in enumerate(tokens)) * float(probs[n, 0])
            expected[min(n, 2), tokens[-1] if tokens else 0] += p
    assert torch.allclose(cells, expected, atol=1e-12)


def test_calibrated_probabilities_sum_to_one(tiny):
    """Σ P'(x) over every name up to 7 letters, plus the longer names' mass (one length weight for all of
    them), is 1; the calibration moved the model's lengths."""
    model, corpus = tiny
    names = all_names(corpus.vocab, 7)
    plain = word_log_probs(model, names, corpus.vocab).exp()
    model.calibration = calibration = tilted(model, corpus, "length")
    try:
        calibrated = word_log_probs(model, names, corpus.vocab).exp()
    finally:
        model.calibration = None
    tail = (1 - float(plain.sum())) * math.exp(float(calibration.log_weights[-1, 0]))  # names of 8 letters or more
    assert float(calibrated.sum()) + tail == pytest.approx(1.0, abs=1e-6)  # log-probabilities are float32
    assert abs(calibration.log_z) > 1e-2 and not torch.allclose(plain, calibrated)


def test_calibration_matches_the_training_lengths(tiny):
    """Moment matching: with a weak prior the calibrated model's expected length features are the training
    list's (the share of names of each length below L)."""
    model, corpus = tiny
    cells = CellDistribution(chain_cells(markov_chain(model, corpus.vocab.size, GenerateConfig()), 4), "exact")
    calibration = fit_calibration(cells, corpus.words("train"), corpus.vocab, "length", sigma2=1e6, L=4)
    shares = (cells.probs * calibration.log_weights.exp()).sum(1)
    lengths = Counter(min(len(w), 4) for w in corpus.words("train"))
    assert shares.tolist() == pytest.approx([lengths[n] / len(WORDS) for n in range(5)], abs=1e-5)


@pytest.mark.parametrize("constraints", [dict(), dict(ends_with="a"), dict(contains=("b",), min_len=2)])
@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_samplers_draw_from_the_calibrated_model(tiny, constraints, method):
    """Exact conditioning (weights on ending) and rejection (draws kept by their tilt) both match
    P'(name | constraints), found by enumerating every name of at most 5 letters."""
    model, corpus = tiny
    model.calibration = tilted(model, corpus, "length+end")
    try:
        config = GenerateConfig(num=20_000, seed=5, max_len=5, method=method, **constraints)
        result = generate(model, corpus.vocab, config, max_word_length=5)
        names = [n for n in all_names(corpus.vocab, 5) if n.endswith(config.ends_with)
                 and all(c in n for c in config.contains) and len(n) >= max(config.min_len or 0, 1)]
        weights = word_log_probs(model, names, corpus.vocab).exp()
    finally:
        model.calibration = None
    assert result.complete and result.method == ("plain" if method == "rejection" and not constraints else method)
    expected = {n: float(w / weights.sum()) for n, w in zip(names, weights)}
    assert chi_square_pvalue(Counter(result.names), expected, config.num) > 1e-3


def test_a_model_directory_keeps_its_calibration_and_an_old_one_loads_untilted(tmp_path):
    words = [f"{a}{b}{c}"[: 1 + (i % 3)] for i, (a, b, c) in enumerate(itertools.product("abcde", repeat=3))] * 8
    trained = NameModel.train(words=words, model="bigram-counts", calibrate="length", out=tmp_path / "m")
    assert trained.model.calibration is not None
    loaded = NameModel.load(tmp_path / "m")
    assert loaded.model.calibration == trained.model.calibration
    names = ["a", "abc", "ed"]
    assert [s.log_prob for s in loaded.score(names)] == pytest.approx([s.log_prob for s in trained.score(names)])
    meta_file = tmp_path / "m" / "namesmith.json"
    meta = json.loads(meta_file.read_text())
    del meta["calibration"]  # a directory written before calibration
    meta_file.write_text(json.dumps(meta))
    old = NameModel.load(tmp_path / "m")
    assert old.model.calibration is None
    plain = word_log_probs(old.model, names, old.vocab)
    assert [s.log_prob for s in old.score(names)] == pytest.approx(plain.tolist())
    assert not torch.allclose(plain, word_log_probs(loaded.model, names, loaded.vocab))


def test_auto_keeps_no_calibration_without_enough_validation_words(tiny):
    model, corpus = tiny
    calibration, report = calibrate(model, corpus.vocab, WORDS, WORDS[:5], choice="auto", max_len=10)
    assert calibration is None and report.choice == "none"
    with pytest.raises(ConfigError, match="calibrate must be one of"):
        calibrate(model, corpus.vocab, WORDS, WORDS, choice="full", max_len=10)


def test_a_bad_calibrate_option_is_one_line(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(WORDS) + "\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--calibrate", "sometimes"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibrate" in err and "none, length, auto" in err


def test_the_calibrate_command_fits_saves_and_removes_a_calibration(tmp_path, capsys):
    from namesmith.data import load_words

    data = tmp_path / "names.txt"
    data.write_text("\n".join(load_words("builtin")[:3000]) + "\n")
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), "--calibrate", "none", "--samples", "0"]) == 0
    meta_file = out / "namesmith.json"
    before = json.loads(meta_file.read_text())
    assert "calibration" not in before
    assert main(["calibrate", "-m", str(out), "--calibrate", "length", "--json"]) == 0
    after = json.loads(meta_file.read_text())
    assert after["calibration"]["features"] == "length" and after["weights"] == before["weights"]
    assert after["metrics"]["val"]["nll"] < before["metrics"]["val"]["nll"]
    assert NameModel.load(out).model.calibration is not None
    assert main(["calibrate", "-m", str(out), "--calibrate", "none"]) == 0
    assert "calibration" not in json.loads(meta_file.read_text())
    assert NameModel.load(out).metrics["val"]["nll"] == pytest.approx(before["metrics"]["val"]["nll"])


def test_a_network_is_calibrated_from_its_own_draws(tiny, monkeypatch):
    """A network is no finite chain: its cells come from its draws (self-normalised importance sampling), log Z
    with a standard error; its calibrated names are drawn by rejection."""
    import namesmith.calibrate as fitting
    from namesmith.train import build_model

    monkeypatch.setattr(fitting, "DRAWS", 3000)
    _, corpus = tiny
    network = build_model("rnn", corpus.vocab.size, {}, corpus).eval()
    calibration, report = fitting.calibrate(network, corpus.vocab, WORDS, WORDS, choice="length", max_len=12, seed=0)
    assert report.method == "sampled" and calibration.method == "sampled" and 0 < calibration.log_z_error < 0.1
    network.calibration = calibration
    result = generate(network, corpus.vocab, GenerateConfig(num=200, seed=1, max_len=12), max_word_length=6)
    assert result.complete and len(result.names) == 200 and result.tries > 200  # some draws were rejected


def test_max_tries_binds_the_draws_a_calibrated_model_rejects(tiny):
    model, corpus = tiny
    model.calibration = tilted(model, corpus, "length+end")
    try:
        result = generate(model, corpus.vocab, GenerateConfig(num=50, seed=0, regex="^cccccccc", max_tries=500),
                          max_word_length=5)
    finally:
        model.calibration = None
    assert not result.complete and result.stop_reason == "max-tries" and result.tries <= 500
