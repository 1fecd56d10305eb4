"""namesmith.choosing.phonetic: Double Metaphone keys, names that sound alike, --sounds-like in generation."""

import sys

import pytest

pytest.importorskip("doublemetaphone")

from namesmith.choosing import phonetic  # noqa: E402
from namesmith.choosing.phonetic import (  # noqa: E402
    SoundIndex,
    edit_distance,
    phonetic_key,
    phonetic_keys,
    sounds_alike,
    sounds_like,
)
from namesmith.core.errors import ConfigError  # noqa: E402
from namesmith.data.words import load_words  # noqa: E402
from namesmith.namemodel import NameModel  # noqa: E402


def test_spellings_of_one_sound_share_a_key():
    assert {phonetic_key(n) for n in ("Aiden", "Aidan", "Ayden", "Aden", "aiden")} == {"ATN"}
    assert phonetic_key("Sean") != phonetic_key("Shawn") and sounds_alike("Shawn", "Shaun")
    assert len(phonetic_keys("Catherine")) == 2  # two usual readings: th as in thin, and as t
    assert phonetic_keys("") == () and phonetic_keys("'-") == ()


@pytest.mark.parametrize("a, b, distance", [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("ab", "ba", 1),
                                            ("Aiden", "Aidan", 1), ("abcd", "acbd", 1), ("ca", "abc", 3)])
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_spelling_variants_of_a_known_name():
    variants = sounds_like("Aiden")
    assert len(variants) == 10 and "Aiden" not in variants
    assert {"Aidan", "Ayden", "Aden"} <= set(variants)
    assert set(sounds_like("Katelyn", k=20)) >= {"Kaitlyn", "Catelyn", "Katelynn"}


def test_ranking_puts_the_same_sound_and_the_closest_spelling_first():
    index = SoundIndex(["Aidan", "Eden", "Adrian", "Zzyzx", "Ayden"], {"Aidan": 1000, "Ayden": 1000})
    ranked = index.rank("Aiden")
    assert ranked == ["Aidan", "Ayden", "Eden", "Adrian"]  # Adrian's key ATRN is one edit from ATN; Zzyzx is not near


def test_generated_names_sound_like_the_target():
    model = NameModel.train(model="bigram-counts", words=load_words()[:5000], calibrate="none")
    result = model.generate(30, sounds_like="Aiden", seed=0)
    assert len(result.names) == 30 and all(sounds_alike(n, "Aiden") for n in result.names)
    with pytest.raises(ConfigError) as error:
        model.generate(3, sounds_like="---")
    assert error.value.field == "sounds_like"


def test_without_the_extra_sounds_like_is_refused_in_one_line(monkeypatch):
    phonetic._double_metaphone.cache_clear()
    monkeypatch.setitem(sys.modules, "doublemetaphone", None)  # as if not installed
    try:
        with pytest.raises(ConfigError, match=r"pip install 'namesmith\[phonetic\]'") as error:
            phonetic_key("Aiden")
        assert error.value.field == "sounds_like" and "\n" not in str(error.value)
    finally:
        phonetic._double_metaphone.cache_clear()


@pytest.mark.slow  # trains a served model; the API's spelling variants test keeps the path fast
def test_the_api_ranks_names_that_sound_like_the_target(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from serve_support import train_bigram

    from namesmith.serve import ModelRegistry, create_app

    client = TestClient(create_app(ModelRegistry.from_directories([train_bigram(tmp_path)])))
    response = client.post("/api/v1/models/bigram/generate", json={"n": 10, "seed": 2, "sounds_like": "Jaden"})
    assert response.status_code == 200, response.text
    names = [n["name"] for n in response.json()["names"]]
    assert len(names) == 10 and all(sounds_alike(n, "Jaden") for n in names)
    assert names == SoundIndex(names, phonetic.catalogue_births()).rank("Jaden", 10)


# --- spelling variants on the CLI and the API --------------------------------------------------------------------
def test_the_variants_command_ranks_the_known_spellings(capsys):
    import json

    from namesmith.cli import main

    assert main(["variants", "Aiden", "Zorblax", "-n", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Aiden (ATN): Aidan (") and "Ayden (" in lines[0] and lines[0].count("(") == 6
    assert lines[1] == "Zorblax (SRPLKS): no known name sounds like it"
    assert main(["variants", "katelyn", "--json", "-n", "20"]) == 0
    [found] = json.loads(capsys.readouterr().out)
    names = [v["name"] for v in found["variants"]]
    assert names == sounds_like("katelyn", k=20) and {"Kaitlyn", "Katelynn"} <= set(names)
    assert all(v["births"] == phonetic.catalogue_births()[v["name"]] for v in found["variants"])
    for bad, message in ((["variants", "'-"], "no letters to sound out"), (["variants", "Aiden", "-n", "0"], "--num"),
                         (["variants", *["Aiden"] * 21], "at most 20 names")):
        assert main(bad) == 1
        error = capsys.readouterr().err.strip()
        assert message in error and "\n" not in error


def test_the_api_answers_the_spelling_variants_of_a_name(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from serve_support import train_bigram

    from namesmith.serve import ModelRegistry, create_app

    client = TestClient(create_app(ModelRegistry.from_directories([train_bigram(tmp_path)])))
    response = client.get("/api/v1/variants", params={"name": "aiden", "n": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["keys"] == ["ATN"] and [v["name"] for v in body["variants"]] == sounds_like("aiden", k=4)
    assert body["variants"][0] == {"name": "Aidan", "births": phonetic.catalogue_births()["Aidan"], "keys": ["ATN"]}
    for params, field in (({"name": "--"}, "name"), ({"name": "Aiden", "n": 0}, "n"), ({"name": "x" * 10_000}, "name")):
        response = client.get("/api/v1/variants", params=params)
        assert 400 <= response.status_code < 500 and response.json()["field"] == field, response.text
