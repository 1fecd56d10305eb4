"""End-to-end runs of the `namesmith` command (in-process through cli.main) in tmp_path."""

import json

import pytest

from namesmith.checkpoint import load_checkpoint
from namesmith.cli import main

WORDS = "emma\nolivia\nava\nisabella\nsophia\nmia\namelia\nharper\nevelyn\nabigail\nquinn\nquentin\n"


@pytest.fixture
def word_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text(WORDS, encoding="utf-8")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_on_builtin_data_then_sample(tmp_path, capsys):
    out = tmp_path / "model"
    code, stdout, _ = run(capsys, "train", "--out", out, "--max-steps", "200", "--samples", "5")
    assert code == 0
    assert "test: nll" in stdout and "samples:" in stdout
    meta = load_checkpoint(out).meta
    assert meta["data"]["path"] == "builtin" and meta["complete"]
    code, stdout, _ = run(capsys, "sample", "-m", out, "-n", "7", "--seed", "3")
    assert code == 0 and len(stdout.splitlines()) == 7
    assert run(capsys, "sample", "-m", out, "-n", "7", "--seed", "3")[1] == stdout


@pytest.mark.parametrize("model", ["bigram", "bigram-counts"])
def test_train_eval_report_plot(tmp_path, capsys, word_file, model):
    out = tmp_path / model
    code, stdout, _ = run(capsys, "train", "--data", word_file, "--model", model, "--out", out, "--json",
                          "--max-steps", "500")
    assert code == 0
    result = json.loads(stdout)
    assert result["metrics"]["train"]["nll"] > 0 and len(result["samples"]) == 10
    code, stdout, _ = run(capsys, "eval", "-m", out, "--json")
    assert code == 0 and json.loads(stdout)["train"]["nll"] == pytest.approx(result["metrics"]["train"]["nll"])
    code, stdout, _ = run(capsys, "report", "-m", out, "--top", "3")
    assert code == 0 and len(stdout.splitlines()) == 2 + 3 and stdout.count("→") == 3
    for what in ("heatmap", "loss"):
        if model == "bigram-counts" and what == "loss":
            continue
        code, stdout, _ = run(capsys, "plot", what, "-m", out)
        assert code == 0
        png = out / f"{what}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, _ = run(capsys, "plot", "heatmap", "--annotate", "-m", out, "-o", tmp_path / "counts.png")
    assert code == 0 and (tmp_path / "counts.png").stat().st_size > 10_000


def test_report_shows_q_to_u_beside_the_data(tmp_path, capsys, word_file):
    out = tmp_path / "m"
    run(capsys, "train", "--data", word_file, "--model", "bigram-counts", "--smoothing", "0", "--out", out,
        "--no-split")
    code, stdout, _ = run(capsys, "report", "-m", out, "--json")
    rows = json.loads(stdout)
    qu = next(r for r in rows if (r["previous"], r["next"]) == ("q", "u"))
    assert qu["model_prob"] == pytest.approx(1.0) and qu["data_count"] == qu["data_total"] == 2


def test_eval_on_another_word_list(tmp_path, capsys, word_file):
    out = tmp_path / "m"
    run(capsys, "train", "--data", word_file, "--model", "bigram-counts", "--out", out)
    other = tmp_path / "other.txt"
    other.write_text("emma\nmia\n")
    code, stdout, _ = run(capsys, "eval", "-m", out, "--data", other, "--json")
    assert code == 0 and json.loads(stdout)["all"]["n_words"] == 2


@pytest.mark.parametrize("argv, message", [
    (["sample", "-m", "does-not-exist"], "no such model directory"),
    (["train", "--data", "missing.txt"], "missing.txt: no such file"),
    (["train", "--model", "bigram-counts", "--smoothing", "-1"], "--smoothing"),
    (["train", "--model", "bigram", "--learning-rate", "0"], "--learning-rate"),
    (["train", "--device", "tpu"], "--device"),
])
def test_errors_are_one_line_and_exit_1(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_heatmap_of_non_bigram_model_is_a_clear_error(tmp_path, capsys, word_file, monkeypatch):
    from namesmith.models import MODEL_TYPES

    if "ngram" not in MODEL_TYPES:
        pytest.skip("no ngram model")
    out = tmp_path / "m"
    assert run(capsys, "train", "--data", word_file, "--model", "ngram", "--out", out)[0] == 0
    code, _, err = run(capsys, "plot", "heatmap", "-m", out)
    assert code == 1 and "bigram table" in err
