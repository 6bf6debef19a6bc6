"""Reporters keep bounded, redacted summaries, never live exceptions (issue 15 item 6)."""

from __future__ import annotations

import gc
import weakref
from dataclasses import dataclass
from typing import Any

from crown_nexus.core.error import ErrorContext, InMemoryReporter, ReportedError
from crown_nexus.core.error.reporters import (
    MAX_ITEMS,
    MAX_MESSAGE_CHARS,
    MAX_TRACEBACK_CHARS,
    MAX_VALUE_CHARS,
    summarize,
)
from crown_nexus.core.exceptions import DatabaseException

SECRET = "hunter2-very-secret"


class Payload:
    """Stands for a request or its parsed body: big, and must not outlive the error."""

    def __init__(self) -> None:
        self.data = "x" * 1_000_000


class Boom(RuntimeError):
    """A RuntimeError that can be weakly referenced (built-in exceptions cannot)."""


def _fail_with(payload: Payload) -> BaseException:
    try:
        local = payload  # noqa: F841 - a frame local, as a handler's request would be
        raise Boom(f"db://admin:{SECRET}@10.0.0.5 refused; password={SECRET}")
    except Boom as exc:
        return exc


def _size(value: Any) -> int:
    """Characters of every string and key in a summary."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_size(k) + _size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return sum(_size(v) for v in value)
    return 8


def test_reporter_keeps_no_exception_frame_or_local() -> None:
    """After reporting, the exception, its frames and their locals are collectable."""
    reporter = InMemoryReporter(capacity=10)
    payload = Payload()
    exc = _fail_with(payload)
    reporter.report_sync(exc, ErrorContext(function="f", kwargs={"body": payload}))
    exc_ref, payload_ref = weakref.ref(exc), weakref.ref(payload)
    del exc, payload
    gc.collect()
    assert exc_ref() is None and payload_ref() is None
    [entry] = reporter.recent()
    assert entry.exception_type is Boom and entry.type == "Boom"
    assert entry.context.kwargs == {"body": "<Payload>"}


def test_summary_is_redacted_and_keeps_the_traceback_text() -> None:
    """Message and traceback text lose secrets; the traceback names the failing function."""
    entry = ReportedError.from_exception(_fail_with(Payload()), ErrorContext())
    assert SECRET not in entry.message and SECRET not in entry.traceback
    assert "_fail_with" in entry.traceback and "Boom" in entry.traceback
    assert entry.status_code == 500 and entry.code == "INTERNAL_SERVER_ERROR"


def test_app_exception_code_status_and_details_are_summarized() -> None:
    """An AppException keeps its code, status and (redacted) details."""
    exc = DatabaseException(message="insert failed", details={"table": "users", "token": SECRET})
    entry = ReportedError.from_exception(exc, ErrorContext())
    assert (entry.code, entry.status_code) == ("DATABASE_ERROR", exc.status_code)
    assert entry.details["table"] == "users" and SECRET not in str(entry.details)


def test_every_part_of_a_summary_is_bounded() -> None:
    """Huge messages, tracebacks and contexts are cut to their bounds."""
    try:
        raise ValueError("m" * 5_000_000)
    except ValueError as e:
        exc = e
    wide = {f"k{i}": "v" * 10_000 for i in range(200)}
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["next"] = {}
        node = node["next"]
    ctx = ErrorContext(
        function="f" * 100_000,
        args=["a" * 2_000_000, b"\0" * 10_000, 2**5000, list(range(10_000))],
        kwargs={"wide": wide, "deep": deep, "password": "x"},
        extra={"request": object()},
    )
    entry = ReportedError.from_exception(exc, ctx)
    assert len(entry.message) <= MAX_MESSAGE_CHARS + 40
    assert len(entry.traceback) <= MAX_TRACEBACK_CHARS + 40
    assert (
        entry.context.function is not None and len(entry.context.function) <= MAX_VALUE_CHARS + 40
    )
    assert entry.context.kwargs["password"] == "[REDACTED]"
    assert len(entry.context.kwargs["wide"]) == MAX_ITEMS + 1  # and a "..." marker
    assert entry.context.args[1] == "<10000 bytes>"
    assert entry.context.args[2] == "<int of 5001 bits>"
    assert entry.context.extra == {"request": "<object>"}
    total = _size([entry.message, entry.traceback, entry.context.to_dict()])
    assert total < 60_000, total


@dataclass
class _Form:
    username: str
    password: str


def test_summarize_converts_models_and_redacts_their_secrets() -> None:
    """Dataclasses (and pydantic models) become dicts; sensitive fields are redacted."""
    assert summarize(_Form("ann", SECRET)) == {"username": "ann", "password": "[REDACTED]"}
    assert summarize(f"dsn postgresql://u:{SECRET}@h/db") == "dsn postgresql://u:[REDACTED]@h/db"
