"""The current request's authenticated caller, for the permission service.

It lives in the security package, which the permission package imports (never the reverse).
The security dependencies (:mod:`crown_nexus.core.security.dependencies`) call
:func:`bind_request_user` when they authenticate a request, so the permission service can resolve
a user id without any loader when it is the caller's own, and find the user loader the request's
app registered (``set_user_loader(loader, app=app)``). The binding lives in a
:class:`~contextvars.ContextVar`, so it belongs to one request's context and never leaks into
another; it also records the request id (``RequestContextMiddleware``) and stops applying once the
context's request id changes (after the request, when the server reuses the context).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from crown_nexus.logging.context import get_current_request_id

__all__ = ["bind_request_user", "request_app", "request_user"]

#: ``(user, app, request id)`` of the request being handled
_request: ContextVar[tuple[Any, Any, str | None] | None] = ContextVar(
    "crown_nexus_request_user", default=None
)


def _bound() -> tuple[Any, Any, str | None] | None:
    bound = _request.get()
    if bound is None or bound[2] != get_current_request_id():
        return None
    return bound


def bind_request_user(user: Any, app: Any = None) -> None:
    """Record ``user`` (and the ``app`` serving the request) as the current request's caller."""
    _request.set((user, app, get_current_request_id()))


def request_user() -> Any:
    """The current request's authenticated user, or ``None`` outside an authenticated request."""
    bound = _bound()
    return None if bound is None else bound[0]


def request_app() -> Any:
    """The app serving the current authenticated request, or ``None``."""
    bound = _bound()
    return None if bound is None else bound[1]
