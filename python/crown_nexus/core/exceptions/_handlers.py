"""``install_exception_handlers(app)``: the SPEC §3 body for every error a FastAPI app raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crown_nexus.core.exceptions._base import AppException
from crown_nexus.core.exceptions._render import render_exception

__all__ = [
    "ErrorReportHook",
    "error_response",
    "install_exception_handlers",
    "is_production_app",
    "set_error_report_hook",
]

#: ``await hook(exc, context)`` reports a server-side error the handlers caught; it may skip an
#: exception already reported. ``context`` holds ``function`` and ``path``.
ErrorReportHook = Callable[[BaseException, dict[str, Any]], Awaitable[None]]

_report_hook: ErrorReportHook | None = None


def set_error_report_hook(hook: ErrorReportHook | None) -> ErrorReportHook | None:
    """Make the exception handlers report server-side errors through ``hook``; return the old one.

    :mod:`crown_nexus.core.error` registers its ``report_error`` when it is imported (and
    ``setup_app`` imports it), so this package never imports the error package above it.
    ``None`` turns reporting off.
    """
    global _report_hook
    previous, _report_hook = _report_hook, hook
    return previous


def is_production_app(app: Any) -> bool:
    """True when the app's settings (``app.state.settings``, else the loaded settings) say production."""
    settings = getattr(getattr(app, "state", None), "settings", None)
    if settings is None:
        from crown_nexus.core.config import settings
    return bool(getattr(settings, "is_production", True))


def error_response(exc: BaseException, *, production: bool = True) -> Response:
    """A JSON ``Response`` with the SPEC §3 body for ``exc`` (see ``render_exception``)."""
    status, body, headers = render_exception(exc, production=production)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


async def _report_unexpected(exc: BaseException, request: Request) -> None:
    """Send a server-side error to the registered report hook; never raises."""
    hook = _report_hook
    if hook is None:
        return
    try:
        await hook(
            exc,
            {"function": f"{request.method} {request.url.path}", "path": request.url.path},
        )
    except Exception:  # noqa: S110 - reporting must never turn one error into two
        pass


def install_exception_handlers(app: Any) -> None:
    """Install handlers on ``app`` so every error renders the SPEC §3 JSON body.

    Covers ``AppException`` (its status, code, details, headers; 5xx ones are reported), FastAPI's
    ``RequestValidationError`` (422), Starlette's ``HTTPException`` (its status; 404 for unknown
    routes) and any other exception (500; reported to the error reporters; its text is never shown
    in production).
    """
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def app_exception_handler(request: Request, exc: Exception) -> Response:
        if isinstance(exc, AppException) and exc.status_code >= 500:
            await _report_unexpected(exc, request)
        return error_response(exc, production=is_production_app(request.app))

    async def unexpected_exception_handler(request: Request, exc: Exception) -> Response:
        await _report_unexpected(exc, request)
        return error_response(exc, production=is_production_app(request.app))

    app.add_exception_handler(AppException, app_exception_handler)
    app.add_exception_handler(RequestValidationError, app_exception_handler)
    app.add_exception_handler(HTTPException, app_exception_handler)
    app.add_exception_handler(Exception, unexpected_exception_handler)
