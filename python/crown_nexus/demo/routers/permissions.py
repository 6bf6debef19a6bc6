"""Permission endpoints of the reference service (guide §11), built on the public API only.

``GET /permissions/me`` lists the caller's permissions, ``GET /permissions/check/{permission}``
answers one check, ``GET /permissions/roles`` (``system:admin`` only) shows every role.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from crown_nexus import accel
from crown_nexus.core.exceptions import ResourceNotFoundException
from crown_nexus.core.permissions import get_permission_service, get_registry, require_admin
from crown_nexus.core.security.dependencies import get_current_user_with_permissions

__all__ = ["router"]

router = APIRouter(prefix="/permissions", tags=["permissions"])


@router.get("/me")
async def my_permissions(
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Every permission the caller holds (role plus grants) and which implementation checked."""
    permissions = await get_permission_service().get_user_permissions(current_user)
    return {
        "user_id": current_user["id"],
        "role": current_user.get("role"),
        "permissions": [p.value for p in permissions],
        "implementation": accel.implementations()["permissions"],
    }


@router.get("/check/{permission}")
async def check_permission(
    permission: str,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Whether the caller holds ``permission``; 404 for a permission that does not exist."""
    if permission not in get_registry():
        raise ResourceNotFoundException(resource_type="Permission", resource_id=permission)
    granted = await get_permission_service().has_permission(current_user, permission)
    return {"permission": permission, "granted": granted}


@router.get("/roles")
@require_admin()
async def list_roles(
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Every role and its permissions (inherited ones included); ``system:admin`` only."""
    registry = get_registry()
    return {"roles": {role: sorted(registry.role_permissions(role)) for role in registry.roles()}}
