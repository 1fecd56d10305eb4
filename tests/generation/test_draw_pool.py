"""namesmith.generation.draw_pool: a model's draws made once, walked by the searches that filter them."""

import time

import numpy as np
import pytest

from namesmith.choosing.popularity import parse_popularity, popularity_index
from namesmith.data.words import load_words
from namesmith.generation.draw_pool import CHUNK, UNFINISHED, DrawPool
from namesmith.generation.sample import plain_sampler
from namesmith.namemodel import NameModel


@pytest.fixture(scope="module")
def model():
    return NameModel.train(model="bigram-counts", words=load_words()[:5000], calibrate="none")


def pool_of(model, draws, **options):
    run = plain_sampler(model.model, model.vocab, prefix="", max_length=30, seed=5).run
    return DrawPool.build(run, 30, draws=draws, **options)


def test_a_walk_hands_the_search_the_draws_in_order_from_a_seeded_start(model):
    pool = pool_of(model, 5000)
    assert pool.size == 5000 and (pool.codes == UNFINISHED).sum() < 50
    seed, max_len = 3, 6
    run = pool.walk("", max_len, seed, then=lambda: pytest.fail("the pool holds enough"))
    batches = [run(1000, None) for _ in range(5)]
    start = int(np.random.default_rng(seed).integers(pool.size))
    codes = [int(pool.codes[(start + i) % pool.size]) for i in range(pool.size)]
    assert [n for b in batches for n in b.names] == [pool.names[c] for c in codes if c >= 0
                                                    and len(pool.names[c]) <= max_len]
    assert sum(b.unfinished for b in batches) == sum(c < 0 or len(pool.names[c]) > max_len for c in codes)


def test_a_sounds_like_walk_keeps_what_rejection_over_those_draws_would(model):
    pytest.importorskip("doublemetaphone")
    from namesmith.choosing.phonetic import sounds_alike

    pool = pool_of(model, 20_000)
    seed = 4
    run = pool.walk("Aiden", 30, seed, then=lambda: pytest.fail("the pool holds enough"))
    batches = [run(5000, None) for _ in range(4)]
    start = int(np.random.default_rng(seed).integers(pool.size))
    named = [pool.names[c] for c in (pool.codes[(start + i) % pool.size] for i in range(pool.size)) if c >= 0]
    kept = [n for n in named if sounds_alike(n, "Aiden")]
    assert [n for b in batches for n in b.names] == kept and len(kept) >= 10
    assert sum(int(b.turned_away["sounds_like"].sum()) for b in batches) == len(named) - len(kept)


def test_a_walk_round_the_whole_pool_goes_on_with_fresh_draws(model):
    pool = pool_of(model, 3000)
    fresh = []

    def then():
        fresh.append(1)
        return lambda size, deadline: "fresh"

    run = pool.walk("", 30, 0, then=then)
    assert run(2000, None) != "fresh" and run(2000, None) != "fresh" and not fresh  # 3,000 draws, walked once
    assert run(10, None) == "fresh" and fresh == [1]


def test_the_pool_is_made_within_its_deadline(model):
    ticks = iter(range(100))
    pool = pool_of(model, 10**9, deadline=3, clock=lambda: next(ticks))  # three batches' time, by the clock
    assert pool.size == 3 * CHUNK


def wait_for_pool(model):
    for _ in range(600):
        if model.draw_pool_ready():
            return
        time.sleep(0.1)
    pytest.fail("the pool was not made within 60 s")


@pytest.mark.parametrize("options", [{"popularity": "common"}, {"surname": "Smith", "alliteration": "want"},
                                     {"not_in_catalogue": True, "regex": "^[^e]+$"}])
def test_a_server_model_makes_the_pool_once_in_the_background_then_walks_it(options):
    model = NameModel.train(model="bigram-counts", words=load_words()[:5000], calibrate="none")
    model.background_tables = True
    assert not model.draw_pool_ready()
    first = model.generate(10, seed=1, **options)  # fresh draws; the pool is made meanwhile
    wait_for_pool(model)
    walked = []
    original = DrawPool.walk

    def counted(self, *args, **kwargs):
        walked.append(args)
        return original(self, *args, **kwargs)

    DrawPool.walk = counted
    try:
        later = model.generate(10, seed=2, **options)
    finally:
        DrawPool.walk = original
    assert len(walked) == 1 and len(first.names) == len(later.names) == 10 and later.stats.method == "pooled"
    # "rejection" draws afresh (a share link that asks for it gets its names again), and "pooled" is deterministic
    again = model.generate(10, seed=1, **{**options, "method": "rejection"})
    assert again.stats.method != "pooled" and (first.stats.method == "pooled" or again.names == first.names)
    assert model.generate(10, seed=2, **options).names == later.names
    if "popularity" in options:
        admits = parse_popularity(options["popularity"]).admits
        assert all(admits(popularity_index().best(n)) for n in later.names)
    if "not_in_catalogue" in options:
        assert not any(popularity_index().is_known(n) for n in later.names)
    assert later.stats.tries > len(later.names)  # the draws walked past count as tries


def test_a_server_model_walks_the_pool_for_sounds_like():
    pytest.importorskip("doublemetaphone")
    from namesmith.choosing.phonetic import sounds_alike

    model = NameModel.train(model="bigram-counts", words=load_words()[:5000], calibrate="none")
    model.background_tables = True
    model.generate(10, sounds_like="Aiden", seed=1)
    wait_for_pool(model)
    later = model.generate(10, sounds_like="Aiden", seed=2, unique=True)
    assert len(later.names) == 10 and all(sounds_alike(n, "Aiden") for n in later.names)
    assert later.stats.rejected["sounds_like"] > 0 and later.stats.tries > later.stats.rejected["sounds_like"]
