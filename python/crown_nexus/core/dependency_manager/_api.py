"""The guide's functions over the process-wide registry: register, get, inject, start, stop."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, overload

from crown_nexus.core.dependency_manager._registry import get_registry

__all__ = [
    "clear_override",
    "get_dependency",
    "get_service",
    "has_service",
    "initialize",
    "inject_dependency",
    "override_service",
    "register_service",
    "service_dependency",
    "set_override",
    "shutdown",
    "unregister_service",
    "with_dependencies",
]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def register_service(
    func: F, *, name: str | None = ..., dependencies: Iterable[str] = ...
) -> F: ...
@overload
def register_service(
    func: None = ..., *, name: str | None = ..., dependencies: Iterable[str] = ...
) -> Callable[[F], F]: ...
def register_service(
    func: Any = None, *, name: str | None = None, dependencies: Iterable[str] = ()
) -> Any:
    """Register a service factory or class; usable bare (``@register_service``) or with ``name=``.

    A ``get_<x>`` factory registers as ``"<x>"``, a class under its class name. ``dependencies``
    names services that must start before this one (those it fetches while being built are
    recorded automatically). Called with a non-callable object and ``name=``, registers that
    object itself. Returns the decorated object unchanged.
    """
    deps = tuple(dependencies)

    def decorate(obj: Any) -> Any:
        get_registry().register(obj, name, dependencies=deps)
        return obj

    if func is None:
        return decorate
    return decorate(func)


def get_service(name: str, **kwargs: Any) -> Any:
    """The service registered as ``name``.

    Without keyword arguments: one shared instance (built on first use). With keyword arguments
    (``get_service("notification_service", db=db)``): a fresh instance from the factory. Raises
    ``ServiceNotFoundException`` (listing close names) or ``DependencyCycleException``.
    """
    return get_registry().get(name, **kwargs)


def get_dependency(name: str, **kwargs: Any) -> Any:
    """Same as :func:`get_service` (the guide's name for lookups by class name)."""
    return get_registry().get(name, **kwargs)


def has_service(name: str) -> bool:
    """True when ``name`` is registered (or overridden)."""
    return get_registry().has(name)


def unregister_service(name: str) -> None:
    """Forget the service ``name``."""
    get_registry().unregister(name)


def service_dependency(name: str, **kwargs: Any) -> Callable[[], Any]:
    """A FastAPI dependency returning the service: ``svc = Depends(service_dependency("x"))``."""

    def dependency() -> Any:
        return get_registry().get(name, **kwargs)

    dependency.__name__ = f"service_{name}"
    return dependency


def _injecting(mapping: dict[str, str]) -> Callable[[F], F]:
    """Decorator factory: fill parameters ``mapping`` keys with services ``mapping`` values."""

    def decorate(func: F) -> F:
        sig = inspect.signature(func)
        accepts_kwargs = any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
        )
        for param in mapping:
            if param not in sig.parameters and not accepts_kwargs:
                raise TypeError(f"{func.__qualname__} has no parameter {param!r} to inject into")

        def fill(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            try:
                bound = sig.bind_partial(*args, **kwargs).arguments
            except TypeError:
                bound = kwargs
            for param, service in mapping.items():
                if param not in bound:
                    kwargs[param] = get_registry().get(service)
            return kwargs

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await func(*args, **fill(args, kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(*args, **fill(args, kwargs))

        return wrapper  # type: ignore[return-value]

    return decorate


def inject_dependency(name: str, param: str | None = None) -> Callable[[F], F]:
    """Fill the parameter ``param`` (default: the service's own name) with service ``name``.

    Works on sync and async functions; the service is looked up at call time; an argument the
    caller passes explicitly wins.
    """
    return _injecting({param or name: name})


def with_dependencies(**mapping: str) -> Callable[[F], F]:
    """Fill several parameters with services: ``@with_dependencies(audit="audit_service")``.

    Works on sync and async functions; services are looked up at call time; arguments the
    caller passes explicitly win.
    """
    return _injecting(dict(mapping))


async def initialize(names: Iterable[str] | None = None) -> list[str]:
    """Build and start the registered services in dependency order (see ``ServiceRegistry.initialize``)."""
    return await get_registry().initialize(names)


async def shutdown(drop_instances: bool = False) -> list[str]:
    """Stop started services in reverse order (see ``ServiceRegistry.shutdown``)."""
    return await get_registry().shutdown(drop_instances)


def set_override(name: str, obj: Any) -> None:
    """Make ``get_service(name)`` return ``obj`` until :func:`clear_override`."""
    get_registry().set_override(name, obj)


def clear_override(name: str) -> None:
    """Remove the override of ``name``."""
    get_registry().clear_override(name)


@contextmanager
def override_service(name: str, obj: Any) -> Iterator[Any]:
    """Within the block, ``get_service(name, ...)`` returns ``obj`` (for tests)."""
    with get_registry().override(name, obj) as value:
        yield value
