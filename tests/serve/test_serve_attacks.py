"""A hostile client's fast attacks (issue 31): what each gets, and that the server stays bounded.

Connection-level attacks go to a real uvicorn on 127.0.0.1 with small limits; the floods and the
figures are in benchmarks/attack_server.py.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_support import free_port, train_bigram  # noqa: E402

from namesmith import NameModel  # noqa: E402
from namesmith.core.errors import ConfigError  # noqa: E402
from namesmith.serve import Limits, ModelRegistry, create_app, service  # noqa: E402
from namesmith.serve.adapted import AdaptedModels, Busy, StillAdapting, tensor_bytes  # noqa: E402
from namesmith.serve.limits import Slots  # noqa: E402
from namesmith.serve.server import API_KEY_ENV, resolve_api_key, uvicorn_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
GENERATE = "/api/v1/models/bigram/generate"
WORDS = ["aurelia", "aurora", "amara", "aria", "amelia", "anya"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_bigram(tmp_path_factory.mktemp("serve-attacks"))


def app_with(model_dir, **limits):
    return create_app(ModelRegistry.from_directories([model_dir]), limits=Limits(**limits))


OPEN: dict[int, Counter] = {}  # port -> the server's open connections by client address


def wait_until_open(port: int, count: int, *addresses: str) -> None:
    """Wait until the server on `port` counts `count` open connections from `addresses` (not a sleep that a busy
    machine can outlast; 60 s only catches a hang)."""
    deadline = time.monotonic() + 60
    while sum(OPEN[port].get(address, 0) for address in addresses) != count:
        assert time.monotonic() < deadline, f"the server never counted {count} connections from {addresses}"
        time.sleep(0.01)


@contextlib.contextmanager
def served(app, limits: Limits):
    """The app on a real uvicorn with namesmith's connection limits, on 127.0.0.1; yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, limits, host="127.0.0.1", port=port, log_level="warning"))
    OPEN[port] = server.config.http.per_client  # the protocol class of this server counts its open connections
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    conn = socket.socket()
    conn.settimeout(10)
    conn.bind((source, 0))  # 127.0.0.2 is this machine too (Linux routes 127/8 to lo): another client address
    conn.connect(("127.0.0.1", port))
    return conn


def reply(conn: socket.socket) -> bytes:
    """What the server sent before closing the connection (b"" if it closed without a word, or reset it)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            data += chunk
    return data


GET = b"GET /api/v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def test_head_of_the_page_and_nosniff_on_every_api_response(model_dir):
    client = TestClient(app_with(model_dir), raise_server_exceptions=False)
    head = client.head("/")
    assert head.status_code == 200 and head.content == b"" and head.headers["content-type"].startswith("text/html")
    for response in (client.get("/api/v1"), client.get("/api/v1/models"), client.post(GENERATE, json={"n": 2}),
                     client.post(GENERATE, json={"n": 0}), client.get("/api/v1/models/nosuch"), head):
        assert response.headers["x-content-type-options"] == "nosniff", response.url


def test_an_empty_api_key_is_refused_and_the_key_can_come_from_a_file(tmp_path, monkeypatch, model_dir):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    for empty in ("", "  "):
        with pytest.raises(ConfigError, match="--api-key is empty"):
            resolve_api_key(empty)
    with pytest.raises(ConfigError, match="empty"):
        create_app(ModelRegistry.from_directories([model_dir]), api_key="")
    monkeypatch.setenv(API_KEY_ENV, "")
    with pytest.raises(ConfigError, match=f"{API_KEY_ENV} is empty"):
        resolve_api_key()
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert resolve_api_key() == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert resolve_api_key(key_file=key_file) == "from-file"
    key_file.write_text("\n")
    with pytest.raises(ConfigError, match="the API key file is empty"):
        resolve_api_key(key_file=key_file)
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_api_key(key_file=tmp_path / "missing")


def test_the_cli_refuses_an_empty_key_in_one_line_and_its_help_names_the_safe_ways(tmp_path):
    run = subprocess.run([sys.executable, "-m", "namesmith", "serve", "--api-key", "", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and run.stderr.strip().splitlines() == [
        "namesmith: error: --api-key is empty: an empty key would let every request in; give a key, or leave it out "
        "to serve without one"], run.stderr
    help_text = subprocess.run([sys.executable, "-m", "namesmith", "serve", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    help_text = " ".join(help_text.split())
    assert "NAMESMITH_API_KEY" in help_text and "--api-key-file" in help_text and "shows in ps" in help_text


def test_a_huge_header_is_431_and_never_read_whole(model_dir):
    limits = Limits(max_header_bytes=4096)
    with served(app_with(model_dir), limits) as port:
        conn = connect(port)
        conn.sendall(GET + b"X-Big: ")
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 20_000_000:  # the server stops reading long before 20 MB
                conn.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 20_000_000
        answer = reply(conn)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]
        small = connect(port)
        small.sendall(GET + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n")
        answer = reply(small)
        assert answer.startswith(b"HTTP/1.1 431") and b"max_header_bytes" in answer
        ok = connect(port)
        ok.sendall(GET + b"X-Fine: " + b"a" * 3000 + b"\r\nConnection: close\r\n\r\n")
        assert reply(ok).startswith(b"HTTP/1.1 200")


def test_slow_headers_and_slow_bodies_are_cut_at_the_read_timeout(model_dir):
    """The read timeout bounds a request's whole head and body, not the gap between two bytes: a client that sends a
    byte of its headers every 0.1 s, for ever, is cut (a timer that each byte restarted never would). No duration is
    asserted: the 60 s limit only catches a connection that is never cut."""
    limits = Limits(read_timeout=0.3)
    with served(app_with(model_dir), limits) as port:
        silent = connect(port)  # connects, sends nothing
        dripping = connect(port)  # sends a byte of its headers every 0.1 s, for ever
        body = connect(port)  # headers whole, then half its body
        body.sendall(b"POST " + GENERATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"n\":")
        drip = itertools.chain(GET + b"X-Drip: ", itertools.repeat(ord("a")))
        deadline, sent = time.monotonic() + 60, 0
        while True:
            assert time.monotonic() < deadline, f"a client sending a byte every 0.1 s was not cut ({sent} bytes)"
            try:
                dripping.send(bytes([next(drip)]))
            except OSError:
                break
            sent += 1
            time.sleep(0.1)
        for conn in (silent, dripping):
            answer = reply(conn)
            assert answer.startswith(b"HTTP/1.1 408") and b"read_timeout" in answer, answer
        assert reply(body) == b""  # the app was reading its body: the connection is closed under it


def test_an_idle_kept_alive_connection_is_closed(model_dir):
    """Kept alive after its answer, then closed by the server once idle (uvicorn's keep-alive timeout is the
    server's `idle_timeout`). An order of events, not a duration: the 60 s limit only catches one never closed."""
    limits = Limits(idle_timeout=0.2)
    assert uvicorn_config(app_with(model_dir), limits, host="127.0.0.1", port=0).timeout_keep_alive == 0.2
    with served(app_with(model_dir), limits) as port:
        conn = connect(port)
        conn.sendall(GET + b"\r\n")
        first = conn.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()  # kept alive
        conn.settimeout(60)
        try:
            assert reply(conn) == b""  # returns when the server closes the connection, without a word
        except TimeoutError:
            pytest.fail("an idle kept-alive connection was still open after 60 s")


def test_connections_are_limited_per_client_and_in_all(model_dir):
    limits = Limits(max_connections=6, max_client_connections=3)
    with served(app_with(model_dir), limits) as port:
        mine = [connect(port) for _ in range(3)]
        wait_until_open(port, 3, "127.0.0.1")
        extra = connect(port)
        answer = reply(extra)
        assert answer == b"" or (answer.startswith(b"HTTP/1.1 503") and b"max_client_connections" in answer)
        other = connect(port, "127.0.0.2")  # another client is still served
        other.sendall(GET + b"Connection: close\r\n\r\n")
        assert reply(other).startswith(b"HTTP/1.1 200")
        more = [connect(port, f"127.0.0.{i}") for i in (3, 4, 5)]
        clients = [f"127.0.0.{i}" for i in range(1, 6)]
        wait_until_open(port, 6, *clients)  # mine, more and none other (`other` was closed after its answer)
        over = connect(port, "127.0.0.6")
        answer = reply(over)
        assert answer == b"" or (answer.startswith(b"HTTP/1.1 503") and b"max_connections" in answer)
        for conn in mine + more:
            conn.close()
        wait_until_open(port, 0, *clients, "127.0.0.6")
        again = connect(port)  # closed connections are counted out
        again.sendall(GET + b"Connection: close\r\n\r\n")
        assert reply(again).startswith(b"HTTP/1.1 200")


def test_score_and_classify_wait_for_a_slot(model_dir, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = service.generate

    def held(*args, **kwargs):  # holds the one slot until released
        entered.set()
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "generate", held)
    client = TestClient(app_with(model_dir, max_concurrent=1, time_budget=0.1), raise_server_exceptions=False)
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(client.post, GENERATE, json={"n": 2, "unique": True})  # not plain: no quick slot
        assert entered.wait(30)
        score = client.post("/api/v1/models/bigram/score", json={"names": ["emma"]})
        adapt = client.post("/api/v1/models/bigram/more-like-these", json={"words": WORDS, "n": 2})
        release.set()
        assert holder.result().status_code == 200
    assert score.status_code == 503, score.text
    assert adapt.status_code == 200 and adapt.json()["names"] == [] and "ask again" in adapt.json()["message"]
    # the adaptation that request started holds the slot until it is done; then scores are served again
    deadline = time.monotonic() + 60
    while (status := client.post("/api/v1/models/bigram/score", json={"names": ["emma"]}).status_code) == 503:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert status == 200


def test_adaptation_binds_the_time_budget_and_is_cached_for_the_retry(model_dir, monkeypatch):
    real = NameModel.more_like
    calls, release = [], threading.Event()

    def slow_adapt(self, words, **kwargs):  # as a long list on a big model would take: until the test lets it go
        calls.append(words)
        release.wait(30)
        return real(self, words, **kwargs)

    monkeypatch.setattr(NameModel, "more_like", slow_adapt)
    client = TestClient(app_with(model_dir, time_budget=0.3), raise_server_exceptions=False)
    first = client.post("/api/v1/models/bigram/more-like-these", json={"words": WORDS, "n": 3})
    # answered while the adaptation is still held (a request that waited for it would have names, 30 s later): the
    # budget binds, whatever the machine's speed. As a search that runs out of its budget: no names yet, and why
    assert first.status_code == 200 and first.json()["names"] == [] and not first.json()["complete"]
    assert "ask again" in first.json()["message"] and first.json()["generation"]["stop_reason"] == "time-budget"
    release.set()
    deadline = time.monotonic() + 30
    while not (again := client.post("/api/v1/models/bigram/more-like-these",
                                    json={"words": WORDS[::-1], "n": 3}).json())["names"]:
        assert time.monotonic() < deadline and not again["complete"]  # "ask again", or its budget ran out
        time.sleep(0.3)
    assert len(again["names"]) == 3
    assert len(calls) == 1  # the same list (in any order) is adapted once


def test_adapted_models_are_kept_within_their_bytes():
    def model_of(megabytes: int) -> torch.nn.Module:
        holder = torch.nn.Module()
        holder.register_buffer("table", torch.zeros(megabytes * 2**18))  # float32: 4 bytes each
        return holder

    assert tensor_bytes(model_of(3)) == 3 * 2**20
    cache = AdaptedModels(Slots(1), max_bytes=5 * 2**20, max_jobs=1, max_pending=2)
    for key in "abc":
        cache.get(key, lambda: model_of(2), timeout=10)
    assert cache.cached_bytes == 4 * 2**20  # "a" went out first
    built = []
    cache.get("c", lambda: built.append(1) or model_of(2), timeout=10)  # kept: not built again
    assert not built
    cache.get("huge", lambda: model_of(6), timeout=10)  # over the bound on its own: kept alone, for the retry
    assert cache.cached_bytes == 6 * 2**20
    cache.get("d", lambda: model_of(2), timeout=10)
    assert cache.cached_bytes == 2 * 2**20
    hold = threading.Event()  # "slow" adapts until the test lets it go: what follows happens while it runs

    def slow() -> torch.nn.Module:
        hold.wait(60)
        return model_of(1)

    with pytest.raises(StillAdapting):
        cache.get("slow", slow, timeout=0.05)
    with pytest.raises(StillAdapting):  # queued behind "slow"
        cache.get("queued", lambda: model_of(1), timeout=0.05)
    with pytest.raises(StillAdapting):  # "queued" has no request waiting for it: it gives way
        cache.get("third", lambda: model_of(1), timeout=0.05)
    assert set(cache._jobs) == {"slow", "third"}
    waiting = threading.Thread(target=lambda: cache.get("third", lambda: model_of(1), timeout=60))
    waiting.start()
    deadline = time.monotonic() + 60
    while "third" not in cache._waiters:
        assert time.monotonic() < deadline, "the request for 'third' never waited"
        time.sleep(0.01)
    with pytest.raises(Busy):  # "third" has a request waiting for it now, and "slow" runs: no room
        cache.get("fourth", lambda: model_of(1), timeout=0.05)
    hold.set()
    waiting.join(60)
