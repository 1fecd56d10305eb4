"""Generation under pressure (issue 12): every budget binds whatever the regex, names stream in
bounded batches, memory is bounded for any length request, exact sampling does not underflow,
and the n-gram is steered exactly over the contexts it stores."""

import math
import os
import pickle
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from clock_support import fake_clock

from namesmith.core.errors import ConfigError, NamesmithError
from namesmith.core.vocab import BOUNDARY, Vocab
from namesmith.data.words import load_words
from namesmith.generation.config import MAX_NAME_LENGTH, GenerateConfig, compile_regex
from namesmith.generation.constraints import build_automaton
from namesmith.generation.draws import CHUNK, MAX_BATCH_TOKENS, batch_limit
from namesmith.generation.exact import markov_chain
from namesmith.generation.generate import MIN_BATCH, generate, iter_generate
from namesmith.models.bigram import BigramCounts, BigramCountsConfig
from namesmith.models.nll import word_log_probs
from namesmith.namemodel import NameModel

config_module = sys.modules["namesmith.generation.config"]
constraints_module = sys.modules["namesmith.generation.constraints"]
exact_module = sys.modules["namesmith.generation.exact"]
draws_module = sys.modules["namesmith.generation.draws"]
TINY = ["abc", "ba", "cab", "acca", "b", "bbc", "cabba", "ac", "aab", "cc"]
A_NAMES = ["a" * n for n in range(20, 41)]  # names made only of 'a', as in the issue


@pytest.fixture(scope="module")
def builtin_bigram():
    # the chain's own algebra: uncalibrated
    return NameModel.train(model="bigram-counts", words=load_words("builtin"), calibrate="none")


@pytest.fixture(scope="module")
def a_model():
    return NameModel.train(model="bigram-counts", words=A_NAMES)


def long_name_model(end_count: float = 1.0) -> tuple[BigramCounts, Vocab]:
    """A bigram over {a} whose names almost never end: P(end | a) = end_count / 10^6."""
    vocab = Vocab(("a",))
    model = BigramCounts(vocab.size, BigramCountsConfig(smoothing=0))
    model.pair_counts.copy_(torch.tensor([[0.0, 1.0], [end_count, 1e6]]))
    return model.eval(), vocab


# --- 1. a pathological regex cannot outlast the budgets ---------------------------------------------
@pytest.mark.slow  # a process; test_serve_security's pathological regex keeps the path fast
def test_pathological_regex_respects_the_time_budget_in_a_fresh_process(tmp_path):
    """The issue's case: `^(a+)+b$` on long runs of 'a' (Python's re backtracks for hours)."""
    script = textwrap.dedent(f"""
        from namesmith import NameModel
        from namesmith.generation.config import GenerateConfig
        from namesmith.generation.generate import generate
        from namesmith.core.errors import ConfigError
        result = NameModel.train(model="bigram-counts", words={A_NAMES!r})
        for pattern in ("^(a+)+b$", "^(a|a)+b$"):
            for budget in ({{"time_budget": 1.0}}, {{"max_tries": 1000}}):
                try:
                    out = generate(result.model, result.vocab, GenerateConfig(num=5, seed=0, regex=pattern,
                                   max_len=60, **budget), max_word_length=40)
                    print(pattern, budget, out.stop_reason)
                except ConfigError as e:
                    print(pattern, budget, "error", e.field)
    """)
    root = str(Path(__file__).resolve().parents[2])  # this checkout's namesmith, whatever is installed
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    # each search ends by a budget or one regex timeout (0.25 CPU s); without them it would backtrack for hours,
    # so the generous limit only catches a hang (how fast a budget binds is tested with a moved clock below)
    try:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"a pathological regex outlasted its budgets (no answer in 120 s): {e.stdout}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        assert line.split()[-1] in ("time-budget", "max-tries", "regex"), line


def test_a_regex_that_backtracks_too_long_is_refused_naming_the_field(a_model, monkeypatch):
    monkeypatch.setattr(constraints_module, "REGEX_TIMEOUT", 0.1)
    config = GenerateConfig(num=5, seed=0, regex="^(a|a)+b$", max_len=60, max_tries=1000)
    with pytest.raises(ConfigError, match=r"regex '\^\(a\|a\)\+b\$' took more than 0.1 s \(CPU\)") as e:
        generate(a_model.model, a_model.vocab, config, max_word_length=40)
    assert e.value.field == "regex"


def test_a_match_whose_time_other_threads_used_is_run_again(monkeypatch):
    """The engine's timeout counts the whole process's CPU: where it stops a match this thread hardly ran (a
    server's build or a suite's pool used the time), the name is matched again, not refused as backtracking;
    a match that does spend the time is refused after at most REGEX_TRIES tries."""
    from namesmith.generation.constraints import regex_test

    calls = []

    class Busy:  # the engine timing out twice with this thread idle, then answering
        def search(self, name, timeout):
            calls.append(timeout)
            if len(calls) <= 2:
                raise TimeoutError
            return compile_regex("^[a-z]+$").search(name, timeout=timeout)

    monkeypatch.setattr(constraints_module, "compile_regex", lambda pattern: Busy())
    assert regex_test("^[a-z]+$")("maraja", None) and len(calls) == 3
    cpu = iter(range(100))  # this thread's CPU clock: 1 s a call, so every try spent the time itself
    monkeypatch.setattr(constraints_module.time, "thread_time", lambda: next(cpu))
    calls.clear()
    with pytest.raises(ConfigError, match="took more than"):
        regex_test("^[a-z]+$")("maraja", None)
    assert len(calls) == 1


def test_a_bad_regex_is_quoted_as_written_on_a_model_of_lowercased_names():
    """The model reads names lowercased and matches the regex ignoring case: the message shows the user's
    pattern and its position, not the case flag put before it."""
    model = NameModel.train(words=["Anna", "Bob", "Cara", "Dora"] * 5, model="bigram-counts")
    assert model.casing == "title"
    with pytest.raises(ConfigError, match=r"^regex '\^a\(b': missing \) at position 4$") as e:
        model.generate(3, regex="^a(b")
    assert e.value.field == "regex"
    assert all(name.startswith("A") for name in model.generate(3, regex="^A", seed=1).names)


def test_the_time_budget_ends_a_regex_match(a_model, monkeypatch):
    """A budget shorter than REGEX_TIMEOUT: the budget, not the per-match limit, ends the match. The budgets'
    clock stands still, so only the match itself (given what is left of the budget) can end the search."""
    fake_clock(monkeypatch)
    timeouts = []

    class Recorded:
        def __init__(self, pattern):
            self.compiled = compile_regex(pattern)

        def search(self, name, timeout):
            timeouts.append(timeout)
            return self.compiled.search(name, timeout=timeout)

    compile_regex = constraints_module.compile_regex
    monkeypatch.setattr(constraints_module, "compile_regex", Recorded)
    config = GenerateConfig(num=5, seed=0, regex="^(a|a)+b$", max_len=60, time_budget=0.02)
    out = generate(a_model.model, a_model.vocab, config, max_word_length=40)
    assert out.stop_reason == "time-budget" and out.names == []
    assert timeouts and timeouts == [pytest.approx(0.02)] * len(timeouts)  # what was left of the budget, each time


def test_a_normal_regex_filters_as_before(builtin_bigram):
    out = generate(builtin_bigram.model, builtin_bigram.vocab, GenerateConfig(num=200, seed=0, regex="^[^aeiou]{2}"),
                   max_word_length=15)
    assert out.complete and all(len(n) >= 2 and not set(n[:2]) & set("aeiou") for n in out.names)


@pytest.mark.parametrize("pattern, needle", [
    ("(?:a{30000}){30000}", "the count {30000} is more than 10,000"),  # 19 characters: 36.9 s and 24.3 GB to compile
    ("a{10000000}", "the count {10000000} is more than 10,000"),
    ("a{1000000000}", "the count {1000000000}"),  # the CLI's MemoryError
    ("(?:a{5000}){5000}", "expands to about 25,015,000 items, more than 100,000"),
    ("(?x)(?: a{3 00} ) { 1 000 }", "expands to about 30"),  # verbose mode: the spaces do not hide the counts
    ("(?:(?:a{50}){50}){50}", "expands to about 132,650 items"),
])
def test_a_regex_too_large_to_compile_is_refused_before_compiling(monkeypatch, pattern, needle):
    compiled = []
    monkeypatch.setattr(config_module.regex_engine, "compile", lambda *a, **k: compiled.append(a))
    with pytest.raises(ConfigError, match=re.escape(needle)) as e:
        GenerateConfig(regex=pattern)
    assert e.value.field == "regex" and "\n" not in str(e.value)
    assert compiled == []  # the engine never saw it


def test_regex_size_bounds_what_the_engine_expands():
    assert config_module.regex_size("a{1000}") == 1000
    assert config_module.regex_size("(?:ab|cd){500}") > 2 * 500
    assert config_module.regex_size(r"\p{L}{3}[{]{4}") == 3 + 4  # braces of escapes and classes are no counts
    assert config_module.regex_size("a{x}") == 4  # not a count: literal braces
    for fine in ("^[^aeiou]{2}", "[a-z]{3,8}$", "(?:an){1,3}", "a{10000}", "(?:a{300}){300}"):
        GenerateConfig(regex=fine)


# --- 2. streaming -----------------------------------------------------------------------------------
def test_huge_num_streams_small_batches_first_and_stops_when_closed(builtin_bigram):
    model = builtin_bigram.model.train()  # the stream puts it in eval mode, and back when closed
    stream = iter_generate(model, builtin_bigram.vocab, GenerateConfig(num=50_000_000, seed=0), max_word_length=15)
    sizes = [len(next(stream)) for _ in range(8)]
    assert sizes[0] <= MIN_BATCH < sizes[1] < sizes[2] and max(sizes) <= CHUNK  # names that ended, of each batch
    assert not model.training
    assert stream.generation.found == sum(sizes) and stream.generation.tries >= sum(sizes)
    stream.close()
    assert model.training and stream.generation.found == sum(sizes)
    assert stream.generation.stop_reason == "closed" and not stream.generation.complete
    with pytest.raises(StopIteration):
        next(stream)
    model.eval()


@pytest.mark.slow  # 400,000 names under tracemalloc; test_generate_is_the_stream_collected keeps streaming fast
def test_streaming_memory_is_bounded_by_the_batch_not_by_num(builtin_bigram):
    """400,000 names pass through in batches; what is alive at once is one batch."""
    config = GenerateConfig(num=400_000, seed=1)
    tracemalloc.start()
    try:
        count = 0
        with iter_generate(builtin_bigram.model, builtin_bigram.vocab, config, max_word_length=15) as stream:
            for names in stream:
                count += len(names)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 400_000 and stream.generation.complete
    assert peak < 20e6  # the names alone take 26 MB (str objects and a list); one batch of 65,536 about 5 MB


@pytest.mark.parametrize("options", [{}, {"unique": True, "novel": True}, {"ends_with": "na", "regex": "^[a-m]"}])
def test_generate_is_the_stream_collected(builtin_bigram, options):
    words = set(load_words("builtin"))
    config = GenerateConfig(num=3000, seed=4, **options)
    args = (builtin_bigram.model, builtin_bigram.vocab, config)
    streamed = [n for batch in iter_generate(*args, max_word_length=15, known_words=words) for n in batch]
    collected = generate(*args, max_word_length=15, known_words=words)
    assert streamed == collected.names and len(streamed) == 3000 and collected.found == 3000


def test_errors_come_before_the_first_name(builtin_bigram):
    with pytest.raises(ConfigError, match="not in the model's vocabulary"):
        iter_generate(builtin_bigram.model, builtin_bigram.vocab, GenerateConfig(contains="ß"), max_word_length=15)


# --- 3. memory is bounded for any length request -------------------------------------------------------
def test_lengths_beyond_the_limit_are_refused_in_one_line():
    for options in ({"max_len": 100_000}, {"min_len": 50_000, "max_len": 100_000}):
        with pytest.raises(ConfigError, match=f"must be at most {MAX_NAME_LENGTH:,}") as e:
            GenerateConfig(num=2, **options)
        assert "\n" not in str(e.value)


def test_long_names_draw_small_batches():
    assert batch_limit(10) == CHUNK and batch_limit(MAX_NAME_LENGTH) * (MAX_NAME_LENGTH + 1) <= MAX_BATCH_TOKENS


@pytest.mark.parametrize("generic", [False, True], ids=["table", "generic"])
def test_rejection_of_long_names_stays_in_bounded_memory(generic, monkeypatch):
    """Names that never end before max_len: every draw fills the longest buffer a batch may have."""
    tokens = 1 << 18
    monkeypatch.setattr(draws_module, "MAX_BATCH_TOKENS", tokens)  # a smaller limit: a quicker test
    model, vocab = long_name_model()
    if generic:
        model.transition_table = model.markov_chain = lambda: None  # the torch sampler over `step`, as a neural model
    config = GenerateConfig(num=2, seed=0, min_len=500, max_len=1_500, method="rejection",
                            max_tries=400 if generic else 2_000, time_budget=60)  # batches of at most 174
    tracemalloc.start()
    try:
        out = generate(model, vocab, config, max_word_length=5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * tokens  # the token buffer, its copies, and the names of one batch
    # 8. the names that hit the length guard are counted, and said in one line
    assert out.unfinished > 0 and out.unfinished + out.found <= out.tries  # the rest: finished too short
    assert "reached the length limit (max_len 1500)" in out.unfinished_message()


def test_the_time_budget_binds_inside_a_batch_of_long_names(monkeypatch):
    """Counted, not timed: each reading of the budgets' clock moves it 10 ms, so a 0.3 s budget passes after about
    30 checks; a batch of names that never end would take MAX_NAME_LENGTH model steps if only checked between
    batches."""
    model, vocab = long_name_model(end_count=0.0)
    model.transition_table = model.markov_chain = lambda: None  # one model step per character: a batch is slow
    steps, step = [], model.step

    def counted(*args):
        steps.append(1)
        assert len(steps) <= 40, "the time budget did not stop the batch"  # else 10,000 steps, minutes
        return step(*args)

    model.step = counted
    fake_clock(monkeypatch, tick=0.01)
    config = GenerateConfig(num=1, seed=0, max_len=MAX_NAME_LENGTH, method="rejection", time_budget=0.3)
    out = generate(model, vocab, config, max_word_length=5)
    assert out.stop_reason == "time-budget" and out.names == []
    assert len(steps) > 0  # stopped within the batch, at the step the budget passed
    assert out.seconds >= 0.3  # as the budgets' clock saw it


def test_exact_tables_past_their_limit_fall_back_or_are_refused(builtin_bigram, monkeypatch):
    monkeypatch.setattr(exact_module, "MAX_EXACT_TABLE", 1000)
    args = (builtin_bigram.model, builtin_bigram.vocab)
    out = generate(*args, GenerateConfig(num=20, seed=0, ends_with="na", max_len=100), max_word_length=15)
    assert out.method == "rejection" and all(n.endswith("na") for n in out.names)
    with pytest.raises(ConfigError, match="MAX_EXACT_TABLE") as e:
        generate(*args, GenerateConfig(num=20, ends_with="na", max_len=100, method="exact"), max_word_length=15)
    assert e.value.field == "method"


# --- 4. exact sampling does not underflow ------------------------------------------------------------
def log_p_length_between(model: BigramCounts, lo: int, hi: int) -> float:
    """log P(lo ≤ length ≤ hi) of a bigram's names, by the absorbing-chain recursion P(length = l) =
    s Q^(l-1) r, with the row vector renormalised every step (its log scale kept aside)."""
    P = model.transition_probs().double()
    s, Q, r = P[BOUNDARY, 1:], P[1:, 1:], P[1:, BOUNDARY]
    v, log_scale, terms = s.clone(), 0.0, []
    for length in range(1, hi + 1):
        if length >= lo:
            terms.append(math.log(float(v @ r)) + log_scale)
        v = v @ Q
        total = float(v.sum())
        v, log_scale = v / total, log_scale + math.log(total)
    return float(torch.logsumexp(torch.tensor(terms, dtype=torch.float64), 0))


def test_very_long_minimum_lengths_are_possible(builtin_bigram):
    """The issue's case: min_len 5000, max_len 6000 on bigram counts."""
    model, vocab = builtin_bigram.model, builtin_bigram.vocab
    config = GenerateConfig(num=1, seed=0, min_len=5000, max_len=6000)
    out = generate(model, vocab, config, max_word_length=15)
    assert out.method == "exact" and out.complete and all(5000 <= len(n) <= 6000 for n in out.names)
    # the probability of that length under the model: tiny (e^-several thousand), and computed right
    sampler = exact_module.exact_sampler(model, vocab, config, 6000, seed=0)
    expected = log_p_length_between(model, 5000, 6000)
    assert expected < -500 and sampler.log_p_valid == pytest.approx(expected, rel=1e-6)


def test_messages_summed_as_probabilities_equal_log_space_and_keep_tiny_ones(monkeypatch):
    """A large chain's messages are summed as probabilities where no term can leave float64's normal range,
    in log space elsewhere. Here state b reaches an ending only through two steps of probability 1e-200 each:
    as a probability its message, 1e-400, would be 0 ("impossible"); the guard sums that step in log space."""
    vocab = Vocab(("a", "b", "c"))
    # states: 0 the start, 1 after a (ends at once), 2 after b, 3 after c; tokens: end, a, b, c
    probs = torch.tensor([[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1e-200],
                          [1e-200, 0.0, 0.0, 1.0 - 1e-200]], dtype=torch.float64)
    next_state = torch.tensor([[0, 1, 2, 3]]).expand(4, 4).clone()
    chain = exact_module.MarkovChain(probs, next_state, 0)
    automaton = build_automaton(vocab, GenerateConfig())
    monkeypatch.setattr(exact_module, "PRECOMPUTE_CDFS", 0)  # as a large chain's: no CDFs, no log-space tables

    def tables(max_len: int) -> torch.Tensor:
        sampler = exact_module.ExactSampler(chain, automaton, vocab, "", 1, max_len, seed=0)
        return sampler.beta.double() + sampler.log_scale.unsqueeze(1)

    fast = tables(6)
    monkeypatch.setattr(exact_module, "LOG_SMALLEST_NORMAL", math.inf)  # every step in log space
    reference = tables(6)
    assert torch.equal(torch.isfinite(fast), torch.isfinite(reference))
    assert torch.allclose(fast[torch.isfinite(fast)], reference[torch.isfinite(reference)], rtol=1e-6)
    # b at length 0: c (1e-200), then from length 1 to 6 end (1e-200) or go on with c: 6 × 1e-400
    assert float(fast[0, 2]) == pytest.approx(math.log(6) + 2 * math.log(1e-200), rel=1e-6)


@pytest.mark.parametrize("tabulated", [True, False], ids=["cdf-tables", "per-draw"])
def test_both_ways_of_drawing_are_exact(monkeypatch, tabulated):
    """Whole-name frequencies match P(name | constraints) by enumeration, with the CDFs tabulated
    per step or computed per draw from the log-messages (large chains)."""
    if not tabulated:
        monkeypatch.setattr(exact_module, "PRECOMPUTE_CDFS", 0)
    tiny = NameModel.train(model="bigram-counts", words=TINY)
    config = GenerateConfig(num=20_000, seed=3, max_len=5, ends_with="ab", contains=("c",), min_len=3,
                            method="exact")
    out = generate(tiny.model, tiny.vocab, config, max_word_length=5)
    assert_matches_enumeration(out.names, tiny.model, tiny.vocab,
                               lambda n: n.endswith("ab") and "c" in n and len(n) >= 3, 5)


# --- 5. the n-gram is steered exactly over the states it stores -----------------------------------------
def enumerate_names(vocab: Vocab, max_len: int) -> list[str]:
    import itertools

    return ["".join(t) for n in range(1, max_len + 1) for t in itertools.product(vocab.chars, repeat=n)]


def assert_matches_enumeration(names: list[str], model, vocab: Vocab, valid, max_len: int) -> None:
    """Pearson's test of the names' frequencies against P(name | valid) found by listing every name."""
    candidates = [n for n in enumerate_names(vocab, max_len) if valid(n)]
    weights = word_log_probs(model, candidates, vocab).double().exp()
    expected = dict(zip(candidates, (weights / weights.sum()).tolist()))
    counts = Counter(names)
    assert set(counts) <= {n for n, p in expected.items() if p > 0}
    big = [(counts.get(n, 0), len(names) * p) for n, p in expected.items() if len(names) * p >= 5]
    rest_obs = len(names) - sum(o for o, _ in big)
    rest_exp = len(names) - sum(e for _, e in big)
    cells = big + ([(rest_obs, rest_exp)] if rest_exp > 1e-9 else [])
    stat = sum((o - e) ** 2 / e for o, e in cells)
    p_value = float(torch.special.gammaincc(torch.tensor((len(cells) - 1) / 2, dtype=torch.float64),
                                            torch.tensor(stat / 2, dtype=torch.float64)))
    assert p_value > 1e-3


def test_a_long_context_ngram_is_exact_over_its_rows():
    """Order 9 on 3 letters: 4^8 = 65,536 contexts, too many to enumerate, but few stored rows."""
    result = NameModel.train(model="ngram", words=TINY, order=9, prior="none")
    model, vocab = result.model, result.vocab
    chain = markov_chain(model, vocab.size, GenerateConfig())
    assert chain is not None and len(chain.probs) == len(model.context_keys) < vocab.size ** 8
    config = GenerateConfig(num=20_000, seed=2, ends_with="a", contains=("b",), min_len=2, max_len=5)
    out = generate(model, vocab, config, max_word_length=5)
    assert out.method == "exact" and out.tries == 20_000
    assert_matches_enumeration(out.names, model, vocab, lambda n: n.endswith("a") and "b" in n and len(n) >= 2, 5)


def test_a_short_window_model_is_exact_over_its_contexts():
    """An MLP with a 2-token window on 3 letters: its 4^2 contexts, tabulated by running the network."""
    result = NameModel.train(model="mlp", words=TINY, block_size=2, n_embd=4, n_hidden=8, max_steps=20, ngram_mix=0)
    model, vocab = result.model.eval(), result.vocab
    config = GenerateConfig(num=20_000, seed=5, ends_with="ba", excludes=("cc",), max_len=5)
    out = generate(model, vocab, config, max_word_length=5)
    assert out.method == "exact" and out.tries == 20_000
    assert_matches_enumeration(out.names, model, vocab, lambda n: n.endswith("ba") and "cc" not in n, 5)


@pytest.fixture(scope="module")
def default_ngram():
    return NameModel.train(model="ngram", words=load_words("builtin"))  # order 6, tens of thousands of rows


def test_the_chain_over_rows_is_the_model(default_ngram):
    """Walking the chain's states gives the model's own next-token distribution after every prefix."""
    model, vocab = default_ngram.model, default_ngram.vocab
    chain = markov_chain(model, vocab.size, GenerateConfig())
    for name in ["emma", "zzyzx", "olivia", "q"]:
        tokens = vocab.encode(name)
        logits = model(torch.tensor([[BOUNDARY, *tokens]]))[0]  # (T, V): after each prefix
        for t in range(len(tokens) + 1):
            state = chain.state_after(tokens[:t])
            torch.testing.assert_close(chain.probs[state].float(), logits[t].exp())


def test_default_ngram_finds_every_ette_name_exactly(default_ngram):
    """The issue's case: --ends-with ette --novel -n 200 found 199 of 200 by rejection."""
    words = set(load_words("builtin"))
    config = GenerateConfig(num=200, seed=0, ends_with="ette", novel=True)
    out = generate(default_ngram.model, default_ngram.vocab, config, max_word_length=15, known_words=words)
    assert out.method == "exact" and out.complete and len(out.names) == 200
    assert all(n.endswith("ette") and n not in words for n in out.names)


def test_default_ngram_lengths_and_excludes_are_exact(default_ngram):
    config = GenerateConfig(num=500, seed=1, contains=("ri",), excludes=("e",), min_len=6)
    out = generate(default_ngram.model, default_ngram.vocab, config, max_word_length=15)
    assert out.method == "exact" and out.acceptance == 1.0
    assert all("ri" in n and "e" not in n and len(n) >= 6 for n in out.names)
    assert len(build_automaton(default_ngram.vocab, config).delta) == 3


# --- errors carry the parameter ----------------------------------------------------------------------
def test_errors_name_their_field_and_survive_pickling():
    e = ConfigError("max_len must be at least 1, got 0", field="max_len")
    again = pickle.loads(pickle.dumps(e))
    assert type(again) is ConfigError and str(again) == str(e) and again.field == "max_len"
    assert NamesmithError("plain").field is None and str(NamesmithError("plain")) == "plain"


def test_the_cli_names_its_flag(tmp_path, capsys):
    from namesmith.cli import main

    out = tmp_path / "m"
    assert main(["-q", "train", "--model", "bigram-counts", "--out", str(out), "--samples", "0"]) == 0
    capsys.readouterr()
    assert main(["sample", "-m", str(out), "--max-len", "0"]) == 1
    assert capsys.readouterr().err.strip() == "namesmith: error: --max-len must be at least 1, got 0"
    assert main(["sample", "-m", str(out), "-n", "3", "--min-len", "40"]) == 1
    assert "--min-len 40 is greater than the length guard" in capsys.readouterr().err


def test_numpy_integers_are_accepted():
    assert GenerateConfig(num=np.int64(3), max_len=np.int32(7)).num == 3
