"""A trained model's exact samplers are built once per constraints and reused: same names, shared safely."""

from __future__ import annotations

import threading

from namesmith.generate import ExactCache, GenerateConfig, generate
from namesmith.namemodel import NameModel

WORDS = ["anna", "annette", "bella", "colette", "danielle", "emma", "juliette", "lynette", "mia", "nora"] * 3


def test_cached_tables_give_the_names_a_fresh_build_gives():
    model = NameModel.train(model="ngram", words=WORDS, order=3)
    cache = ExactCache(size=2)
    args = {"max_word_length": 8}
    config = GenerateConfig(num=30, seed=4, ends_with="ette")
    first = generate(model.model, model.vocab, config, cache=cache, **args)
    again = generate(model.model, model.vocab, config, cache=cache, **args)  # from the cache
    fresh = generate(model.model, model.vocab, config, **args)
    assert first.method == again.method == "exact"
    assert first.names == again.names == fresh.names
    for suffix in ("a", "le", "ette"):  # least recently used entries leave
        generate(model.model, model.vocab, GenerateConfig(num=1, seed=0, ends_with=suffix), cache=cache, **args)
    assert len(cache._entries) == 2


def test_concurrent_requests_share_tables_but_not_random_state():
    model = NameModel.train(model="ngram", words=WORDS, order=3)
    expected = {seed: model.generate(50, ends_with="a", seed=seed).names for seed in range(6)}
    results: dict[int, list[str]] = {}

    def request(seed: int) -> None:
        results[seed] = model.generate(50, ends_with="a", seed=seed).names

    threads = [threading.Thread(target=request, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_tables_too_slow_for_the_budget_fall_back_to_rejection_and_are_built_for_later(monkeypatch):
    from namesmith import generate as generation

    build, release = generation._build_exact_sampler, threading.Event()

    def slow(model, vocab, config, max_len, seed, deadline=None):  # noqa: ANN001, ANN202
        release.wait(30)  # as if the tables took longer than half the budget
        return build(model, vocab, config, max_len, seed, deadline)

    monkeypatch.setattr(generation, "_build_exact_sampler", slow)
    model = NameModel.train(model="ngram", words=WORDS, order=3)
    model.background_tables = True  # as a server's models
    first = model.generate(10, ends_with="a", seed=1, time_budget=1.0)
    assert first.stats.method == "rejection" and first.complete and all(n.endswith("a") for n in first.names)
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "namesmith-exact-tables"]:
        thread.join(timeout=30)
    later = model.generate(10, ends_with="a", seed=1, time_budget=5.0)
    assert later.stats.method == "exact" and later.complete
    assert later.names == model.generate(10, ends_with="a", seed=1, method="exact").names  # as a fresh build's


def test_a_burst_of_cold_requests_builds_the_tables_once(monkeypatch):
    from namesmith import generate as generation

    build, calls = generation._build_exact_sampler, []

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(generation, "_build_exact_sampler", counted)
    model = NameModel.train(model="ngram", words=WORDS, order=3)
    model.background_tables = True
    results: dict[int, object] = {}

    def request(seed: int) -> None:
        results[seed] = model.generate(20, ends_with="ette", seed=seed, time_budget=30.0)

    threads = [threading.Thread(target=request, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1  # one build, the other requests waited for it
    assert all(r.stats.method == "exact" and r.complete for r in results.values())
    assert all(n.endswith("ette") for r in results.values() for n in r.names)
    for seed, result in results.items():  # each request drew with its own seed, as a request on warm tables does
        assert result.names == model.generate(20, ends_with="ette", seed=seed).names


def test_a_cached_not_available_is_raised_afresh_each_time():
    # raising the cached exception again chained every raise's traceback onto it: a server's memory grew per request
    from namesmith import generate as generation

    model = NameModel.train(model="ngram", words=WORDS, order=3)
    cache = ExactCache()
    cache.put(ExactCache.key(GenerateConfig(ends_with="a"), 8), generation.NotAvailable("no chain here"))
    messages, depths = [], []
    for _ in range(3):
        try:
            generation.exact_sampler(model.model, model.vocab, GenerateConfig(ends_with="a"), 8, 0, cache=cache)
        except generation.NotAvailable as e:
            tb, depth = e.__traceback__, 0
            while tb is not None:
                tb, depth = tb.tb_next, depth + 1
            messages.append(str(e))
            depths.append(depth)
    assert messages == ["no chain here"] * 3
    assert depths[0] == depths[1] == depths[2], depths  # the frames of every earlier raise stayed on the old one
