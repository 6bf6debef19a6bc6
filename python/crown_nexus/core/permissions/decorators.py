"""Endpoint decorators: ``require_permission``, ``require_permissions``, ``require_admin``.

Put them under the route decorator (``@router.post(...)`` then ``@require_permission(...)``). The
user is taken from the endpoint's ``current_user`` keyword argument (``user`` is accepted too), so
the endpoint declares it with ``Depends(get_current_user)``; failing that, from the request's
authenticated user (``request.state.user``, set by the security dependencies such as
``get_current_user_id``, or ``scope["user"]``) when the endpoint takes the ``Request``. The wrapped
function keeps its signature, so FastAPI still sees every parameter. No user gives ``AuthenticationException`` (401);
a user without the permission gives ``PermissionDeniedException`` (403).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.permissions.checker import PermissionChecker
from crown_nexus.core.permissions.models import Permission

__all__ = ["require_admin", "require_permission", "require_permissions"]

F = TypeVar("F", bound=Callable[..., Any])

_USER_KWARGS = ("current_user", "user")


def _user_from(kwargs: dict[str, Any]) -> Any:
    for name in _USER_KWARGS:
        user = kwargs.get(name)
        if user is not None:
            return user
    for value in kwargs.values():
        scope = getattr(value, "scope", None)
        state = getattr(value, "state", None)
        if isinstance(scope, dict) and state is not None:
            user = getattr(state, "user", None) or scope.get("user")
            if user is not None and (isinstance(user, dict) or hasattr(user, "role")):
                return user
    raise AuthenticationException(message="Authentication required")


def _guard(check: Callable[[Any], None]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                check(_user_from(kwargs))
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check(_user_from(kwargs))
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def require_permission(permission: Permission | str) -> Callable[[F], F]:
    """Allow the call only when ``current_user`` holds ``permission``."""
    return _guard(lambda user: PermissionChecker.ensure_permission(user, permission))


def require_permissions(
    permissions: Iterable[Permission | str], require_all: bool = True
) -> Callable[[F], F]:
    """Allow the call when ``current_user`` holds all (or, with ``require_all=False``, any)."""
    perms = list(permissions)
    return _guard(
        lambda user: PermissionChecker.ensure_permissions(user, perms, require_all=require_all)
    )


def require_admin() -> Callable[[F], F]:
    """Allow the call only when ``current_user`` holds ``system:admin``."""
    return require_permission(Permission.SYSTEM_ADMIN)
