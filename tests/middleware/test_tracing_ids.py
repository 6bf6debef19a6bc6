"""TracingMiddleware without a tracer provider: ids, headers and the Host cache (issue 11)."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from crown_nexus.core.tracing import tracing_enabled
from crown_nexus.middleware import tracing
from crown_nexus.middleware.tracing import TracingMiddleware

TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": headers}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return dict(sent[0]["headers"]), scope


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"TraceParent", b"00-from-the-app"), (b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def _no_provider() -> None:
    """These tests are about the path without a tracer provider."""
    if tracing_enabled():
        pytest.skip("a tracer provider is configured in this process")


async def test_new_trace_ids_are_unique_and_replace_the_apps_header() -> None:
    """Every request gets fresh ids; a traceparent the app set (any case) is replaced."""
    app = TracingMiddleware(_endpoint)
    seen = set()
    for _ in range(600):  # more than one block of the id pool
        headers, scope = await _call(app, [])
        match = TRACEPARENT.match(headers[b"traceparent"])
        assert match is not None and b"TraceParent" not in headers
        assert scope["state"]["trace_id"] == match.group(1).decode()
        assert scope["state"]["span_id"] == match.group(2).decode()
        seen.add(match.group(1))
        seen.add(match.group(2))
    assert len(seen) == 1200


async def test_incoming_trace_is_continued_with_a_new_span() -> None:
    """A valid incoming traceparent keeps its trace id and flags; tracestate is echoed."""
    incoming = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
    headers, scope = await _call(
        TracingMiddleware(_endpoint), [(b"traceparent", incoming), (b"tracestate", b"k=v")]
    )
    out = headers[b"traceparent"].decode()
    assert out.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and out.endswith("-00")
    assert out.split("-")[2] not in ("00f067aa0ba902b7", "0" * 16)
    assert headers[b"tracestate"] == b"k=v"


@pytest.mark.parametrize(
    "bad",
    [
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        b"\xff\xfe",
    ],
)
async def test_invalid_incoming_starts_a_new_trace(bad: bytes) -> None:
    """An invalid traceparent starts a new trace and its tracestate is dropped."""
    headers, _ = await _call(
        TracingMiddleware(_endpoint), [(b"traceparent", bad), (b"tracestate", b"k=v")]
    )
    assert not headers[b"traceparent"].startswith(b"00-4bf92f3577b34da6a3ce929d0e0e4736")
    assert b"tracestate" not in headers


def test_a_forked_worker_never_reuses_the_parents_ids() -> None:
    """The id pool is emptied in a forked child: two workers draw different ids."""
    tracing._random_ids()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, tracing._random_ids().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert len(child) == 48 and child != tracing._random_ids()
    assert child not in tracing._id_pool


def test_host_cache_is_bounded_and_reads_like_urlsplit() -> None:
    """The Host header cache never grows past its bound; malformed hosts read as nothing."""
    for i in range(tracing._HOSTS_MAX * 3):
        tracing._host_port(f"h{i}.example:{i % 65535}".encode())
    assert len(tracing._HOSTS) <= tracing._HOSTS_MAX
    assert tracing._host_port(b"API.Example.com:8443") == ("api.example.com", 8443)
    assert tracing._host_port(b"[::1]:80") == ("::1", 80)
    assert tracing._host_port(b"host:notaport") == (None, None)
