"""What a connection may take before it is a request: header size, read time, idle time, how many.

uvicorn's HTTP parser (httptools) accepts headers of any size (a 100 MB header was read whole), gives
a request that arrives one byte at a time all the time it likes ("slowloris": partial headers held a
connection open for 150 s), and accepts every connection (19,500 from one address). This protocol
is uvicorn's own, with the bounds of `Limits` added where the bytes arrive, as a reverse proxy
would enforce them (nginx's `large_client_header_buffers`, `client_header_timeout`,
`keepalive_timeout`, `limit_conn`):
- the request line and headers over `max_header_bytes` get a 431 and the connection is closed,
  so at most that much (and one read) is ever buffered;
- a request must arrive whole (headers and body) within `read_timeout` of its first byte (or of
  the connection's opening), or it gets a 408 and the connection is closed;
- a kept-alive connection waits `idle_timeout` for its next request (uvicorn's keep-alive timeout);
- more than `max_connections` open connections, or `max_client_connections` from one address,
  and the new one gets a 503 and is closed.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from namesmith.serve.limits import Limits

REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def refusal(status: int, message: str) -> bytes:
    """A whole HTTP response with the API's JSON error, closing the connection."""
    body = json.dumps({"error": message, "field": None}).encode()
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n%s"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, REASONS[status], retry, len(body), body))


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol bounded by `limits`; `bounded_protocol` gives each server a class of its own."""

    limits: ClassVar[Limits]
    per_client: ClassVar[Counter[str]]  # open connections by client address, on the server's one event loop

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timer: asyncio.TimerHandle | None = None
        self.in_head = False  # reading a request line and headers
        self.head_bytes = 0  # bytes read since the head began (bounds what the parser buffers)
        self.head_size = 0  # bytes of the request line and headers parsed so far
        self.too_large = (f"the request line and headers are over the server's limit of "
                          f"{self.limits.max_header_bytes} bytes (max_header_bytes)")
        self.address: str | None = None  # the client's, counted in per_client while the connection is open

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.address = self.client[0] if self.client else ""
        self.per_client[self.address] += 1
        if len(self.connections) > self.limits.max_connections:
            return self.refuse(503, f"the server has {self.limits.max_connections} connections open, its limit "
                                    f"(max_connections); try again shortly")
        if self.per_client[self.address] > self.limits.max_client_connections:
            return self.refuse(503, f"this address has {self.limits.max_client_connections} connections open, the "
                                    f"limit per client (max_client_connections); reuse them or close some")
        self.in_head = True
        self.start_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_read_timer()
        if self.address is not None:
            self.per_client[self.address] -= 1
            if self.per_client[self.address] <= 0:
                del self.per_client[self.address]
            self.address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        super().data_received(data)
        if self.in_head and not self.transport.is_closing():
            # counted after parsing: the read that began this request counts whole (an overestimate of at
            # most one read), and headers stop being buffered one read past the limit
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                self.refuse(431, self.too_large)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.head_bytes, self.head_size = True, 0, 0
        if self.read_timer is None:
            self.start_read_timer()

    def on_url(self, url: bytes) -> None:
        self.head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.head_size > self.limits.max_header_bytes:  # a head that came in one read
            return self.refuse(431, self.too_large)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.stop_read_timer()
        if not self.transport.is_closing():
            super().on_message_complete()

    def start_read_timer(self) -> None:
        self.read_timer = self.loop.call_later(self.limits.read_timeout, self.read_timed_out)

    def stop_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def read_timed_out(self) -> None:
        self.read_timer = None
        if self.transport.is_closing():
            return
        if self.in_head:
            self.refuse(408, f"the request did not arrive within the server's limit of {self.limits.read_timeout:g} "
                             f"seconds (read_timeout)")
        else:  # the app is reading the body (it has not answered): it sees the client disconnect
            self.transport.close()

    def refuse(self, status: int, message: str) -> None:
        self.stop_read_timer()
        self.in_head = False
        self.transport.write(refusal(status, message))
        self.transport.close()


def bounded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol bounded by `limits` (one class per server: it counts that server's clients)."""
    return type("BoundedProtocol", (BoundedProtocol,), {"limits": limits, "per_client": Counter()})
