"""Popularity, trend, known names and nicknames from the built-in catalogue (namesmith.choosing.popularity,
namesmith.data.nicknames, namesmith.choosing.facts), and their filters in the generation pipeline: checked
against counts and ranks computed here independently from the catalogue's tables."""

from __future__ import annotations

import bisect
import collections
import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from namesmith import NameModel
from namesmith.choosing.popularity import BANDS, best_use, is_known, parse_popularity, popularity_index, trend
from namesmith.cli import main
from namesmith.core.errors import ConfigError
from namesmith.data.catalogue import load_dataset
from namesmith.data.nicknames import nickname_pairs, nicknames_of
from namesmith.generation.config import GenerateConfig

CATALOGUE = Path(__file__).resolve().parents[2] / "namesmith" / "catalogue"


@pytest.fixture(scope="module")
def us_births():
    """{(name, sex, decade): births} and {(sex, decade): births of all names} of the `us` set, counted here."""
    us = load_dataset("us")
    births = {(n, s, d): int(c) for n, s, d, c in zip(us.names, us.labels["sex"], us.labels["decade"], us.counts)}
    totals: collections.Counter = collections.Counter()
    for (_, s, d), c in births.items():
        totals[(s, d)] += c
    return births, totals


def test_counts_ranks_and_shares_agree_with_the_table(us_births):
    births, totals = us_births
    cells: dict[tuple[str, str], list[int]] = collections.defaultdict(list)  # each (sex, decade)'s counts, sorted
    for (_, s, d), c in births.items():
        cells[(s, d)].append(c)
    for counts in cells.values():
        counts.sort()
    for name in ("Mary", "Leslie", "Aaban", "Zyon"):
        uses = popularity_index().uses(name)
        assert uses and {(u.sex, u.decade) for u in uses} == {(s, d) for n, s, d in births if n == name}
        for use in uses:
            count, cell = births[(name, use.sex, use.decade)], cells[(use.sex, use.decade)]
            higher = len(cell) - bisect.bisect_right(cell, count)  # the names of the cell with more births
            assert (use.count, use.rank) == (count, higher + 1), (name, use)
            assert use.per_million == pytest.approx(count * 1e6 / totals[(use.sex, use.decade)])
    index = popularity_index()
    for counted in index.sets:  # the best-known use found once for all is the best of the name's uses
        for name in list(counted.key_ids)[::400]:
            assert best_use(name) == max(index.uses(name), key=lambda u: (u.per_million, u.decade)), name
    best = best_use("mary")  # any case
    assert best == max(popularity_index().uses("Mary"), key=lambda u: u.per_million)
    assert (best.sex, best.decade, best.rank) == ("F", "1880s", 1)


def test_israel_sums_its_sectors_and_ranks_in_hebrew():
    israel = load_dataset("israel")
    name = "יוסף"
    expected: collections.Counter = collections.Counter()
    for n, s, d, c in zip(israel.names, israel.labels["sex"], israel.labels["decade"], israel.counts):
        if n == name:
            expected[(s, d)] += int(c)
    series = trend(name)
    assert {(u.sex, u.decade): u.count for u in series} == dict(expected)
    assert all(u.source == "israel" for u in series) and best_use(name).rank == 1


def test_known_means_any_built_in_list_in_any_case():
    assert is_known("Elaine") and is_known("ELAINE") and is_known("elaine")  # us, builtin
    assert is_known("José")  # world only (faker's es_ES), not a US name with its accent
    assert best_use("José") is None or best_use("José").source == "us"
    assert is_known(next(iter(load_dataset("surnames").distinct_names())))
    assert is_known("dobbin")  # a nickname (of Robert) only
    assert not is_known("Zorblaxiel") and best_use("Zorblaxiel") is None and trend("Zorblaxiel") == []


def test_trend_of_one_sex_is_by_decade():
    girls = trend("Leslie", "F")
    assert girls and all(u.sex == "F" for u in girls)
    assert [u.decade for u in girls] == sorted(u.decade for u in girls)
    assert {u.sex for u in trend("Leslie")} == {"F", "M"}


@pytest.mark.parametrize("text, expected", [
    ("rare", ("band", BANDS["rare"])), ("Common ", ("band", BANDS["common"])), ("top:50", ("ranks", (1, 50))),
    ("TOP: 7", ("ranks", (1, 7))), ("100-500", ("ranks", (100, 500))), (" 3 - 3 ", ("ranks", (3, 3)))])
def test_popularity_options_parse(text, expected):
    parsed = parse_popularity(text)
    kind, value = expected
    assert (parsed.per_million if kind == "band" else parsed.ranks) == value


@pytest.mark.parametrize("text", ["popular", "top:0", "500-100", "0-5", "top:", "1-", "top:123456789", 5])
def test_bad_popularity_is_one_line_naming_the_option(text):
    with pytest.raises(ConfigError) as error:
        GenerateConfig(popularity=text)
    assert error.value.field == "popularity" and "\n" not in str(error.value)


def test_an_empty_popularity_asks_for_none():
    """"" or blank is a field left empty (the page's, the API's): no popularity filter, as for syllables."""
    assert GenerateConfig(popularity="").popularity is None and GenerateConfig(popularity="  ").popularity is None


def test_bands_partition_the_shares():
    edges = sorted(BANDS.values())
    assert edges[0][0] == 0 and edges[-1][1] == float("inf")
    assert all(a[1] == b[0] for a, b in zip(edges, edges[1:]))


def test_nicknames_from_the_shipped_list_in_the_names_casing():
    assert {"Bob", "Rob", "Robby"} <= set(nicknames_of("Robert"))
    assert nicknames_of("robert") == [n.lower() for n in nicknames_of("Robert")]
    assert nicknames_of("Zorblaxiel") == []
    pairs = nickname_pairs()
    assert len(pairs) > 2000 and all(a != b and a == a.lower() for a, b in pairs)


def test_the_nicknames_card_matches_its_file():
    card = (CATALOGUE / "NICKNAMES.md").read_text(encoding="utf-8")
    payload = (CATALOGUE / "nicknames.tsv.gz").read_bytes()
    assert f"sha256 `{hashlib.sha256(payload).hexdigest()}`" in card and "Apache-2.0" in card
    assert f"{len(payload):,} bytes" in card
    rows = gzip.decompress(payload).decode("utf-8").splitlines()
    assert f"Rows: {len(rows) - 1:,} (name, nickname) pairs" in card
    assert "Apache License" in (CATALOGUE / "nicknames.LICENSE").read_text(encoding="utf-8")


# --- the filters, in the generation pipeline ---------------------------------------------------------
WORDS = ["mary", "anna", "emma", "ava", "mia", "liam", "noah", "zorbla", "quixa", "vexla", "aaban", "maryx",
         "annabeth", "zyon", "kaelith", "ora", "lena", "ela", "nora", "ramona"] * 3


@pytest.fixture(scope="module")
def model():
    return NameModel.train(model="bigram-counts", words=WORDS, calibrate="none")


@pytest.mark.parametrize("popularity", ["common", "uncommon", "rare", "top:100", "20-2000"])
def test_every_name_has_the_popularity_asked_for(model, popularity):
    result = model.generate(30, seed=5, popularity=popularity, max_tries=200_000)
    assert result.names, result.stats.message()
    admits = parse_popularity(popularity).admits
    for name in result.names:
        use = best_use(name)
        assert use is not None and admits(use), (name, use)
    stats = result.stats
    # the other draws turned away were empty names (the length test)
    assert 0 < stats.rejected["popularity"] <= stats.tries - stats.found - stats.unfinished
    assert f"{stats.rejected['popularity']:,} by popularity" in stats.message()


def test_not_in_catalogue_drops_every_known_name(model):
    result = model.generate(40, seed=2, not_in_catalogue=True)
    assert len(result.names) == 40 and not any(is_known(n) for n in result.names)
    assert result.stats.rejected["not_in_catalogue"] > 0  # the model draws mary, anna, ... often
    assert result.stats.to_dict()["rejected"] == result.stats.rejected


def test_the_filters_stream_the_same_names(model):
    whole = model.generate(12, seed=9, popularity="common", not_in_catalogue=False)
    with model.iter_generate(12, seed=9, popularity="common") as stream:
        streamed = [n for batch in stream for n in batch]
    assert streamed == whole.names


def test_facts_of_known_and_new_names(model):
    known, new = model.facts(["Robert", "zorblaxiel"])
    assert known.known and known.popularity == best_use("Robert") and "Bob" in known.nicknames
    assert "rank 1 of boys" in known.line() and "Bob" in known.line()
    assert not new.known and new.popularity is None and new.nicknames == [] and new.line() == "new"
    assert json.loads(json.dumps(known.to_dict()))["popularity"]["rank"] == 1
    with pytest.raises(ConfigError, match="names must be a list"):
        model.facts("Robert")


def test_cli_filters_details_and_a_bad_value(model, tmp_path, capsys):
    out = tmp_path / "m"
    model.save(out)
    assert main(["sample", "--model-dir", str(out), "-n", "5", "--seed", "1", "--popularity", "top:1000",
                 "--details"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(re.search(r"known; rank [\d,]+ of (girls|boys)", line) for line in lines)
    assert main(["sample", "--model-dir", str(out), "-n", "40", "--seed", "2", "--not-in-catalogue", "--json",
                 "--details"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all(not d["known"] and d["popularity"] is None for d in printed["details"])
    assert printed["generation"]["rejected"]["not_in_catalogue"] > 0
    assert main(["sample", "--model-dir", str(out), "--popularity", "famous"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("namesmith: error: --popularity must be one of common, uncommon, rare") and "\n" not in err


def test_the_api_filters_and_gives_each_names_facts(model, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from namesmith.serve import ModelRegistry, create_app

    model.save(tmp_path / "m")
    client = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "m"])))
    url = "/api/v1/models/m/generate"
    body = client.post(url, json={"n": 10, "seed": 4, "popularity": "top:1000"}).json()
    assert len(body["names"]) == 10 and body["generation"]["rejected"]["popularity"] > 0
    for result in body["names"]:
        assert result["known"] and result["popularity"] == best_use(result["name"]).to_dict()
        assert result["nicknames"] == nicknames_of(result["name"]) and result["percentile"] is not None
    body = client.post(url, json={"n": 10, "seed": 4, "not_in_catalogue": True}).json()
    assert all(not r["known"] and r["popularity"] is None and r["nicknames"] == [] for r in body["names"])
    for wrong, status in (("famous", 400), ("x" * 33, 422), (5, 422)):
        refused = client.post(url, json={"n": 3, "popularity": wrong})
        assert refused.status_code == status and refused.json()["field"] == "popularity", refused.text
        assert "\n" not in refused.json()["error"]


@pytest.mark.slow  # matplotlib's first plot; the other popularity tests keep the path fast
def test_trend_command_draws_a_png_and_never_overwrites(tmp_path, capsys, caplog):
    out = tmp_path / "trend.png"
    assert main(["trend", "Leslie", "Zorblaxiel", "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "no births of 'Zorblaxiel'" in caplog.text
    before = out.read_bytes()
    assert main(["trend", "Mary", "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["trend", "Mary", "--measure", "rank", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before
    assert main(["trend", "Zorblaxiel", "-o", str(tmp_path / "none.png")]) == 1
    assert not (tmp_path / "none.png").exists()
    capsys.readouterr()
    assert main(["trend", "leslie", "--sex", "M", "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["series"] == [u.to_dict() for u in trend("Leslie", "M")] and printed["series"]
    assert main(["trend", *["Ann"] * 21]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "namesmith: error: trend draws at most 20 names, got 21"


def test_the_trend_endpoint(model, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from namesmith.serve import ModelRegistry, create_app

    model.save(tmp_path / "m")
    client = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "m"])))
    body = client.get("/api/v1/trend", params={"name": "leslie", "sex": "F"}).json()
    assert body["name"] == "leslie" and body["known"]
    assert body["series"] == [u.to_dict() for u in trend("Leslie", "F")]
    body = client.get("/api/v1/trend", params={"name": "Zorblaxiel"}).json()
    assert body == {"name": "Zorblaxiel", "known": False, "series": []}
    for params in ({"name": "x" * 65}, {"name": "Ann", "sex": "X"}, {}, {"name": " "}):
        refused = client.get("/api/v1/trend", params=params)
        assert 400 <= refused.status_code < 500 and "\n" not in refused.json()["error"], refused.text


@pytest.mark.slow  # builds the index twice; test_counts_ranks_and_shares_agree_with_the_table keeps it fast
def test_the_index_kept_in_the_cache_is_the_one_built(tmp_path, monkeypatch, caplog):
    from namesmith.choosing import popularity

    monkeypatch.setenv("NAMESMITH_CACHE", str(tmp_path))
    built = popularity.Popularity.read()
    path = popularity.cache_path()
    assert path.parent == tmp_path / "popularity" and not path.exists()
    first = popularity._read_or_build()  # builds, and keeps it
    assert path.is_file()
    kept = popularity._read_or_build()  # read back
    for index in (first, kept):
        assert index.known == built.known
        for counted, reference in zip(index.sets, built.sets):
            assert counted.keys == reference.keys and counted.sex_values == reference.sex_values
            for name in reference.keys[::300]:
                assert counted.uses(name) == reference.uses(name) and counted.best(name) == reference.best(name)
    path.write_bytes(b"not an index")  # damaged: built again, and written again
    with caplog.at_level("DEBUG", logger="namesmith"):
        again = popularity._read_or_build()
    assert again.known == built.known and "unreadable" in caplog.text and path.read_bytes()[:2] == b"PK"
