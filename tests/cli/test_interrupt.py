"""Ctrl-C and SIGTERM stop `namesmith train` in every long phase of a count model, at once, and leave no
half-written model directory (issues 26 and 31).

Each case runs the CLI in a subprocess that signals itself at a counted step of one phase (the Nth
`Phase.advance` of the phase named) and records any step of that phase done after the signal. Nothing
is timed: stopping "within seconds" is stopping before the phase's next unit of work, and every unit
of every phase is bounded (a block of a file, a chunk of names or n-grams, one evaluation of the
discount fit).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from namesmith.cli.common import EXIT_INTERRUPTED

# Run as `python SCRIPT PHASE AT SIGNAL LOG [module.NAME=int ...] -- namesmith arguments`.
SCRIPT = """
import importlib, os, signal, sys
from namesmith.core import progress

phase_name, at, signum, log = sys.argv[1], int(sys.argv[2]), getattr(signal, sys.argv[3]), sys.argv[4]
rest = sys.argv[5:]
split = rest.index("--")
for patch in rest[:split]:  # thresholds lowered so that a small list takes the path of a large one
    target, value = patch.split("=")
    module, name = target.rsplit(".", 1)
    setattr(importlib.import_module(module), name, int(value))
advance, steps = progress.Phase.advance, {"seen": 0, "sent": False}

def counted(self, n=1):
    if self.what.startswith(phase_name):
        if steps["sent"]:
            with open(log, "a") as f:
                f.write("a step after the signal\\n")
        else:
            steps["seen"] += 1
            if steps["seen"] >= at:
                steps["sent"] = True
                with open(log, "a") as f:
                    f.write("signalled\\n")
                os.kill(os.getpid(), signum)
    return advance(self, n)

progress.Phase.advance = counted
from namesmith.cli import main
sys.exit(main(rest[split + 1:]))
"""

SPARSE = "namesmith.training.fitting.DENSE_CELLS=1000"  # a small list's n-gram held sparsely, as a long list's
DRAWN = "namesmith.training.calibrate.MAX_DP_CELLS=1"  # calibrated from the model's draws, not its chain


@pytest.fixture(scope="module")
def words_file(tmp_path_factory) -> Path:
    rng = random.Random(26)
    path = tmp_path_factory.mktemp("interrupt") / "words.txt"
    path.write_text("\n".join("".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 9)))
                              for _ in range(3000)) + "\n")
    return path


def interrupted(tmp_path: Path, words: Path, phase: str, at: int, patches: list[str], options: list[str],
                signum: str = "SIGINT") -> tuple[subprocess.CompletedProcess, list[str], Path]:
    script, log, out = tmp_path / "run.py", tmp_path / "steps.log", tmp_path / "model"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), phase, str(at), signum, str(log), *patches, "--",
               "train", "--data", str(words), "--out", str(out), "--prior", "none", "--samples", "0", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    return done, log.read_text().splitlines() if log.exists() else [], out


def assert_stopped_cleanly(done: subprocess.CompletedProcess, steps: list[str], out: Path) -> None:
    assert steps == ["signalled"], (steps, done.stderr[-2000:])  # the phase did no step after the signal
    assert done.returncode == EXIT_INTERRUPTED, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr
    # nothing half-written: no model, no tensors, and no directory this run made
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


STREAMED = ["--stream"]
IN_MEMORY = ["--no-stream"]
SLOW = pytest.mark.slow  # a subprocess each (torch imported): the default run keeps one case of each path
PHASES = [  # (phase, its step to signal at, thresholds, options)
    pytest.param("reading", 1, [], STREAMED, marks=SLOW),
    pytest.param("counting", 1, [], STREAMED),
    pytest.param("tuning the discounts", 2, [SPARSE], STREAMED, marks=SLOW),
    pytest.param("building the n-gram's tables", 1, [SPARSE, "namesmith.models.weighted_kn.TABLE_CHUNK=64"],
                 STREAMED, marks=SLOW),
    pytest.param("scoring", 1, [SPARSE, "namesmith.models.sparse_ngram.TOKEN_CHUNK=256"], STREAMED, marks=SLOW),
    pytest.param("calibration: following the model's chain", 3, [], IN_MEMORY, marks=SLOW),
    pytest.param("calibration: drawing the model's names", 1, [SPARSE, DRAWN], IN_MEMORY, marks=SLOW),
    pytest.param("scoring", 2, [], IN_MEMORY, marks=SLOW),  # the training part's (the first: calibration's)
]


@pytest.mark.parametrize("phase, at, patches, options", PHASES,
                         ids=[f"{p.values[0]}-{'streamed' if p.values[3] == STREAMED else 'in memory'}"
                              for p in PHASES])
def test_ctrl_c_stops_train_in_each_phase_and_leaves_no_half_written_directory(
        tmp_path, words_file, phase, at, patches, options):
    done, steps, out = interrupted(tmp_path, words_file, phase, at, patches, options)
    assert_stopped_cleanly(done, steps, out)


@SLOW  # test_resume's SIGTERM keeps a SIGTERM of train in the fast set
def test_sigterm_stops_the_discount_fit_of_a_streamed_list(tmp_path, words_file):
    done, steps, out = interrupted(tmp_path, words_file, "tuning the discounts", 2, [SPARSE], STREAMED, "SIGTERM")
    assert_stopped_cleanly(done, steps, out)


@pytest.mark.slow
def test_an_interrupted_run_leaves_the_model_saved_before_it_as_it_was(tmp_path, words_file):
    out = tmp_path / "model"
    first = subprocess.run([sys.executable, "-m", "namesmith", "train", "--data", str(words_file), "--out", str(out),
                            "--prior", "none", "--samples", "0", "-q"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    done, steps, _ = interrupted(tmp_path, words_file, "scoring", 1, [], ["--overwrite", "--seed", "7"])
    assert steps == ["signalled"] and done.returncode == EXIT_INTERRUPTED, done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
