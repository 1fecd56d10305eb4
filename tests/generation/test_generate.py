"""Steerable generation: every constraint holds, exact conditioning is exact, budgets end searches."""

import itertools
import json
import re
from collections import Counter

import pytest
import torch
from clock_support import fake_clock
from sampling_support import PositionModel, chi_square_pvalue, exact_distribution

from namesmith.cli import main
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.words import load_words, split_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.constraints import build_automaton, kmp_automaton
from namesmith.generation.generate import generate
from namesmith.generation.novelty import novelty_summary
from namesmith.namemodel import NameModel

TINY = ["abc", "ba", "cab", "acca", "b", "bbc", "cabba", "ac", "aab", "cc"]


@pytest.fixture(scope="module")
def builtin():
    words = load_words("builtin")
    return NameModel.train(model="bigram-counts", words=words, calibrate="none"), words  # the chain's own algebra


@pytest.fixture(scope="module")
def tiny():
    return NameModel.train(model="bigram-counts", words=TINY)


def sample_counts(model, vocab, config: GenerateConfig) -> Counter:
    result = generate(model, vocab, config, max_word_length=5)
    assert result.complete and len(result.names) == config.num
    return Counter(result.names)


# --- every constraint holds ----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_every_constraint_holds_on_every_name(builtin, method):
    result, words = builtin
    config = GenerateConfig(num=300, seed=0, starts_with="ma", ends_with="a", contains=("r",), excludes=("e", "y"),
                            regex="^[a-z]+$", min_len=5, max_len=9, novel=True, unique=True, method=method)
    out = generate(result.model, result.vocab, config, max_word_length=result.corpus.max_word_length,
                   known_words=set(words))
    assert out.complete and len(out.names) == 300 and out.method == method
    assert len(set(out.names)) == 300 and not set(out.names) & set(words)
    for name in out.names:
        assert name.startswith("ma") and name.endswith("a") and "r" in name and 5 <= len(name) <= 9
        assert "e" not in name and "y" not in name and re.search("^[a-z]+$", name)


def test_exact_sampling_draws_no_rejected_names(builtin):
    result, _ = builtin
    out = generate(result.model, result.vocab, GenerateConfig(num=500, seed=1, ends_with="lyn", min_len=7),
                   max_word_length=16)
    assert out.method == "exact" and out.tries == 500 and out.acceptance == 1.0


def test_same_seed_same_names(builtin):
    result, _ = builtin
    config = GenerateConfig(num=50, seed=7, ends_with="ie", contains=("r",))
    first = generate(result.model, result.vocab, config, max_word_length=16).names
    assert first == generate(result.model, result.vocab, config, max_word_length=16).names


# --- exact conditioning is exact -------------------------------------------------------------------
@pytest.mark.parametrize("config", [
    dict(ends_with="a"),
    dict(ends_with="ab", min_len=3),
    dict(starts_with="c", ends_with="ca"),
    dict(contains=("bb",), excludes=("cc",)),
    dict(min_len=4, temperature=0.5),
    dict(contains=("ab", "ba"), temperature=2.0, ends_with="c"),
])
def test_exact_conditioning_matches_enumeration(tiny, config):
    """Whole-name frequencies match P(name | constraints), found by listing every name ≤ 5 characters."""
    cfg = GenerateConfig(num=20_000, seed=3, max_len=5, method="exact", **config)
    counts = sample_counts(tiny.model, tiny.vocab, cfg)

    def valid(n: str) -> bool:
        return (n.startswith(cfg.starts_with) and n.endswith(cfg.ends_with) and len(n) >= (cfg.min_len or 0)
                and all(c in n for c in cfg.contains) and not any(e in n for e in cfg.excludes))

    expected = exact_distribution(tiny.model, tiny.vocab, valid, 5, cfg.temperature)
    assert chi_square_pvalue(counts, expected, cfg.num) > 1e-3


def test_starts_with_next_character_matches_the_model(builtin):
    """After the prefix, the next token is drawn from the model's row for the prefix's last character."""
    result, _ = builtin
    out = generate(result.model, result.vocab, GenerateConfig(num=20_000, seed=5, starts_with="br"),
                   max_word_length=16)
    after = Counter(name[2] if len(name) > 2 else "<end>" for name in out.names)
    row = result.model.transition_probs()[result.vocab.stoi["r"]].double()
    expected = {"<end>": float(row[0]), **{c: float(row[i]) for c, i in result.vocab.stoi.items()}}
    assert chi_square_pvalue(after, expected, out.requested) > 1e-3


def test_ends_with_first_character_matches_markov_algebra(builtin):
    """P(first = c | ends with S, length ≤ L) from matrix powers of the transition table."""
    result, _ = builtin
    vocab, L, suffix = result.vocab, 12, "lyn"
    out = generate(result.model, vocab, GenerateConfig(num=20_000, seed=6, ends_with=suffix, max_len=L),
                   max_word_length=16)
    P = result.model.transition_probs().double()
    M = P[1:, 1:]  # character → character
    s = [vocab.stoi[c] - 1 for c in suffix]
    tail = float(torch.prod(torch.stack([P[a + 1, b + 1] for a, b in itertools.pairwise(s)]))) * float(P[s[-1] + 1, 0])
    weight = torch.zeros(len(vocab.chars), dtype=torch.float64)
    weight[s[0]] += 1.0  # the name is the suffix itself
    power = torch.eye(len(vocab.chars), dtype=torch.float64)
    for _ in range(L - len(suffix)):  # names with n - |S| characters before the suffix
        power = power @ M
        weight += power[:, s[0]]
    joint = P[0, 1:] * weight * tail
    expected = {c: float(joint[i] / joint.sum()) for i, c in enumerate(vocab.chars)}
    assert chi_square_pvalue(Counter(n[0] for n in out.names), expected, out.requested) > 1e-3


def test_kmp_automaton_tracks_the_longest_matched_prefix():
    table = kmp_automaton([1, 2, 1], 4)
    state, states = 0, []
    for c in [1, 2, 1, 2, 1, 1]:
        state = int(table[state, c])
        states.append(state)
    assert states == [1, 2, 3, 2, 3, 1]


def test_automaton_accepts_exactly_the_valid_names(tiny):
    vocab = tiny.vocab
    config = GenerateConfig(ends_with="ab", contains=("ca",), excludes=("bb",))
    automaton = build_automaton(vocab, config)
    for n in range(1, 6):
        for chars in itertools.product(vocab.chars, repeat=n):
            name, q = "".join(chars), automaton.start
            for t in vocab.encode(name):
                q = int(automaton.delta[q, t]) if q >= 0 else q  # -1: an excluded pattern, for good
            valid = name.endswith("ab") and "ca" in name and "bb" not in name
            assert (q >= 0 and bool(automaton.accept[q])) == valid, name


# --- models without a small Markov state: rejection ------------------------------------------------
def test_rejection_path_for_a_non_markov_model_is_exact():
    vocab, model = Vocab(("a", "b", "c")), PositionModel()
    cfg = GenerateConfig(num=10_000, seed=11, ends_with="b", contains=("a",), min_len=2, max_len=5)
    result = generate(model, vocab, cfg, max_word_length=5)
    assert result.method == "rejection" and result.complete and result.acceptance < 1
    expected = exact_distribution(model, vocab, lambda n: n.endswith("b") and "a" in n and len(n) >= 2, 5)
    assert chi_square_pvalue(Counter(result.names), expected, cfg.num) > 1e-3
    with pytest.raises(ConfigError, match="method 'exact' is not available here") as e:
        generate(model, vocab, GenerateConfig(num=1, ends_with="b", method="exact"), max_word_length=5)
    assert e.value.field == "method"


def test_ngram_model_is_conditioned_exactly_too():
    model_result = NameModel.train(model="ngram", words=TINY, order=3, prior="none")
    cfg = GenerateConfig(num=20_000, seed=2, ends_with="a", min_len=2, max_len=5)
    result = generate(model_result.model, model_result.vocab, cfg, max_word_length=5)
    assert result.method == "exact"
    expected = exact_distribution(model_result.model, model_result.vocab,
                                  lambda n: n.endswith("a") and len(n) >= 2, 5)
    assert chi_square_pvalue(Counter(result.names), expected, cfg.num) > 1e-3


# --- errors and budgets -------------------------------------------------------------------------------
@pytest.mark.parametrize("options, field, message", [
    (dict(min_len=6, max_len=4), "min_len", "min_len 6 is greater than max_len (4)"),
    (dict(ends_with="abcdef", max_len=4), "ends_with", "ends_with 'abcdef' is 6 characters, more than max_len (4)"),
    (dict(starts_with="ab", ends_with="ca", max_len=3), "ends_with", "starts with 'ab' and ends with 'ca'"),
    (dict(contains=("abc",), excludes=("b",)), "contains", "which excludes forbids"),
    (dict(regex="a("), "regex", "regex 'a(': "),
    (dict(contains=("",)), "contains", "contains needs non-empty strings"),
    (dict(max_tries=0), "max_tries", "max_tries must be at least 1"),
    (dict(num=-1), "num", "num must not be negative"),
    (dict(num="5"), "num", "num must be an integer"),
    (dict(max_len=0), "max_len", "max_len must be at least 1"),
    (dict(max_len=10**6), "max_len", "max_len must be at most 10,000"),
    (dict(min_len=50_000), "min_len", "min_len must be at most 10,000"),
    (dict(temperature=0), "temperature", "temperature must be at least 0.01, got 0"),
    (dict(temperature=float("nan")), "temperature", "temperature must be a number"),
    (dict(temperature=11), "temperature", "temperature must be at most 10, got 11"),
    (dict(seed=2**53), "seed", "seed must be at most 9,007,199,254,740,991"),
    (dict(top_k=0), "top_k", "top_k must be at least 1"),
    (dict(top_p=1.5), "top_p", "top_p must be at most 1, got 1.5"),
    (dict(time_budget=-1), "time_budget", "time_budget must be positive"),
    (dict(method="fast"), "method", "method must be one of auto, exact, guided, rejection"),
    (dict(novel=1), "novel", "novel must be true or false"),
])
def test_impossible_constraints_are_config_errors(options, field, message):
    """Each names the Python parameter, in the message and in `field` (the CLI maps it to its flag)."""
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        GenerateConfig(**options)
    assert e.value.field == field and "--" not in str(e.value)


def test_compatible_prefix_and_suffix_may_overlap(tiny):
    out = generate(tiny.model, tiny.vocab, GenerateConfig(num=20, seed=0, starts_with="ab", ends_with="ba", max_len=3),
                   max_word_length=5)
    assert set(out.names) == {"aba"}


def test_constraints_the_model_cannot_meet(tiny):
    with pytest.raises(ConfigError, match="not in the model's vocabulary") as e:
        generate(tiny.model, tiny.vocab, GenerateConfig(ends_with="z"), max_word_length=5)
    assert e.value.field == "ends_with"
    zero = NameModel.train(model="bigram-counts", words=["ab", "ab"], smoothing=0).model
    with pytest.raises(ConfigError, match="non-zero probability"):
        generate(zero, Vocab(("a", "b")), GenerateConfig(ends_with="a"), max_word_length=2)
    with pytest.raises(ConfigError, match="needs the training word list") as e:
        generate(tiny.model, tiny.vocab, GenerateConfig(novel=True), max_word_length=5)
    assert e.value.field == "novel"


def test_budget_stops_a_hopeless_search_with_a_message(tiny, monkeypatch):
    out = generate(tiny.model, tiny.vocab, GenerateConfig(num=5, seed=0, regex="^z", max_tries=3000),
                   max_word_length=5)
    assert not out.complete and out.stop_reason == "max-tries" and out.names == [] and out.tries == 3000
    assert "found 0 of 5 names in 3,000 tries" in out.message() and "acceptance 0%" in out.message()
    clock = fake_clock(monkeypatch, tick=0.01)  # the budget passes after 20 of its checks, however fast they come
    out = generate(tiny.model, tiny.vocab, GenerateConfig(num=5, seed=0, regex="^z", time_budget=0.2,
                                                          max_tries=10**6), max_word_length=5)
    assert out.stop_reason == "time-budget" and 0 < out.tries < 10**6 and clock.readings >= 20
    monkeypatch.undo()
    # --unique asks for more distinct names than exist: stops too
    out = generate(tiny.model, tiny.vocab, GenerateConfig(num=10, seed=0, unique=True, max_len=1, max_tries=10_000),
                   max_word_length=5)
    assert sorted(out.names) == ["a", "b", "c"] and out.stop_reason == "max-tries"


def test_novelty_summary():
    split = split_words(["anna", "bob", "carl", "dora", "eve"] * 2 + [f"x{i}" for i in range(10)], seed=0)
    names = [split.train[0], split.val[0], "zzz", split.train[0]]
    summary = novelty_summary(names, split)
    assert (summary.total, summary.in_train, summary.new) == (4, 2 + (names[1] in split.train), 1)
    assert "4 names:" in summary.line() and "new" in summary.line()
    assert "not available" in novelty_summary(names, None, "gone").line()


# --- the command line --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def count_model_dir(tmp_path_factory):
    """A plain n-gram count model of 3,000 names, saved by the CLI."""
    tmp_path = tmp_path_factory.mktemp("count-model")
    data = tmp_path / "names.txt"
    data.write_text("\n".join(load_words("builtin")[:3000]) + "\n", encoding="utf-8")
    assert main(["-q", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--order", "4",
                 "--calibrate", "none", "--samples", "0"]) == 0
    return tmp_path / "m"


@pytest.mark.parametrize("options, keywords", [
    ([], {}), (["--starts-with", "ma"], {"starts_with": "ma"}),
    (["--ends-with", "a", "--min-len", "4"], {"ends_with": "a", "min_len": 4})])
def test_the_library_and_the_cli_draw_the_same_names_from_a_seed(count_model_dir, capsys, options, keywords):
    capsys.readouterr()
    assert main(["-q", "sample", "-m", str(count_model_dir), "-n", "40", "--seed", "11", *options]) == 0  # streamed
    printed = capsys.readouterr()[0].split()
    assert len(printed) == 40
    assert NameModel.load(count_model_dir).generate(40, seed=11, **keywords).names == printed


def test_cli_sample_with_constraints_json_and_summary(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(load_words("builtin")[:2000]) + "\n", encoding="utf-8")
    out = tmp_path / "m"
    assert main(["-q", "train", "--model", "bigram-counts", "--data", str(data), "--out", str(out),
                 "--samples", "0"]) == 0
    capsys.readouterr()
    argv = ["sample", "-m", str(out), "-n", "30", "--seed", "1", "--ends-with", "na", "--contains", "r",
            "--excludes", "e", "--min-len", "5", "--max-len", "8", "--novel", "--unique"]
    assert main(argv) == 0
    stdout, stderr = capsys.readouterr()
    names = stdout.split()
    assert len(names) == 30 and all(n.endswith("na") and "r" in n and "e" not in n for n in names)
    assert "30 names: 0 in train, 0 in validation/test, 30 new" in stderr
    assert main([*argv, "--json"]) == 0
    payload = json.loads(capsys.readouterr()[0])
    assert payload["names"] == names and payload["summary"]["new"] == 30 and payload["generation"]["complete"]
    data.rename(tmp_path / "moved.txt")  # the summary says so instead of failing
    assert main(["sample", "-m", str(out), "-n", "3", "--seed", "1"]) == 0
    assert "training data not available" in capsys.readouterr()[1]
    assert main(["sample", "-m", str(out), "--novel"]) == 1
    assert "--novel needs the training word list" in capsys.readouterr()[1]
    assert main(["sample", "-m", str(out), "-n", "3", "--regex", "^q.*q$", "--max-tries", "1000"]) == 1
    assert "stopped at the --max-tries limit" in capsys.readouterr()[1]
    assert main(["sample", "-m", str(out), "--starts-with", "é"]) == 1
    assert "not in the model's vocabulary" in capsys.readouterr()[1]


def test_offensive_names_are_a_filter_of_the_one_pipeline(tmp_path):
    """filter_offensive (the server's default) hides them inside the search: its statistics count them, the
    names before the first one hidden are the unfiltered names of the same seed, and more are drawn after."""
    from namesmith.data.offensive import is_offensive

    words = ["shitake", "shita", "ashit", "fuckle", "fucka", "anna", "emma", "hannah", "bella", "ella"] * 5
    model = NameModel.train(words=words, model="bigram-counts", out=tmp_path / "rude")
    raw, shown = model.generate(60, seed=0), model.generate(60, seed=0, filter_offensive=True)
    first = next(i for i, name in enumerate(raw.names) if is_offensive(name))
    assert shown.stats.complete and len(shown.names) == 60 and not any(map(is_offensive, shown.names))
    assert shown.names[:first] == raw.names[:first] and shown.stats.rejected["filter_offensive"] > 0
    assert shown.novelty.total == 60 and shown.stats.tries > raw.stats.tries
