"""``report_error``, ``handle_exception`` and the exception shortcuts of guide §3."""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from dataclasses import replace
from types import FrameType
from typing import Any, TypeVar

from crown_nexus.core._redact import redact
from crown_nexus.core.error.base import ErrorContext
from crown_nexus.core.error.reporters import get_reporters
from crown_nexus.core.exceptions import (
    BusinessException,
    PermissionDeniedException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ValidationException,
)

__all__ = [
    "business_logic_error",
    "ensure_not_none",
    "handle_exception",
    "permission_denied",
    "report_error",
    "resource_already_exists",
    "resource_not_found",
    "validation_error",
    "wait_for_reports",
    "was_reported",
]

T = TypeVar("T")
logger = logging.getLogger("crown_nexus.core.error")
_pending: set[asyncio.Task[None]] = set()
_REPORTED_FLAG = "__crown_nexus_reported__"


def _request_id() -> str | None:
    try:
        from crown_nexus.logging import get_current_request_id
    except ImportError:
        return None
    try:
        rid = get_current_request_id()
    except Exception:
        return None
    return str(rid) if rid else None


def _prepare(context: ErrorContext | dict[str, Any] | None) -> ErrorContext:
    """The context as an ``ErrorContext`` with secrets redacted and the request id filled in."""
    ctx = ErrorContext.from_value(context)
    return replace(
        ctx,
        args=redact(list(ctx.args)),
        kwargs=redact(dict(ctx.kwargs)),
        extra=redact(dict(ctx.extra)),
        request_id=ctx.request_id or _request_id(),
    )


def _mark(exc: BaseException) -> None:
    try:
        setattr(exc, _REPORTED_FLAG, True)
    except (AttributeError, TypeError):
        pass


def was_reported(exc: BaseException) -> bool:
    """True when ``exc`` already went through ``report_error`` / ``handle_exception``."""
    return bool(getattr(exc, _REPORTED_FLAG, False))


async def report_error(
    exception: BaseException, context: ErrorContext | dict[str, Any] | None = None
) -> None:
    """Send ``exception`` to every registered reporter, awaiting each in turn.

    ``context`` may be an ``ErrorContext`` or a dict; secrets in it are redacted first. A reporter
    that raises is logged and never stops the others; this function itself never raises.
    """
    ctx = _prepare(context)
    _mark(exception)
    for reporter in get_reporters():
        try:
            result = reporter.report(exception, ctx)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            logger.warning("error reporter %r failed: %r", reporter, exc)


async def report_unreported(exception: BaseException, context: dict[str, Any]) -> None:
    """:func:`report_error` unless ``exception`` was already reported (the exception handlers'
    report hook, registered by :mod:`crown_nexus.core.error`)."""
    if was_reported(exception):
        return
    await report_error(exception, context)


def _report_without_loop(exception: BaseException, ctx: ErrorContext) -> None:
    """Report with no running event loop: ``report_sync`` where offered, else a short loop."""
    for reporter in get_reporters():
        try:
            sync = getattr(reporter, "report_sync", None)
            if callable(sync):
                sync(exception, ctx)
                continue
            result = reporter.report(exception, ctx)
            if inspect.isawaitable(result):
                asyncio.run(_await(result))
        except Exception as exc:
            logger.warning("error reporter %r failed: %r", reporter, exc)


async def _await(awaitable: Any) -> None:
    await awaitable


def _caller(
    frame: FrameType | None, capture_args: bool = False
) -> tuple[str | None, str | None, int | None, dict[str, Any]]:
    """Qualified name, module, line and (with ``capture_args``) arguments of the function
    running in ``frame``."""
    if frame is None:
        return None, None, None, {}
    code = frame.f_code
    if not capture_args:
        return (
            getattr(code, "co_qualname", code.co_name),
            frame.f_globals.get("__name__"),
            frame.f_lineno,
            {},
        )
    arg_count = code.co_argcount + code.co_kwonlyargcount
    names = list(code.co_varnames[:arg_count])
    if code.co_flags & inspect.CO_VARARGS:
        names.append(code.co_varnames[arg_count])
        arg_count += 1
    if code.co_flags & inspect.CO_VARKEYWORDS:
        names.append(code.co_varnames[arg_count])
    local = frame.f_locals
    arguments = {n: local[n] for n in names if n in local and n not in ("self", "cls")}
    return (
        getattr(code, "co_qualname", code.co_name),
        frame.f_globals.get("__name__"),
        frame.f_lineno,
        arguments,
    )


def handle_exception(
    exception: BaseException, *, capture_args: bool = False, **kwargs: Any
) -> ErrorContext:
    """Report ``exception`` with context taken from the calling function itself; returns it.

    Finds the caller's name, module and line through the stack; ``user_id`` and ``request_id``
    keyword arguments fill those fields, other keyword arguments become the context's
    ``kwargs``. The caller's own arguments are NOT captured unless ``capture_args=True`` (they
    often hold credentials: a login form, a DSN); even then, like everything in the context,
    they are redacted (sensitive keys, model and dataclass fields, secrets in strings). Inside
    a running event loop the report is scheduled as a task (await :func:`wait_for_reports` to
    flush); without one it is delivered before returning. Never raises.
    """
    return _handle(exception, 2, kwargs, capture_args=capture_args)


def _handle(
    exception: BaseException,
    stacklevel: int,
    kwargs: dict[str, Any],
    *,
    capture_args: bool = False,
) -> ErrorContext:
    """``handle_exception`` with the caller ``stacklevel`` frames above this function."""
    function, module, line, arguments = _caller(sys._getframe(stacklevel), capture_args)
    user_id = kwargs.pop("user_id", None)
    request_id = kwargs.pop("request_id", None)
    arguments = {k: v for k, v in arguments.items() if v is not exception}
    arguments.update(kwargs)
    try:
        ctx = _prepare(
            ErrorContext(
                function=function,
                kwargs=arguments,
                user_id=user_id,
                request_id=request_id,
                module=module,
                line=line,
            )
        )
    except Exception as exc:  # a context that cannot be built never hides the real error
        logger.warning("could not build error context: %r", type(exc).__name__)
        ctx = ErrorContext(function=function, module=module, line=line)
    _mark(exception)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        _report_without_loop(exception, ctx)
    else:
        task = loop.create_task(report_error(exception, ctx))
        _pending.add(task)
        task.add_done_callback(_pending.discard)
    return ctx


async def wait_for_reports() -> None:
    """Wait until every report scheduled by :func:`handle_exception` has been delivered."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)


def ensure_not_none(
    value: T | None,
    resource_type: str = "Resource",
    resource_id: Any = None,
    message: str | None = None,
) -> T:
    """Return ``value``, or raise ``ResourceNotFoundException`` when it is ``None``."""
    if value is None:
        raise ResourceNotFoundException(
            resource_type=resource_type, resource_id=resource_id, message=message
        )
    return value


def resource_not_found(
    resource_type: str,
    resource_id: Any = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> ResourceNotFoundException:
    """A ``ResourceNotFoundException`` for ``resource_type`` / ``resource_id`` (to ``raise``)."""
    return ResourceNotFoundException(
        resource_type=resource_type, resource_id=resource_id, message=message, details=details
    )


def resource_already_exists(
    resource_type: str,
    identifier: Any,
    field: str = "id",
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> ResourceAlreadyExistsException:
    """A ``ResourceAlreadyExistsException`` (to ``raise``)."""
    return ResourceAlreadyExistsException(
        resource_type=resource_type,
        identifier=identifier,
        field=field,
        message=message,
        details=details,
    )


def validation_error(
    field: str | list[str | int],
    message: str,
    error_type: str = "value_error",
) -> ValidationException:
    """A ``ValidationException`` with one error at ``field`` (to ``raise``)."""
    loc = list(field) if isinstance(field, list | tuple) else [field]
    return ValidationException(
        message=message, errors=[{"loc": loc, "msg": message, "type": error_type}]
    )


def permission_denied(
    action: str | None = None,
    resource_type: str | None = None,
    permission: str | None = None,
    message: str | None = None,
) -> PermissionDeniedException:
    """A ``PermissionDeniedException`` (to ``raise``)."""
    return PermissionDeniedException(
        message=message, action=action, resource_type=resource_type, permission=permission
    )


def business_logic_error(
    message: str, details: dict[str, Any] | list[Any] | None = None
) -> BusinessException:
    """A ``BusinessException`` (to ``raise``)."""
    return BusinessException(message=message, details=details)
