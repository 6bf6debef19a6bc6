"""``ErrorContext`` and the ``ErrorReporter`` protocol (guide §3).

A reporter is any object with ``async report(exception, context)``; it may also offer
``report_sync(exception, context)`` so errors handled outside an event loop reach it at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["ErrorContext", "ErrorReporter", "SyncErrorReporter"]

_FIELDS = ("function", "args", "kwargs", "user_id", "request_id", "module", "line")


@dataclass
class ErrorContext:
    """Where and for whom an error happened: function, its arguments, user and request ids.

    ``extra`` holds anything else (a dict given to ``report_error`` lands there, apart from the
    named fields); ``timestamp`` is an aware UTC datetime.
    """

    function: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    request_id: str | None = None
    module: str | None = None
    line: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self.args = list(self.args or [])
        self.kwargs = dict(self.kwargs or {})
        self.extra = dict(self.extra or {})
        if self.user_id is not None and not isinstance(self.user_id, str):
            self.user_id = str(self.user_id)
        if self.request_id is not None and not isinstance(self.request_id, str):
            self.request_id = str(self.request_id)

    @classmethod
    def from_value(cls, value: ErrorContext | dict[str, Any] | None) -> ErrorContext:
        """An ``ErrorContext`` from one, from a dict (unknown keys go to ``extra``) or from ``None``."""
        if isinstance(value, ErrorContext):
            return value
        if value is None:
            return cls()
        if not isinstance(value, dict):
            return cls(extra={"context": value})
        known = {k: value[k] for k in _FIELDS if k in value}
        extra = {k: v for k, v in value.items() if k not in known and k != "extra"}
        extra.update(value.get("extra") or {})
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The context as a plain dict (``timestamp`` as an ISO-8601 string)."""
        return {
            "function": self.function,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "user_id": self.user_id,
            "request_id": self.request_id,
            "module": self.module,
            "line": self.line,
            "extra": dict(self.extra),
            "timestamp": self.timestamp.isoformat(),
        }


@runtime_checkable
class ErrorReporter(Protocol):
    """What users implement to send errors elsewhere (e.g. Sentry)."""

    async def report(self, exception: BaseException, context: ErrorContext) -> None:
        """Send ``exception`` with its ``context``; failures are logged by the caller."""
        ...


@runtime_checkable
class SyncErrorReporter(Protocol):
    """A reporter that can also report without an event loop."""

    def report_sync(self, exception: BaseException, context: ErrorContext) -> None:
        """Send ``exception`` with its ``context`` synchronously."""
        ...
