"""The process-wide permission registry: the shipped defaults plus what the application adds.

The registry class comes from ``accel.get("permissions")`` (Cython when built, else pure Python).
Applications call :func:`register_permission` / :func:`register_role` at start-up; checks read
the registry through :func:`get_registry`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from crown_nexus import accel
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


_lock = threading.Lock()
_registry: Any = build_default_registry()


def get_registry() -> Any:
    """The registry every permission check uses (a ``PermissionRegistry``)."""
    return _registry


def register_permission(name: str) -> int:
    """Register an application permission ``"<resource>:<action>"``; return its bit.

    Idempotent. Raises ``TypeError``/``ValueError`` for a malformed name.
    """
    return int(_registry.register_permission(name))


def register_role(name: str, permissions: Iterable[str], inherits: Iterable[str] = ()) -> int:
    """Define (or redefine) role ``name``: its ``permissions`` plus those of ``inherits``.

    New permission names are registered. Returns the role's mask. Raises ``UnknownRoleError`` for
    an inherited role that does not exist and ``ValueError`` for an inheritance cycle.
    """
    return int(_registry.register_role(name, permissions, inherits))


def reset_registry(kind: str | None = None) -> Any:
    """Throw away application registrations and go back to the defaults (for tests).

    ``kind`` (``"pure"``/``"cython"``) makes checks use that implementation from now on.
    """
    global _registry
    with _lock:
        _registry = build_default_registry(kind)
    return _registry
