"""A bounded HTTP load generator: N keep-alive connections posting the same upload.

Plain asyncio streams and a pre-built request, so the generator itself costs little CPU next to
the service it measures. Bounded by a request count and a time limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.raw import percentiles


def multipart_body(filename: str, payload: bytes) -> tuple[str, bytes]:
    """``(content type, body)`` of a multipart form with ``payload`` as the field ``file``."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return f"multipart/form-data; boundary={boundary}", body


def multipart_request(host: str, port: int, path: str, filename: str, payload: bytes) -> bytes:
    """The bytes of one ``POST`` with ``payload`` as the multipart field ``file``."""
    content_type, body = multipart_body(filename, payload)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float = 0.0
    ok_ms: list[float] = field(default_factory=list)
    rejected_ms: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        done = len(self.ok_ms)
        return {
            "concurrency": self.concurrency,
            "requests": done + len(self.rejected_ms) + self.errors,
            "ok": done,
            "rejected_503": len(self.rejected_ms),
            "errors": self.errors,
            "req_per_s": done / self.elapsed_s if self.elapsed_s else 0.0,
            "latency_ms": percentiles(self.ok_ms),
            "rejected_latency_ms": percentiles(self.rejected_ms),
        }


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(
        (int(h.split(":", 1)[1]) for h in lines[1:] if h.lower().startswith("content-length:")), 0
    )
    await reader.readexactly(length)
    return status


async def _client(
    host: str, port: int, request: bytes, result: LoadResult, budget: list[int], deadline: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            begin = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status = await _read_response(reader)
            took = (time.perf_counter() - begin) * 1000
            if status == 200:
                result.ok_ms.append(took)
            elif status == 503:
                result.rejected_ms.append(took)
            else:
                result.errors += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        result.errors += 1
    finally:
        writer.close()


async def run_load(
    host: str, port: int, request: bytes, concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    """Keep ``concurrency`` requests in flight until ``max_requests`` or ``max_seconds``."""
    result = LoadResult(concurrency)
    budget = [max_requests]
    start = time.perf_counter()
    deadline = start + max_seconds
    await asyncio.gather(
        *(_client(host, port, request, result, budget, deadline) for _ in range(concurrency))
    )
    result.elapsed_s = time.perf_counter() - start
    return result


def _load_in_process(
    host: str, port: int, request: bytes, concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    return asyncio.run(run_load(host, port, request, concurrency, max_requests, max_seconds))


def run_load_procs(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    procs: int = 1,
) -> LoadResult:
    """``run_load`` split over ``procs`` processes (one Python process tops out near a few
    thousand requests/s); the connections and the request budget are shared out evenly."""
    if procs <= 1:
        return _load_in_process(host, port, request, concurrency, max_requests, max_seconds)
    shares = [concurrency // procs + (i < concurrency % procs) for i in range(procs)]
    budgets = [max_requests // procs + (i < max_requests % procs) for i in range(procs)]
    with ProcessPoolExecutor(procs) as pool:
        futures = [
            pool.submit(_load_in_process, host, port, request, c, b, max_seconds)
            for c, b in zip(shares, budgets, strict=True)
            if c > 0
        ]
        parts = [f.result() for f in futures]
    merged = LoadResult(concurrency, elapsed_s=max(p.elapsed_s for p in parts))
    for part in parts:
        merged.ok_ms += part.ok_ms
        merged.rejected_ms += part.rejected_ms
        merged.errors += part.errors
    return merged
