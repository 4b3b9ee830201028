"""A minimal closed-loop HTTP/1.1 load generator for loopback benchmarks.

Each of N connections sends its next request as soon as the previous answer arrived (N
concurrent senders). It is plain asyncio with pre-built requests, so the generator's own
CPU cost stays small next to the server's on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def http_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _sender(host: str, port: int, requests: Iterator[bytes], result: LoadResult) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
    finally:
        writer.close()


def run_load(host: str, port: int, requests: list[bytes], senders: int) -> LoadResult:
    """Send every request over `senders` keep-alive connections; one shared queue."""
    shared = iter(requests)
    result = LoadResult()

    async def main() -> None:
        started = time.perf_counter()
        await asyncio.gather(*(_sender(host, port, shared, result) for _ in range(senders)))
        result.elapsed = time.perf_counter() - started

    asyncio.run(main())
    return result
