"""Issue #17, DistributedDataParallel: 2 ranks over gloo train as one process on the same global batches.

The ranks are real processes (torch.multiprocessing "spawn", or the CLI as subprocesses, or
`namesmith train --nproc 2` through torchrun's agent) joined by the environment variables torchrun
sets. One spawn runs several trainings in a row and leaves its results in files; the tests read them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from namesmith.core.config import TrainConfig
from namesmith.data.words import DataConfig, load_words
from namesmith.training.checkpoint import load_checkpoint
from namesmith.training.train import train

WORDS = load_words("builtin")[:2000]
# calibration (seconds a run, not what ranks must agree on: it runs after training, on rank 0's weights) is off
BASE = {"max_steps": 30, "eval_every": 10, "batch_size": 16, "seed": 3, "ngram_mix": 0, "device": "cpu",
        "calibrate": "none"}
UNCALIBRATED = TrainConfig(device="cpu", calibrate="none")
LSTM = {"n_embd": 8, "n_hidden": 16}
RUNS = {  # name: (model type, training options, model options)
    "lstm": ("lstm", {}, LSTM),  # by-length batches and a weight average: the LSTM's defaults
    "transformer": ("transformer", {"batching": "random", "ema": 0.0},
                    {"n_layer": 1, "n_head": 2, "n_embd": 16, "dropout": 0.0}),
}
STOP_AT = 7  # rank 1's callback asks to stop after this step
AGREE = {  # runs whose end each rank could see differently: its own clock, its own share of the validation split
    "budget": {"max_steps": 10**6, "time_budget": 1.0, "eval_every": 50},
    "patience": {"learning_rate": 0.3, "warmup_steps": 0, "eval_every": 2, "patience": 1},  # stops at step 6
}
TIMEOUT = 3.0  # NAMESMITH_DIST_TIMEOUT for the hung-rank test

pytestmark = pytest.mark.usefixtures("one_thread")
# Each launch starts processes that import torch (seconds of CPU each): the fast set (-m "not slow") keeps one, two
# CLI ranks over gloo that train and lose one rank; the whole suite runs every launch
SLOW = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, size: int, port: int, timeout: float = 60.0) -> dict[str, str]:
    """What torchrun tells each process."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(size), "NAMESMITH_DIST_TIMEOUT": str(timeout), "OMP_NUM_THREADS": "1"}


def config(**options) -> TrainConfig:
    return TrainConfig(**{**BASE, **options})


def _record(tmp: Path, rank: int, name: str, checkpoint) -> None:
    save_file({k: v.contiguous() for k, v in checkpoint.model.state_dict().items()}, tmp / f"{name}-{rank}.safetensors")
    history = checkpoint.meta["history"]
    (tmp / f"{name}-{rank}.json").write_text(json.dumps({"steps": history["steps"],
                                                         "stop_reason": history["stop_reason"]}))


def _rank_main(rank: int, size: int, port: int, tmp: str) -> None:
    """One rank: every run of RUNS, then a run that rank 1 interrupts, resumed on both ranks."""
    os.environ.update(rank_env(rank, size, port))
    torch.set_num_threads(1)
    import namesmith.training.train as train_module

    tmp_path = Path(tmp)
    real_save = train_module.save_checkpoint

    def save_and_count(out, *args, **kwargs):
        with open(tmp_path / f"saves-{rank}.txt", "a") as f:
            f.write(Path(out).name + "\n")
        return real_save(out, *args, **kwargs)

    train_module.save_checkpoint = save_and_count
    for name, (model_type, options, model_options) in RUNS.items():
        checkpoint, _ = train(model_type, DataConfig(), config(**options), model_options, words=WORDS,
                              out=tmp_path / name)
        _record(tmp_path, rank, name, checkpoint)
    for name, options in AGREE.items():
        checkpoint, _ = train("lstm", DataConfig(), config(**options), LSTM, words=WORDS)
        _record(tmp_path, rank, name, checkpoint)
    checkpoint, _ = train("lstm", DataConfig(), config(), LSTM, words=WORDS, out=tmp_path / "taught",
                          teacher=tmp_path / "teacher")
    _record(tmp_path, rank, "taught", checkpoint)
    checkpoint, _ = train("ngram", DataConfig(), UNCALIBRATED, {"order": 3}, words=WORDS,
                          out=tmp_path / "ngram")  # rank 0 counts, rank 1 waits and loads
    _record(tmp_path, rank, "ngram", checkpoint)
    stop = (lambda step, total, metrics: step >= STOP_AT) if rank == 1 else None  # as Ctrl-C on rank 1 would
    checkpoint, _ = train("lstm", DataConfig(), config(), LSTM, words=WORDS, out=tmp_path / "cut", callback=stop)
    _record(tmp_path, rank, "cut", checkpoint)
    if rank == 0:  # every rank returned: the interrupted run is saved; keep a copy to resume in one process
        shutil.copytree(tmp_path / "cut", tmp_path / "cut-copy")
    checkpoint, _ = train("lstm", DataConfig(), UNCALIBRATED, words=WORDS, out=tmp_path / "cut",
                          resume=True)
    _record(tmp_path, rank, "resumed", checkpoint)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """The results of `_rank_main` on 2 ranks."""
    tmp = tmp_path_factory.mktemp("ddp")
    train("ngram", DataConfig(), UNCALIBRATED, {"order": 3}, words=WORDS, out=tmp / "teacher")
    context = torch.multiprocessing.get_context("spawn")
    port = free_port()
    ranks = [context.Process(target=_rank_main, args=(rank, 2, port, str(tmp))) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=240)
    codes = [process.exitcode for process in ranks]
    for process in ranks:
        if process.exitcode is None:
            process.kill()
    assert codes == [0, 0], f"ranks exited with {codes}"
    return tmp


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@SLOW
@pytest.mark.parametrize("name", [*RUNS, "taught"])
def test_two_ranks_end_with_the_weights_of_one_process_on_the_same_batches(two_ranks, name):
    model_type, options, model_options = RUNS.get(name, RUNS["lstm"])
    teacher = two_ranks / "teacher" if name == "taught" else None  # distillation (namesmith.training.distill)
    reference, _ = train(model_type, DataConfig(), config(**options), model_options, words=WORDS, teacher=teacher)
    rank0, rank1 = weights(two_ranks / f"{name}-0.safetensors"), weights(two_ranks / f"{name}-1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "the ranks' replicas differ"
    assert max_difference(rank0, reference.model.state_dict()) < 1e-5
    saved = load_checkpoint(two_ranks / name)
    assert saved.meta["history"]["steps"] == BASE["max_steps"]
    assert saved.meta["metrics"]["val"]["nll"] == pytest.approx(reference.meta["metrics"]["val"]["nll"], abs=1e-5)


@SLOW
def test_ranks_agree_when_the_time_budget_or_early_stopping_ends_the_run(two_ranks):
    reference, _ = train("lstm", DataConfig(), config(**AGREE["patience"]), LSTM, words=WORDS)
    for name, stop_reason in (("budget", "time budget"), ("patience", "early stopping")):
        records = [json.loads((two_ranks / f"{name}-{rank}.json").read_text()) for rank in (0, 1)]
        assert records[0] == records[1] and records[0]["stop_reason"] == stop_reason
        rank0, rank1 = weights(two_ranks / f"{name}-0.safetensors"), weights(two_ranks / f"{name}-1.safetensors")
        assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert records[0]["steps"] == reference.meta["history"]["steps"] == 6


@SLOW
def test_rank_zero_alone_writes_each_checkpoint_once(two_ranks):
    assert not (two_ranks / "saves-1.txt").exists()
    saves = (two_ranks / "saves-0.txt").read_text().split()
    for name in [*RUNS, "taught"]:  # one per evaluation (steps 10, 20, 30) and the final model
        assert saves.count(name) == 4
    assert saves.count("cut") == 2 + 4  # the interrupt, the interrupted model; then the resumed run's 3 + 1
    assert saves.count("ngram") == 1


@SLOW
def test_a_count_model_is_fitted_by_rank_zero_and_loaded_by_the_others(two_ranks):
    rank0, rank1 = weights(two_ranks / "ngram-0.safetensors"), weights(two_ranks / "ngram-1.safetensors")
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    reference, _ = train("ngram", DataConfig(), UNCALIBRATED, {"order": 3}, words=WORDS)
    assert all(torch.equal(rank0[k], v) for k, v in reference.model.state_dict().items())
    assert not list((two_ranks / "lstm").glob(".*.tmp"))


@SLOW
def test_an_interrupt_on_one_rank_stops_every_rank_after_the_same_step(two_ranks):
    for rank in (0, 1):
        record = json.loads((two_ranks / f"cut-{rank}.json").read_text())
        assert record == {"steps": STOP_AT + 1, "stop_reason": "interrupted"}  # agreed at the next step's all-reduce
    saved = load_checkpoint(two_ranks / "cut-copy", with_train_state=True)
    assert saved.meta["complete"] is False and saved.train_state["meta"]["world_size"] == 2
    assert saved.train_state["meta"]["step"] == STOP_AT + 1


@SLOW
def test_resuming_on_as_many_ranks_is_exact(two_ranks):
    uninterrupted = weights(two_ranks / "lstm-0.safetensors")
    for rank in (0, 1):
        resumed = weights(two_ranks / f"resumed-{rank}.safetensors")
        assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert load_checkpoint(two_ranks / "cut").meta["complete"] is True


@SLOW
def test_a_run_of_two_ranks_resumes_in_one_process(two_ranks, tmp_path):
    out = tmp_path / "cut"
    shutil.copytree(two_ranks / "cut-copy", out)
    resumed, _ = train("lstm", DataConfig(), UNCALIBRATED, words=WORDS, out=out, resume=True)
    assert resumed.meta["history"]["steps"] == BASE["max_steps"]
    # the same batches and schedule; only the order of floating-point sums differs
    assert max_difference(resumed.model.state_dict(), weights(two_ranks / "lstm-0.safetensors")) < 1e-5


# --- ranks that die or hang: the CLI as two processes, as torchrun would start them -------------

def _cli_ranks(tmp_path: Path, timeout: float) -> list[subprocess.Popen]:
    port = free_port()
    argv = [sys.executable, "-m", "namesmith", "train", "--model", "lstm", "--n-embd", "8", "--n-hidden", "16",
            "--max-steps", "1000000", "--eval-every", "20", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--samples", "0", "--calibrate", "none"]
    return [subprocess.Popen(argv, env={**os.environ, **rank_env(rank, 2, port, timeout), "PYTHONUNBUFFERED": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]


def _read_until_checkpoint(process: subprocess.Popen, out: Path) -> list[tuple[float, str]]:
    """Collect the process's stderr lines (with the time each came) until `out` holds a checkpoint."""
    lines: list[tuple[float, str]] = []
    threading.Thread(target=lambda: lines.extend((time.perf_counter(), line) for line in process.stderr),
                     daemon=True).start()
    deadline = time.perf_counter() + 180
    while not (out / "namesmith.json").exists():  # the first evaluation's: training is under way
        assert process.poll() is None and time.perf_counter() < deadline, "".join(text for _, text in lines)
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("fate", [pytest.param("dies", marks=SLOW), pytest.param("hangs", marks=SLOW)])
def test_a_rank_that_dies_or_hangs_makes_the_other_exit_with_a_clear_message(tmp_path, fate):
    # a rank that dies is noticed at once, so its test sets a timeout it must not wait for; one that hangs, after
    # the timeout. Only lower bounds and a hang's limit: a busy machine makes every wait longer
    timeout = 60.0 if fate == "dies" else TIMEOUT
    rank0, rank1 = _cli_ranks(tmp_path, timeout)
    try:
        lines = _read_until_checkpoint(rank0, tmp_path / "out")
        start = time.perf_counter()
        rank1.send_signal(signal.SIGKILL if fate == "dies" else signal.SIGSTOP)
        code = rank0.wait(timeout=timeout + 60)  # no hang
    finally:
        for process in (rank0, rank1):
            process.kill()
            process.wait()
    time.sleep(0.2)  # the reader thread's last lines
    stderr = "".join(text for _, text in lines)
    assert code == 1, stderr
    errors = [(at - start, text) for at, text in lines if text.startswith("namesmith: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    waited, error = errors[0]
    assert "rank 0 of 2: lost contact with the other ranks while training step" in error
    assert "NAMESMITH_DIST_TIMEOUT" in error and "can be resumed" in error
    if fate == "dies":
        assert waited < timeout  # a closed connection fails at once, not after the timeout
    else:
        assert waited > TIMEOUT - 1  # it waited for the timeout
    assert load_checkpoint(tmp_path / "out", with_train_state=True).train_state is not None


# --- `namesmith train --nproc 2`: torchrun's agent, Ctrl-C, --resume -----------------------------

@SLOW
def test_nproc_launches_ranks_that_stop_on_ctrl_c_and_resume(tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "namesmith", "train", "--model", "lstm", "--n-embd", "8", "--n-hidden", "16",
            "--max-steps", "1000000", "--time-budget", "4", "--eval-every", "20", "--device", "cpu",
            "--out", str(out), "--samples", "0", "--nproc", "2", "--calibrate", "none"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    launcher = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group, as a terminal's job
    try:
        lines = _read_until_checkpoint(launcher, out)
        os.killpg(launcher.pid, signal.SIGINT)  # Ctrl-C reaches the launcher and every rank
        code = launcher.wait(timeout=60)
        stdout = launcher.stdout.read()
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    assert code == 130, "".join(text for _, text in lines)
    assert "(interrupted)" in stdout and "--resume --nproc 2" in stdout
    assert stdout.count("trained lstm") == 1  # rank 0 alone reports
    saved = load_checkpoint(out, with_train_state=True)
    assert saved.meta["complete"] is False and saved.train_state["meta"]["world_size"] == 2
    interrupted_at = saved.train_state["meta"]["step"]
    # the resumed run goes on until the time budget (4 s of training in all) ends it
    resume = [*argv[:argv.index("--max-steps")], "--out", str(out), "--samples", "0", "--nproc", "2", "--resume"]
    done = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    final = load_checkpoint(out)
    assert final.meta["complete"] is True and final.meta["history"]["stop_reason"] == "time budget"
    assert final.meta["history"]["steps"] > interrupted_at
