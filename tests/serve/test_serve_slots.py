"""The server's generation slots: bounded, first come first served, and a wait that ends."""

import json
import threading
import time

import pytest
from clock_support import fake_clock

from namesmith.serve.limits import Slots


def wait_until(condition, seconds=60.0):
    """Wait for `condition`; the limit only catches a hang (no test here asserts a duration)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {seconds:g} s: the thread it waits for is stuck"
        time.sleep(0.001)


def test_a_freed_slot_goes_to_the_longest_waiter_not_a_newcomer():
    slots = Slots(1)
    assert slots.acquire(timeout=0)
    order: list[str] = []

    def waiter(name: str) -> None:
        assert slots.acquire(timeout=60)
        order.append(name)
        slots.release()

    threads = []
    for queued, name in enumerate(("first", "second", "third"), start=1):
        thread = threading.Thread(target=waiter, args=(name,))
        thread.start()
        threads.append(thread)
        wait_until(lambda queued=queued: len(slots._waiting) == queued)  # queued in this order
    slots.release()  # handed straight to "first", then by each to the next
    for thread in threads:
        thread.join(10)
    assert order == ["first", "second", "third"]


def test_a_wait_that_times_out_leaves_the_queue():
    slots = Slots(2)
    assert slots.acquire(timeout=0) and slots.acquire(timeout=0)
    assert not slots.acquire(timeout=0.01)
    assert not slots._waiting
    slots.release()
    assert slots.acquire(timeout=0)  # the freed slot was kept, not handed to the waiter that left


def test_a_freed_slot_goes_to_the_client_holding_fewest():
    slots = Slots(2)
    assert slots.acquire(timeout=0, client="flood") and slots.acquire(timeout=0, client="flood")
    order: list[str] = []

    def waiter(client: str) -> None:
        assert slots.acquire(timeout=60, client=client)
        order.append(client)

    threads = []
    for queued, client in enumerate(("flood", "flood", "other"), start=1):
        thread = threading.Thread(target=waiter, args=(client,))
        thread.start()
        threads.append(thread)
        wait_until(lambda queued=queued: len(slots._waiting) == queued)
    slots.release(client="flood")  # "flood" still holds one, "other" none: "other" is served before the flood
    wait_until(lambda: order == ["other"])
    slots.release(client="flood")
    slots.release(client="other")
    for thread in threads:
        thread.join(10)
    assert order == ["other", "flood", "flood"]


def test_the_server_passes_its_table_limits_to_the_library(tmp_path):
    # issue 31: each new constraint set left a build thread with no bound; the server's limits now bound them
    pytest.importorskip("fastapi")
    from serve_support import train_bigram

    from namesmith.generation.exact_cache import TABLES
    from namesmith.serve import ModelRegistry, create_app
    from namesmith.serve.limits import Limits

    registry = ModelRegistry.from_directories([train_bigram(tmp_path)])
    before = {name: getattr(TABLES, name) for name in ("builders", "table_bytes", "cache_bytes", "build_seconds")}
    try:
        create_app(registry, limits=Limits(table_builders=1, table_bytes=1 << 20, table_cache_bytes=3 << 20,
                                           table_build_seconds=5.0))
        assert (TABLES.builders, TABLES.table_bytes, TABLES.cache_bytes, TABLES.build_seconds) == \
            (1, 1 << 20, 3 << 20, 5.0)
    finally:
        TABLES.configure(**before)


def test_quick_work_may_take_a_reserved_slot_that_other_work_may_not():
    slots = Slots(1, reserved=1)
    assert slots.acquire(timeout=0, client="flood")
    assert not slots.acquire(timeout=0, client="flood")  # the other slot is reserved for quick work
    assert slots.acquire(timeout=0, client="probe", quick=True)
    assert not slots.acquire(timeout=0, client="probe", quick=True)  # every slot is held
    slots.release(client="probe", quick=True)
    assert not slots.acquire(timeout=0, client="flood")  # a freed reserved slot stays reserved
    slots.release(client="flood")
    assert slots.acquire(timeout=0, client="probe", quick=True) and slots.acquire(timeout=0, client="flood")


def test_a_freed_reserved_slot_goes_to_quick_work_waiting_behind_other_work():
    slots = Slots(1, reserved=1)
    assert slots.acquire(timeout=0, client="flood") and slots.acquire(timeout=0, client="probe", quick=True)
    order: list[str] = []

    def waiter(client: str, quick: bool) -> None:
        assert slots.acquire(timeout=60, client=client, quick=quick)
        order.append(client)

    threads = []
    for queued, (client, quick) in enumerate((("flood", False), ("probe", True)), start=1):
        thread = threading.Thread(target=waiter, args=(client, quick))
        thread.start()
        threads.append(thread)
        wait_until(lambda queued=queued: len(slots._waiting) == queued)
    slots.release(client="probe", quick=True)  # the reserved slot: the flood's request, first in line, may not take it
    wait_until(lambda: order == ["probe"])
    slots.release(client="flood")
    for thread in threads:
        thread.join(10)
    assert order == ["probe", "flood"]


def test_a_plain_generate_is_answered_while_heavy_requests_hold_every_slot(tmp_path, monkeypatch):
    # issue 31: during a flood of new exact constraint sets, a plain generate waited for the flood's requests to
    # end (p50 208 ms against 32 ms); it takes the quick slot, whoever holds the others
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from serve_support import train_bigram

    import namesmith.serve.service as service
    from namesmith.generation.exact_cache import TABLES
    from namesmith.serve import ModelRegistry, create_app
    from namesmith.serve.limits import Limits

    registry = ModelRegistry.from_directories([train_bigram(tmp_path)])
    held, release = threading.Event(), threading.Event()
    real_generate = service.generate

    def generate(model, options, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - a heavy request, held
        if options["ends_with"]:
            held.set()
            release.wait(60)
        return real_generate(model, options, *args, **kwargs)

    monkeypatch.setattr(service, "generate", generate)
    fake_clock(monkeypatch)  # the budgets' clock stands still: the plain request's budget cannot run out when busy
    before = {name: getattr(TABLES, name) for name in ("builders", "table_bytes", "cache_bytes", "build_seconds")}
    try:
        app = create_app(registry, limits=Limits(max_concurrent=1, time_budget=0.05))  # a 503 waits 0.05 s for a slot
        url = "/api/v1/models/bigram/generate"
        with TestClient(app) as client:
            heavy = threading.Thread(target=lambda: client.post(url, json={"n": 2, "ends_with": "a"}))
            heavy.start()
            try:
                assert held.wait(60)
                assert client.post(url, json={"n": 2, "contains": ["e"]}).status_code == 503  # no slot for it
                assert client.post(url, json={"n": 2, "unique": True}).status_code == 503  # an option: not plain
                plain = client.post(url, json={"n": 3, "seed": 1, "temperature": 0.8})
                assert plain.status_code == 200 and len(plain.json()["names"]) == 3
            finally:
                release.set()
                heavy.join(60)
    finally:
        TABLES.configure(**before)



def test_each_worker_keeps_its_share_of_the_servers_memory_budgets(tmp_path, monkeypatch):
    # issue 31: with --workers 2 each worker kept the whole server's tables and adapted models (2.7 GB under a flood
    # of new constraint sets) and computed as many requests at once; those budgets are the server's, shared
    pytest.importorskip("fastapi")
    from serve_support import train_bigram

    from namesmith.generation.exact_cache import TABLES
    from namesmith.serve import server
    from namesmith.serve.limits import Limits

    limits = Limits(max_concurrent=2, table_builders=3, table_cache_bytes=512 << 20, max_adapted_bytes=256 << 20)
    share = limits.per_worker(2)
    assert (share.max_concurrent, share.table_builders, share.table_cache_bytes, share.max_adapted_bytes) == \
        (1, 1, 256 << 20, 128 << 20)
    assert (share.max_names, share.table_bytes, share.quick_slots) == \
        (limits.max_names, limits.table_bytes, limits.quick_slots)  # one request's limits and the fast lane stay
    assert limits.per_worker(1) == limits
    monkeypatch.setenv(server.WORKER_CONFIG_ENV, json.dumps({
        "model_dirs": [str(train_bigram(tmp_path))], "datasets": None, "cache": None, "limits": limits.to_dict(),
        "threads": 1, "workers": 2, "log_level": "warning"}))
    before = {name: getattr(TABLES, name) for name in ("builders", "table_bytes", "cache_bytes", "build_seconds")}
    try:
        server.worker_app()
        assert (TABLES.builders, TABLES.cache_bytes) == (1, 256 << 20)
    finally:
        TABLES.configure(**before)
