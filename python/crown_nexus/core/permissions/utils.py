"""Small helpers over :class:`PermissionChecker` (guide §11 "Utility Functions")."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from crown_nexus.core.permissions.checker import PermissionChecker
from crown_nexus.core.permissions.models import Permission

__all__ = ["check_owner_permission", "has_all_permissions", "has_any_permission"]


def has_any_permission(user: Any, permissions: Iterable[Permission | str]) -> bool:
    """True when ``user`` holds at least one of ``permissions`` (false for an empty list)."""
    return PermissionChecker.has_permissions(user, permissions, require_all=False)


def has_all_permissions(user: Any, permissions: Iterable[Permission | str]) -> bool:
    """True when ``user`` holds every one of ``permissions`` (true for an empty list)."""
    return PermissionChecker.has_permissions(user, permissions, require_all=True)


def check_owner_permission(user_id: Any, entity_user_id: Any) -> bool:
    """True when both ids are given and equal as strings (``"5"`` owns what ``5`` owns)."""
    if user_id is None or entity_user_id is None:
        return False
    return str(user_id) == str(entity_user_id)
