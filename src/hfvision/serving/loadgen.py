"""A light HTTP/1.1 load generator for ``hfvision serve`` (benchmarks and the load test).

Each client keeps one keep-alive connection (plain asyncio streams) and POSTs bodies back to back. At ~0.1 ms of
client CPU per request it stays out of the way of the server it measures, which general-purpose async clients
(several ms per request in Python) do not on a small machine. Only what the server sends is supported: responses
with ``Content-Length``.

>>> result = asyncio.run(run_load("http://127.0.0.1:8080", [jpeg_bytes], clients=32, requests=512))  # doctest: +SKIP
>>> result.throughput, result.percentile(99), result.errors  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """Outcome of :func:`run_load`: per-request latencies (seconds) and statuses, optionally the bodies."""

    elapsed: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    responses: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # request index -> (status, body)

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return self.statuses.get(200, 0) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in milliseconds (nearest rank)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise ValueError("response without Content-Length (chunked responses are not supported by this client)")
    return status, await reader.readexactly(length)


async def run_load(
    url: str,
    payloads: list[bytes],
    clients: int,
    *,
    requests: int | None = None,
    seconds: float | None = None,
    path: str | None = None,
    content_type: str = "application/octet-stream",
    keep_responses: bool = False,
) -> LoadResult:
    """POST ``payloads`` (cycled) from ``clients`` concurrent connections.

    Args:
        url (`str`): server base URL, e.g. ``"http://127.0.0.1:8080"`` (a path in it is the POST path).
        payloads (`list[bytes]`): request bodies; request ``i`` sends ``payloads[i % len(payloads)]``.
        clients (`int`): concurrent connections.
        requests (`int`, *optional*): total requests (request ``i`` goes to client ``i % clients``), or
        seconds (`float`, *optional*): keep sending until this much time has passed.
        path (`str`, *optional*): POST path (default: the URL's path, or ``/``).
        content_type (`str`, *optional*): ``Content-Type`` header of the requests.
        keep_responses (`bool`, *optional*): keep each response's status and body in ``responses``.
    """
    if (requests is None) == (seconds is None):
        raise ValueError("pass exactly one of requests= and seconds=")
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = path or parts.path or "/"
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\nContent-Length: "
    result = LoadResult(elapsed=0.0)
    start = time.perf_counter()
    deadline = start + seconds if seconds is not None else math.inf

    async def client(index: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            i = index
            while (requests is None or i < requests) and time.perf_counter() < deadline:
                body = payloads[i % len(payloads)]
                sent = time.perf_counter()
                writer.write(f"{head}{len(body)}\r\n\r\n".encode() + body)
                status, content = await _read_response(reader)
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1
                if keep_responses:
                    result.responses[i] = (status, content)
                i += clients
        finally:
            writer.close()

    await asyncio.gather(*(client(c) for c in range(clients)))
    result.elapsed = time.perf_counter() - start
    return result
