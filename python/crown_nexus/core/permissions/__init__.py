"""Permission system (guide §11, SPEC §4): permissions as bits, roles as masks, checks.

``Permission``/``UserRole``/``ROLE_PERMISSIONS`` are the shipped defaults; applications add their
own with :func:`register_permission` and :func:`register_role`. :class:`PermissionChecker` checks
users (objects or dicts with ``id``, ``role``, ``permissions``, ``is_active``), the decorators guard
endpoints, and :func:`get_permission_service` (registered as ``"permission_service"``) adds async
checks with metrics and cached permission lookups. The bit tests run in Cython when it is built.
:class:`ObjectRule` / :func:`permission_filter` (:mod:`.sql`, imported on first use) apply the
object rule to one object and, as the same rule, to an SQLAlchemy ``select`` (listings).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from crown_nexus.core.permissions.checker import PermissionChecker, wait_for_events
from crown_nexus.core.permissions.decorators import (
    require_admin,
    require_permission,
    require_permissions,
)
from crown_nexus.core.permissions.models import (
    ROLE_PERMISSIONS,
    Permission,
    PermissionName,
    UserRole,
)
from crown_nexus.core.permissions.registry import (
    UnknownPermissionError,
    UnknownRoleError,
    build_default_registry,
    get_registry,
    register_permission,
    register_role,
    reset_registry,
)
from crown_nexus.core.permissions.service import (
    PermissionService,
    get_permission_service,
    set_user_loader,
)
from crown_nexus.core.permissions.utils import (
    check_owner_permission,
    has_all_permissions,
    has_any_permission,
)

if TYPE_CHECKING:
    from crown_nexus.core.permissions.sql import (
        ObjectRule,
        ShareRelation,
        permission_filter,
    )

__all__ = [
    "ROLE_PERMISSIONS",
    "ObjectRule",
    "Permission",
    "PermissionChecker",
    "PermissionName",
    "PermissionService",
    "ShareRelation",
    "UnknownPermissionError",
    "UnknownRoleError",
    "UserRole",
    "build_default_registry",
    "check_owner_permission",
    "get_permission_service",
    "get_registry",
    "has_all_permissions",
    "has_any_permission",
    "permission_filter",
    "register_permission",
    "register_role",
    "require_admin",
    "require_permission",
    "require_permissions",
    "reset_registry",
    "set_user_loader",
    "wait_for_events",
]

_SQL_NAMES = frozenset({"ObjectRule", "ShareRelation", "permission_filter"})


def __getattr__(name: str) -> Any:
    """Import the SQL form of the object rule (it needs SQLAlchemy) on first access (PEP 562)."""
    if name in _SQL_NAMES:
        value = getattr(importlib.import_module("crown_nexus.core.permissions.sql"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register() -> None:
    from crown_nexus.core.dependency_manager import get_registry as services
    from crown_nexus.core.dependency_manager import register_service

    if "permission_service" not in services().names():
        register_service(get_permission_service)


_register()
