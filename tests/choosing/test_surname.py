"""A first name's fit with a surname (namesmith.choosing.surname): each rule on names chosen to show it, the score
from the rules' weights, and `surname`/`alliteration` through the generation pipeline, CLI and API."""

from __future__ import annotations

import json

import pytest

from namesmith import NameModel
from namesmith.choosing.surname import (
    PENALTIES,
    alliterates,
    check_surname,
    first_sound,
    initials,
    last_sound,
    surname_fit,
)
from namesmith.cli import main
from namesmith.core.errors import ConfigError
from namesmith.generation.config import GenerateConfig


@pytest.mark.parametrize("name, first, last", [
    ("Cindy", "s", "vowel"), ("Cara", "k", "vowel"), ("Kent", "k", "t"), ("George", "j", "j"), ("Knox", "n", "s"),
    ("Philip", "f", "p"), ("Jane", "j", "n"), ("Grace", "g", "s"), ("Leigh", "l", "vowel"), ("Sarah", "s", "vowel"),
    ("Shaw", "sh", "vowel"), ("Élodie", "vowel", "vowel"), ("Yara", "y", "vowel"), ("Mark", "m", "k"),
    ("Anne-Sophie", "vowel", "vowel"), ("O'Brien", "vowel", "n")])
def test_sounds_at_the_edges_of_names(name, first, last):
    assert (first_sound(name), last_sound(name)) == (first, last)


def test_each_rule_on_a_name_that_shows_it():
    def rules(first, surname, alliteration="any"):
        return " | ".join(surname_fit(first, surname, alliteration).reasons)

    assert "two single beats" in rules("John", "Smith")
    assert "uneven beats flow" in rules("Alexandra", "Bell")
    assert "clash: Jess ends on the 's' that Smith starts with" in rules("Jess", "Smith")
    assert "clash" in rules("Mark", "Cole") and "clash" not in rules("Mary", "Cole")
    assert "glide together" in rules("Mia", "Adams")
    assert "alliteration: both start with 'p'" in rules("Peter", "Parker")
    assert "alliteration" in rules("Cara", "Kent") and "alliteration" not in rules("Cindy", "Carter")
    assert "A.S.S. spell an offensive word" in rules("Anne-Sophie", "Smith")
    assert "offensive" not in rules("Anne", "Smith")
    assert "long to write" in rules("Maximiliana", "Worthington-Smythe")
    assert "syllables are counted in Latin-script names only" in rules("יוסף", "כהן")
    assert initials("Anne-Sophie", "van der Berg") == "ASVDB"


def test_the_score_is_one_less_the_weights_of_what_was_found():
    cases = [("John", "Smith", "any"), ("Jess", "Smith", "any"), ("Peter", "Parker", "avoid"),
             ("Anne-Sophie", "Smith", "any"), ("Ava", "Lee", "want"), ("Mia", "Adams", "any")]
    for first, surname, alliteration in cases:
        fit = surname_fit(first, surname, alliteration)
        found = {"two single beats": "single beats", "a little sing-song": "equal beats", "clash:": "clash",
                 "glide together": "vowels meet", "which was to be avoided": "alliteration avoided",
                 "as asked": "alliteration wanted", "though it was wanted": "no alliteration wanted",
                 "offensive word": "offensive initials", "long to write": "long", "very short": "short",
                 "a mouthful": "mouthful"}
        cost = sum(PENALTIES[rule] for text, rule in found.items() for reason in fit.reasons if text in reason)
        assert fit.score == pytest.approx(min(1.0, max(0.0, 1.0 - cost))), (first, surname, fit)
    assert surname_fit("Peter", "Parker", "want").score > surname_fit("Peter", "Parker", "avoid").score
    assert surname_fit("Ava", "Lee").score > surname_fit("Jess", "Smith").score


@pytest.mark.parametrize("surname", ["", "   ", "x" * 65, "Sm1th", "Smith;", 5])
def test_a_bad_surname_is_one_line_naming_it(surname):
    with pytest.raises(ConfigError) as error:
        check_surname(surname)
    assert error.value.field == "surname" and "\n" not in str(error.value)
    if isinstance(surname, str) and not surname.strip():  # a field left empty: no surname asked for
        assert GenerateConfig(surname=surname).surname is None
    else:
        with pytest.raises(ConfigError):
            GenerateConfig(surname=surname)


def test_alliteration_needs_a_surname_and_a_known_value():
    with pytest.raises(ConfigError, match="'want' needs a surname") as error:
        GenerateConfig(alliteration="want")
    assert error.value.field == "alliteration"
    with pytest.raises(ConfigError, match="alliteration must be one of any, want, avoid"):
        GenerateConfig(surname="Smith", alliteration="maybe")
    assert GenerateConfig(surname="  O'Brien ").surname == "O'Brien"


WORDS = ["peter", "paula", "piper", "sam", "sara", "anna", "mia", "liam", "nora", "lena", "tom", "kate"] * 3


@pytest.fixture(scope="module")
def model():
    return NameModel.train(model="bigram-counts", words=WORDS, calibrate="none")


@pytest.mark.parametrize("alliteration", ["want", "avoid"])
def test_alliteration_filters_the_search(model, alliteration):
    result = model.generate(25, seed=3, surname="Parker", alliteration=alliteration)
    assert len(result.names) == 25
    assert all(alliterates(n, "Parker") == (alliteration == "want") for n in result.names)
    assert result.stats.rejected["alliteration"] > 0


def test_facts_with_a_surname_sorted_by_fit(model):
    from namesmith.choosing.facts import by_fit

    names = ["Jess", "Alexandra", "John", "Anne-Sophie"]
    facts = by_fit(model.facts(names, surname="Smith"))
    assert [f.name for f in facts] == ["Alexandra", "John", "Jess", "Anne-Sophie"]
    assert all(f.to_dict()["surname_fit"]["reasons"] for f in facts)
    assert "surname_fit" not in model.facts(names)[0].to_dict()


def test_cli_prints_the_best_fit_first(model, tmp_path, capsys):
    model.save(tmp_path / "m")
    assert main(["sample", "--model-dir", str(tmp_path / "m"), "-n", "12", "--seed", "1", "--surname", "Smith"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = [float(line.split(" fit ")[1].split(":")[0]) for line in lines]
    assert len(lines) == 12 and scores == sorted(scores, reverse=True) and all(" Smith " in line for line in lines)
    assert main(["sample", "--model-dir", str(tmp_path / "m"), "-n", "5", "--seed", "1", "--surname", "Smith",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["names"] == [d["name"] for d in printed["details"]]
    assert [d["surname_fit"]["score"] for d in printed["details"]] == sorted(
        (d["surname_fit"]["score"] for d in printed["details"]), reverse=True)
    assert main(["sample", "--model-dir", str(tmp_path / "m"), "--alliteration", "avoid"]) == 1
    assert capsys.readouterr().err.strip() == ("namesmith: error: --alliteration 'avoid' needs a surname to "
                                               "alliterate with")


def test_the_api_sorts_by_fit_and_explains_it(model, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from namesmith.serve import ModelRegistry, create_app

    model.save(tmp_path / "m")
    client = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "m"])))
    url = "/api/v1/models/m/generate"
    body = client.post(url, json={"n": 15, "seed": 2, "surname": "Parker", "alliteration": "avoid"}).json()
    fits = [r["surname_fit"] for r in body["names"]]
    assert len(fits) == 15 and all(f["reasons"] for f in fits)
    assert [f["score"] for f in fits] == sorted((f["score"] for f in fits), reverse=True)
    assert not any(alliterates(r["name"], "Parker") for r in body["names"])
    assert all(r["surname_fit"] is None for r in client.post(url, json={"n": 3, "seed": 2}).json()["names"])
    for request, field in (({"n": 3, "surname": "Sm1th"}, "surname"), ({"n": 3, "surname": "x" * 65}, "surname"),
                           ({"n": 3, "alliteration": "want"}, "alliteration"),
                           ({"n": 3, "surname": "Smith", "alliteration": "often"}, "alliteration")):
        refused = client.post(url, json=request)
        assert 400 <= refused.status_code < 500 and refused.json()["field"] == field, refused.text
        assert "\n" not in refused.json()["error"]


def test_an_empty_surname_or_popularity_on_the_cli_asks_for_none(tmp_path, capsys):
    """`--surname ""` and `--popularity " "` are fields left empty: the same names as without them (they were a
    one-line error on the CLI while the API took them as none)."""
    from serve_support import train_bigram

    out = train_bigram(tmp_path)
    printed = []
    for extra in ([], ["--surname", "", "--popularity", " "]):
        assert main(["sample", "-m", str(out), "-n", "5", "--seed", "4", "--json", *extra]) == 0
        printed.append(json.loads(capsys.readouterr()[0])["names"])
    assert printed[0] == printed[1]
