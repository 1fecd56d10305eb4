"""Issue #16, distillation: a network trained on a teacher's next-character distributions as well as on the
words (namesmith.training.distill, `namesmith train --teacher DIR`)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

import namesmith.training.distill as distill
from namesmith import NameModel
from namesmith.cli import main
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.data.words import load_words
from namesmith.models.nll import batch_loss, chunked_log_probs
from namesmith.training.checkpoint import load_checkpoint
from namesmith.training.distill import Lessons, distill_loss, weights_fingerprint

WORDS = load_words("builtin")[:800]
QUICK = {"max_steps": 60, "batch_size": 16, "eval_every": 20, "seed": 3, "device": "cpu", "ngram_mix": 0,
         "time_budget": 1e9}
GRU = {"n_embd": 8, "n_hidden": 24}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> NameModel:
    """A bigram n-gram of WORDS, saved: a teacher a small network can learn to imitate in 60 steps."""
    return NameModel.train(model="ngram", words=WORDS, order=2, device="cpu", prior="none",
                           out=tmp_path_factory.mktemp("teacher") / "ngram")


def kl_to(teacher: NameModel, student: NameModel) -> float:
    """Mean KL(teacher || student) per character over the training words."""
    x, y = teacher.corpus.tensors("train")
    total, count = 0.0, 0
    for (p, targets), (q, _) in zip(chunked_log_probs(teacher.model, x, y), chunked_log_probs(student.model, x, y)):
        mask = targets >= 0
        total += float((p.exp() * (p - q)).sum(-1)[mask].sum())
        count += int(mask.sum())
    return total / count


def test_the_loss_is_the_nll_at_weight_0_and_the_cross_entropy_with_the_teacher_at_weight_1():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, requires_grad=True)
    targets = torch.tensor([[1, 2, 0, -1, -1], [3, 3, 3, 4, 0], [2, 0, -1, -1, -1]])
    teacher = torch.softmax(torch.randn(3, 5, 7), -1)
    for tokens in (None, 9.5):
        assert torch.allclose(distill_loss(logits, targets, teacher, 0.0, tokens), batch_loss(logits, targets, tokens))
        one_hot = F.one_hot(targets.clamp(min=0), 7).float()
        assert torch.allclose(distill_loss(logits, targets, one_hot, 1.0, tokens), batch_loss(logits, targets, tokens))
    mask = targets >= 0
    soft = -(teacher * logits.log_softmax(-1)).sum(-1)[mask].mean()
    hard = batch_loss(logits, targets)
    assert torch.allclose(distill_loss(logits, targets, teacher, 0.3), 0.3 * soft + 0.7 * hard)
    # at weight 1 the student's best answer is the teacher's distribution: the gradient vanishes there
    at_teacher = teacher.log().clone().requires_grad_(True)
    distill_loss(at_teacher, targets, teacher, 1.0).backward()
    assert float(at_teacher.grad.abs().max()) < 1e-6
    distill_loss(at_teacher, targets, teacher, 0.5).backward()  # the words pull it away
    assert float(at_teacher.grad.abs().max()) > 1e-3


def test_the_lessons_are_the_teachers_distributions_kept_or_computed_per_batch(teacher, monkeypatch):
    x, y = teacher.corpus.tensors("train")
    lessons = Lessons(teacher.model, x, y, 0.7)
    assert lessons.table is not None and lessons.table.dtype == torch.float16
    rows = torch.tensor([5, 0, 17, 3])
    T = int((y[rows] >= 0).sum(1).max())
    expected = torch.softmax(teacher.model(x[rows, :T]).float(), -1)
    assert torch.allclose(lessons.probs(rows, T), expected, atol=1e-3)
    monkeypatch.setattr(distill, "MAX_TABLE_BYTES", 0)  # too large to keep: the teacher runs on each batch
    on_the_fly = Lessons(teacher.model, x, y, 0.7)
    assert on_the_fly.table is None
    assert torch.allclose(on_the_fly.probs(rows, T), expected, atol=1e-6)


def test_a_taught_network_predicts_like_its_teacher_and_records_it(teacher, tmp_path):
    fast = {**QUICK, "learning_rate": 0.03, "batch_size": 32}
    alone = NameModel.train(model="gru", words=WORDS, **fast, **GRU)
    taught = NameModel.train(model="gru", words=WORDS, out=tmp_path / "taught", teacher=teacher.directory,
                             distill_weight=1.0, **fast, **GRU)
    # same seed, same batches: the only difference is what it learned from (KL here 0.18 against 0.32)
    assert kl_to(teacher, taught) < 0.75 * kl_to(teacher, alone), (kl_to(teacher, taught), kl_to(teacher, alone))
    record = load_checkpoint(tmp_path / "taught").meta["teacher"]
    assert record["directory"] == str(teacher.directory.resolve())
    assert record["model_type"] == "ngram" and record["weights_sha256"] == weights_fingerprint(teacher.model)
    assert record["metrics"]["test"] == pytest.approx(teacher.metrics["test"]["nll"])
    # a teacher given as a loaded model is the same teacher
    again = NameModel.train(model="gru", words=WORDS, teacher=teacher, distill_weight=1.0, **fast, **GRU)
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), taught.model.state_dict().values()))


def test_a_teacher_too_large_to_tabulate_teaches_the_same(teacher, monkeypatch):
    kept = NameModel.train(model="gru", words=WORDS, teacher=teacher, **QUICK, **GRU)
    monkeypatch.setattr(distill, "MAX_TABLE_BYTES", 0)
    computed = NameModel.train(model="gru", words=WORDS, teacher=teacher, **QUICK, **GRU)
    for a, b in zip(kept.model.state_dict().values(), computed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=2e-3)  # float16 table against float32 on the fly


def test_an_interrupted_taught_run_resumes_exactly_with_its_teacher(teacher, tmp_path):
    reference = NameModel.train(model="gru", words=WORDS, teacher=teacher.directory, **QUICK, **GRU)
    first = NameModel.train(model="gru", words=WORDS, teacher=teacher.directory, out=tmp_path / "cut",
                            callback=lambda step, total, metrics: step >= 25, **QUICK, **GRU)
    assert first.history.stop_reason == "interrupted"
    resumed = NameModel.train(model="gru", words=WORDS, out=tmp_path / "cut", resume=True, device="cpu")
    assert resumed.history.steps == QUICK["max_steps"]
    for a, b in zip(resumed.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resuming_refuses_another_teacher_or_a_missing_one(teacher, tmp_path):
    other = NameModel.train(model="ngram", words=WORDS, order=3, device="cpu", prior="none",
                            out=tmp_path / "other")
    NameModel.train(model="gru", words=WORDS, teacher=teacher.directory, out=tmp_path / "cut",
                    callback=lambda step, total, metrics: step >= 5, **QUICK, **GRU)
    with pytest.raises(ConfigError, match="is not the teacher this run started with") as error:
        NameModel.train(model="gru", words=WORDS, out=tmp_path / "cut", resume=True, device="cpu",
                        teacher=other.directory)
    assert error.value.field == "teacher"
    NameModel.train(model="gru", words=WORDS, out=tmp_path / "plain",
                    callback=lambda step, total, metrics: step >= 5, **QUICK, **GRU)
    with pytest.raises(ConfigError, match="trained without a teacher"):
        NameModel.train(model="gru", words=WORDS, out=tmp_path / "plain", resume=True, device="cpu",
                        teacher=teacher.directory)


def test_a_run_whose_teacher_moved_resumes_with_the_teacher_given_again(teacher, tmp_path):
    moved = tmp_path / "teacher"
    shutil.copytree(teacher.directory, moved)
    NameModel.train(model="gru", words=WORDS, teacher=moved, out=tmp_path / "cut",
                    callback=lambda step, total, metrics: step >= 5, **QUICK, **GRU)
    moved.rename(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="the teacher of the run in .*; if it moved, pass teacher"):
        NameModel.train(model="gru", words=WORDS, out=tmp_path / "cut", resume=True, device="cpu")
    resumed = NameModel.train(model="gru", words=WORDS, out=tmp_path / "cut", resume=True, device="cpu",
                              teacher=tmp_path / "elsewhere")
    assert resumed.history.steps == QUICK["max_steps"]
    assert resumed.meta["teacher"]["directory"] == str((tmp_path / "elsewhere").resolve())


def test_a_different_teacher_makes_a_different_model_that_is_not_overwritten(teacher, tmp_path):
    out = tmp_path / "student"
    NameModel.train(model="gru", words=WORDS, teacher=teacher.directory, out=out, **QUICK, **GRU)
    other = NameModel.train(model="ngram", words=WORDS, order=3, device="cpu", prior="none",
                            out=tmp_path / "other")
    with pytest.raises(CheckpointError, match="already holds a trained gru"):
        NameModel.train(model="gru", words=WORDS, teacher=other.directory, out=out, **QUICK, **GRU)


def test_cli_trains_a_taught_network_and_reports_its_teacher(tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS) + "\n")
    assert main(["train", "--model", "ngram", "--order", "3", "--data", str(words), "--out", str(tmp_path / "t"),
                 "--samples", "0", "--prior", "none"]) == 0
    capsys.readouterr()
    args = ["train", "--model", "gru", "--data", str(words), "--out", str(tmp_path / "s"), "--teacher",
            str(tmp_path / "t"), "--max-steps", "20", "--n-hidden", "16", "--samples", "2", "--ngram-mix", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"taught by the ngram model in {tmp_path / 't'}" in out
    assert main([*args, "--json", "--overwrite"]) == 0
    record = json.loads(capsys.readouterr().out)["teacher"]
    assert record["model_type"] == "ngram" and record["directory"] == str((tmp_path / "t").resolve())


@pytest.mark.parametrize("case, message", [
    ("count student", "--teacher: distillation trains a neural model; ngram is not one"),
    ("other words", "was trained on other data (sha256 differs)"),
    ("no directory", "no such model directory"),
    ("weight", "--distill-weight must be in [0, 1], got 1.5"),
    ("prior", "is not distilled; train it with its teacher or with the prior, not both"),
    ("weight without teacher", "--distill-weight applies to a network trained with a teacher; none was given"),
])
def test_bad_teachers_are_refused_in_one_line(tmp_path, capsys, case, message):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS[:300]) + "\n")
    others = tmp_path / "others.txt"
    others.write_text("\n".join(WORDS[300:600]) + "\n")
    teacher = tmp_path / "t"
    assert main(["train", "--model", "ngram", "--order", "2", "--data", str(others if case == "other words" else words),
                 "--out", str(teacher), "--samples", "0", "-q", "--prior", "none"]) == 0
    args = ["train", "--model", "gru", "--data", str(words), "--out", str(tmp_path / "s"), "--teacher", str(teacher),
            "--max-steps", "5", "--samples", "0"]
    if case == "count student":
        args[2] = "ngram"
    elif case == "no directory":
        args[args.index("--teacher") + 1] = str(tmp_path / "nowhere")
    elif case == "weight":
        args += ["--distill-weight", "1.5"]
    elif case == "prior":
        args += ["--prior", str(teacher)]
    elif case == "weight without teacher":
        args = [arg for arg in args if arg not in ("--teacher", str(teacher))] + ["--distill-weight", "0.5"]
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s" / "namesmith.json").exists()
