"""Conditional models: names given labels (sex, decade, ...), on small tables the tests make.

Covered: start tokens and `where` checks; the split by distinct name and the weightings; that a
conditional model beats an unconditional one where labels matter, generates names of the label
asked for, classifies by Bayes' rule exactly (a bigram computed by hand), mixes its components as
documented (checked against the components themselves), multiplies values for unisex names; that
every model type trains with a condition; that the trainer draws rows by weight; checkpoints.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from namesmith import NameModel
from namesmith.cli import main
from namesmith.core.conditional import Condition, parse_where_args
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.core.io import sha256_file
from namesmith.core.vocab import BOUNDARY
from namesmith.data.labelled import labelled_corpus
from namesmith.data.tables import parse_table, split_by_name
from namesmith.data.words import encode_words
from namesmith.models import trainable_types
from namesmith.models.conditional_counts import ConditionalCounts, ConditionalCountsConfig
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.nll import row_log_probs
from namesmith.training.checkpoint import load_checkpoint
from namesmith.training.trainer import LengthBuckets, draw_weighted


def synthetic_rows(n: int = 240, seed: int = 0) -> list[tuple[str, str, int]]:
    """Girls' names of one alphabet ending in -a, boys' of another ending in -o: labels matter."""
    rng = random.Random(seed)
    rows = []
    for sex, syllables, end in (("F", ["ma", "li", "sa", "ne", "ri"], "a"), ("M", ["to", "bu", "ko", "gu", "dr"], "o")):
        for _ in range(n):
            name = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) + end
            rows.append((name, sex, rng.randint(1, 50)))
    rows.append(("kim", "F", 30))  # a unisex name: two rows
    rows.append(("kim", "M", 10))
    return rows


def write_table(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("name\tsex\tcount\n" + "".join(f"{n}\t{s}\t{c}\n" for n, s, c in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def table_path(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("data") / "names.tsv", synthetic_rows())


@pytest.fixture(scope="module")
def ngram(one_thread, table_path) -> NameModel:
    return NameModel.train(table_path, "ngram", order=3, condition=("sex",))


def table(rows: list[tuple[str, str, int]]):
    return parse_table("name,sex,count\n" + "".join(f"{n},{s},{c}\n" for n, s, c in rows))


# --- conditions -----------------------------------------------------------------------------------
def test_start_tokens_carry_the_label_codes():
    condition = Condition({"sex": ["F", "M"], "decade": ["1950s", "1960s", "1970s"]},
                          {"sex": [1.0, 1.0], "decade": [1.0, 2.0, 3.0]})
    codes = torch.tensor([[0, 0], [1, 2], [2, 3], [0, 3], [2, 1]])  # 2 and 3: unknown
    start = condition.start_tokens(codes, vocab_size=27)
    assert bool((start >= 27).all()) and len(set(start.tolist())) == len(codes)
    assert torch.equal(condition.codes_of(start, 27), codes)
    assert condition.codes_of(torch.tensor([BOUNDARY]), 27).tolist() == [[2, 3]]  # a plain row: all unknown


def test_where_is_checked_and_expanded():
    condition = Condition({"sex": ["F", "M"], "decade": ["1950s", "1960s"]}, {"sex": [1, 1], "decade": [1, 1]})
    assert condition.where_codes({"sex": "F"}) == [(0, 2)]
    assert condition.where_codes({"decade": "1960s", "sex": ["M", "F"]}) == [(0, 1), (1, 1)]
    assert condition.where_codes(None) == [(2, 2)]
    with pytest.raises(ConfigError, match=r"unknown label 'era' \(labels: sex, decade\)"):
        condition.where_codes({"era": "1950s"})
    with pytest.raises(ConfigError, match=r"sex='X' is not a value of 'sex' \(values: F, M\)"):
        condition.where_codes({"sex": "X"})
    assert parse_where_args(["sex=F,M", "decade=1950s", "sex=F"]) == {"sex": ["F", "M"], "decade": ["1950s"]}
    for bad in ("sexF", "=F", "sex=", "sex=F,"):
        with pytest.raises(ConfigError, match="LABEL=VALUE"):
            parse_where_args([bad])


def test_unknown_labels_and_values_are_one_clear_error(ngram, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown label 'decade' \(labels: sex\)") as e:
        ngram.generate(3, where={"decade": "1950s"})
    assert e.value.field == "where"
    with pytest.raises(ConfigError, match=r"'sex'.*values: F, M"):
        ngram.score(["mara"], where={"sex": "X"})
    plain = NameModel.train(words=["ana", "bob", "cid"] * 10, model="bigram-counts")
    with pytest.raises(ConfigError, match="not conditioned"):
        plain.generate(1, where={"sex": "F"})
    with pytest.raises(ConfigError, match="conditional model"):
        plain.classify(["ana"])
    words = tmp_path / "words.txt"
    words.write_text("ana\nbob\n")
    with pytest.raises(ConfigError, match="plain word list"):
        NameModel.train(words, "bigram-counts", condition=("sex",))
    with pytest.raises(ConfigError, match="plain word list"):
        NameModel.train(words, "bigram-counts", weighting="count")
    labelled = tmp_path / "labelled.tsv"
    labelled.write_text("name\tsex\nana\tF\n")
    with pytest.raises(ConfigError, match="no label column 'era'"):
        NameModel.train(labelled, "bigram-counts", condition=("era",))


# --- rows, split and weights ----------------------------------------------------------------------------
def test_split_is_by_distinct_name_and_rows_are_name_and_labels():
    rows = synthetic_rows(60)
    corpus = labelled_corpus(table(rows), ("sex",), "none", seed=3)
    parts = corpus.split.parts()
    assert not (set(parts["train"]) & set(parts["val"]) or set(parts["train"]) & set(parts["test"])
                or set(parts["val"]) & set(parts["test"]))
    expected = split_by_name(table(rows), seed=3)  # the same names, whatever the aggregation
    assert {p: set(words) for p, words in parts.items()} == {p: set(t.names) for p, t in expected.items()}
    pairs = [(w, corpus.condition.labels["sex"][c]) for part in parts for w, c in
             zip(corpus.words(part), corpus.codes[part][:, 0].tolist())]
    assert len(pairs) == len(set(pairs)) == len({(n, s) for n, s, _ in rows})  # each (name, sex) once
    assert ("kim", "F") in pairs and ("kim", "M") in pairs


def test_weightings():
    rows = [("ana", "F", 1), ("bea", "F", 10), ("cid", "M", 100), ("bea", "F", 5), ("kim", "F", 30), ("kim", "M", 10)]
    for weighting, expected in (("none", [1, 1, 1, 1, 1]), ("count", [1, 15, 100, 30, 10]),
                                ("log", [1, 1 + math.log(15), 1 + math.log(100), 1 + math.log(30), 1 + math.log(10)]),
                                ("share", [1, 1, 1, 0.75, 0.25])):
        corpus = labelled_corpus(table(rows), ("sex",), weighting, split=False)
        sexes = [corpus.condition.labels["sex"][c] for c in corpus.codes["train"][:, 0].tolist()]
        by_row = dict(zip(zip(corpus.words("train"), sexes), corpus.weights["train"]))
        keys = [("ana", "F"), ("bea", "F"), ("cid", "M"), ("kim", "F"), ("kim", "M")]
        assert [by_row[k] for k in keys] == pytest.approx(expected)
        assert (corpus.row_weights("train") is None) == (weighting == "none")
    corpus = labelled_corpus(table(rows), ("sex",), "count", split=False)
    assert corpus.condition.priors == {"sex": [46.0, 110.0]}  # each value's share of the training weight
    plain = labelled_corpus(table(rows), (), "share", split=False)  # one row per name: share is none
    assert plain.weights["train"].tolist() == [1.0] * 4


def test_a_count_model_counts_a_row_as_often_as_it_weighs():
    rows = [("ana", "F", 3), ("bob", "M", 1), ("abba", "F", 2), ("bo", "M", 4)]
    corpus = labelled_corpus(table(rows), (), "count", split=False)
    config = ConditionalCountsConfig("ngram", {"order": 3, "discount": "modified-kn"}, corpus.condition.to_dict())
    weighted = ConditionalCounts(corpus.vocab.size, config)
    weighted.fit(corpus, None)
    repeated = NGram(corpus.vocab.size, NGramConfig(order=3, discount="modified-kn"))
    words = [n for n, _, c in rows for _ in range(c)]
    repeated.fit_counts(repeated.count(*encode_words(words, corpus.vocab)))
    root = weighted.component(0)
    assert torch.equal(root.context_keys, repeated.context_keys)
    assert torch.allclose(root.next_token_logprobs, repeated.next_token_logprobs)


def test_the_trainer_draws_rows_in_proportion_to_their_weights():
    weights = torch.tensor([1.0, 0.0, 3.0, 6.0])
    generator = torch.Generator().manual_seed(0)
    drawn = Counter(draw_weighted(weights.cumsum(0), 20_000, generator).tolist())
    assert drawn[1] == 0
    for row in (0, 2, 3):
        assert drawn[row] / 20_000 == pytest.approx(weights[row] / 10, abs=0.015)
    lengths = torch.tensor([2, 2, 5, 5, 5, 9])
    buckets = LengthBuckets(lengths, batch_size=8, min_words=1, weights=torch.tensor([1.0, 0, 2, 0, 0, 1]))
    drawn = Counter(row for _ in range(3000) for row in buckets.draw(generator).tolist())
    assert set(drawn) == {0, 2, 5}
    assert drawn[2] / sum(drawn.values()) == pytest.approx(0.5, abs=0.05)


# --- what conditioning buys ------------------------------------------------------------------------------
@pytest.mark.slow  # 10 s, busy machine
def test_conditional_beats_unconditional_where_labels_matter(ngram, table_path):
    plain = NameModel.train(table_path, "ngram", order=3, condition=())
    corpus = ngram.corpus
    rows = corpus.tensors("test")
    chars = (rows[1] >= 0).sum()
    conditional = -row_log_probs(ngram.model, *rows).sum() / chars
    unconditional = -row_log_probs(plain.model, *corpus.word_tensors("test")).sum() / chars
    assert conditional < unconditional - 0.1
    assert ngram.metrics["test"]["nll"] == pytest.approx(float(conditional), rel=1e-5)
    assert ngram.metrics["test"]["nll_per_count"] is not None


def test_where_gives_names_of_that_label(ngram):
    girls = ngram.generate(200, where={"sex": "F"}, seed=1).names
    boys = ngram.generate(200, where={"sex": "M"}, seed=1).names
    assert sum(n.endswith("a") for n in girls) > 0.9 * len(girls)
    assert sum(n.endswith("o") for n in boys) > 0.9 * len(boys)
    exact = ngram.generate(20, where={"sex": "F"}, ends_with="ria", seed=2)
    assert exact.complete and exact.stats.method == "exact" and all(n.endswith("ria") for n in exact.names)


def test_classify_posteriors_sum_to_one_and_follow_the_names(ngram):
    results = ngram.classify(["malisa", "tobuko", "kim"])
    for result in results:
        assert set(result.labels) == {"sex"} and sum(result.labels["sex"].values()) == pytest.approx(1.0)
    assert results[0].labels["sex"]["F"] > 0.95 and results[1].labels["sex"]["M"] > 0.95


def test_classify_answers_per_name(ngram):
    """A name the model cannot read gets its own error (as in score); the others their posteriors, unchanged."""
    alone = ngram.classify(["malisa", "tobuko"])
    mixed = ngram.classify(["mäx", "malisa", "", "tobuko", "Malisa"])
    assert [r.name for r in mixed] == ["mäx", "malisa", "", "tobuko", "Malisa"]
    assert mixed[0].labels is None and mixed[0].error == "'x', 'ä' are not in the model's vocabulary"
    assert mixed[2].error == "empty name" == ngram.score([""])[0].error
    assert mixed[0].error == ngram.score(["mäx"])[0].error  # one rule for score and classify
    assert [mixed[1].labels, mixed[3].labels] == [alone[0].labels, alone[1].labels]
    assert mixed[4].labels == alone[0].labels and mixed[4].error is None
    assert ngram.classify(["mäx"])[0].error is not None


def test_classify_is_bayes_rule_on_a_bigram_computed_by_hand(tmp_path):
    rows = [("ab", "F", 1), ("aab", "F", 1), ("ba", "M", 1), ("bba", "M", 1), ("abb", "M", 1)]
    path = write_table(tmp_path / "tiny.tsv", rows)
    model = NameModel.train(path, "bigram-counts", condition=("sex",), split=False)  # smoothing 1
    V = model.vocab.size

    def table_of(names: list[str]) -> torch.Tensor:  # add-1 bigram table of some names
        counts = torch.ones(V, V, dtype=torch.float64)
        for name in names:
            tokens = [BOUNDARY, *model.vocab.encode(name), BOUNDARY]
            for a, b in zip(tokens, tokens[1:]):
                counts[a, b] += 1
        return counts / counts.sum(1, keepdim=True)

    pooled = table_of([n for n, _, _ in rows])
    # fewer than 20 names: nothing is held out, so each sex mixes itself and the pool in equal parts:
    # the normalised geometric mean of the two tables, row by row
    by_sex = {s: torch.softmax(0.5 * pooled.log() + 0.5 * table_of([n for n, t, _ in rows if t == s]).log(), 1)
              for s in ("F", "M")}

    def likelihood(name: str, sex: str) -> float:
        tokens = [BOUNDARY, *model.vocab.encode(name), BOUNDARY]
        return math.prod(float(by_sex[sex][a, b]) for a, b in zip(tokens, tokens[1:]))

    for name in ("ab", "ba", "abab", "b"):
        joint = {"F": likelihood(name, "F") * 2 / 5, "M": likelihood(name, "M") * 3 / 5}  # priors: rows per sex
        expected = {s: p / sum(joint.values()) for s, p in joint.items()}
        got = model.classify([name])[0].labels["sex"]
        assert got == pytest.approx(expected, rel=1e-5)
        assert sum(got.values()) == pytest.approx(1.0)


def test_a_node_model_is_the_mixture_of_its_components(ngram):
    """given(where) is one n-gram table; its predictions are softmax(Σ θ_a log P_a) of the components, everywhere."""
    model = ngram.model
    node = model._node_of[(0,)]  # sex=F
    weights = model.node_weights[node]
    given = model.given({"sex": "F"})
    assert isinstance(given, NGram)
    x, _ = encode_words(["malisa", "tobuko", "ma", "gudrisa"], ngram.vocab)
    mixed = torch.log_softmax(sum(float(weights[a]) * model.component(a)(x).double()
                                  for a in weights.nonzero().flatten().tolist()), -1)
    assert torch.allclose(given(x).double(), mixed, atol=1e-4)
    assert torch.allclose(given(x).exp().sum(-1), torch.ones(x.shape), atol=1e-4)


def test_several_values_multiply_their_distributions(ngram):
    x, _ = encode_words(["kim", "malo"], ngram.vocab)
    both = ngram.model.given({"sex": ["F", "M"]})(x)
    product = torch.log_softmax(ngram.model.given({"sex": "F"})(x) + ngram.model.given({"sex": "M"})(x), -1)
    assert torch.allclose(both, product, atol=1e-5)


def test_rows_start_with_their_labels(ngram):
    """The model read through start tokens equals the plain model of each row's labels."""
    x, y = ngram.corpus.tensors("val")
    codes = ngram.corpus.codes["val"]
    plain_x, _ = ngram.corpus.word_tensors("val")
    out = ngram.model(x)
    for sex, value in enumerate(("F", "M")):
        rows = (codes[:, 0] == sex).nonzero().flatten()
        assert torch.allclose(out[rows], ngram.model.given({"sex": value})(plain_x[rows]).float())
    assert torch.allclose(ngram.model(plain_x), ngram.model.given()(plain_x))  # a plain row: marginalised


# --- every model type -------------------------------------------------------------------------------
NEURAL = {"max_steps": 40, "eval_every": 20, "batch_size": 16, "ngram_mix": 0}
TINY = {
    "bigram-counts": {}, "bigram": {"max_steps": 200}, "ngram": {"order": 3},
    "mlp": {**NEURAL, "n_embd": 8, "n_hidden": 16, "block_size": 3},
    "wavenet": {**NEURAL, "n_embd": 8, "n_hidden": 16, "block_size": 4},
    "rnn": {**NEURAL, "n_embd": 8, "n_hidden": 16}, "gru": {**NEURAL, "n_embd": 8, "n_hidden": 16},
    "lstm": {**NEURAL, "n_embd": 8, "n_hidden": 16},
    "transformer": {**NEURAL, "n_layer": 1, "n_head": 2, "n_embd": 16},
}


def test_every_model_type_is_listed():
    assert set(TINY) == set(trainable_types())


@pytest.mark.parametrize("model_type", list(TINY))
def test_every_model_type_trains_with_a_condition(one_thread, table_path, tmp_path, model_type):
    model = NameModel.train(table_path, model_type, condition=("sex",), weighting="log", out=tmp_path / "m",
                            **TINY[model_type])
    assert model.labels == {"sex": ["F", "M"]} and model.info()["labels"] == model.labels
    assert model.describe().endswith("| sex")
    girls = model.generate(5, where={"sex": "F"}, seed=0, max_len=12)
    assert len(girls.names) == 5
    loaded = NameModel.load(tmp_path / "m")
    x, _ = encode_words(["malisa", "kim"], model.vocab)
    for where in ({"sex": "F"}, {"sex": ["F", "M"]}, None):
        assert torch.allclose(loaded.model.given(where)(x), model.model.given(where)(x), atol=1e-5)
    posterior = loaded.classify(["malisa"])[0].labels["sex"]
    assert sum(posterior.values()) == pytest.approx(1.0)
    assert loaded.metrics["test"]["nll"] == pytest.approx(loaded.evaluate()["test"]["nll"], rel=1e-5)


@pytest.mark.parametrize("model_type", ["rnn", "transformer", "mlp"])
def test_a_conditioned_network_steps_as_it_reads(one_thread, table_path, model_type):
    trained = NameModel.train(table_path, model_type, condition=("sex",), **TINY[model_type])
    model = trained.model
    x, _ = encode_words(["malisa", "tob"], trained.vocab)
    for where in ({"sex": "M"}, {"sex": ["F", "M"]}):
        given = model.given(where)
        full = given(x)
        for inference in (False, True):  # sampling steps in inference mode (the recurrent models' own path)
            with torch.inference_mode(inference):
                state = given.init_state(len(x))
                for t in range(x.shape[1]):
                    logits, state = given.step(state, x[:, t])
                    assert torch.allclose(torch.log_softmax(logits, -1), torch.log_softmax(full[:, t], -1), atol=1e-4)


def test_a_conditioned_network_mixes_with_a_conditional_ngram(one_thread, table_path):
    model = NameModel.train(table_path, "gru", condition=("sex",), **{**TINY["gru"], "ngram_mix": 3})
    assert model.model_type == "ngram-mix" and model.labels == {"sex": ["F", "M"]}
    assert model.describe() == "gru + 3-gram | sex"
    girls = model.generate(50, where={"sex": "F"}, seed=0).names
    assert sum(n.endswith("a") for n in girls) > 0.8 * len(girls)


def test_label_dropout_hides_labels_in_training_only(one_thread, table_path):
    trained = NameModel.train(table_path, "gru", condition=("sex",), label_dropout=0.5, **TINY["gru"])
    model, (x, _) = trained.model, trained.corpus.tensors("val")
    assert model.label_dropout == 0.5
    assert torch.equal(model(x), model(x))  # no dropout when evaluating
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))  # labels hidden at random when training
    model.eval()


# --- the default and checkpoints ----------------------------------------------------------------------------
@pytest.mark.slow  # trains the default model; test_cli and the README's console example keep that fast
def test_the_default_model_is_an_ngram_conditioned_on_the_builtin_sex(one_thread):
    model = NameModel.train()
    assert model.describe() == "ngram | sex" and model.labels == {"sex": ["F", "M"]}
    assert model.meta["data"]["split_method"] == "by distinct name"
    leslie, liam = (r.labels["sex"] for r in model.classify(["leslie", "liam"]))
    assert max(leslie, key=leslie.get) == "F"
    assert max(liam, key=liam.get) == "M"


def test_damaged_conditional_weights_are_refused(ngram, tmp_path):
    ngram.save(tmp_path / "m")
    meta_path = tmp_path / "m" / "namesmith.json"
    meta = json.loads(meta_path.read_text())
    weights_path = tmp_path / "m" / meta["weights"]["file"]
    original = load_file(weights_path)
    for name, damage, message in (("node_weights", lambda t: t.fill_(1e6), "mixture weights"),
                                  ("node_codes", lambda t: t.fill_(7), "label codes out of range"),
                                  ("gram_counts", lambda t: t.neg_(), "n-gram keys or counts")):
        tensors = {k: v.clone() for k, v in original.items()}
        damage(tensors[name])
        save_file(tensors, weights_path)
        meta["weights"]["sha256"] = sha256_file(weights_path)
        meta_path.write_text(json.dumps(meta))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / "m")


def test_evaluation_per_count_weighs_rows_by_their_counts(ngram):
    corpus = ngram.corpus
    x, y = corpus.tensors("test")
    log_probs = row_log_probs(ngram.model, x, y).numpy()
    chars = (y >= 0).sum(1).numpy()
    counts = corpus.counts["test"]
    expected = -(counts * log_probs).sum() / (counts * chars).sum()
    assert ngram.metrics["test"]["nll_per_count"] == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(ngram.metrics["val"]["nll"])


def test_a_conditional_network_resumes_exactly(one_thread, table_path, tmp_path):
    options = {**TINY["gru"], "max_steps": 30, "eval_every": 10, "device": "cpu"}
    reference = NameModel.train(table_path, "gru", condition=("sex",), weighting="share", **options)
    first = NameModel.train(table_path, "gru", condition=("sex",), weighting="share", out=tmp_path, **options,
                            callback=lambda step, total, metrics: step >= 13)
    assert first.history.stop_reason == "interrupted"
    resumed = NameModel.train(table_path, "gru", condition=("sex",), weighting="share", out=tmp_path, resume=True,
                              **options)
    assert resumed.history.steps == 30
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


# --- the command line ----------------------------------------------------------------------------------
def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_condition_where_classify(one_thread, capsys, table_path, tmp_path):
    out = tmp_path / "m"
    code, stdout, _ = run(capsys, "train", "--data", table_path, "--order", "3", "--condition", "sex",
                          "--weighting", "share", "--out", out, "--samples", "4")
    assert code == 0 and "ngram | sex" in stdout and "per count" in stdout
    assert "samples:\nsex=F: " in stdout and "\nsex=M: " in stdout
    code, stdout, _ = run(capsys, "sample", "-m", out, "-n", "5", "--where", "sex=F", "--seed", "1", "-q")
    assert code == 0 and len(stdout.split()) == 5
    code, stdout, _ = run(capsys, "classify", "-m", out, "malisa", "tobuko")
    assert code == 0 and stdout.startswith("malisa: sex F ") and "\ntobuko: sex M " in stdout
    code, stdout, _ = run(capsys, "classify", "-m", out, "malisa", "ma1isa", "tobuko")  # per name, as score
    assert code == 0 and stdout.splitlines()[1] == "ma1isa: error: '1' is not in the model's vocabulary"
    assert "\ntobuko: sex M " in stdout
    code, stdout, _ = run(capsys, "score", "-m", out, "malisa", "--where", "sex=F,M", "--json")
    assert code == 0 and json.loads(stdout)["scores"][0]["error"] is None
    for argv, message in ((["sample", "-m", out, "--where", "decade=1950s"], "--where: unknown label 'decade'"),
                          (["sample", "-m", out, "--where", "sex"], "--where: expected LABEL=VALUE"),
                          (["score", "-m", out, "malisa", "--where", "sex=X"], "'X' is not a value of 'sex'"),
                          (["train", "--data", table_path, "--condition", "era", "--out", tmp_path / "e"],
                           "condition: .* has no label column 'era'")):
        code, stdout, stderr = run(capsys, *argv)
        assert code == 1 and stdout == "" and len(stderr.strip().splitlines()) == 1
        assert re.search(message, stderr), stderr
    code, stdout, _ = run(capsys, "train", "--data", table_path, "--order", "3", "--condition", "none", "--out",
                          tmp_path / "plain", "--json", "--prior", "none")
    assert code == 0 and json.loads(stdout)["labels"] == {} and json.loads(stdout)["description"] == "ngram"


def test_guidance_sharpens_towards_the_labels(ngram):
    x, _ = encode_words(["malisa", "tobuko", "kim"], ngram.vocab)
    model = ngram.model
    guided = model.given({"sex": "F"}, guidance=2.0)
    expected = torch.log_softmax(3.0 * model.given({"sex": "F"})(x) - 2.0 * model.given()(x), -1)
    assert isinstance(guided, NGram) and torch.allclose(guided(x), expected, atol=1e-4)
    assert model.given({"sex": "F"}, guidance=0) is model.given({"sex": "F"})
    plain = sum(n.endswith("a") for n in ngram.generate(300, where={"sex": "F"}, seed=3).names)
    sharp = sum(n.endswith("a") for n in ngram.generate(300, where={"sex": "F"}, guidance=3, seed=3).names)
    assert sharp >= plain
    for bad in (-1, float("inf"), "2"):
        with pytest.raises(ConfigError, match="guidance must be a number >= 0") as e:
            ngram.generate(1, where={"sex": "F"}, guidance=bad)
        assert e.value.field == "guidance"


def test_a_guided_network_steps_as_it_reads(one_thread, table_path):
    trained = NameModel.train(table_path, "gru", condition=("sex",), **{**TINY["gru"], "ngram_mix": 3})
    x, _ = encode_words(["malisa", "tob"], trained.vocab)
    guided = trained.model.given({"sex": ["F", "M"]}, guidance=1.5)
    full = guided(x)
    state = guided.init_state(len(x))
    for t in range(x.shape[1]):
        logits, state = guided.step(state, x[:, t])
        assert torch.allclose(torch.log_softmax(logits, -1), torch.log_softmax(full[:, t], -1), atol=1e-4)
    network = trained.model.model
    conditional, unconditional = network.given({"sex": ["F", "M"]})(x), network.given()(x)
    expected = torch.log_softmax(2.5 * torch.log_softmax(conditional, -1) - 1.5 * torch.log_softmax(unconditional, -1),
                                 -1)
    assert torch.allclose(network.given({"sex": ["F", "M"]}, guidance=1.5)(x), expected, atol=1e-5)


def test_a_conditional_seed_bigram_descends_on_the_seed_schedule(one_thread, table_path):
    descended = NameModel.train(table_path, "bigram", condition=("sex",))
    counted = NameModel.train(table_path, "bigram-counts", condition=("sex",), smoothing=0.1)
    assert descended.meta["resolved_train_config"]["learning_rate"] == 100.0  # the seed's, not the default 1e-3
    assert descended.metrics["test"]["nll"] == pytest.approx(counted.metrics["test"]["nll"], abs=0.05)
