"""The JSON API through the ASGI test client: every endpoint, against the library's own answers."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from rapidfuzz.distance import DamerauLevenshtein  # noqa: E402
from serve_support import train_bigram  # noqa: E402

from namesmith import NameModel  # noqa: E402
from namesmith.choosing.syllables import SYLLABLES_PATTERN  # noqa: E402
from namesmith.core.errors import ConfigError  # noqa: E402
from namesmith.data.offensive import is_offensive  # noqa: E402
from namesmith.serve import Limits, ModelRegistry, create_app  # noqa: E402
from namesmith.serve.registry import scrub  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_bigram(tmp_path_factory.mktemp("serve-api"))


@pytest.fixture(scope="module")
def client(model_dir):
    return TestClient(create_app(ModelRegistry.from_directories([model_dir])))


def generate(client, **request):
    response = client.post("/api/v1/models/bigram/generate", json=request)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_server_without_the_phonetic_extra_does_not_offer_sounds_like(client, monkeypatch):
    import namesmith.serve.service as service

    def missing(name):
        raise ConfigError("sounds_like needs the phonetic extra", field="sounds_like")

    monkeypatch.setattr(service, "phonetic_keys", missing)
    options = client.get("/api/v1").json()["generate_options"]
    assert "sounds_like" not in options and {"syllables", "surname", "popularity", "starts_with"} <= set(options)


def test_server_info_and_model_list(client, model_dir):
    info = client.get("/api/v1").json()
    assert info["api"] == "v1" and info["default_model"] == "bigram" and not info["api_key_required"]
    assert info["limits"] == Limits().to_dict()
    # what the page offers: the generate request's own fields, and the trend sparklines where /trend answers
    generate = client.get("/openapi.json").json()["components"]["schemas"]["GenerateRequest"]["properties"]
    extra = importlib.util.find_spec("doublemetaphone") is not None  # sounds_like needs the phonetic extra
    assert info["generate_options"] == [f for f in generate if f != "sounds_like" or extra]
    assert info["trend"] == (client.get("/api/v1/trend", params={"name": "emma"}).status_code != 404)
    models = client.get("/api/v1/models").json()["models"]
    assert [m["id"] for m in models] == ["bigram"]
    assert models[0]["loaded"] and models[0]["model_type"] == "bigram-counts"
    detail = client.get("/api/v1/models/bigram")
    assert detail.status_code == 200
    body = detail.json()
    expected = NameModel.load(model_dir).metrics
    assert body["metrics"]["test"]["nll"] == pytest.approx(expected["test"]["nll"])
    assert body["vocab"] == "abcdefghijklmnopqrstuvwxyz" and body["labels"] == {}
    assert str(model_dir.parent) not in detail.text  # no server path in any response


def test_generate_meets_every_constraint_and_scores_each_name(client, model_dir):
    result = generate(client, n=15, seed=3, ends_with="na", contains=["r"], excludes=["e"], min_len=5, max_len=9,
                      unique=True)
    names = [r["name"] for r in result["names"]]
    assert len(names) == 15 and result["complete"] and result["message"] is None
    assert len(set(names)) == 15
    for name in names:
        assert name.endswith("na") and "r" in name and "e" not in name and 5 <= len(name) <= 9
    expected = {s.name: s for s in NameModel.load(model_dir).score(names)}
    for r in result["names"]:
        assert r["nll_per_char"] == pytest.approx(expected[r["name"]].nll_per_char)
        assert r["percentile"] == pytest.approx(expected[r["name"]].percentile)
    assert result["generation"]["found"] == 15 and result["generation"]["method"] == "exact"
    summary = result["summary"]
    assert summary["total"] == 15 and summary["in_train"] + summary["in_heldout"] + summary["new"] == 15


def test_same_seed_same_names_and_the_drawn_seed_reproduces(client):
    first = generate(client, n=10, seed=42, starts_with="ma")
    again = generate(client, n=10, seed=42, starts_with="ma")
    other = generate(client, n=10, seed=43, starts_with="ma")
    assert first["names"] == again["names"] and first["names"] != other["names"]
    drawn = generate(client, n=10)
    assert generate(client, n=10, seed=drawn["seed"])["names"] == drawn["names"]


def test_novel_names_are_not_training_words(client, model_dir):
    result = generate(client, n=20, seed=1, novel=True)
    split, _ = NameModel.load(model_dir).training_split()
    known = set(split.train) | set(split.val) | set(split.test)
    assert result["summary"]["new"] == 20 and not {r["name"] for r in result["names"]} & known


def test_impossible_constraints_are_400_with_the_libraries_text(client, model_dir):
    model = NameModel.load(model_dir)
    for request in ({"min_len": 8, "max_len": 4}, {"ends_with": "é"}, {"starts_with": "ab", "excludes": ["b"]}):
        with pytest.raises(ConfigError) as raised:
            model.generate(5, **request)
        response = client.post("/api/v1/models/bigram/generate", json={"n": 5, **request})
        assert response.status_code == 400
        assert response.json()["error"] == str(raised.value)


def test_a_search_stopped_by_its_budget_says_so(client):
    result = generate(client, n=5, seed=0, regex="^q.*z.*x$", max_tries=2000)
    assert not result["complete"] and len(result["names"]) < 5
    assert "max_tries" in result["message"] and result["generation"]["stop_reason"] == "max-tries"
    assert result["generation"]["tries"] <= 2000


def test_offensive_names_are_hidden_unless_asked(tmp_path):
    words = ["shitake", "shita", "ashit", "fuckle", "fucka", "anna", "emma", "hannah", "bella", "ella"] * 5
    NameModel.train(words=words, model="bigram-counts", out=tmp_path / "rude")
    client = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "rude"])))
    shown = client.post("/api/v1/models/rude/generate", json={"n": 60, "seed": 0}).json()
    assert shown["offensive_hidden"] > 0 and len(shown["names"]) == 60
    assert not any(is_offensive(r["name"]) for r in shown["names"])
    raw = client.post("/api/v1/models/rude/generate", json={"n": 60, "seed": 0, "filter_offensive": False}).json()
    assert raw["offensive_hidden"] == 0 and any(is_offensive(r["name"]) for r in raw["names"])


def test_score_ranks_and_reports_unreadable_names(client, model_dir):
    response = client.post("/api/v1/models/bigram/score", json={"names": ["zzqx", "emma", "olivié", "kaylee"]})
    scores = response.json()["scores"]
    assert [s["name"] for s in scores][-1] == "olivié" and "é" in scores[-1]["error"]
    nll = [s["nll_per_char"] for s in scores[:-1]]
    assert nll == sorted(nll)
    expected = {s.name: s.log_prob for s in NameModel.load(model_dir).score(["zzqx", "emma", "kaylee"])}
    assert {s["name"]: s["log_prob"] for s in scores[:-1]} == pytest.approx(expected)
    unsorted = client.post("/api/v1/models/bigram/score", json={"names": ["zzqx", "emma"], "sort": False}).json()
    assert [s["name"] for s in unsorted["scores"]] == ["zzqx", "emma"]


def test_similarity_is_damerau_levenshtein_case_insensitive(client):
    response = client.post("/api/v1/similarity", json={"target": "Emma", "names": ["emam", "emily", "EMMA"]})
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["emam"]["distance"] == 1  # one swap of neighbours, where Levenshtein counts 2
    assert results["EMMA"]["similarity"] == 1.0
    assert results["emily"]["similarity"] == pytest.approx(DamerauLevenshtein.normalized_similarity("emma", "emily"))


@pytest.mark.slow  # matplotlib's first plot; test_cli's plot keeps the path fast
def test_heatmap_png_for_a_bigram_and_for_a_model_without_a_table(client, tmp_path):
    png = client.get("/api/v1/models/bigram/heatmap.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")
    NameModel.train(data="builtin", model="ngram", out=tmp_path / "ngram", order=3, calibrate="none")
    ngram = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "ngram"])))
    assert ngram.get("/api/v1/models/ngram/heatmap.png").content.startswith(b"\x89PNG")


def test_conditions_and_classification_need_a_conditional_model(client):
    response = client.post("/api/v1/models/bigram/generate", json={"n": 3, "where": {"sex": "F"}})
    assert response.status_code == 400 and response.json()["field"] == "where"
    response = client.post("/api/v1/models/bigram/classify", json={"names": ["emma"]})
    assert response.status_code == 400 and "labels" in response.json()["error"]


def test_batch_endpoints_answer_per_name(tmp_path):
    """One name the model cannot read gets its own error; the other names their scores and labels."""
    NameModel.train(data="builtin", model="bigram-counts", out=tmp_path / "sexed")  # conditioned on sex
    labelled = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "sexed"])))
    names = ["emma", "zzqx", "kaylee", "olivié", "leslie", ""]
    classified = labelled.post("/api/v1/models/sexed/classify", json={"names": names})
    assert classified.status_code == 200, classified.text
    results = classified.json()["results"]
    assert [r["name"] for r in results] == names
    assert results[3] == {"name": "olivié", "labels": {}, "error": "'é' is not in the model's vocabulary"}
    assert results[5]["error"] == "empty name"
    for r in (results[i] for i in (0, 1, 2, 4)):
        assert r["error"] is None and sum(r["labels"]["sex"].values()) == pytest.approx(1.0)
    scores = labelled.post("/api/v1/models/sexed/score", json={"names": names, "sort": False}).json()["scores"]
    assert [s["error"] for s in scores] == [r["error"] for r in results]  # one rule for both


def test_more_like_these_matches_the_capability(client):
    capable = client.get("/api/v1/models/bigram").json()["capabilities"]["adapt"]
    response = client.post("/api/v1/models/bigram/more-like-these", json={"words": ["emma", "ella"], "n": 5, "seed": 1})
    if capable:
        deadline = time.monotonic() + 60  # an adaptation that outlasts the time budget goes on: ask again
        while response.status_code == 200 and not response.json()["names"] and time.monotonic() < deadline:
            assert "ask again" in response.json()["message"]
            time.sleep(0.2)
            response = client.post("/api/v1/models/bigram/more-like-these", json={"words": ["emma", "ella"], "n": 5,
                                                                                   "seed": 1})
        assert response.status_code == 200 and len(response.json()["names"]) == 5
    else:
        assert response.status_code == 404 and "not available" in response.json()["error"]


def test_concurrent_requests_share_no_random_state(client):
    seeds = list(range(24))
    alone = [generate(client, n=8, seed=s, ends_with="a")["names"] for s in seeds]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda s: generate(client, n=8, seed=s, ends_with="a")["names"], seeds))
    assert together == alone


def test_the_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "<title>namesmith</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"https?://", page.text.replace("http-equiv", ""))  # no CDN
    for name in ("app.js", "style.css"):
        file = client.get(f"/static/{name}")
        assert file.status_code == 200 and "default-src 'self'" in file.headers["content-security-policy"]
        svg = '"http://www.w3.org/2000/svg"'  # the sparklines' namespace: a name, not a load
        assert not re.search(r"https?://", file.text.replace(svg, ""))


def test_the_api_docs_need_nothing_from_elsewhere(client):
    """/docs loads Swagger UI from this server (FastAPI's default page loads it from a CDN: blank offline)."""
    page = client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "http" not in page.text  # every URL is this server's
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self' 'sha256-" in policy and "unsafe-inline'; " in policy
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url
    assert client.get("/redoc").status_code == 404  # FastAPI's other CDN page is not served


def test_openapi_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/v1", "/api/v1/models", "/api/v1/models/{model_id}", "/api/v1/models/{model_id}/generate",
                 "/api/v1/models/{model_id}/score", "/api/v1/models/{model_id}/classify",
                 "/api/v1/models/{model_id}/heatmap.png", "/api/v1/models/{model_id}/more-like-these",
                 "/api/v1/similarity"):
        assert path in paths


def test_limits_parse_and_refuse_nonsense(model_dir):
    limits = Limits.parse(["max_names=10", "time-budget=0.5"])
    assert limits.max_names == 10 and limits.time_budget == 0.5
    for bad in (["max_names"], ["nope=3"], ["max_names=many"], ["max_names=0"]):
        with pytest.raises(ConfigError):
            Limits.parse(bad)
    small = TestClient(create_app(ModelRegistry.from_directories([model_dir]), limits=limits))
    response = small.post("/api/v1/models/bigram/generate", json={"n": 11})
    assert response.status_code == 422 and response.json()["field"] == "n"
    assert small.post("/api/v1/models/bigram/generate", json={"n": 10}).status_code == 200


def test_scrub_removes_paths():
    text = "names.txt: /home/someone/data/names.txt: not found (C:\\Users\\x\\names.txt)"
    assert scrub(text) == "names.txt: names.txt: not found (names.txt)"
    assert json.dumps(scrub("/srv/models/tf is broken", ["/srv/models/tf"])) == '"tf is broken"'


def test_novelty_summary_counts_title_case_names_as_the_model_does(tmp_path):
    words = tmp_path / "titled.txt"
    words.write_text("\n".join(["Anna", "Emma", "Ella", "Bella", "Hannah", "Lena", "Nora", "Mara", "Ada", "Alma"] * 4))
    NameModel.train(data=words, model="bigram-counts", out=tmp_path / "titled")
    model = NameModel.load(tmp_path / "titled")
    assert model.casing == "title"
    client = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "titled"])))
    served = client.post("/api/v1/models/titled/generate", json={"n": 150, "seed": 5, "filter_offensive": False}).json()
    direct = model.generate(150, seed=5)
    assert [r["name"] for r in served["names"]] == direct.names and direct.names[0][0].isupper()
    assert served["summary"] == direct.novelty.to_dict() and served["summary"]["in_train"] > 0


@pytest.mark.slow  # test_adapt's same check through the library keeps it fast
def test_more_like_these_on_a_conditional_model_keeps_the_condition(tmp_path):
    """Issue 27: the page sends the condition with the shortlist; the names are of those labels."""
    NameModel.train(data="builtin", model="bigram-counts", out=tmp_path / "sexed")  # conditioned on sex
    labelled = TestClient(create_app(ModelRegistry.from_directories([tmp_path / "sexed"])))
    body = {"words": ["aurelia", "aurora", "amara"], "where": {"sex": "F"}, "n": 10, "seed": 1, "novel": True}
    response = labelled.post("/api/v1/models/sexed/more-like-these", json=body)
    assert response.status_code == 200, response.text
    names = [entry["name"] for entry in response.json()["names"]]
    assert len(names) == 10 and all(set(name) <= set("aureliaoram") for name in names)  # the shortlist's letters
    assert all(entry["percentile"] is not None for entry in response.json()["names"])
    wider = labelled.post("/api/v1/models/sexed/more-like-these", json={**body, "prior_letters": True, "n": 50})
    assert wider.status_code == 200 and any(set(e["name"]) - set("aureliaoram") for e in wider.json()["names"])
    bidi = labelled.post("/api/v1/models/sexed/more-like-these", json={**body, "words": ["au\u202erelia", "amara"]})
    assert bidi.status_code == 200 and not any("\u202e" in e["name"] for e in bidi.json()["names"])  # issue 31.12


def test_the_name_lookups_declare_one_name_parameter_and_the_syllables_form(client):
    """/trend and /variants take the same `name` (one definition, serve/deps.name_query), bounded by the server's
    max_name_length; generate's `syllables` says its form ("2", "2-3" or empty) in the schema, and answers it."""
    schema = client.get("/openapi.json").json()
    trend, variants = ([p for p in schema["paths"][f"/api/v1/{path}"]["get"]["parameters"] if p["name"] == "name"]
                       for path in ("trend", "variants"))
    assert trend == variants and trend[0]["schema"]["maxLength"] == Limits().max_name_length
    too_long = "a" * (Limits().max_name_length + 1)
    for path in ("trend", "variants"):
        response = client.get(f"/api/v1/{path}", params={"name": too_long})
        assert 400 <= response.status_code < 500 and "name" in response.text, (path, response.text)
    assert SYLLABLES_PATTERN in json.dumps(schema["components"]["schemas"]["GenerateRequest"], ensure_ascii=False) \
        .replace("\\\\", "\\")
    for syllables, ok in (("", True), (" 2 - 3 ", True), ("2-3x", False), ("3-1", False)):
        response = client.post("/api/v1/models/bigram/generate", json={"n": 2, "syllables": syllables})
        assert (response.status_code == 200) == ok and (ok or "syllables" in response.text), (syllables, response.text)


def test_empty_choosing_fields_ask_for_nothing(client):
    """The schema allows `popularity: ""` and `surname: ""` (the page's empty fields), and they answered 400
    (schemathesis): empty or blank means not asked for, as for `syllables`; alliteration still needs a surname."""
    base = client.post("/api/v1/models/bigram/generate", json={"n": 5, "seed": 3})
    for extra in ({"popularity": ""}, {"surname": " "}, {"popularity": " ", "surname": "", "syllables": ""}):
        response = client.post("/api/v1/models/bigram/generate", json={"n": 5, "seed": 3, **extra})
        assert response.status_code == 200 and response.json()["names"] == base.json()["names"], (extra, response.text)
    response = client.post("/api/v1/models/bigram/generate", json={"n": 5, "surname": "", "alliteration": "want"})
    assert response.status_code == 400 and "alliteration" in response.text
