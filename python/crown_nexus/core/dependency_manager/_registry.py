"""The service registry: named factories, singletons, overrides, ordered start-up and shutdown.

Factories are registered once per process (``@register_service`` at import) in a shared catalog;
the *instances* (singletons, overrides, what was started) belong to one app: each
:class:`~crown_nexus.container.AppContainer` gets its own :class:`ServiceRegistry` over that
catalog, and :func:`get_registry` answers the current container's (the default container's in
scripts, workers and tests without an app).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from crown_nexus.container import current_container, default_container
from crown_nexus.core.exceptions import ConfigurationException, ErrorCode

__all__ = [
    "BUILTIN_PROVIDERS",
    "DependencyCycleException",
    "ServiceCatalog",
    "ServiceInitializationException",
    "ServiceNotFoundException",
    "ServiceRegistry",
    "get_registry",
    "service_name_for",
]

logger = logging.getLogger("crown_nexus.core.dependency_manager")

F = TypeVar("F", bound=Callable[..., Any])

#: Services shipped by crown-nexus: asking for one of these names imports its module first,
#: so ``get_service("error_service")`` works without importing ``crown_nexus.core.error``.
BUILTIN_PROVIDERS: dict[str, str] = {
    "error_service": "crown_nexus.core.error",
    "audit_service": "crown_nexus.core.error",
    "security_audit_service": "crown_nexus.core.audit",
    "metrics_service": "crown_nexus.core.metrics",
    "cache_service": "crown_nexus.core.cache",
    "event_service": "crown_nexus.core.events",
    "rate_limiting_service": "crown_nexus.core.rate_limiting",
    "permission_service": "crown_nexus.core.permissions",
    "security_service": "crown_nexus.core.security",
    "validation_service": "crown_nexus.core.validation",
    "pagination_service": "crown_nexus.core.pagination",
    "feature_flag_service": "crown_nexus.core.features",
    "feature_service": "crown_nexus.core.features",  # the name guide §14 fetches
}


class ServiceNotFoundException(ConfigurationException, LookupError):
    """No service is registered under the requested name; the message lists close matches."""

    def __init__(self, name: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.suggestions = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
        message = f"No service registered as {name!r}"
        if self.suggestions:
            message += f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?"
        super().__init__(
            message,
            details={"service": name, "suggestions": self.suggestions},
            code=ErrorCode.CONFIGURATION_ERROR,
        )


class DependencyCycleException(ConfigurationException):
    """Building a service needed itself again; ``cycle`` is the path, e.g. ``["a", "b", "a"]``."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(
            f"Dependency cycle between services: {' -> '.join(cycle)}",
            details={"cycle": self.cycle},
        )


class ServiceInitializationException(ConfigurationException):
    """A service's ``initialize()`` failed at start-up."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        self.error = error
        super().__init__(
            f"Service {name!r} failed to initialize: {type(error).__name__}",
            details={"service": name, "error_type": type(error).__name__},
        )


def service_name_for(obj: Any) -> str:
    """The default name of a registered object.

    A class registers under its class name; a ``get_<x>`` factory as ``"<x>"``; any other
    function under its own name.
    """
    if inspect.isclass(obj):
        return obj.__name__
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"cannot derive a service name for {obj!r}; pass name=")
    if name.startswith("get_") and len(name) > 4:
        return name[4:]
    return name


_resolving: ContextVar[tuple[str, ...]] = ContextVar("crown_nexus_resolving", default=())


def _can_build_without_arguments(factory: Callable[..., Any]) -> bool:
    """True when ``factory()`` needs no argument."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    return all(
        p.default is not inspect.Parameter.empty
        or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def _accepted_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``factory`` accepts (all of them if it takes ``**kwargs``)."""
    if isinstance(factory, _Instance):
        return {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    accepted = {
        k: v
        for k, v in kwargs.items()
        if k in params and params[k].kind is not inspect.Parameter.POSITIONAL_ONLY
    }
    dropped = set(kwargs) - set(accepted)
    if dropped:
        logger.debug("ignoring arguments %s the factory does not accept", sorted(dropped))
    return accepted


async def _call_maybe_async(func: Callable[[], Any]) -> None:
    """Call ``func()`` and await the result when it is awaitable."""
    result = func()
    if inspect.isawaitable(result):
        await result


class ServiceCatalog:
    """Factories and dependencies by name, shared by every registry built over it.

    Registering or unregistering a name drops its built instance in each of those registries,
    so every app builds the new factory's service on next use.
    """

    __slots__ = ("dependencies", "factories", "registries")

    def __init__(self) -> None:
        self.factories: dict[str, Callable[..., Any]] = {}
        self.dependencies: dict[str, set[str]] = {}
        self.registries: weakref.WeakSet[ServiceRegistry] = weakref.WeakSet()


class ServiceRegistry:
    """Named service factories with lazily built singletons.

    ``get(name)`` without keyword arguments returns one shared instance per name (built on first
    use); with keyword arguments it calls the factory afresh each time. Overrides (for tests) win
    over everything. Services built while another one is being built are recorded as its
    dependencies, so :meth:`initialize` starts them first and :meth:`shutdown` stops them last.

    ``catalog``: the factories to share (the process's catalog for app containers); without it
    the registry has factories of its own. ``inherited_overrides``: the overrides of another
    registry that apply here too, below this registry's own (an app's registry inherits those
    set outside any app, so a test's ``override_service`` reaches the apps it builds).
    """

    def __init__(
        self,
        catalog: ServiceCatalog | None = None,
        *,
        inherited_overrides: dict[str, Any] | None = None,
    ) -> None:
        self._catalog = catalog if catalog is not None else ServiceCatalog()
        self._catalog.registries.add(self)
        self._factories: dict[str, Callable[..., Any]] = self._catalog.factories
        self._dependencies: dict[str, set[str]] = self._catalog.dependencies
        self._instances: dict[str, Any] = {}
        self._overrides: dict[str, Any] = {}
        self._inherited: dict[str, Any] = (
            inherited_overrides if inherited_overrides is not None else {}
        )
        self._started: list[str] = []
        self._lock = threading.RLock()

    # --- registration ------------------------------------------------------------------

    def register(
        self,
        obj: Any,
        name: str | None = None,
        *,
        dependencies: Iterable[str] = (),
    ) -> str:
        """Register a factory, a class or a ready instance under ``name``; return the name used.

        Registering a name again replaces the factory and drops its cached instance.
        """
        if name is None:
            name = service_name_for(obj)
        if not isinstance(name, str) or not name:
            raise TypeError("service name must be a non-empty string")
        if inspect.iscoroutinefunction(obj):
            raise TypeError(
                f"service {name!r}: async factories are not supported; register a sync factory "
                "and do asynchronous set-up in the service's initialize()"
            )
        with self._lock:
            for registry in list(self._catalog.registries):
                registry._instances.pop(name, None)
            if callable(obj) and (inspect.isclass(obj) or inspect.isroutine(obj)):
                self._factories[name] = obj
            else:
                self._factories[name] = _Instance(obj)
                self._instances[name] = obj
            self._dependencies[name] = set(dependencies)
        return name

    def unregister(self, name: str) -> None:
        """Forget the service ``name`` (its factory, instance and recorded dependencies)."""
        with self._lock:
            self._factories.pop(name, None)
            for registry in list(self._catalog.registries):
                registry._instances.pop(name, None)
            self._dependencies.pop(name, None)

    def has(self, name: str) -> bool:
        """True when ``name`` is registered or overridden (built-in services count once imported)."""
        return name in self._overrides or name in self._inherited or name in self._factories

    def provide(self, name: str, obj: Any) -> None:
        """Make ``obj`` this registry's instance of the registered service ``name`` (not an
        override: other registries over the same catalog keep building their own)."""
        self._factory(name)  # ServiceNotFoundException for an unknown name
        with self._lock:
            self._instances[name] = obj

    def names(self) -> list[str]:
        """Every registered service name, in registration order."""
        return list(self._factories)

    def dependencies_of(self, name: str) -> set[str]:
        """The services ``name`` declared or used while it was built."""
        return set(self._dependencies.get(name, ()))

    # --- lookup ------------------------------------------------------------------------

    def _factory(self, name: str) -> Callable[..., Any]:
        factory = self._factories.get(name)
        if factory is None and name in BUILTIN_PROVIDERS:
            try:
                importlib.import_module(BUILTIN_PROVIDERS[name])
            except ImportError as exc:
                logger.warning("built-in service module for %r is not importable: %s", name, exc)
            factory = self._factories.get(name)
        if factory is None:
            raise ServiceNotFoundException(
                name, [*self._factories, *self._overrides, *self._inherited]
            )
        return factory

    def get(self, name: str, **kwargs: Any) -> Any:
        """The service ``name``: the override, else the singleton (no kwargs), else a fresh build.

        Keyword arguments the factory does not accept are dropped (``get_service("x", db=db)``
        works for a factory without ``db``); when none remain, the singleton is returned.

        Raises :class:`ServiceNotFoundException` for unknown names and
        :class:`DependencyCycleException` when building it needs itself.
        """
        if name in self._overrides:
            return self._overrides[name]
        inherited = self._inherited
        if inherited and name in inherited:
            return inherited[name]
        return self._build(name, kwargs)

    def singleton(self, name: str) -> Any:
        """This registry's own instance of ``name`` (built on first use), overrides ignored.

        For accessors such as ``get_metrics_service()`` that promise the real shared service.
        """
        found = self._instances.get(name)
        return found if found is not None else self._build(name, {})

    def _build(self, name: str, kwargs: dict[str, Any]) -> Any:
        """The singleton (no kwargs) or a fresh build of ``name``; records the dependency."""
        stack = _resolving.get()
        if stack:
            self._dependencies.setdefault(stack[-1], set()).add(name)
        if not kwargs and name in self._instances:
            return self._instances[name]
        if name in stack:
            raise DependencyCycleException([*stack[stack.index(name) :], name])
        factory = self._factory(name)
        if kwargs:
            kwargs = _accepted_kwargs(factory, kwargs)
            if not kwargs and name in self._instances:
                return self._instances[name]
        token = _resolving.set((*stack, name))
        try:
            if kwargs:
                return factory(**kwargs)
            with self._lock:
                if name in self._instances:
                    return self._instances[name]
                instance = factory()
                self._instances[name] = instance
                return instance
        finally:
            _resolving.reset(token)

    def getter(self, name: str) -> Callable[[], Any]:
        """A zero-argument callable answering exactly what :meth:`get` ``(name)`` answers, for
        hot paths: the override or the built singleton by dict lookups, else :meth:`get`
        (which builds the service, or records the dependency while another one is built)."""
        if self._catalog is _catalog:
            return _scoped_getter(name)
        overrides = self._overrides
        instances = self._instances
        resolving = _resolving
        get = self.get

        def lookup() -> Any:
            if overrides:
                found = overrides.get(name, lookup)
                if found is not lookup:
                    return found
            found = instances.get(name, lookup)
            if found is lookup or resolving.get():
                return get(name)
            return found

        return lookup

    def direct_lookup(self, name: str) -> tuple[str, ContextVar[Any], ContextVar[Any]] | None:
        """What a compiled hot path needs to answer :meth:`getter` ``(name)`` itself in the
        common case: ``(name, container_var, resolving_var)``, or ``None`` for a registry with
        factories of its own (then always call the getter).

        The getter returns ``registry._instances[name]`` when the current container's
        (``container_var.get()``) registry has no overrides (``_overrides`` and ``_inherited``
        both empty dicts), ``name`` is built and ``resolving_var`` is empty (no service is
        being built); in every other state the hot path must call the getter. A registry makes
        those three dicts once and only ever changes them in place, so a hot path may keep them
        per registry. Kept in step with :func:`_scoped_getter` (the equivalence is pinned by
        tests/core/rate_limiting/test_check_rate_limit_impls.py).
        """
        if self._catalog is not _catalog:
            return None
        container_var = getattr(current_container, "__self__", None)
        if not isinstance(container_var, ContextVar):
            return None
        return name, container_var, _resolving

    def instances(self) -> dict[str, Any]:
        """The singletons built so far, by name."""
        return dict(self._instances)

    # --- overrides ---------------------------------------------------------------------

    def set_override(self, name: str, obj: Any) -> None:
        """Make ``get(name, ...)`` return ``obj`` until :meth:`clear_override`."""
        self._overrides[name] = obj

    def clear_override(self, name: str) -> None:
        """Remove the override of ``name`` (if any)."""
        self._overrides.pop(name, None)

    @contextmanager
    def override(self, name: str, obj: Any) -> Iterator[Any]:
        """Within the block, ``get(name, ...)`` returns ``obj``; the previous state comes back after."""
        missing = object()
        previous = self._overrides.get(name, missing)
        self._overrides[name] = obj
        try:
            yield obj
        finally:
            if previous is missing:
                self._overrides.pop(name, None)
            else:
                self._overrides[name] = previous

    # --- lifecycle ---------------------------------------------------------------------

    def _order(self, names: Iterable[str]) -> list[str]:
        """``names`` with each service after the services it depends on (stable otherwise)."""
        ordered: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                raise DependencyCycleException([*path[path.index(n) :], n])
            state[n] = 1
            for dep in sorted(self._dependencies.get(n, ())):
                if dep in self._factories:
                    visit(dep, [*path, n])
            state[n] = 2
            ordered.append(n)

        for n in names:
            visit(n, [])
        return ordered

    async def initialize(self, names: Iterable[str] | None = None) -> list[str]:
        """Build and start services in dependency order; return the names started.

        Without ``names``, every registered service whose factory needs no argument is built.
        A service exposing ``initialize()`` (sync or async) has it called once. A failing
        ``initialize`` raises :class:`ServiceInitializationException`; a service whose factory
        fails to build is logged and skipped (it stays lazy).
        """
        wanted = list(names) if names is not None else list(self._factories)
        buildable: list[str] = []
        for name in wanted:
            if name in self._overrides or name in self._inherited:
                buildable.append(name)
                continue
            factory = self._factory(name)
            if name not in self._instances and not _can_build_without_arguments(factory):
                continue
            try:
                self.get(name)
            except DependencyCycleException:
                raise
            except Exception as exc:
                logger.warning("service %r could not be built at start-up: %r", name, exc)
                continue
            buildable.append(name)
        started: list[str] = []
        for name in self._order(buildable):
            if name in self._started or (name not in buildable and name not in self._instances):
                continue
            service = self.get(name)
            init = getattr(service, "initialize", None)
            if callable(init):
                try:
                    await _call_maybe_async(init)
                except Exception as exc:
                    raise ServiceInitializationException(name, exc) from exc
            self._started.append(name)
            started.append(name)
        return started

    async def shutdown(self, drop_instances: bool = False) -> list[str]:
        """Stop started services in reverse start order (``shutdown()`` or else ``close()``).

        Errors are logged, never raised, so every service gets its turn. Singletons are kept
        (module-level references such as ``cache_service = get_service("cache_service")`` and
        handlers registered on them stay valid) and the next :meth:`initialize` starts them again;
        ``drop_instances=True`` forgets them so the next ``get`` builds fresh ones. Returns the
        names stopped.
        """
        stopped: list[str] = []
        for name in reversed(self._started):
            service = self._overrides.get(
                name, self._inherited.get(name, self._instances.get(name))
            )
            if service is None:
                continue
            stop = getattr(service, "shutdown", None)
            if not callable(stop):
                stop = getattr(service, "close", None)
            if callable(stop):
                try:
                    await _call_maybe_async(stop)
                except Exception as exc:
                    logger.error("service %r failed to shut down: %r", name, exc)
            stopped.append(name)
        with self._lock:
            self._started.clear()
            if drop_instances:
                for name, factory in list(self._factories.items()):
                    if not isinstance(factory, _Instance):
                        self._instances.pop(name, None)
        return stopped

    def reset(self) -> None:
        """Drop every singleton and override (registrations stay). For tests."""
        with self._lock:
            self._overrides.clear()
            self._started.clear()
            for name, factory in list(self._factories.items()):
                if not isinstance(factory, _Instance):
                    self._instances.pop(name, None)


class _Instance:
    """A factory that always returns one ready object (``register(obj, name=...)``)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __call__(self, **kwargs: Any) -> Any:
        return self.obj


#: the process's factories (``@register_service`` at import), shared by every app's registry
_catalog = ServiceCatalog()
_create_lock = threading.RLock()


def _registry_of(container: Any) -> ServiceRegistry:
    """``container``'s registry, made over the process's catalog on first use."""
    registry: ServiceRegistry | None = container.registry
    if registry is None:
        with _create_lock:
            registry = container.registry
            if registry is None:
                inherited = None
                if container is not default_container():
                    inherited = _registry_of(default_container())._overrides
                registry = ServiceRegistry(_catalog, inherited_overrides=inherited)
                container.registry = registry
    return registry


def get_registry() -> ServiceRegistry:
    """The current app's registry behind ``register_service`` / ``get_service``.

    Inside an app built with ``setup_app`` (its requests and lifespan) the app container's; in
    scripts, workers and tests without an app the default container's. All of them share the
    factories registered in this process; each builds and keeps its own instances.
    """
    registry: ServiceRegistry | None = current_container().registry
    return registry if registry is not None else _registry_of(current_container())


def _scoped_getter(name: str) -> Callable[[], Any]:
    """``get_registry().getter(name)``: the current app's service ``name`` per call, by dict
    lookups when it is built (the override first), else through ``get``."""
    current = current_container
    resolving = _resolving

    def lookup() -> Any:
        registry: ServiceRegistry | None = current().registry
        if registry is None:
            registry = _registry_of(current())
        overrides = registry._overrides
        if overrides:
            found = overrides.get(name, lookup)
            if found is not lookup:
                return found
        inherited = registry._inherited
        if inherited:
            found = inherited.get(name, lookup)
            if found is not lookup:
                return found
        found = registry._instances.get(name, lookup)
        if found is lookup or resolving.get():
            return registry.get(name)
        return found

    return lookup
