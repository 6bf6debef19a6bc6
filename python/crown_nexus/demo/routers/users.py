"""``GET /users/me``: the authenticated user's profile (Bearer token or ``X-API-Key``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.exceptions import ResourceNotFoundException
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_users import User

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def get_current_user_profile(
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """The caller's profile, how they authenticated, and the permissions of this credential."""
    found = await db.get(User, user["id"])
    if found is None or not found.is_active:
        raise ResourceNotFoundException(resource_type="User", resource_id=user["id"])
    profile = found.to_response()
    profile["auth_method"] = user["auth_method"]
    profile["credential_permissions"] = list(user["permissions"])
    return profile
