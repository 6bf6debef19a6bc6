"""Guide §1 (Logging System): every example run as written (``app.`` -> ``crown_nexus.``)."""

from __future__ import annotations

import asyncio


def test_basic_logging_example(json_logs) -> None:
    """The 'Basic Logging' block writes one line per call with the given fields."""
    try:
        raise ConnectionError("db down")
    except ConnectionError as caught:
        exception = caught

    # --- guide §1, as written ---
    from crown_nexus.logging import get_logger

    # Create a logger for your module
    logger = get_logger("app.your.module")

    # Log at different levels
    logger.debug("Debug information with context", item_id=123, status="pending")
    logger.info("Operation completed successfully")
    logger.warning("Something unexpected happened", details="connection timeout")
    logger.error("Operation failed", error_code="DB_CONN_ERROR", retry_count=3)
    logger.exception("Exception occurred during processing", exc_info=exception)
    # --- end ---

    lines = json_logs.lines()
    assert [r["level"] for r in lines] == ["debug", "info", "warning", "error", "error"]
    assert all(r["logger"] == "app.your.module" for r in lines)
    assert lines[0]["item_id"] == 123 and lines[0]["status"] == "pending"
    assert lines[2]["details"] == "connection timeout"
    assert lines[3]["error_code"] == "DB_CONN_ERROR" and lines[3]["retry_count"] == 3
    assert lines[4]["exception"]["type"] == "ConnectionError"
    assert lines[4]["exception"]["message"] == "db down"


def test_request_context_example(json_logs) -> None:
    """The 'Request Context Tracking' block: ids inside the block, user id until cleared."""
    from crown_nexus.logging import get_logger

    logger = get_logger("app.admin")

    # --- guide §1, as written ---
    from crown_nexus.logging import clear_user_id, request_context, set_user_id

    # Create a custom context for a set of operations
    with request_context(request_id="manual-operation-123", user_id="admin"):
        logger.info("Performing administrative operation")
        # All logs within this context will include the specified request_id and user_id

    # Set just the user ID
    set_user_id("user-456")
    logger.info("User context operation")  # Will include user_id=user-456

    # Clear when done
    clear_user_id()
    # --- end ---

    logger.info("after clear")
    admin, user, after = json_logs.lines()
    assert admin["request_id"] == "manual-operation-123" and admin["user_id"] == "admin"
    assert user["user_id"] == "user-456" and user["request_id"] is None
    assert after["user_id"] is None


def test_performance_logging_example(json_logs) -> None:
    """The 'Performance Logging' block logs a duration for each decorated call."""
    result = {"rows": 3}

    # --- guide §1, as written ---
    from crown_nexus.logging import log_execution_time, log_execution_time_async

    # For synchronous functions
    @log_execution_time()  # Optional parameters: logger, level
    def process_data(data):
        # Processing logic
        return result
        # Will log start/end times and duration automatically

    # For asynchronous functions
    @log_execution_time_async()
    async def fetch_data():
        # Async processing logic
        return result

    # --- end ---

    assert process_data([1, 2]) is result
    assert asyncio.run(fetch_data()) is result
    sync_line, async_line = json_logs.lines()
    assert sync_line["function"].endswith("process_data") and sync_line["duration_ms"] >= 0
    assert async_line["function"].endswith("fetch_data")
    assert {"started_at", "finished_at"} <= set(sync_line)
