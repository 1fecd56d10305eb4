"""End-to-end runs of the `namesmith` command (in-process through cli.main) in tmp_path."""

import json
import logging
import shutil

import pytest
import torch

from namesmith.cli import main
from namesmith.training.checkpoint import load_checkpoint

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


def test_train_on_builtin_data_then_sample(tmp_path, capsys, cli_trained):
    """The README's first command, `namesmith train --out out` on the built-in names (run once for the whole run,
    as the docs' examples read it: conftest.cli_trained), then sampling from what it saved."""
    trained = cli_trained("namesmith train --out out")
    stdout = (trained / "printout.txt").read_text(encoding="utf-8")
    assert "test: nll" in stdout and "samples:" in stdout and "saved to out" in stdout
    out = tmp_path / "model"
    shutil.copytree(trained / "out", out)
    meta = load_checkpoint(out).meta
    assert meta["data"]["path"] == "builtin" and meta["complete"]
    code, stdout, _ = run(capsys, "sample", "-m", out, "-n", "7", "--seed", "3")
    assert code == 0 and len(stdout.splitlines()) == 7
    assert run(capsys, "sample", "-m", out, "-n", "7", "--seed", "3")[1] == stdout


@pytest.mark.parametrize("model", ["bigram", pytest.param("bigram-counts", marks=pytest.mark.slow)])  # one fast
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
        code, stdout, err = run(capsys, "plot", what, "-m", out)
        png = out / f"{what}.png"
        if model == "bigram-counts" and what == "loss":  # fitted by counting: no curve, a one-line error
            assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
            assert "bigram-counts model has no loss curve" in err and not png.exists()
            continue
        assert code == 0 and stdout == f"{png}\n"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, _ = run(capsys, "plot", "heatmap", "--annotate", "-m", out, "-o", tmp_path / "counts.png")
    assert code == 0 and (tmp_path / "counts.png").stat().st_size > 10_000
    # without -o the annotated map goes beside the plain one, not over it
    plain = (out / "heatmap.png").read_bytes()
    code, stdout, _ = run(capsys, "plot", "heatmap", "--annotate", "-m", out)
    assert code == 0 and stdout == f"{out / 'heatmap-counts.png'}\n"
    assert (out / "heatmap-counts.png").read_bytes() == (tmp_path / "counts.png").read_bytes()
    assert (out / "heatmap.png").read_bytes() == plain


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

    assert "ngram" in MODEL_TYPES
    out = tmp_path / "m"
    assert run(capsys, "train", "--data", word_file, "--model", "ngram", "--prior", "none", "--out", out)[0] == 0
    code, _, err = run(capsys, "plot", "heatmap", "-m", out)
    assert code == 1 and "bigram table" in err


def test_quiet_works_before_and_after_the_command(tmp_path, capsys, caplog, word_file):
    out = tmp_path / "m"
    argv = ["train", "--data", word_file, "--model", "bigram-counts", "--out", out, "--samples", "0"]
    for where in ([], ["-q"], "after"):
        caplog.clear()
        code, stdout, _ = run(capsys, *(argv + ["-q"] if where == "after" else where + argv))
        assert code == 0
        infos = [r for r in caplog.records if r.name == "namesmith" and r.levelno == logging.INFO]
        assert bool(infos) == (where == []), (where, [r.message for r in infos])
        assert (stdout == "") == (where != []), stdout  # -q: warnings and errors only, as --help says
    caplog.clear()
    code, stdout, stderr = run(capsys, "sample", "-m", out, "-n", "3", "--seed", "1", "-q")
    assert code == 0 and len(stdout.splitlines()) == 3 and stderr == ""  # no summary line either
    code, _, stderr = run(capsys, "sample", "-m", out, "-n", "3", "--seed", "1")
    assert code == 0 and "3 names:" in stderr


def test_train_refuses_to_replace_a_different_model(tmp_path, capsys, word_file):
    out = tmp_path / "m"
    argv = ["train", "--data", word_file, "--model", "bigram-counts", "--out", out, "--samples", "0"]
    assert run(capsys, *argv)[0] == 0
    assert run(capsys, *argv)[0] == 0  # the same request again replaces its own result
    weights = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, *argv, "--smoothing", "0.5")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "already holds a trained bigram-counts model" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == weights  # untouched
    code, _, err = run(capsys, *argv, "--model", "bigram", "--max-steps", "5")
    assert code == 1 and "already holds a trained bigram-counts model" in err
    assert run(capsys, *argv, "--smoothing", "0.5", "--overwrite")[0] == 0
    assert load_checkpoint(out).meta["model_config"]["smoothing"] == 0.5


def test_api_refuses_to_replace_a_different_model(tmp_path, word_file):
    from namesmith import CheckpointError, ConfigError, NameModel

    out = tmp_path / "m"
    first = NameModel.train(word_file, "bigram-counts", out=out)
    again = NameModel.train(word_file, "bigram-counts", out=out)  # the same request
    assert torch.equal(again.model.log_probs(), first.model.log_probs())
    with pytest.raises(CheckpointError, match="already holds a trained bigram-counts model") as error:
        NameModel.train(word_file, "bigram-counts", out=out, smoothing=0.5)
    assert error.value.field == "out"
    assert NameModel.load(out).meta["model_config"]["smoothing"] == first.meta["model_config"]["smoothing"]
    other = NameModel.train(word_file, "bigram-counts", out=out, smoothing=0.5, overwrite=True)
    assert NameModel.load(out).meta["model_config"]["smoothing"] == 0.5
    # save: into its own directory, or a new one, freely; over another model only with overwrite
    other.save(out)
    first.save(tmp_path / "copy")
    copy = NameModel.load(tmp_path / "copy")
    assert torch.equal(copy.model.log_probs(), first.model.log_probs())
    with pytest.raises(ConfigError, match="already holds a trained model") as error:
        copy.save(out)
    assert error.value.field == "directory"
    assert NameModel.load(out).meta["model_config"]["smoothing"] == 0.5
    copy.save(out, overwrite=True)
    assert torch.equal(NameModel.load(out).model.log_probs(), first.model.log_probs())


def test_eval_and_score_read_word_lists_with_the_data_options(tmp_path, capsys, word_file):
    out = tmp_path / "m"
    assert run(capsys, "-q", "train", "--data", word_file, "--model", "bigram-counts", "--out", out)[0] == 0
    other = tmp_path / "other.txt"
    other.write_bytes("emma\nolivia\nmia\n".encode("utf-16"))
    code, _, err = run(capsys, "eval", "-m", out, "--data", other)
    assert code == 1 and "--encoding utf-16" in err and err.count("\n") == 1
    code, stdout, _ = run(capsys, "eval", "-m", out, "--data", other, "--encoding", "utf-16", "--json")
    assert code == 0 and json.loads(stdout)["all"]["n_words"] == 3
    code, stdout, _ = run(capsys, "eval", "-m", out, "--data", other, "--encoding", "utf-16", "--json",
                          "--max-line-length", "4")
    assert code == 0 and json.loads(stdout)["all"]["n_words"] == 2  # olivia is skipped
    code, stdout, _ = run(capsys, "score", "-m", out, "--file", other, "--encoding", "utf-16", "--json")
    assert code == 0 and [s["name"] for s in json.loads(stdout)["scores"]] == ["emma", "olivia", "mia"]


def test_score_and_classify_print_names_as_sample_does(tmp_path, capsys):
    """A model of title-cased names prints Title Case: sample, score and classify alike."""
    path = tmp_path / "names.txt"
    path.write_text("".join(f"{n}\n" for n in ["Anna", "Bella", "Cara", "Dora", "Ella", "Fiona"] * 4))
    out = tmp_path / "m"
    assert run(capsys, "train", "--data", path, "--model", "bigram-counts", "--out", out, "-q")[0] == 0
    code, stdout, _ = run(capsys, "sample", "-m", out, "-n", "3", "--seed", "1", "-q")
    assert code == 0 and all(name[0].isupper() for name in stdout.split())
    code, stdout, _ = run(capsys, "score", "-m", out, "anna", "BELLA")
    assert code == 0 and [line.split()[0] for line in stdout.splitlines()[1:]] == ["Anna", "Bella"]


def test_serve_help_needs_no_source_file(capsys):
    """pip users have no namesmith/serve/limits.py to read: `--limit help` lists the limits."""
    pytest.importorskip("fastapi")
    from namesmith.serve.limits import Limits

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    assert ".py" not in text and "--limit help" in " ".join(text.split())
    code, stdout, _ = run(capsys, "serve", "--limit", "help")
    assert code == 0 and stdout.splitlines() == [f"{k}={v}" for k, v in Limits().to_dict().items()]
