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
