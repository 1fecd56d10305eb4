"""Help text and progress reporting: what a new user reads first."""

from __future__ import annotations

import logging
import re

import pytest

from namesmith import cli
from namesmith.cli.train import Progress
from namesmith.models import trainable_types


def help_text(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 0
    return capsys.readouterr().out


COMMANDS = ("sample", "score", "eval", "plot", "report", "data", "classify")


@pytest.mark.parametrize("argv", [["train", "--model", m, "--help"] for m in trainable_types()]
                         + [[c, "--help"] for c in COMMANDS] + [["--help"]])
def test_help_shows_no_empty_or_duplicated_defaults(capsys, argv):
    text = " ".join(help_text(capsys, argv).split())
    for bad in ("(default: None)", "(default: )", "(default: [])", "(default: ())"):
        assert bad not in text, bad
    assert not re.search(r"\(default:? [^)]*\) \(default", text)  # never twice
    assert text.count("(default:") == text.count("default:")  # never two styles


def test_train_help_shows_the_chosen_models_real_defaults(capsys):
    text = " ".join(help_text(capsys, ["train", "--model", "transformer", "--help"]).split())
    assert "--time-budget SECONDS stop training after this many seconds (the best weights are kept) " \
           "(default: 1140.0)" in text
    assert "--n-head N attention heads (default: 4)" in text
    ngram = " ".join(help_text(capsys, ["train", "--model", "ngram", "--help"]).split())
    assert "--discount VALUE Kneser-Ney discounts: tuned (on held-out training words), modified-kn, kn" in ngram
    assert "ngram is fitted by counting: only --seed and --device apply" in ngram


def test_progress_without_a_terminal_logs_a_line_every_few_seconds(caplog):
    now = [0.0]
    progress = Progress("gru", time_budget=None, stop={"stop": False}, clock=lambda: now[0])
    progress.bar.disable = True  # as when stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="namesmith"):
        for step in range(1, 13):  # one step a second
            now[0] = float(step)
            assert progress(step, 100, {"loss": 2.0}) is False
    lines = [r.message for r in caplog.records if r.message.startswith("step")]
    assert lines == ["step 5/100 (5 s) loss 2.0000", "step 10/100 (10 s) loss 2.0000"]


def test_the_bar_follows_the_time_budget_when_it_ends_the_run_first():
    progress = Progress("lstm", time_budget=20.0, stop={"stop": False}, clock=lambda: 0.0)
    assert progress.planned_steps(100, 10_000, elapsed=10.0) == 200  # 100 steps in 10 s of a 20 s budget
    assert progress.planned_steps(100, 150, elapsed=10.0) == 150  # max_steps comes first
    progress.close()
