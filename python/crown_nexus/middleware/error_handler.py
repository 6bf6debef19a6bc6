"""``ErrorHandlerMiddleware``: the innermost layer, turning any exception into the SPEC §3 body."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, is_production_app, render_asgi

__all__ = ["ErrorHandlerMiddleware"]


class ErrorHandlerMiddleware:
    """Catch every exception a request raises and answer with the SPEC §3 error body.

    Uses the same renderer as ``install_exception_handlers``. Unexpected exceptions (and
    ``AppException``s with a 5xx status) are sent to the error reporters unless already reported.
    When the response has already started, the exception is re-raised (nothing else can be sent).
    ``production=None`` reads ``app.state.settings`` (else the loaded settings) per request: in
    production an unexpected error's message never names the exception.
    """

    def __init__(self, app: ASGIApp, production: bool | None = None, report: bool = True) -> None:
        self.app = app
        self.production = production
        self.report = report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if started:
                raise
            if self.report and _should_report(exc):
                await _report(exc, scope)
            production = self.production
            if production is None:
                production = is_production_app(scope.get("app"))
            start, body = render_asgi(exc, production=production)
            await send(start)
            await send(body)


def _should_report(exc: BaseException) -> bool:
    from crown_nexus.core.error import was_reported

    if was_reported(exc):
        return False
    if isinstance(exc, AppException):
        return exc.status_code >= 500
    from starlette.exceptions import HTTPException

    return not isinstance(exc, HTTPException)


async def _report(exc: BaseException, scope: Scope) -> None:
    """Send ``exc`` to the reporters with the request's method and path; never raises."""
    try:
        from crown_nexus.core.error import report_error

        context: dict[str, Any] = {
            "function": f"{scope.get('method', '')} {scope.get('path', '')}".strip(),
            "path": scope.get("path"),
            "method": scope.get("method"),
        }
        await report_error(exc, context)
    except Exception:  # noqa: S110 - reporting must never replace the error response
        pass
