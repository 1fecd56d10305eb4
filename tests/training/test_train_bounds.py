"""Training stays bounded and answers: progress with a rate and the time left, Ctrl-C on a count model
at once, large word lists streamed by default. Counted, not timed: log lines of an injected clock,
loop iterations run after a signal, which path a file takes."""

from __future__ import annotations

import logging
import os
import signal

import namesmith.training.streamed as streamed
from namesmith.cli import EXIT_INTERRUPTED, main
from namesmith.core import memory
from namesmith.core.progress import Phase
from namesmith.data.words import DataConfig
from namesmith.models.ngram import NGram


def test_a_long_phase_logs_its_rate_and_the_time_left(caplog):
    now = [0.0]
    phase = Phase("fitting", 100, "nodes", every=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="namesmith"):
        for _ in range(39):  # 8 nodes a second: nothing to say before 5 s
            now[0] += 0.125
            phase.advance()
        assert not caplog.records
        for _ in range(41):
            now[0] += 0.125
            phase.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["fitting: 40/100 nodes (8 nodes/s, about 8 s left)",
                     "fitting: 80/100 nodes (8 nodes/s, about 2 s left)"]


def test_a_phase_that_follows_another_says_how_far_it_is_without_waiting_its_own_interval(caplog):
    now, said = [0.0], []
    clock = lambda: now[0]  # noqa: E731 - one clock for both phases, as in a run

    def work(phase: Phase, units: int, seconds: float) -> None:
        for _ in range(units):
            now[0] += seconds
            phase.advance()
            if len(caplog.records) > len(said):
                said.append(now[0])

    with caplog.at_level(logging.INFO, logger="namesmith"):
        work(Phase("counting", 79, "MB", every=5.0, clock=clock), 79, 0.125)  # a line at 5 s, then 4.875 s of work
        work(Phase("tuning the discounts", 20, "evaluations", every=5.0, clock=clock), 20, 0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("counting: 40/79 MB") and lines[1].startswith("tuning the discounts: 1/20")
    gaps = [b - a for a, b in zip([0.0, *said], [*said, now[0]])]
    assert max(gaps) <= 5.0 + 0.5 + 1e-9  # `every` and one unit of work (was 9.875 s: 4.875 of counting, 5 of tuning)


def test_ctrl_c_stops_a_count_model_at_once_and_saves_nothing(tmp_path, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["anna", "bob", "carla", "dan"] * 50) + "\n")
    steps = []

    def slow_fit(self, *args, **kwargs):  # a fit that would take 20 s, signalled at its start
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(2000):
            steps.append(1)
            os.sched_yield()
            sum(range(10_000))
        raise AssertionError("the fit was not stopped")

    monkeypatch.setattr(NGram, "fit", slow_fit)
    out = tmp_path / "model"
    rc = main(["train", "--data", str(words), "--model", "ngram", "--prior", "none", "--out", str(out)])
    assert rc == EXIT_INTERRUPTED
    assert len(steps) < 10  # stopped at the signal, not "after the current step" (the whole fit)
    assert not (out / "meta.json").exists()
    assert any("nothing was saved" in r.getMessage() for r in caplog.records)


def test_a_list_whose_training_in_memory_would_pass_its_bounds_is_streamed_and_says_so(tmp_path, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(f"name{i}" for i in range(3000)) + "\n")
    data = DataConfig(path=str(words))
    held, seconds = streamed.in_memory_estimate("ngram", data)
    monkeypatch.setattr(streamed, "IN_MEMORY_BYTES", held - 1)
    with caplog.at_level(logging.INFO, logger="namesmith"):
        assert streamed.should_stream("ngram", data, None)
        assert not streamed.should_stream("lstm", data, None)
    assert any("streaming" in r.getMessage() and "--no-stream" in r.getMessage() for r in caplog.records)
    monkeypatch.setattr(streamed, "IN_MEMORY_BYTES", held)
    assert not streamed.should_stream("ngram", data, None)
    monkeypatch.setattr(streamed, "IN_MEMORY_SECONDS", seconds * 0.99)  # the time it would take binds too
    assert streamed.should_stream("ngram", data, None)


def test_the_estimate_of_training_in_memory_grows_with_words_length_and_vocabulary(tmp_path):
    """Not the file's size alone: 8 MB of random words of 3-10 letters (1M words) took minutes held in memory."""
    held, seconds = memory.in_memory_cost(7_500_000, 1_000_000, 10, 27, 6)  # that list, as a scan finds it
    assert held > memory.IN_MEMORY_BYTES or seconds > memory.IN_MEMORY_SECONDS
    held, seconds = memory.in_memory_cost(228_000, 32_033, 15, 27, 6)  # names.txt: held in memory
    assert held <= memory.IN_MEMORY_BYTES and seconds <= memory.IN_MEMORY_SECONDS
    assert memory.words_in_memory(50_000_000) > memory.IN_MEMORY_BYTES  # 50 MB: streamed without a scan
    short = tmp_path / "short.txt"
    short.write_text("ab\ncd\n" * 500)
    longer = tmp_path / "longer.txt"
    longer.write_text("ab\ncd\n" * 499 + "abcdefghijklmnopqrstuvwxyz" * 2 + "\n")  # one long word pads them all
    assert streamed.in_memory_estimate("ngram", DataConfig(path=str(longer)))[0] > \
        streamed.in_memory_estimate("ngram", DataConfig(path=str(short)))[0]
    assert streamed.in_memory_estimate("ngram", DataConfig(path=str(longer)), order=2)[0] < \
        streamed.in_memory_estimate("ngram", DataConfig(path=str(longer)), order=6)[0]


def test_a_streamed_default_run_says_so_in_one_line(tmp_path, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(["anna", "bob", "carla", "dan", "eve"] * 400) + "\n")
    monkeypatch.setattr(streamed, "IN_MEMORY_BYTES", 1000)
    with caplog.at_level(logging.INFO, logger="namesmith"):
        rc = main(["train", "--data", str(words), "--out", str(tmp_path / "m"), "--samples", "0"])
    assert rc == 0
    said = [r.getMessage() for r in caplog.records if "streaming" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
