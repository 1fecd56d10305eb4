"""A trained model's exact samplers are built once per constraints and reused: same names, shared safely."""

from __future__ import annotations

import threading

import pytest

from namesmith.core.errors import ConfigError
from namesmith.generation.config import GenerateConfig
from namesmith.generation.draw_pool import DrawPool
from namesmith.generation.exact import exact_table_bytes
from namesmith.generation.exact_cache import ExactCache, TableBudget
from namesmith.generation.generate import generate
from namesmith.namemodel import NameModel

WORDS = ["anna", "annette", "bella", "colette", "danielle", "emma", "juliette", "lynette", "mia", "nora"] * 3


def test_cached_tables_give_the_names_a_fresh_build_gives():
    model = NameModel.train(model="ngram", words=WORDS, order=3, prior="none")
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
    model = NameModel.train(model="ngram", words=WORDS, order=3, prior="none")
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
    from namesmith.generation import exact as generation

    build, release = generation._build_exact_sampler, threading.Event()

    def slow(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        release.wait(30)  # as if the tables took longer than half the budget
        return build(*args, **kwargs)

    monkeypatch.setattr(generation, "_build_exact_sampler", slow)
    model = NameModel.train(model="ngram", words=WORDS, order=3, prior="none")
    model.background_tables = True  # as a server's models
    first = model.generate(10, ends_with="a", seed=1, time_budget=0.2)
    # (how many names rejection finds in the rest of the budget depends on the machine's speed: not asserted)
    assert first.stats.method == "rejection" and all(n.endswith("a") for n in first.names)
    release.set()
    for thread in [t for t in threading.enumerate() if t.name == "namesmith-exact-tables"]:
        thread.join(timeout=30)
    later = model.generate(10, ends_with="a", seed=1)  # no time budget: nothing here depends on the machine's speed
    assert later.stats.method == "exact" and later.complete
    assert later.names == model.generate(10, ends_with="a", seed=1, method="exact").names  # as a fresh build's


def test_a_burst_of_cold_requests_builds_the_tables_once(monkeypatch):
    from namesmith.generation import exact as generation

    build, calls = generation._build_exact_sampler, []

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return build(*args, **kwargs)

    monkeypatch.setattr(generation, "_build_exact_sampler", counted)
    model = NameModel.train(model="ngram", words=WORDS, order=3, prior="none")
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
    from namesmith.generation import exact as generation

    model = NameModel.train(model="ngram", words=WORDS, order=3, prior="none")
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


# --- the budget of every build (issue 31: 117 build threads and 22.4 GB in 175 s, then the OOM killer) ---------
@pytest.fixture(scope="module")
def model():
    return NameModel.train(model="ngram", words=WORDS, order=3, prior="none")


class Clock:
    """A clock the test moves: builds are timed by it, not by the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_builds_beyond_the_builders_sample_otherwise_and_start_no_thread(monkeypatch, model):
    from namesmith.generation import exact as generation

    build, release, started = generation._build_exact_sampler, threading.Event(), []

    def held(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        started.append(1)
        release.wait(30)
        return build(*args, **kwargs)

    monkeypatch.setattr(generation, "_build_exact_sampler", held)
    budget = TableBudget(builders=2)
    cache = ExactCache(background=True, budget=budget)
    try:
        for n, suffix in enumerate(("a", "e", "na", "la", "ette", "mma", "ra")):  # each a new set of constraints
            out = generate(model.model, model.vocab, GenerateConfig(num=3, seed=n, ends_with=suffix, min_len=n + 1,
                                                                    time_budget=0.2), max_word_length=8, cache=cache)
            assert out.method == "rejection" and all(name.endswith(suffix) for name in out.names)
        assert len(started) == 2 and budget._building == 2  # two builds, the others started nothing
        assert sum(t.name == "namesmith-exact-tables" for t in threading.enumerate()) <= 2
    finally:
        release.set()
    for thread in [t for t in threading.enumerate() if t.name == "namesmith-exact-tables"]:
        thread.join(timeout=30)
    assert budget._building == 0  # the builders are free again
    out = generate(model.model, model.vocab, GenerateConfig(num=3, seed=0, ends_with="a", min_len=1),
                   max_word_length=8, cache=cache)
    assert out.method == "exact"


def test_tables_estimated_over_table_bytes_are_never_built(monkeypatch, model):
    from namesmith.generation import exact as generation

    def no_tables(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the tables were allocated")

    monkeypatch.setattr(generation.ExactSampler, "_backward", no_tables)
    cache = ExactCache(budget=TableBudget(table_bytes=10_000, cache_bytes=10_000))
    config = GenerateConfig(num=5, seed=0, ends_with="ette")
    out = generate(model.model, model.vocab, config, max_word_length=8, cache=cache)
    assert out.method == "rejection" and out.complete and all(n.endswith("ette") for n in out.names)
    exact = GenerateConfig(num=5, seed=0, ends_with="ette", method="exact")
    with pytest.raises(ConfigError, match=r"method 'exact' is not available here: its tables would take about "
                                          r"\d+ MB to build, more than the 0 MB one build may take \(table_bytes\)"):
        generate(model.model, model.vocab, exact, max_word_length=8, cache=cache)


@pytest.mark.parametrize("tabulated", [True, False])
def test_the_estimate_bounds_what_a_build_keeps(model, tabulated, monkeypatch):
    from namesmith.generation import exact as generation

    if not tabulated:
        monkeypatch.setattr(generation, "PRECOMPUTE_CDFS", 0)
    cache = ExactCache()
    generate(model.model, model.vocab, GenerateConfig(num=1, seed=0, ends_with="ette"), max_word_length=8, cache=cache)
    (sampler,) = cache._entries.values()
    assert (sampler.cdf is not None) == tabulated
    states, vocab_size = sampler.step.shape
    room = sampler.beta.shape[0] - 2
    assert sampler.nbytes <= exact_table_bytes(states, vocab_size, room, sampler.chain_log_probs.shape[0])


def test_a_build_past_build_seconds_is_abandoned_and_not_retried(monkeypatch, model):
    from namesmith.generation import exact as generation

    clock = Clock()
    backward = generation.ExactSampler._backward

    def slow_steps(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        clock.now += 100.0  # each build takes 100 s on the test's clock
        return backward(self, *args, **kwargs)

    monkeypatch.setattr(generation.ExactSampler, "_backward", slow_steps)
    budget = TableBudget(build_seconds=30, clock=clock)
    cache = ExactCache(background=True, budget=budget)
    config = GenerateConfig(num=5, seed=0, ends_with="a", min_len=3)
    out = generate(model.model, model.vocab, config, max_word_length=8, cache=cache)
    for thread in [t for t in threading.enumerate() if t.name == "namesmith-exact-tables"]:
        thread.join(timeout=30)
    assert out.method in ("rejection", "guided") and all(n.endswith("a") for n in out.names)
    (entry,) = [e for e in cache._entries.values() if not isinstance(e, DrawPool)]  # its draws made once too
    assert str(entry) == "its tables take more than 30 s to build (build_seconds)"
    assert budget._building == 0
    with pytest.raises(ConfigError, match=r"more than 30 s to build \(build_seconds\)"):  # kept: not built again
        generate(model.model, model.vocab, GenerateConfig(num=5, seed=0, ends_with="a", min_len=3, method="exact"),
                 max_word_length=8, cache=cache)


def test_built_tables_are_kept_within_cache_bytes_across_caches(model):
    one, two = ExactCache(), ExactCache()
    generate(model.model, model.vocab, GenerateConfig(num=1, seed=0, ends_with="a"), max_word_length=8, cache=one)
    size = next(iter(one._entries.values())).nbytes
    budget = TableBudget(table_bytes=2 * size + 2000, cache_bytes=2 * size + 2000)  # room for two such tables
    one, two = ExactCache(budget=budget), ExactCache(budget=budget)
    for cache, suffix in ((one, "a"), (two, "e"), (one, "na"), (two, "la")):
        generate(model.model, model.vocab, GenerateConfig(num=1, seed=0, ends_with=suffix, min_len=3),
                 max_word_length=8, cache=cache)
        assert budget.held_bytes <= budget.cache_bytes
    kept = [key[1] for cache in (one, two) for key in cache._entries]
    assert "a" not in kept and "e" not in kept  # the least recently used left first, whichever cache held them
    assert budget.held_bytes == sum(e.nbytes for cache in (one, two) for e in cache._entries.values())


def test_table_limits_are_checked():
    with pytest.raises(ConfigError, match="builders must be a positive integer"):
        TableBudget(builders=0)
    with pytest.raises(ConfigError, match="cache_bytes .* must be at least table_bytes"):
        TableBudget(table_bytes=100, cache_bytes=10)

