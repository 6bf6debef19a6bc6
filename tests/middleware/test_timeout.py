"""TimeoutMiddleware: 504 with the SPEC §3 body when the response does not start in time."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from crown_nexus.middleware import TimeoutMiddleware
from tests.middleware._apps import call, header, json_app, raising_app, sleeping_app, streaming_app


async def test_slow_request_gets_504() -> None:
    """A handler slower than the limit is cancelled and answered with 504 TIMEOUT."""
    cancelled = asyncio.Event()

    async def slow(scope, receive, send):
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    start, body, _ = await call(TimeoutMiddleware(slow, timeout_seconds=0.05))
    assert start["status"] == 504
    decoded = orjson.loads(body)
    assert decoded["code"] == "TIMEOUT" and decoded["success"] is False
    assert decoded["details"] is None  # a 5xx body says nothing more in production (the default)
    assert header(start, "content-type") == "application/json"
    assert cancelled.is_set()


async def test_fast_request_untouched() -> None:
    """A fast handler's response passes through."""
    start, body, _ = await call(TimeoutMiddleware(sleeping_app(0.0), timeout_seconds=1))
    assert start["status"] == 200 and orjson.loads(body) == {"slept": 0.0}


async def test_started_stream_is_not_cut() -> None:
    """Once headers are sent the deadline no longer applies."""
    app = TimeoutMiddleware(
        streaming_app([b"a", b"b", b"c"], b"text/plain", delay=0.04), timeout_seconds=0.06
    )
    start, body, _ = await call(app)
    assert start["status"] == 200 and body == b"abc"


async def test_apps_own_timeout_error_propagates() -> None:
    """A TimeoutError raised by the app itself is not mistaken for ours."""
    with pytest.raises(TimeoutError):
        await call(TimeoutMiddleware(raising_app(TimeoutError("upstream")), timeout_seconds=5))


async def test_excluded_paths() -> None:
    """Excluded prefixes are never timed out."""
    app = TimeoutMiddleware(sleeping_app(0.05), timeout_seconds=0.01, exclude_paths=["/slow"])
    start, _, _ = await call(app, path="/slow/report")
    assert start["status"] == 200


def test_timeout_must_be_positive() -> None:
    """A zero or negative timeout is refused."""
    with pytest.raises(ValueError):
        TimeoutMiddleware(json_app({}), timeout_seconds=0)


async def test_deadline_does_not_outlive_the_request() -> None:
    """The timer is cancelled with the request: the same task later sleeping past the
    deadline is not cancelled."""
    start, _, _ = await call(TimeoutMiddleware(json_app({"a": 1}), timeout_seconds=0.02))
    assert start["status"] == 200
    await asyncio.sleep(0.06)  # a leaked timer would cancel this task here


async def test_someone_elses_cancellation_propagates() -> None:
    """A cancellation that is not the deadline's (e.g. the server's) is never turned into 504."""
    task = asyncio.ensure_future(call(TimeoutMiddleware(sleeping_app(5), timeout_seconds=10)))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_timeouts_are_per_request_under_concurrency() -> None:
    """Concurrent requests each get their own deadline: the slow ones 504, the fast ones 200."""
    app = TimeoutMiddleware(sleeping_app(0.0), timeout_seconds=0.05)
    slow = TimeoutMiddleware(sleeping_app(1.0), timeout_seconds=0.05)
    results = await asyncio.gather(*(call(slow if i % 2 else app) for i in range(10)))
    assert [r[0]["status"] for r in results] == [200, 504] * 5


async def _post(mw: TimeoutMiddleware, chunks: list[tuple[float, bytes]]) -> list[dict]:
    """POST through ``mw`` with a body arriving as (delay, bytes) chunks; the sent messages."""
    messages: list[dict] = []
    pending = list(chunks)

    async def receive():
        if not pending:
            await asyncio.sleep(10)  # the client sent everything; wait for a disconnect
            return {"type": "http.disconnect"}
        delay, data = pending.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": data, "more_body": bool(pending)}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}
    await mw(scope, receive, send)
    return messages


def _reading_app():
    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % len(body)})

    return app


async def test_slow_body_is_408_but_an_app_that_stops_reading_keeps_its_answer() -> None:
    """A read still waiting at the deadline is refused (408); an app that stopped reading before
    the deadline and answers after it keeps its own answer (only a refused read is replaced)."""
    mw = TimeoutMiddleware(_reading_app(), timeout_seconds=5, body_timeout_seconds=0.2)
    late = await _post(mw, [(0.0, b"a"), (0.5, b"b")])
    assert late[0]["status"] == 408
    assert orjson.loads(late[1]["body"])["code"] == "REQUEST_TIMEOUT"

    async def first_chunk_only(scope, receive, send):
        await receive()  # more_body=True; the rest is never read
        await asyncio.sleep(0.3)  # past the body deadline, outside receive
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    kept = await _post(
        TimeoutMiddleware(first_chunk_only, timeout_seconds=5, body_timeout_seconds=0.2),
        [(0.0, b"a"), (0.0, b"b")],
    )
    assert kept[0]["status"] == 202 and kept[1]["body"] == b"ok"


async def test_body_timeout_off_by_default_and_request_timeout_still_504() -> None:
    """Without body_timeout_seconds a slow body is only bounded by the 504 request timeout."""
    mw = TimeoutMiddleware(_reading_app(), timeout_seconds=0.2)
    messages = await _post(mw, [(0.0, b"a"), (1.0, b"b")])
    assert messages[0]["status"] == 504


@pytest.mark.parametrize("compact_at", [4096, 3])
async def test_many_requests_share_one_deadline_queue(monkeypatch, compact_at: int) -> None:
    """Interleaved slow and fast requests on one middleware: exactly the slow ones get 504 (at
    their own deadline), the fast ones keep their answer; the queue ends empty and one timer
    at most is pending, also when a slow request at the head forces compaction."""
    from crown_nexus.middleware import timeout as timeout_module

    monkeypatch.setattr(timeout_module._Deadlines, "COMPACT_AT", compact_at)

    async def app(scope, receive, send):
        delay = float(scope["path"].strip("/"))
        await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = TimeoutMiddleware(app, timeout_seconds=0.2)

    async def one(delay: float) -> int:
        start, _, _ = await call(mw, path=f"/{delay}")
        return start["status"]

    delays = [2.0 if i % 5 == 0 else 0.01 * (i % 3) for i in range(30)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    statuses = await asyncio.gather(*(one(d) for d in delays))
    assert statuses == [504 if d > 0.2 else 200 for d in delays]
    assert loop.time() - started < 1.5  # the slow ones were cut at 0.2 s, not left to 2 s
    deadlines = mw._deadlines
    assert deadlines is not None
    assert all(e[0] or e[2] for e in deadlines.entries)
    assert await one(0.0) == 200
    await asyncio.sleep(0.25)  # the last timer fires, finds only finished entries
    assert not deadlines.entries and deadlines.handle is None
