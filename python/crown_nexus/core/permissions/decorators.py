"""Endpoint decorators: ``require_permission``, ``require_permissions``, ``require_admin``.

Put them under the route decorator (``@router.post(...)`` then ``@require_permission(...)``).

Where the caller comes from (SPEC §5: never from an endpoint argument because of its name):

* Served by FastAPI (a request is present), the caller is, in order: the value of a parameter
  named ``current_user`` or ``user`` **declared as a dependency** (``= Depends(fn)`` or
  ``Annotated[..., Depends(fn)]`` with ``fn`` a function, not a class, so FastAPI can only fill it
  from the application's own authentication dependency, never from the body or query); the user
  the security dependencies stored on the request (``request.state.user``, set by
  ``get_current_user_id`` & co., or ``scope["user"]``); the request's own credentials (bearer token
  or API key, read with ``crown_nexus.core.security.dependencies.authenticate_request``). A body or
  query parameter named ``user`` is never looked at.
* Called directly from code (no request among the arguments), the ``current_user`` keyword
  argument names the caller: the code calling the function vouches for it.

The wrapped function keeps its signature, plus one hidden keyword-only ``Request`` parameter
through which FastAPI hands the decorator the request (it is not part of the API schema and never
reaches the endpoint). No user gives ``AuthenticationException`` (401); a user without the
permission gives ``PermissionDeniedException`` (403).
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
from crown_nexus.core.security.dependencies import authenticate_request

__all__ = ["require_admin", "require_permission", "require_permissions"]

F = TypeVar("F", bound=Callable[..., Any])

_USER_KWARGS = ("current_user", "user")

#: the only keyword that names the caller of a direct (non-HTTP) call
_DIRECT_KWARG = "current_user"


#: the hidden parameter through which FastAPI passes the request to the decorator's wrapper
_REQUEST_PARAM = "crown_nexus_permission_request__"


def _is_request(value: Any) -> bool:
    return isinstance(getattr(value, "scope", None), dict) and hasattr(value, "state")


def _is_user(value: Any) -> bool:
    return value is not None and (isinstance(value, dict) or hasattr(value, "role"))


def _declared_dependency(param: inspect.Parameter, hint: Any) -> bool:
    """True when FastAPI fills ``param`` only by calling a dependency function.

    ``= Depends(fn)`` / ``= Security(fn)`` or ``Annotated[T, Depends(fn)]`` with ``fn`` a function;
    a class dependency (``Depends()`` or ``Depends(Model)``) is built from request parameters, so
    it does not count.
    """
    from fastapi import params

    markers = [param.default]
    annotated = hint if typing.get_origin(hint) is typing.Annotated else param.annotation
    if typing.get_origin(annotated) is typing.Annotated:
        markers.extend(typing.get_args(annotated)[1:])
    for marker in markers:
        if isinstance(marker, params.Depends):
            dependency = marker.dependency
            if callable(dependency) and not isinstance(dependency, type):
                return True
    return False


def _trusted_user_params(func: Callable[..., Any]) -> tuple[str, ...]:
    """The names among ``current_user``/``user`` that ``func`` declares as dependencies."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return ()
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable annotations: judge by what is written
        hints = {}
    return tuple(
        name
        for name in _USER_KWARGS
        if name in sig.parameters
        and _declared_dependency(sig.parameters[name], hints.get(name, sig.parameters[name].annotation))
    )


def _user_in(
    kwargs: dict[str, Any], request: Any, trusted: tuple[str, ...]
) -> tuple[Any, Any]:
    """``(user, request)``: the caller established by a dependency or the request, if any.

    Without any request (a direct call from code), ``current_user`` names the caller.
    """
    requests = [request] if request is not None else []
    requests += [v for v in kwargs.values() if v is not request and _is_request(v)]
    if not requests:
        user = kwargs.get(_DIRECT_KWARG)
        return (user if _is_user(user) else None), None
    for name in trusted:
        user = kwargs.get(name)
        if _is_user(user):
            return user, requests[0]
    for req in requests:
        user = getattr(req.state, "user", None) or req.scope.get("user")
        if _is_user(user):
            return user, req
    return None, requests[0]


def _unauthenticated() -> AuthenticationException:
    return AuthenticationException(message="Authentication required")


async def _user_async(kwargs: dict[str, Any], request: Any, trusted: tuple[str, ...]) -> Any:
    """The caller (see the module docstring), else the request's bearer token / API key."""
    user, req = _user_in(kwargs, request, trusted)
    if user is None and req is not None:
        user = await authenticate_request(req)
    if user is None:
        raise _unauthenticated()
    return user


def _user_sync(kwargs: dict[str, Any], request: Any, trusted: tuple[str, ...]) -> Any:
    """:func:`_user_async` for sync endpoints, which FastAPI runs in a worker thread."""
    user, req = _user_in(kwargs, request, trusted)
    if user is None and req is not None:
        import anyio.from_thread

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
        trusted = _trusted_user_params(func)
        # only the decorator that added the hidden parameter removes it (stacked ones share it)
        hidden = signature is not None
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.pop(_REQUEST_PARAM, None) if hidden else None
                check(await _user_async(kwargs, request, trusted))
                return await func(*args, **kwargs)

            wrapper: Any = async_wrapper
        else:

            @functools.wraps(func)
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                request = kwargs.pop(_REQUEST_PARAM, None) if hidden else None
                check(_user_sync(kwargs, request, trusted))
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
