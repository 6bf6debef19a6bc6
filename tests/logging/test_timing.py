"""log_execution_time / log_execution_time_async: one line per call with the duration."""

from __future__ import annotations

import pytest

from crown_nexus.logging import get_logger, log_execution_time, log_execution_time_async


def test_sync_function_logs_duration(json_logs) -> None:
    """The decorated function's result is returned and one line carries duration_ms."""

    @log_execution_time()
    def process_data(data: list[int]) -> int:
        return sum(data)

    assert process_data([1, 2, 3]) == 6
    rec = json_logs.last()
    assert rec["event"] == "Function executed"
    assert rec["function"].endswith("process_data")
    assert rec["module"] == __name__
    assert rec["duration_ms"] >= 0
    assert rec["level"] == "info"
    assert rec["started_at"] <= rec["finished_at"]


def test_custom_logger_and_level(json_logs) -> None:
    """logger= and level= choose where and at which level the line goes."""

    @log_execution_time(logger=get_logger("timing.custom"), level="DEBUG")
    def work() -> str:
        return "ok"

    work()
    rec = json_logs.last()
    assert rec["logger"] == "timing.custom" and rec["level"] == "debug"


def test_failure_is_logged_and_reraised(json_logs) -> None:
    """When the function raises, an error line names the exception and it propagates."""

    @log_execution_time()
    def broken() -> None:
        raise LookupError("missing")

    with pytest.raises(LookupError):
        broken()
    rec = json_logs.last()
    assert rec["event"] == "Function failed" and rec["error"] == "LookupError"
    assert rec["level"] == "error"


async def test_async_function_logs_after_await(json_logs) -> None:
    """log_execution_time_async measures the awaited coroutine."""

    @log_execution_time_async()
    async def fetch_data() -> dict[str, int]:
        return {"n": 1}

    assert await fetch_data() == {"n": 1}
    rec = json_logs.last()
    assert rec["function"].endswith("fetch_data") and rec["event"] == "Function executed"


async def test_sync_decorator_handles_async_functions(json_logs) -> None:
    """log_execution_time on an async def still awaits it and logs once."""

    @log_execution_time
    async def bare() -> int:
        return 3

    assert await bare() == 3
    assert json_logs.last()["function"].endswith("bare")


def test_async_decorator_rejects_sync_functions() -> None:
    """log_execution_time_async on a plain function is a TypeError at decoration."""
    with pytest.raises(TypeError, match="async"):

        @log_execution_time_async()
        def not_async() -> None:
            return None


def test_unknown_level_is_rejected() -> None:
    """An unknown level name is a ValueError at decoration time."""
    with pytest.raises(ValueError, match="unknown log level"):
        log_execution_time(level="LOUD")
