"""Every registered model type, end to end through the CLI: train → load → constrained sample →
score → eval → plot (where the model has the figure). Tiny configs, seconds each."""

from __future__ import annotations

import json

import pytest

from namesmith.cli import main
from namesmith.data.words import load_words, read_builtin_table
from namesmith.models import MODEL_TYPES, trainable_types
from namesmith.namemodel import NameModel

NEURAL = ["--max-steps", "30", "--eval-every", "10", "--batch-size", "16", "--ngram-mix", "0"]
TINY = {
    "bigram-counts": [],
    "bigram": ["--max-steps", "50"],
    "ngram": ["--order", "3"],
    "mlp": [*NEURAL, "--n-embd", "8", "--n-hidden", "16", "--block-size", "3"],
    "wavenet": [*NEURAL, "--n-embd", "8", "--n-hidden", "16"],
    "rnn": [*NEURAL, "--n-embd", "8", "--n-hidden", "16"],
    "gru": [*NEURAL, "--n-embd", "8", "--n-hidden", "16"],
    "lstm": [*NEURAL, "--n-embd", "8", "--n-hidden", "16"],
    "transformer": [*NEURAL, "--n-layer", "1", "--n-head", "2", "--n-embd", "16"],
}
# wrappers are built from trained models: the n-gram mix by training a network with --ngram-mix, the
# conditional models by training a count model or a network on a table with --condition, the
# ensemble by combining trained models with `namesmith ensemble`, the sparse n-gram by adapting an
# n-gram of a short list onto the catalogue's prior
WRAPPERS = {"ngram-mix": ("gru", [*TINY["gru"][:-2], "--ngram-mix", "3", "--n-embd", "8", "--n-hidden", "16"]),
            "conditional-counts": ("ngram", [*TINY["ngram"], "--condition", "sex"]),
            "conditional-network": ("gru", [*TINY["gru"], "--condition", "sex"]),
            "ensemble": ("ensemble", ["gru", "ngram"]),
            # an n-gram of a short list adapted onto the catalogue's prior (namesmith.adaptation.adapt)
            "sparse-ngram": ("ngram", ["--order", "3", "--prior", "auto"])}
ON_TABLE = {"conditional-counts", "conditional-network"}


def test_every_registered_type_is_covered():
    assert set(TINY) == set(trainable_types())
    assert set(TINY) | set(WRAPPERS) == set(MODEL_TYPES)


@pytest.fixture(scope="module")
def words_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "names.txt"
    path.write_text("\n".join(load_words("builtin")[:400]) + "\n")
    return path


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    """The first 400 built-in names as a table: name, sex, count (a unisex name on two rows)."""
    path = tmp_path_factory.mktemp("data") / "names.tsv"
    rows = [f"{name}\t{sex}\t{births}" for name, female, male in read_builtin_table()[:400]
            for sex, births in (("F", female), ("M", male)) if births]
    path.write_text("name\tsex\tcount\n" + "\n".join(rows) + "\n")
    return path


def run_json(capsys, argv: list[str]) -> object:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # every type through the CLI: up to 60 s each, busy machine
@pytest.mark.parametrize("name", [*TINY, *WRAPPERS])
def test_train_load_sample_score_eval_plot(one_thread, tmp_path, capsys, words_file, table_file, name):
    model_type, options = WRAPPERS[name] if name in WRAPPERS else (name, TINY[name])
    out = str(tmp_path / "model")
    data = table_file if name in ON_TABLE else words_file
    if model_type == "ensemble":  # its members first, then the command that combines them
        members = []
        for member in options:
            members += ["-m", str(tmp_path / member)]
            assert main(["train", "--model", member, "--data", str(words_file), "--out", str(tmp_path / member),
                         "--samples", "0", "--seed", "1", "-q", "--prior", "none", *TINY[member]]) == 0
        trained = run_json(capsys, ["ensemble", *members, "--out", out])
    else:
        trained = run_json(capsys, ["train", "--model", model_type, "--data", str(data), "--out", out,
                                    "--samples", "3", "--seed", "1", "--prior", "none", *options])
    loaded = NameModel.load(out)
    assert loaded.model_type == name and trained["metrics"] == loaded.metrics
    assert trained["metrics"]["test"]["nll"] == pytest.approx(loaded.evaluate()["test"]["nll"], rel=1e-5)

    sampled = run_json(capsys, ["sample", "-m", out, "-n", "5", "--starts-with", "a", "--ends-with", "a",
                                "--min-len", "3", "--seed", "2"])
    names = sampled["names"]
    assert len(names) == 5 and all(n.startswith("a") and n.endswith("a") and len(n) >= 3 for n in names)
    again = run_json(capsys, ["sample", "-m", out, "-n", "5", "--starts-with", "a", "--ends-with", "a",
                              "--min-len", "3", "--seed", "2"])
    assert again["names"] == names  # same seed, same names

    scores = run_json(capsys, ["score", "-m", out, "emma", names[0], "--sort"])["scores"]
    assert {s["name"] for s in scores} == {"emma", names[0]}
    assert all(s["error"] is None and s["percentile"] is not None for s in scores)
    api = loaded.score(["emma"])[0]
    assert next(s for s in scores if s["name"] == "emma")["log_prob"] == pytest.approx(api.log_prob, rel=1e-6)

    metrics = run_json(capsys, ["eval", "-m", out])
    expected = loaded.evaluate()
    assert set(metrics) == set(expected) == {"train", "val", "test"}
    for part, values in expected.items():
        assert metrics[part] == pytest.approx(values)

    if name in ON_TABLE:  # the labels: where, classify
        assert loaded.labels == {"sex": ["F", "M"]}
        girls = run_json(capsys, ["sample", "-m", out, "-n", "3", "--where", "sex=F", "--ends-with", "a",
                                  "--seed", "2"])
        assert len(girls["names"]) == 3 and all(n.endswith("a") for n in girls["names"])
        posterior = run_json(capsys, ["classify", "-m", out, "emma"])["names"][0]["posterior"]["sex"]
        assert set(posterior) == {"F", "M"} and sum(posterior.values()) == pytest.approx(1.0)

    if loaded.model.transition_table() is not None:
        assert main(["plot", "heatmap", "-m", out]) == 0
        assert (tmp_path / "model" / "heatmap.png").read_bytes().startswith(b"\x89PNG")
    else:
        assert main(["plot", "heatmap", "-m", out]) == 1  # one clear line: no bigram table
    has_curve = len(loaded.history.train_loss) + len(loaded.history.val_loss) >= 2
    assert main(["plot", "loss", "-m", out]) == (0 if has_curve else 1)
    assert (tmp_path / "model" / "loss.png").exists() == has_curve
