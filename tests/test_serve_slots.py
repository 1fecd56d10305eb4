"""The server's generation slots: bounded, first come first served, and a wait that ends."""

import threading
import time

from namesmith.serve.limits import Slots


def wait_until(condition, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


def test_a_freed_slot_goes_to_the_longest_waiter_not_a_newcomer():
    slots = Slots(1)
    assert slots.acquire(timeout=0)
    order: list[str] = []

    def waiter(name: str) -> None:
        assert slots.acquire(timeout=10)
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
        assert slots.acquire(timeout=10, client=client)
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
