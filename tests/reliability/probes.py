"""Measurement helpers shared by the reliability suites and ``scripts/reliability_report.py``.

Everything talks to 127.0.0.1 only and is bounded in count and time. Process
figures come from ``/proc/<pid>`` (Linux): resident memory from ``VmRSS`` and
open files from ``fd/``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import select
import socket
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- processes


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_targets(pid: int | str = "self", *, skip_stdio: bool = False) -> list[str]:
    """Where every open file descriptor of ``pid`` points (optionally without 0-2)."""
    targets = []
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        if skip_stdio and entry.name in ("0", "1", "2"):
            continue  # a test server's stdout/stderr is the harness's (deleted) log file
        with contextlib.suppress(OSError):
            targets.append(os.readlink(entry))
    return targets


def temp_fds(pid: int | str, tmpdir: Path | None = None) -> list[str]:
    """Open descriptors (stdio aside) on deleted files — spooled temp files are unlinked
    at creation — or on anything inside ``tmpdir``."""
    root = str(tmpdir) if tmpdir is not None else None
    return [t for t in fd_targets(pid, skip_stdio=True)
            if t.endswith("(deleted)") or (root is not None and t.startswith(root))]


def wait_for_quiet_fds(pid: int, tmpdir: Path | None, timeout: float = 3.0) -> list[str]:
    """``temp_fds`` once they are gone (closing happens just after the response)."""
    deadline = time.monotonic() + timeout
    while (left := temp_fds(pid, tmpdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def percentile(values: Iterable[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    index = min(len(data) - 1, max(0, round(q / 100 * len(data) + 0.5) - 1))
    return data[index]


# --------------------------------------------------------------------------- payloads


def multipart(data: bytes, name: str = "clip.wav",
              boundary: str = "reliabilityBoundary7") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one ``file`` part; returns (body, content type)."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\";"
            f" filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def ws_message(data: bytes, file_type: str = ".wav") -> str:
    return json.dumps({"audio_data": base64.b64encode(data).decode("ascii"),
                       "file_type": file_type})


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float        # from the first byte sent to the complete answer
    sent_bytes: int       # how much of the offered body the server took before answering

    def json(self) -> Any:
        return json.loads(self.body)


def _parse_head(raw: bytes) -> tuple[int, dict[str, str]]:
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return status, headers


def offer_body(port: int, head: bytes, body_bytes: int, *, chunked: bool,
               preamble: bytes = b"", block: int = 256 * 1024,
               timeout: float = 20.0) -> RawAnswer:
    """Send ``head``, then a body of ``body_bytes``: ``preamble`` followed by zeros
    (chunked or not), stopping as soon as the server answers; return the answer and how
    long it took."""
    zeros = b"\0" * block
    sent = 0
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        pending = b""
        while True:
            want_write = sent < body_bytes or bool(pending)
            readable, writable, _ = select.select([sock], [sock] if want_write else [], [],
                                                  max(0.0, deadline - time.monotonic()))
            if readable:
                try:
                    part = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    part = b""
                received += part
                if not part or _complete(received):
                    break
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer within {timeout} s ({sent} body bytes sent)")
            if writable:
                if not pending:
                    size = min(block, body_bytes - sent)
                    payload = zeros[:size]
                    if sent == 0 and preamble:
                        payload = preamble + payload[len(preamble):]
                    pending = b"%x\r\n%s\r\n" % (size, payload) if chunked else payload
                    sent += size
                    if chunked and sent >= body_bytes:
                        pending += b"0\r\n\r\n"
                try:
                    written = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending = b""
                    sent = body_bytes  # the server closed its side: wait for the answer
                    continue
                except BlockingIOError:
                    continue
                pending = pending[written:]
        sock.setblocking(True)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(OSError, TimeoutError):
            while not _complete(received):
                part = sock.recv(65536)
                if not part:
                    break
                received += part
    elapsed = time.perf_counter() - started
    if b"\r\n\r\n" not in received:
        raise ConnectionError(f"no HTTP answer (got {received[:200]!r})")
    raw_head, body = received.split(b"\r\n\r\n", 1)
    status, headers = _parse_head(raw_head)
    return RawAnswer(status, headers, body, elapsed, sent)


def _complete(data: bytes) -> bool:
    if b"\r\n\r\n" not in data:
        return False
    raw_head, body = data.split(b"\r\n\r\n", 1)
    _, headers = _parse_head(raw_head)
    return len(body) >= int(headers.get("content-length", "0"))


def oversized_upload(port: int, total_bytes: int, *, chunked: bool) -> RawAnswer:
    """Offer a ``total_bytes`` upload to ``POST /analyze``: with a true ``Content-Length``,
    or chunked without one."""
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total_bytes}"
    head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{length}\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n\r\n").encode()
    # A well-formed start of a file part, then the (endless) file content.
    part = (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            b"Content-Type: audio/wav\r\n\r\n")
    return offer_body(port, head, total_bytes, chunked=chunked, preamble=part)


# --------------------------------------------------------------------------- load generators


@dataclass
class LoadResult:
    """Outcome of one load run."""

    label: str
    requests: int = 0
    ok: int = 0
    busy: int = 0                     # deliberate 429s / "server busy" answers
    busy_without_retry_after: int = 0
    errors: int = 0                   # anything else: 4xx/5xx, error replies, exceptions
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def summary(self) -> str:
        return (f"{self.label}: {self.requests} requests, {self.ok} ok, {self.busy} busy,"
                f" {self.errors} errors in {self.elapsed_s:.1f} s ({self.rate:.1f}/s),"
                f" p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms;"
                f" statuses {dict(self.statuses)}; samples {self.error_samples[:3]}")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    raw_head = await reader.readuntil(b"\r\n\r\n")
    status, headers = _parse_head(raw_head[:-4])
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def http_load(port: int, body: bytes, content_type: str, *, concurrency: int,
                    duration_s: float, request_timeout: float = 30.0) -> LoadResult:
    """``concurrency`` keep-alive clients POST ``body`` to ``/analyze`` for ``duration_s``.

    A 429 must carry ``Retry-After``; the client then waits that long (as a well-behaved
    client does) and goes on. Every other non-200 answer or failure counts as an error.
    """
    result = LoadResult(f"HTTP c={concurrency}")
    head = (f"POST /analyze HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    request = head + body
    stop_at = time.monotonic() + duration_s

    async def client() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while time.monotonic() < stop_at:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                assert reader is not None
                started = time.perf_counter()
                result.requests += 1
                try:
                    writer.write(request)
                    status, headers, payload = await asyncio.wait_for(
                        _read_response(reader), request_timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    result.error(f"{type(exc).__name__}: {exc}")
                    writer.close()
                    reader = writer = None
                    continue
                result.statuses[str(status)] += 1
                if status == 200:
                    result.ok += 1
                    result.latencies.append(time.perf_counter() - started)
                elif status == 429:
                    result.busy += 1
                    retry = headers.get("retry-after", "")
                    if not retry.isdigit():
                        result.busy_without_retry_after += 1
                    await asyncio.sleep(min(float(retry or 1), 2.0))
                else:
                    result.error(f"HTTP {status}: {payload[:200]!r}")
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


async def ws_load(ws_url: str, message: str, *, clients: int, messages: int,
                  reply_timeout: float = 120.0) -> LoadResult:
    """``clients`` WebSocket connections each send ``messages`` requests, one at a time."""
    from websockets.asyncio.client import connect

    result = LoadResult(f"WS {clients}x{messages}")

    async def client(index: int) -> None:
        try:
            async with connect(ws_url, max_size=None, open_timeout=30,
                               ping_interval=None) as ws:
                for _ in range(messages):
                    started = time.perf_counter()
                    result.requests += 1
                    await ws.send(message)
                    reply = json.loads(await asyncio.wait_for(ws.recv(), reply_timeout))
                    if "error" in reply:
                        if reply["error"] == "server busy, retry later":
                            result.busy += 1
                        result.error(f"client {index}: {reply}")
                    elif reply.get("classification") in ("real", "deepfake"):
                        result.ok += 1
                        result.latencies.append(time.perf_counter() - started)
                    else:
                        result.error(f"client {index}: unexpected reply {str(reply)[:200]}")
        except Exception as exc:  # every failure is a counted error
            result.error(f"client {index}: {type(exc).__name__}: {exc}")

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    result.elapsed_s = time.perf_counter() - started
    return result


def server_errors(log: str) -> list[str]:
    """Log lines showing a traceback or a 5xx answer, except readiness 503s (expected
    while the model warms up, which the start-up polling can catch)."""
    return [line for line in log.splitlines()
            if "Traceback" in line
            or ("status=5" in line and "path=/health" not in line)]
