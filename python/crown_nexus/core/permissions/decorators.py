"""Endpoint decorators: ``require_permission``, ``require_permissions``, ``require_admin``.

Put them under the route decorator (``@router.post(...)`` then ``@require_permission(...)``). The
user is taken from the endpoint's ``current_user`` keyword argument (``user`` is accepted too), so
the endpoint declares it with ``Depends(get_current_user)``; failing that, from the request's
authenticated user (``request.state.user``, set by the security dependencies such as
``get_current_user_id``, or ``scope["user"]``) and, failing that, from the request's own
credentials (bearer token or API key, read with ``crown_nexus.core.security.dependencies.
authenticate_request``; SPEC §10). The wrapped function keeps its signature, plus one hidden
keyword-only ``Request`` parameter through which FastAPI hands the decorator the request (it is
not part of the API schema and never reaches the endpoint). No user gives
``AuthenticationException`` (401); a user without the permission gives
``PermissionDeniedException`` (403).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.permissions.checker import PermissionChecker
from crown_nexus.core.permissions.models import Permission

__all__ = ["require_admin", "require_permission", "require_permissions"]

F = TypeVar("F", bound=Callable[..., Any])

_USER_KWARGS = ("current_user", "user")


#: the hidden parameter through which FastAPI passes the request to the decorator's wrapper
_REQUEST_PARAM = "crown_nexus_permission_request__"


def _is_request(value: Any) -> bool:
    return isinstance(getattr(value, "scope", None), dict) and hasattr(value, "state")


def _user_in(kwargs: dict[str, Any], request: Any) -> tuple[Any, Any]:
    """``(user, request)``: the user from ``current_user``/``user`` or an authenticated request."""
    for name in _USER_KWARGS:
        user = kwargs.get(name)
        if user is not None:
            return user, request
    requests = [request] if request is not None else []
    requests += [v for v in kwargs.values() if v is not request and _is_request(v)]
    for req in requests:
        user = getattr(req.state, "user", None) or req.scope.get("user")
        if user is not None and (isinstance(user, dict) or hasattr(user, "role")):
            return user, req
    return None, requests[0] if requests else None


def _unauthenticated() -> AuthenticationException:
    return AuthenticationException(message="Authentication required")


async def _user_async(kwargs: dict[str, Any], request: Any) -> Any:
    """The caller: the endpoint's user argument, else the request's bearer token / API key."""
    user, req = _user_in(kwargs, request)
    if user is None and req is not None:
        from crown_nexus.core.security.dependencies import authenticate_request

        user = await authenticate_request(req)
    if user is None:
        raise _unauthenticated()
    return user


def _user_sync(kwargs: dict[str, Any], request: Any) -> Any:
    """:func:`_user_async` for sync endpoints, which FastAPI runs in a worker thread."""
    user, req = _user_in(kwargs, request)
    if user is None and req is not None:
        import anyio.from_thread

        from crown_nexus.core.security.dependencies import authenticate_request

        try:
            user = anyio.from_thread.run(authenticate_request, req)
        except RuntimeError:  # not in a worker thread: only the arguments could name the user
            user = None
    if user is None:
        raise _unauthenticated()
    return user


def _signature_with_request(func: Callable[..., Any]) -> inspect.Signature | None:
    """``func``'s signature plus the hidden keyword-only ``Request`` parameter.

    ``None`` (keep the signature) when it cannot be read or ``func`` takes the request itself.
    """
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    from starlette.requests import HTTPConnection, Request

    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: judge by the written name
        hints = {}
    for param in sig.parameters.values():
        hint = hints.get(param.name, param.annotation)
        if (isinstance(hint, type) and issubclass(hint, HTTPConnection)) or (
            isinstance(hint, str) and hint.rpartition(".")[2] in ("Request", "HTTPConnection")
        ):
            return None  # FastAPI passes one request parameter only: the endpoint's own is used
    params = list(sig.parameters.values())
    hidden = inspect.Parameter(_REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    at = len(params)
    if params and params[-1].kind is inspect.Parameter.VAR_KEYWORD:
        at -= 1
    params.insert(at, hidden)
    return sig.replace(parameters=params)


def _guard(check: Callable[[Any], None]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        signature = _signature_with_request(func)
        # only the decorator that added the hidden parameter removes it (stacked ones share it)
        hidden = signature is not None
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.pop(_REQUEST_PARAM, None) if hidden else None
                check(await _user_async(kwargs, request))
                return await func(*args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.pop(_REQUEST_PARAM, None) if hidden else None
                check(_user_sync(kwargs, request))
                return func(*args, **kwargs)

            wrapper = sync_wrapper
        if signature is not None:
            wrapper.__signature__ = signature
        return wrapper  # type: ignore[no-any-return]

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
