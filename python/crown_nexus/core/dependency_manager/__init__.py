"""Service registration, lookup and injection (guide §4).

``register_service`` records factories by name, ``get_service`` returns shared instances (or fresh
ones when given keyword arguments), ``inject_dependency``/``with_dependencies`` fill function
parameters, ``initialize``/``shutdown`` start and stop services in dependency order (done by
``setup_app`` in the app's lifespan) and ``override_service`` swaps a service in tests.
"""

from __future__ import annotations

from crown_nexus.core.dependency_manager._api import (
    clear_override,
    get_dependency,
    get_service,
    has_service,
    initialize,
    inject_dependency,
    override_service,
    register_service,
    service_dependency,
    set_override,
    shutdown,
    unregister_service,
    with_dependencies,
)
from crown_nexus.core.dependency_manager._registry import (
    BUILTIN_PROVIDERS,
    DependencyCycleException,
    ServiceInitializationException,
    ServiceNotFoundException,
    ServiceRegistry,
    get_registry,
    service_name_for,
)

__all__ = [
    "BUILTIN_PROVIDERS",
    "DependencyCycleException",
    "ServiceInitializationException",
    "ServiceNotFoundException",
    "ServiceRegistry",
    "clear_override",
    "get_dependency",
    "get_registry",
    "get_service",
    "has_service",
    "initialize",
    "inject_dependency",
    "override_service",
    "register_service",
    "service_dependency",
    "service_name_for",
    "set_override",
    "shutdown",
    "unregister_service",
    "with_dependencies",
]
