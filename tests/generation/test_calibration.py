"""Whole-name calibration: the DP equals enumeration, the tilted model is normalised, samplers draw from it,
old model directories load untilted, and --calibrate is checked."""

import itertools
import json
import math
import random
from collections import Counter

import pytest
import torch
from sampling_support import chi_square_pvalue

from namesmith.cli import main
from namesmith.core.config import TrainConfig
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import Corpus
from namesmith.generation.calibration import Calibration
from namesmith.generation.config import GenerateConfig
from namesmith.generation.exact import MarkovChain, markov_chain
from namesmith.generation.generate import generate
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import row_log_probs, word_log_probs
from namesmith.namemodel import NameModel
from namesmith.training.calibrate import CellDistribution, calibrate, chain_cells, fit_calibration

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


def test_the_dp_by_each_states_last_token_equals_the_dp_by_moves(tiny, monkeypatch):
    """An n-gram's states know the token that led into them, so each step's endings are a bincount over states;
    the same cells as summing P(c | s)·P(end | s·c) over every move (the path of chains whose states do not)."""
    import namesmith.training.calibrate as fitting

    model, corpus = tiny
    chain = markov_chain(model, corpus.vocab.size, GenerateConfig())
    assert fitting.state_last_tokens(chain) is not None
    by_states = chain_cells(chain, 4)
    monkeypatch.setattr(fitting, "state_last_tokens", lambda chain: None)
    assert torch.allclose(chain_cells(chain, 4), by_states, atol=1e-12)


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


def test_a_weight_whose_cells_no_draw_reached_stays_zero_so_log_z_stays_true(tiny):
    """A cell of a training name that the model reaches once in 10⁸ names, which none of 100,000 draws did:
    its free λ would grow to the training count × σ² and the true Z (over the model's true cells) would dwarf the
    sampled one. That cell's end weight stays 0, and log Z stays true."""
    model, corpus = tiny
    exact = chain_cells(markov_chain(model, corpus.vocab.size, GenerateConfig()), 4)
    train = corpus.words("train")
    occupied = {(len(w), corpus.vocab.stoi[w[-1]]) for w in train if 0 < len(w) < 2}  # cells of end row 1 alone
    missed = min(occupied, key=lambda cell: float(exact[cell]))
    true = exact.clone()
    true[missed] = 1e-8 * float(true.sum() - true[missed])  # the model's true cells: this one rare
    true /= true.sum()
    drawn = true.clone()
    drawn[missed] = 0.0  # none of the draws ended there
    cells = CellDistribution(drawn / drawn.sum(), "sampled", draws=100_000)
    calibration = fit_calibration(cells, train, corpus.vocab, "length+end", sigma2=30.0, L=3, E=2)
    assert calibration.end_weights[missed[0]][missed[1]] == 0.0
    T = calibration.longest_cell  # longer names share its weights
    folded = torch.cat([true[:T], true[T:].sum(0, keepdim=True)])
    true_log_z = float(torch.logsumexp(folded.log() + calibration.log_weights + calibration.log_z, (0, 1)))
    assert true_log_z == pytest.approx(calibration.log_z, abs=0.01)
    assert any(abs(w) > 0.1 for row in calibration.end_weights for w in row)  # the cells drawn are fitted


@pytest.mark.parametrize("constraints", [dict(), dict(ends_with="a"), dict(contains=("b",), min_len=2)])
@pytest.mark.parametrize("method", ["exact", "rejection", "exact, untabulated"])
def test_samplers_draw_from_the_calibrated_model(tiny, constraints, method, monkeypatch):
    """Exact conditioning (weights on ending) and rejection (draws kept by their tilt) both match
    P'(name | constraints), found by enumerating every name of at most 5 letters. "untabulated": the exact
    tables as a large model's are, their messages summed as probabilities and no CDFs kept (each draw
    weighs its tokens, and ends by its chain state's weights)."""
    if method == "exact, untabulated":
        import namesmith.generation.exact as exact_module

        monkeypatch.setattr(exact_module, "PRECOMPUTE_CDFS", 0)
        method = "exact"
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


def test_a_calibration_that_rejection_would_rarely_keep_is_not_chosen(tiny, monkeypatch):
    """Plain draws of a calibrated model are kept by rejection with probability exp(-bound) on average: a candidate
    below MIN_ACCEPTANCE is passed over for the best of the others (the least costly one where none is cheap),
    and the report says so."""
    import namesmith.training.calibrate as fitting

    model, corpus = tiny
    fitted = {}
    choose = fitting.choose

    def spy(candidates, val_nll):
        fitted.update(candidates)
        return choose(candidates, val_nll)

    monkeypatch.setattr(fitting, "choose", spy)
    free, free_report = calibrate(model, corpus.vocab, WORDS, WORDS, choice="length", max_len=10)
    acceptance = {key: math.exp(-c.bound) for key, c in fitted.items()}
    threshold = acceptance[free_report.choice] + 0.01  # the free choice is now too costly
    cheap = [key for key, a in acceptance.items() if a >= threshold]
    assert cheap and len(cheap) < len(acceptance)
    monkeypatch.setattr(fitting, "MIN_ACCEPTANCE", threshold)
    calibration, report = calibrate(model, corpus.vocab, WORDS, WORDS, choice="length", max_len=10)
    assert report.choice == min(cheap, key=report.validation.get) != free_report.choice
    assert math.exp(-calibration.bound) >= threshold and "not chosen" in report.note
    monkeypatch.setattr(fitting, "MIN_ACCEPTANCE", 1.01)  # none is cheap: the least costly
    _, report = calibrate(model, corpus.vocab, WORDS, WORDS, choice="length", max_len=10)
    assert report.choice == max(acceptance, key=acceptance.get)


def test_a_bad_calibrate_option_is_one_line(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(WORDS) + "\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--calibrate", "sometimes"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibrate" in err and "none, length, auto" in err


def test_the_calibrate_command_fits_saves_and_removes_a_calibration(tmp_path, capsys):
    from namesmith.data.words import load_words

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
    import namesmith.training.calibrate as fitting
    from namesmith.training.fitting import build_model

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


# --- conditional count models: a calibration per label node ---------------------------------------------
def long_and_short_rows(n: int = 600, seed: int = 0) -> list[tuple[str, str, int]]:
    """Girls' names of 6-9 letters, boys' of 2-4: a bigram gets both lengths wrong, and differently."""
    rng = random.Random(seed)
    rows = [("".join(rng.choice("aeilmnrs") for _ in range(rng.randint(5, 8))) + "a", "F", rng.randint(1, 9))
            for _ in range(n)]
    rows += [("".join(rng.choice("bdgkotu") for _ in range(rng.randint(2, 4))), "M", rng.randint(1, 9))
             for _ in range(n)]
    return rows


@pytest.fixture(scope="module")
def by_sex(tmp_path_factory):
    """A conditional bigram of long girls' and short boys' names, calibrated per sex, saved."""
    path = tmp_path_factory.mktemp("data") / "names.tsv"
    path.write_text("name\tsex\tcount\n" + "".join(f"{n}\t{s}\t{c}\n" for n, s, c in long_and_short_rows()))
    out = path.parent / "m"
    return NameModel.train(path, "bigram-counts", condition=("sex",), calibrate="length", out=out), out


def node_lengths(model, node, tilted: bool) -> torch.Tensor:
    """P(length = ℓ) of a node's model (ℓ < T; T pooled), exactly by the DP, with or without its tilt."""
    calibration = model.label_calibrations.of(node)
    saved = model.label_calibrations
    model.set_label_calibrations(None)
    try:
        chain = markov_chain(model.given_codes([node]), model.vocab_size, GenerateConfig())
    finally:
        model.set_label_calibrations(saved)
    cells = chain_cells(chain, calibration.longest_cell)
    return (cells * calibration.log_weights.exp()).sum(1) if tilted else cells.sum(1)


def test_each_label_node_matches_its_own_training_lengths(by_sex):
    model, _ = by_sex
    conditional, corpus = model.model, model.corpus
    assert set(conditional.label_calibrations.nodes) == {(2,), (0,), (1,)}  # the root, sex=F, sex=M
    train, codes, weights = corpus.words("train"), corpus.codes["train"][:, 0], corpus.weights["train"]
    for node in [(0,), (1,), (2,)]:
        rows = [i for i in range(len(train)) if node == (2,) or int(codes[i]) == node[0]]
        T = conditional.label_calibrations.of(node).longest_cell
        wanted = torch.zeros(T + 1, dtype=torch.float64)
        for i in rows:
            wanted[min(len(train[i]), T)] += weights[i]
        wanted /= wanted.sum()
        assert (node_lengths(conditional, node, tilted=True) - wanted).abs().max() < 0.03
        assert (node_lengths(conditional, node, tilted=False) - wanted).abs().max() > 0.1  # a bigram's lengths


def test_one_node_unguided_is_tilted_a_product_or_a_guided_model_is_not(by_sex):
    conditional = by_sex[0].model
    assert conditional.given({"sex": "F"}).calibration is conditional.label_calibrations.of((0,))
    assert conditional.given().calibration is conditional.label_calibrations.of((2,))
    assert conditional.component(0).calibration is None  # the root's component itself, mixed into the others
    assert conditional.given({"sex": ["F", "M"]}).calibration is None
    assert conditional.given({"sex": "F"}, guidance=1.0).calibration is None


def test_score_eval_and_classify_use_each_nodes_calibrated_likelihood(by_sex):
    model, _ = by_sex
    conditional, corpus, vocab = model.model, model.corpus, model.vocab
    names = ["mariela", "bodu", "kin"]
    F, M = (conditional.label_calibrations.of((v,)) for v in (0, 1))
    saved = conditional.label_calibrations
    conditional.set_label_calibrations(None)
    try:
        plain = {s: word_log_probs(conditional.given({"sex": s}), names, vocab) for s in "FM"}
        x, y = corpus.tensors("val")
        rows = row_log_probs(conditional, x, y)
    finally:
        conditional.set_label_calibrations(saved)
    tilted = {"F": plain["F"] + F.word_log_weights(names, vocab), "M": plain["M"] + M.word_log_weights(names, vocab)}
    assert [s.log_prob for s in model.score(names, where={"sex": "F"})] == pytest.approx(tilted["F"].tolist())
    val_codes, val_words = corpus.codes["val"][:, 0].tolist(), corpus.words("val")
    tilt = torch.tensor([conditional.label_calibrations.of((c,)).word_log_weights([w], vocab).item()
                         for c, w in zip(val_codes, val_words)], dtype=torch.float64)
    chars = sum(len(w) + 1 for w in val_words)
    assert model.metrics["val"]["nll"] == pytest.approx(float(-(rows + tilt).sum()) / chars, rel=1e-6)
    prior = torch.from_numpy(conditional.condition.prior("sex"))
    joint = torch.stack([tilted["F"], tilted["M"]], 1) + prior.log()
    expected = torch.softmax(joint, 1)
    for name, result, p in zip(names, model.classify(names), expected):
        assert [result.labels["sex"]["F"], result.labels["sex"]["M"]] == pytest.approx(p.tolist(), rel=1e-5), name


def test_names_drawn_given_a_label_follow_its_calibrated_lengths(by_sex):
    model, _ = by_sex
    conditional = model.model
    for sex, node in (("F", (0,)), ("M", (1,))):
        lengths = node_lengths(conditional, node, tilted=True)
        T = len(lengths) - 1
        names = model.generate(20_000, where={"sex": sex}, seed=3, max_len=40).names
        counts = Counter(min(len(n), T) for n in names)
        expected = {ell: float(p) for ell, p in enumerate(lengths) if p > 1e-9}
        assert chi_square_pvalue(counts, expected, len(names)) > 1e-3


def test_label_calibrations_are_saved_and_older_directories_load_untilted(by_sex):
    model, out = by_sex
    loaded = NameModel.load(out)
    assert loaded.model.label_calibrations == model.model.label_calibrations
    names = ["mariela", "bodu"]
    assert [s.log_prob for s in loaded.score(names, where={"sex": "M"})] == pytest.approx(
        [s.log_prob for s in model.score(names, where={"sex": "M"})])
    meta_file = out / "namesmith.json"
    meta = json.loads(meta_file.read_text())
    assert [node["where"] for node in meta["label_calibrations"]["nodes"]] != []
    old = {k: v for k, v in meta.items() if k != "label_calibrations"}
    meta_file.write_text(json.dumps(old))
    try:
        untilted = NameModel.load(out)
        assert untilted.model.label_calibrations is None and untilted.model.given({"sex": "M"}).calibration is None
        bad = {**meta, "label_calibrations": {"nodes": [{"where": {"sex": "X"}, **meta["calibration_report"]}]}}
        meta_file.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match="label calibration"):
            NameModel.load(out)
    finally:
        meta_file.write_text(json.dumps(meta))


def test_a_conditional_count_model_is_calibrated_per_node_by_default(tmp_path):
    """train's default (--calibrate auto) calibrates a conditional count model per label node where that
    lowers the validation NLL, as it does a plain model."""
    path = tmp_path / "names.tsv"
    path.write_text("name\tsex\tcount\n" + "".join(f"{n}\t{s}\t{c}\n" for n, s, c in long_and_short_rows(800)))
    model = NameModel.train(path, "bigram-counts", condition=("sex",))  # 800 rows a sex: 100 or more to choose by
    assert model.meta["calibration_report"]["choice"] != "none"
    assert set(model.model.label_calibrations.nodes) == {(2,), (0,), (1,)}


def test_label_nodes_are_bounded(by_sex, monkeypatch):
    """Past LABEL_DP_CELLS of DP cells in all, only the root keeps its own calibration."""
    import namesmith.training.calibrate_labels as fitting

    conditional, corpus = by_sex[0].model, by_sex[0].corpus
    codes, weights = corpus.codes["train"], torch.from_numpy(corpus.weights["train"])
    assert fitting.label_nodes(conditional, codes, weights) == [(2,), (0,), (1,)]
    monkeypatch.setattr(fitting, "LABEL_DP_CELLS", 1)
    assert fitting.label_nodes(conditional, codes, weights) == [(2,)]


def test_a_sparse_conditional_model_calibrates_its_root_from_its_draws(tmp_path, monkeypatch):
    """A conditional model held sparsely (a vocabulary of many scripts: world, surnames) is no finite chain: its
    root alone is calibrated under the default --calibrate auto, from its own draws, and the names drawn without
    labels then follow the training lengths."""
    import namesmith.training.calibrate as fitting

    path = tmp_path / "names.tsv"
    path.write_text("name\tsex\tcount\n" + "".join(f"{n}\t{s}\t{c}\n" for n, s, c in long_and_short_rows(800)))
    monkeypatch.setattr("namesmith.models.conditional_counts.DENSE_CELLS", 100)  # held sparsely
    monkeypatch.setattr(fitting, "MAX_DP_CELLS", 1)  # world's root: 150,000 contexts × 1,004 characters
    monkeypatch.setattr(fitting, "DRAWS", 20_000)
    model = NameModel.train(path, "ngram", condition=("sex",), order=2)
    assert model.model.sparse
    report = model.meta["calibration_report"]
    assert report["choice"] != "none" and report["method"] == "sampled" and "root alone" in report["note"]
    assert set(model.model.label_calibrations.nodes) == {(2,)}  # the root: every label marginalised
    root = model.model.label_calibrations.of((2,))
    assert root.method == "sampled" and 0 < root.log_z_error < 0.05
    assert model.model.given({"sex": "F"}).calibration is None

    corpus = model.corpus
    wanted = Counter(len(w) for w in corpus.words("train"))  # every row counts its births' share: compare shapes
    train_lengths = torch.tensor([len(w) for w in corpus.words("train")])
    weights = torch.from_numpy(corpus.weights["train"]).double()
    wanted = {ell: float(weights[train_lengths == ell].sum() / weights.sum()) for ell in wanted}

    def length_tv(names: list[str]) -> float:
        drawn = Counter(len(n) for n in names)
        return 0.5 * sum(abs(drawn[ell] / len(names) - wanted.get(ell, 0.0)) for ell in set(drawn) | set(wanted))

    tilted = length_tv(model.generate(20_000, seed=3, max_len=30).names)
    model.model.set_label_calibrations(None)
    untilted = length_tv(model.generate(20_000, seed=3, max_len=30).names)
    assert tilted < 0.05 < untilted


def test_a_sampled_model_with_too_few_draws_for_its_end_cells_tries_the_length_alone(monkeypatch):
    """A cell no draw reached adds nothing to the sampled Z, so an end weight there would buy validation
    likelihood the tilted model does not have: below MIN_DRAWS_PER_CELL draws a cell, the length alone."""
    import namesmith.training.calibrate as fitting
    from namesmith.training.fitting import build_model

    rows = long_and_short_rows(700)  # 140 validation words: enough to choose by
    corpus = Corpus.from_words([n for n, _, _ in rows], seed=0)
    network = build_model("rnn", corpus.vocab.size, {}, corpus).eval()
    monkeypatch.setattr(fitting, "DRAWS", 5000)
    args = (network, corpus.vocab, corpus.words("train"), corpus.words("val"))
    _, report = fitting.calibrate(*args, choice="auto", max_len=20, seed=0)
    assert any(key.startswith("length+end") for key in report.validation)  # 5,000 draws for (E + 1) × 16 cells
    monkeypatch.setattr(fitting, "MIN_DRAWS_PER_CELL", 1000)
    _, report = fitting.calibrate(*args, choice="auto", max_len=20, seed=0)
    assert not any(key.startswith("length+end") for key in report.validation)
    assert "the length alone: 5,000 draws" in report.note
