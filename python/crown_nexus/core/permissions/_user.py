"""Reading a user (SPEC §4: an object or dict with ``id``, ``role``, ``permissions``, ``is_active``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

from crown_nexus.core.permissions.registry import get_registry

__all__ = ["CREDENTIAL_OWNER", "field", "plain_permission", "user_id", "user_mask"]


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for mappings, ``getattr(obj, name)`` otherwise; ``default`` when absent."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def plain_permission(value: Any) -> Any:
    """A permission as the registry takes it: enum members of any kind become their value."""
    if isinstance(value, Enum) and not isinstance(value, str):
        return value.value
    return value


def user_id(user: Any) -> str | None:
    """The user's id as a string, or ``None``."""
    uid = field(user, "id")
    return None if uid is None else str(uid)


_PLAIN_CONTAINERS = (list, tuple, set, frozenset)


#: the key under which a delegated credential (an API key) names the user it acts for
CREDENTIAL_OWNER = "credential_owner"


def user_mask(user: Any) -> int:
    """The user's permission mask: role mask | extra grants; ``0`` when inactive or ``None``.

    A credential that acts for someone (an API key: SPEC §5) carries its owner under
    ``credential_owner``; its mask is then bounded by the owner's at the time of the check, so a
    key never grants more than its owner still holds (nothing once the owner is inactive). An
    owner holding ``system:admin`` holds everything, so it bounds nothing.
    """
    if user is None:
        return 0
    if type(user) is dict and CREDENTIAL_OWNER in user:
        mask = _own_mask(user)
        owner_mask = user_mask(user[CREDENTIAL_OWNER])
        registry = get_registry()
        if owner_mask and registry.has(owner_mask, "system:admin"):
            return mask
        return mask & owner_mask
    return _own_mask(user)


def _own_mask(user: Any) -> int:
    if type(user) is dict:
        active = user.get("is_active", True)
        role = user.get("role")
        perms = user.get("permissions")
    else:
        active = field(user, "is_active", True)
        role = field(user, "role")
        perms = field(user, "permissions")
    if active is None:
        active = True
    if role is not None and type(role) is not str:
        role = plain_permission(role)
    if perms is not None:
        if type(perms) not in _PLAIN_CONTAINERS:
            perms = (
                list(perms)
                if isinstance(perms, Iterable) and not isinstance(perms, (str, bytes))
                else None
            )
        if perms:
            for p in perms:
                if type(p) is not str:
                    perms = [plain_permission(q) for q in perms]
                    break
    return int(get_registry().user_mask(role, perms, bool(active)))
