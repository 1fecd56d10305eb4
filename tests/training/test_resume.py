"""Issue #5, interruption: a stopped run saves a resumable checkpoint; `--resume` ends where an
uninterrupted run with the same seed ends, bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from namesmith import NameModel, cli
from namesmith.core.errors import CheckpointError, ConfigError
from namesmith.training.checkpoint import load_checkpoint

NAMES = ("anna bob carl dora emil fritz gina hugo ida jan kim lena mona nils otto paul quinn rosa sven tina "  # noqa: SIM905
         "ulla vera wim xena yann zoe").split()


pytestmark = pytest.mark.usefixtures("one_thread")


def stop_at(k: int):
    return lambda step, total, metrics: step >= k


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("mode, k", [("full-batch", 51), ("full-batch", 1), ("one-hot", 7),
                                     ("per-example-nll", 2)])
def test_bigram_api_resume_is_exact(tmp_path, mode, k):
    max_steps = {"full-batch": 120, "one-hot": 20}.get(mode, 4)
    config = {"max_steps": max_steps, "mode": mode, "subset": 40, "device": "cpu", "split_seed": 3}
    reference = NameModel.train(model="bigram", words=NAMES, **config)
    first = NameModel.train(model="bigram", words=NAMES, out=tmp_path, callback=stop_at(k), **config)
    assert first.history.stop_reason == "interrupted" and first.history.steps == k < max_steps
    saved = load_checkpoint(tmp_path, with_train_state=True)
    assert saved.meta["complete"] is False and saved.train_state is not None
    resumed = NameModel.train(model="bigram", words=NAMES, split_seed=3, device="cpu", out=tmp_path, resume=True)
    assert resumed.history.steps == max_steps and resumed.history.stop_reason == "finished"
    assert_same_weights(resumed.model, reference.model)
    final = load_checkpoint(tmp_path, with_train_state=True)
    assert final.meta["complete"] is True and final.train_state is None
    assert not list(tmp_path.glob("train_state-*"))  # the finished run drops its resumable state
    assert_same_weights(final.model, reference.model)


def test_mlp_api_resume_is_exact(tmp_path):
    config = {"max_steps": 30, "batch_size": 8, "eval_every": 10, "device": "cpu", "seed": 5}
    model_config = {"n_embd": 4, "n_hidden": 16, "block_size": 2}
    reference = NameModel.train(model="mlp", words=NAMES, **config, **model_config)
    assert reference.model.model_type == "ngram-mix" and reference.model.model.model_type == "mlp"  # the default
    first = NameModel.train(model="mlp", words=NAMES, out=tmp_path, callback=stop_at(13), **config, **model_config)
    assert first.history.stop_reason == "interrupted" and first.history.steps == 13
    assert first.model.model_type == "mlp"  # an unfinished network is not mixed with the n-gram yet
    resumed = NameModel.train(model="mlp", words=NAMES, device="cpu", out=tmp_path, resume=True)
    assert resumed.history.steps == 30 and resumed.history.stop_reason == "finished"
    assert_same_weights(resumed.model, reference.model)
    assert resumed.metrics == reference.metrics
    assert_same_weights(NameModel.load(tmp_path).model, reference.model)


def test_resume_refusals(tmp_path):
    config = {"max_steps": 50, "device": "cpu"}
    with pytest.raises(ConfigError, match="^resume needs out") as error:
        NameModel.train(model="bigram", words=NAMES, resume=True, **config)
    assert error.value.field == "resume"
    with pytest.raises(CheckpointError, match="no such model directory"):
        NameModel.train(model="bigram", words=NAMES, out=tmp_path / "none", resume=True, **config)
    NameModel.train(model="bigram", words=NAMES, out=tmp_path / "done", **config)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        NameModel.train(model="bigram", words=NAMES, out=tmp_path / "done", resume=True, **config)
    NameModel.train(model="bigram", words=NAMES, out=tmp_path / "cut", callback=stop_at(11), **config)
    with pytest.raises(ConfigError, match="holds a bigram model, not bigram-counts") as error:
        NameModel.train(model="bigram-counts", words=NAMES, out=tmp_path / "cut", resume=True, **config)
    assert error.value.field == "model"
    with pytest.raises(ConfigError, match="data differs") as error:
        NameModel.train(model="bigram", words=NAMES + ["zygmunt"], out=tmp_path / "cut", resume=True, **config)
    assert error.value.field == "data"
    # the refusals left the interrupted run as it was: it still resumes
    resumed = NameModel.train(model="bigram", words=NAMES, out=tmp_path / "cut", resume=True, device="cpu")
    assert resumed.history.steps == 50 and resumed.history.stop_reason == "finished"


def test_interrupted_checkpoint_is_a_usable_model(tmp_path, capsys):
    NameModel.train(model="bigram", words=NAMES, out=tmp_path, callback=stop_at(21), max_steps=100, device="cpu")
    assert cli.main(["sample", "-m", str(tmp_path), "-n", "5", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) <= 5


def _namesmith(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "namesmith.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _interrupt(argv: list[str], sig: int) -> tuple[int, str, str]:
    """Run `namesmith train`, send `sig` once training has started; (exit status, stdout, stderr)."""
    proc = _namesmith(*argv)
    stderr_lines: list[str] = []
    for line in proc.stderr:  # train() logs "training bigram on ..." just before fitting
        stderr_lines.append(line)
        if "training bigram" in line:
            proc.send_signal(sig)
            break
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    stdout = proc.stdout.read()
    rc = proc.wait(timeout=120)
    reader.join(timeout=10)
    return rc, stdout, "".join(stderr_lines)


def _train_argv(tmp_path: Path, steps: int) -> list[str]:
    data = tmp_path / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    return ["train", "--model", "bigram", "--data", str(data), "--out", str(tmp_path / "model"),
            "--max-steps", str(steps), "--seed", "7", "--samples", "0", "--device", "cpu"]


@pytest.mark.slow  # a subprocess trained twice; test_cli_sigterm_saves_a_resumable_checkpoint keeps the path fast
def test_cli_sigint_saves_and_resume_matches_uninterrupted(tmp_path):
    """A real SIGINT to a real `namesmith train`: exit 130, a resumable checkpoint, an exact resume."""
    steps = 50_000  # ~1 s of full-batch epochs: long enough to be interrupted mid-way
    argv = _train_argv(tmp_path, steps)
    rc, stdout, stderr = _interrupt(argv, signal.SIGINT)
    assert rc == cli.EXIT_INTERRUPTED, stdout + stderr
    assert "Traceback" not in stderr and "(interrupted)" in stdout and "--resume" in stdout
    saved = load_checkpoint(tmp_path / "model", with_train_state=True)
    assert saved.train_state is not None and 0 < saved.train_state["meta"]["epoch"] < steps

    resumed = subprocess.run([sys.executable, "-m", "namesmith.cli", *argv, "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"trained bigram for {steps:,} steps" in resumed.stdout
    reference = NameModel.train(argv[4], "bigram", max_steps=steps, seed=7, device="cpu")
    assert_same_weights(load_checkpoint(tmp_path / "model").model, reference.model)


def test_cli_sigterm_saves_a_resumable_checkpoint(tmp_path):
    rc, stdout, stderr = _interrupt(_train_argv(tmp_path, 10_000_000), signal.SIGTERM)
    assert rc == cli.EXIT_INTERRUPTED, stdout + stderr
    assert "Traceback" not in stderr and "(interrupted)" in stdout
    assert load_checkpoint(tmp_path / "model", with_train_state=True).train_state is not None


@pytest.mark.slow  # a subprocess; the SIGTERM test keeps the path fast
def test_second_sigint_aborts(tmp_path):
    """Ctrl-C twice: the second one aborts at once (exit 130), no traceback."""
    data = tmp_path / "names.txt"
    data.write_text("\n".join(NAMES) + "\n")
    proc = _namesmith("train", "--model", "bigram", "--mode", "per-example-nll", "--max-steps", "100000",
                      "--data", str(data), "--out", str(tmp_path / "m"), "--device", "cpu")
    for line in proc.stderr:
        if "training bigram" in line:
            proc.send_signal(signal.SIGINT)
        if "press Ctrl-C again" in line:
            proc.send_signal(signal.SIGINT)
            break
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED
    assert "Traceback" not in rest


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([str(Path(__file__))]))
