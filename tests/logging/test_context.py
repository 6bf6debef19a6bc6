"""Request context through contextvars: blocks, tasks, threads, isolation."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from crown_nexus.logging import (
    bind_log_context,
    clear_user_id,
    get_current_request_id,
    get_current_user_id,
    get_log_context,
    get_logger,
    request_context,
    reset_log_context,
    set_request_id,
    set_user_id,
)


def test_request_context_sets_and_restores() -> None:
    """Inside the block both ids are set; afterwards the previous values are back."""
    assert get_current_request_id() is None
    with request_context(request_id="manual-operation-123", user_id="admin"):
        assert get_current_request_id() == "manual-operation-123"
        assert get_current_user_id() == "admin"
        with request_context(user_id="nested"):
            assert get_current_request_id() == "manual-operation-123"
            assert get_current_user_id() == "nested"
        assert get_current_user_id() == "admin"
    assert get_current_request_id() is None and get_current_user_id() is None


def test_request_context_restores_after_an_exception() -> None:
    """The ids are restored when the block raises."""
    try:
        with request_context(request_id="r", user_id=1):
            raise RuntimeError
    except RuntimeError:
        pass
    assert get_current_request_id() is None and get_current_user_id() is None


def test_set_and_clear_user_id_in_log_lines(json_logs) -> None:
    """set_user_id appears on following lines; clear_user_id removes it (guide §1)."""
    log = get_logger("ctx")
    set_user_id("user-456")
    log.info("User context operation")
    clear_user_id()
    log.info("after")
    first, second = json_logs.lines()
    assert first["user_id"] == "user-456"
    assert second["user_id"] is None


def test_ids_are_stored_as_strings() -> None:
    """Non-string ids (ints, UUIDs) are stored as their str()."""
    ctx = contextvars.copy_context()

    def body() -> None:
        set_request_id(42)
        set_user_id(7)
        assert get_current_request_id() == "42" and get_current_user_id() == "7"

    ctx.run(body)
    assert get_current_request_id() is None


async def test_concurrent_tasks_do_not_leak_ids(json_logs) -> None:
    """Concurrent tasks each log their own request id across awaits."""
    log = get_logger("tasks")

    async def handle(i: int) -> None:
        with request_context(request_id=f"req-{i}", user_id=f"u{i}"):
            await asyncio.sleep(0.001 * (5 - i))
            log.info("step", i=i)
            await asyncio.sleep(0)
            log.info("step", i=i)

    await asyncio.gather(*(handle(i) for i in range(5)))
    for rec in json_logs.lines():
        assert rec["request_id"] == f"req-{rec['i']}"
        assert rec["user_id"] == f"u{rec['i']}"
    assert get_current_request_id() is None


async def test_tasks_created_inside_inherit_the_context(json_logs) -> None:
    """A task created in the block sees the block's ids even after the block ended."""
    log = get_logger("child")
    started = asyncio.Event()

    async def child() -> None:
        await started.wait()
        log.info("child")

    with request_context(request_id="parent"):
        task = asyncio.create_task(child())
    started.set()
    await task
    assert json_logs.last()["request_id"] == "parent"


async def test_to_thread_carries_the_context(json_logs) -> None:
    """asyncio.to_thread copies the context into the worker thread."""
    log = get_logger("thread")
    with request_context(request_id="threaded", user_id="t"):
        await asyncio.to_thread(log.info, "in thread")
    rec = json_logs.last()
    assert rec["request_id"] == "threaded" and rec["user_id"] == "t"


def test_thread_started_with_copy_context(json_logs) -> None:
    """A thread running copy_context().run sees the ids; a bare thread does not."""
    log = get_logger("thread")
    with request_context(request_id="copied"):
        ctx = contextvars.copy_context()
        with_ctx = threading.Thread(target=ctx.run, args=(log.info, "with"))
        bare = threading.Thread(target=log.info, args=("bare",))
        with_ctx.start()
        with_ctx.join()
        bare.start()
        bare.join()
    by_event = {r["event"]: r for r in json_logs.lines()}
    assert by_event["with"]["request_id"] == "copied"
    assert by_event["bare"]["request_id"] is None


def test_bound_log_context_fields_appear_and_reset(json_logs) -> None:
    """bind_log_context adds fields to every line until reset."""
    log = get_logger("extra")
    token = bind_log_context(trace_id="t1", span_id="s1")
    assert get_log_context() == {"trace_id": "t1", "span_id": "s1"}
    log.info("a")
    reset_log_context(token)
    log.info("b")
    a, b = json_logs.lines()
    assert a["trace_id"] == "t1" and a["span_id"] == "s1"
    assert "trace_id" not in b
