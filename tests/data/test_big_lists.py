"""Big lists and big inputs stay bounded (issues 26 and 31.9): the sparse n-gram of a long list is built
a chunk at a time and scored token by token, equal to the whole-table computations; long phases say
how far they are; training that would not fit in memory is refused before it starts, in one line
naming the option. Small synthetic lists with injected thresholds: no big files here."""

from __future__ import annotations

import logging
import random
import re
import time

import pytest
import torch

import namesmith.models.weighted_kn as weighted_kn
from namesmith.cli import main
from namesmith.core import memory
from namesmith.core.errors import ConfigError
from namesmith.core.progress import Phase
from namesmith.data.ngram_keys import suffix_keys
from namesmith.models.kneser_ney import continuation_counts, held_out_features
from namesmith.models.ngram import NGram, NGramConfig
from namesmith.models.sparse_ngram import SparseNGram

LIMIT = memory.LIMIT_VARIABLE


def random_words(n: int, seed: int = 3, letters: str = "abcdefghij") -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(n)]


def fitted_counts(words: list[str], order: int = 4):
    from namesmith.data.words import Corpus

    corpus = Corpus.from_words(words, split=False)
    model = NGram(corpus.vocab.size, NGramConfig(order=order, discount="modified-kn"))
    return model, model.count(*corpus.tensors("train")), corpus


def test_the_sparse_table_built_in_small_chunks_equals_the_dense_n_gram(one_thread, monkeypatch):
    model, counts, corpus = fitted_counts(random_words(400))
    dense = NGram(model.vocab_size, model.config)
    dense.fit_counts(counts)
    monkeypatch.setattr(weighted_kn, "TABLE_CHUNK", 7)  # many chunks, each of whole contexts
    by_order = continuation_counts(counts)
    table = weighted_kn.sparse_table(None, dense.discounts.double(), by_order, vocab_size=model.vocab_size)
    assert all(len(keys) == 0 for keys in by_order[0][:-1])  # each order dropped once written
    sparse = SparseNGram.from_tables(model.vocab_size, model.config.order, [], [table]).eval()
    x, _ = corpus.tensors("train")
    contexts = torch.cat([x[:, :1].expand(-1, 2), x], 1).unfold(1, 3, 1).reshape(-1, 3)
    assert torch.allclose(sparse.next_token_probs(contexts).log(), dense.next_token_logprobs[dense._rows(contexts)],
                          atol=1e-5)


def test_scoring_one_token_at_a_time_equals_the_whole_rows(one_thread):
    model, counts, _ = fitted_counts(random_words(300, seed=8))
    dense = NGram(model.vocab_size, model.config)
    dense.fit_counts(counts)
    table = weighted_kn.sparse_table(None, dense.discounts.double(), continuation_counts(counts),
                                     vocab_size=model.vocab_size)
    sparse = SparseNGram.from_tables(model.vocab_size, model.config.order, [], [table]).eval()
    rng = torch.Generator().manual_seed(0)
    contexts = torch.randint(0, model.vocab_size, (500, 3), generator=rng)  # many never seen
    tokens = torch.randint(0, model.vocab_size, (500,), generator=rng)
    rows = sparse.next_token_probs(contexts).gather(1, tokens.unsqueeze(1)).squeeze(1)
    assert torch.allclose(table.token_probs(suffix_keys(contexts, sparse.base), tokens, model.vocab_size), rows,
                          rtol=1e-5)
    held = model.count(*fitted_counts(random_words(100, seed=9))[2].tensors("train"))
    assert sparse.nll_counts(held) == pytest.approx(dense.nll_counts(held), abs=1e-5)


def test_the_held_out_totals_of_each_context_are_those_counted_by_hand(one_thread):
    model, counts, _ = fitted_counts(random_words(200, seed=4), order=3)
    held = model.count(*fitted_counts(random_words(40, seed=5), order=3)[2].tensors("train"))
    keys_by_order, counts_by_order = continuation_counts(counts)
    features = held_out_features(keys_by_order, counts_by_order, held).features
    B = model.base
    for k, (keys, order_counts) in enumerate(zip(keys_by_order, counts_by_order), start=1):
        by_context: dict[int, list[int]] = {}
        for key, count in zip(keys.tolist(), order_counts.tolist()):
            by_context.setdefault(key // B, []).append(count)
        _, _, seen, totals = features[k - 1]
        for i, key in enumerate((held.keys % B**k).tolist()):
            run = by_context.get(key // B, [])
            assert bool(seen[i]) == bool(run)
            expected = [sum(run), sum(c == 1 for c in run), sum(c == 2 for c in run), sum(c >= 3 for c in run)]
            assert totals[i].tolist() == expected


def test_a_streamed_sparse_fit_says_how_far_its_long_phases_are(tmp_path, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(3000, seed=6)) + "\n")
    monkeypatch.setattr("namesmith.training.fitting.DENSE_CELLS", 1000)
    monkeypatch.setattr(Phase.__init__, "__defaults__", (0.0, time.monotonic))  # every advance logs
    with caplog.at_level(logging.INFO, logger="namesmith"):
        assert main(["train", "--data", str(words), "--stream", "--prior", "none", "--samples", "0",
                     "--out", str(tmp_path / "model")]) == 0
    lines = [r.getMessage() for r in caplog.records]
    for phase in ("reading", "counting", "gathering the counted n-grams",
                  r"tuning the discounts on [\d,]+ held-out words: their n-grams, order by order: \d",
                  r"tuning the discounts on [\d,]+ held-out words: \d", "building the n-gram's tables: their orders",
                  r"building the n-gram's tables: \d", "scoring"):
        assert any(re.match(phase, line) and "/s, about" in line for line in lines), phase


def test_a_sparse_fit_in_memory_says_how_far_its_calibration_and_evaluation_are(tmp_path, monkeypatch, caplog):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(3000, seed=6)) + "\n")
    monkeypatch.setattr("namesmith.training.fitting.DENSE_CELLS", 1000)  # held sparsely
    monkeypatch.setattr("namesmith.training.calibrate.MAX_DP_CELLS", 1)  # a chain too large: calibrated by drawing
    monkeypatch.setattr(Phase.__init__, "__defaults__", (0.0, time.monotonic))  # every advance logs
    with caplog.at_level(logging.INFO, logger="namesmith"):
        assert main(["train", "--data", str(words), "--no-stream", "--prior", "none", "--samples", "0",
                     "--out", str(tmp_path / "model")]) == 0
    lines = [r.getMessage() for r in caplog.records]
    for phase in ("tuning the discounts", "building the n-gram's tables", "calibration: drawing the model's names",
                  "scoring"):
        assert any(line.startswith(phase) and "/s, about" in line for line in lines), phase
    scoring = [line for line in lines if line.startswith("scoring: ")]
    assert any(line.startswith("scoring: 2,400/2,400 names") for line in scoring)  # the training part, as one


# --- refused before allocating: namesmith.core.memory ------------------------------------------------------
def run_cli(args: list[str], capsys, tmp_path) -> tuple[int, str]:
    rc = main([*args, "--out", str(tmp_path / "model"), "--overwrite"])
    return rc, capsys.readouterr().err.strip()


def test_a_network_on_a_list_too_large_to_hold_is_refused_before_reading_it(tmp_path, monkeypatch, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(2000)) + "\n")
    monkeypatch.setenv(LIMIT, str(memory.words_in_memory(words.stat().st_size) - 1))
    read = []
    monkeypatch.setattr("namesmith.training.train.read_corpus", lambda *a, **k: read.append(1))
    rc, err = run_cli(["train", "--data", str(words), "--model", "lstm", "--samples", "0"], capsys, tmp_path)
    assert rc != 0 and not read
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--model" in err and LIMIT in err and "words.txt" in err


def test_a_raised_max_line_length_that_lets_in_a_huge_line_is_refused_naming_it(tmp_path, monkeypatch, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(500)) + "\n" + "ab" * 5000 + "\n")
    monkeypatch.setenv(LIMIT, str(memory.BASE_BYTES + (64 << 20)))
    built = []
    with monkeypatch.context() as patched:
        patched.setattr("namesmith.training.train.build_model", lambda *a, **k: built.append(1))
        for model in ("ngram", "lstm", "transformer"):
            rc, err = run_cli(["train", "--data", str(words), "--model", model, "--prior", "none", "--no-stream",
                               "--max-line-length", "20000", "--samples", "0"], capsys, tmp_path)
            assert rc != 0 and not built
            assert len(err.splitlines()) == 1 and "--max-line-length" in err and "10,000 characters" in err
    rc, err = run_cli(["train", "--data", str(words), "--model", "ngram", "--prior", "none", "--samples", "0"],
                      capsys, tmp_path)
    assert rc == 0  # the default --max-line-length skips that line


def test_a_network_too_large_for_the_limit_is_refused_and_one_that_fits_trains(tmp_path, monkeypatch, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(300)) + "\n")
    monkeypatch.setenv(LIMIT, str(memory.BASE_BYTES + (1 << 20)))
    rc, err = run_cli(["train", "--data", str(words), "--model", "lstm", "--samples", "0"], capsys, tmp_path)
    assert rc != 0 and "--model" in err and len(err.splitlines()) == 1
    monkeypatch.setenv(LIMIT, "2G")
    rc, err = run_cli(["train", "--data", str(words), "--model", "lstm", "--n-hidden", "8", "--n-embd", "4",
                       "--max-steps", "2", "--samples", "0"], capsys, tmp_path)
    assert rc == 0, err


def test_the_limit_is_read_from_the_environment_or_the_system(monkeypatch):
    monkeypatch.setenv(LIMIT, "2G")
    assert memory.memory_limit() == 2 << 30
    monkeypatch.setenv(LIMIT, "1500000")
    assert memory.memory_limit() == 1_500_000
    for bad in ("lots", "-1G", "0"):
        monkeypatch.setenv(LIMIT, bad)
        with pytest.raises(ConfigError, match=LIMIT):
            memory.memory_limit()
    monkeypatch.delenv(LIMIT)
    limit = memory.memory_limit()
    assert limit is None or limit > 0


def test_counting_a_streamed_list_stops_once_its_n_grams_would_not_fit(tmp_path, monkeypatch, capsys):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(40_000, seed=7, letters="abcdefghijklmnopqrstuvwxyz")) + "\n")
    monkeypatch.setattr("namesmith.data.counting.NGRAM_BLOCK", 1 << 14)  # many blocks: checked as it goes
    fitted = []
    monkeypatch.setattr("namesmith.training.streamed.fit_ngram_counts", lambda *a, **k: fitted.append(1))
    monkeypatch.setenv(LIMIT, str(memory.streamed_ngram_bytes(70_000)))
    rc, err = run_cli(["train", "--data", str(words), "--stream", "--prior", "none", "--samples", "0"], capsys,
                      tmp_path)
    assert rc != 0 and not fitted
    assert len(err.splitlines()) == 1 and err.startswith("namesmith: error: --order:") and "distinct after" in err


def test_a_count_model_is_calibrated_and_evaluated_on_one_torch_thread(tmp_path, monkeypatch):
    """Beside a busy core OpenMP's spinning threads scored a sparse n-gram 10x slower (0.22 s of CPU a chunk of
    4,096 names on one thread, 2.15 s on two): a count model's calibration and evaluation run on one."""
    import namesmith.training.fitting as fitting
    import namesmith.training.train as train_module

    seen = {}

    def recording(module, name):
        function = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen[name] = torch.get_num_threads()
            return function(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    recording(fitting, "calibrate")  # called by fitting.calibrate_model
    recording(train_module, "evaluate_corpus")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_module.train("ngram", words=random_words(300), prior="none")
        assert torch.get_num_threads() == 2  # as before, after
    finally:
        torch.set_num_threads(threads)
    assert seen == {"calibrate": 1, "evaluate_corpus": 1}


def test_counting_in_worker_processes_says_how_far_all_of_them_are(tmp_path, monkeypatch, caplog):
    """With --workers, each process takes small pieces of the file in turn (a phase of its own each, too short to
    log): the calling process says how far the pieces taken by every process are."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(random_words(3000, seed=6)) + "\n")
    monkeypatch.setattr(Phase.__init__, "__defaults__", (0.0, time.monotonic))  # every advance logs
    with caplog.at_level(logging.INFO, logger="namesmith"):
        assert main(["train", "--data", str(words), "--stream", "--workers", "2", "--prior", "none", "--samples", "0",
                     "--out", str(tmp_path / "model")]) == 0
    lines = [r.getMessage() for r in caplog.records]
    assert any(re.match(r"reading .* for its words and characters: \d+/64 pieces", line) for line in lines)
    size = words.stat().st_size / 1e6
    assert any(re.match(rf"counting .*: [\d.,]+/{size:,.0f} MB", line) for line in lines)
