"""The permission registry of each app: the shipped defaults plus what the application adds.

The registry class comes from ``accel.get("permissions")`` (Cython when built, else pure Python).
Applications call :func:`register_permission` / :func:`register_role` at start-up; checks read
the registry through :func:`get_registry`. Each app container has its own registry: the default
container's (scripts, and registrations made at import, outside any app) is copied into an app's
on the app's first use, so what code declares serves every app while roles an app defines while
it runs stay in that app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from crown_nexus import accel
from crown_nexus.container import AppContainer, current_container, default_container
from crown_nexus.core.permissions.models import ROLE_PERMISSIONS, Permission

__all__ = [
    "UnknownPermissionError",
    "UnknownRoleError",
    "build_default_registry",
    "get_registry",
    "register_permission",
    "register_role",
    "reset_registry",
]

_impl = accel.get("permissions")
UnknownPermissionError: type[KeyError] = _impl.UnknownPermissionError
UnknownRoleError: type[KeyError] = _impl.UnknownRoleError


def build_default_registry(kind: str | None = None) -> Any:
    """A new registry holding every :class:`Permission` and the roles of ``ROLE_PERMISSIONS``.

    ``kind`` (``"pure"``/``"cython"``) picks an implementation; default: the one accel chose.
    """
    impl = _impl if kind is None else accel.available("permissions")[kind]
    registry = impl.PermissionRegistry()
    for perm in Permission:
        registry.register_permission(perm.value)
    for role, perms in ROLE_PERMISSIONS.items():
        registry.register_role(role.value, sorted(p.value for p in perms))
    return registry


_lock = threading.RLock()
_KEY = "permissions.registry"


def _copy(source: Any) -> Any:
    """A new registry of ``source``'s class with its permissions (same bits) and roles."""
    registry = type(source)()
    for name in source.permissions():
        registry.register_permission(name)
    for role in source.roles():
        registry.register_role(role, sorted(source.role_permissions(role)), source.inherits(role))
    return registry


def _registry_of(container: AppContainer) -> Any:
    """``container``'s registry, made on first use (a copy of the default container's)."""
    with _lock:
        found = container.state.get(_KEY)
        if found is None:
            default = default_container()
            if container is default:
                found = build_default_registry()
            else:
                found = _copy(_registry_of(default))
            container.state[_KEY] = found
        return found


def get_registry() -> Any:
    """The registry the current app's permission checks use (a ``PermissionRegistry``)."""
    found = current_container().state.get(_KEY)
    return found if found is not None else _registry_of(current_container())


def register_permission(name: str) -> int:
    """Register an application permission ``"<resource>:<action>"``; return its bit.

    Idempotent. Raises ``TypeError``/``ValueError`` for a malformed name.
    """
    return int(get_registry().register_permission(name))


def register_role(name: str, permissions: Iterable[str], inherits: Iterable[str] = ()) -> int:
    """Define (or redefine) role ``name``: its ``permissions`` plus those of ``inherits``.

    New permission names are registered. Returns the role's mask. Raises ``UnknownRoleError`` for
    an inherited role that does not exist and ``ValueError`` for an inheritance cycle.
    """
    return int(get_registry().register_role(name, permissions, inherits))


def reset_registry(kind: str | None = None) -> Any:
    """Throw away the current container's application registrations and go back to the
    defaults (for tests).

    ``kind`` (``"pure"``/``"cython"``) makes checks use that implementation from now on.
    """
    with _lock:
        registry = build_default_registry(kind)
        current_container().state[_KEY] = registry
    return registry
