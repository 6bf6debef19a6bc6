"""``GET /users/me``: the authenticated user's profile (Bearer token or ``X-API-Key``), with the
phone number given at registration decrypted (it is stored encrypted; only its owner sees it).

:func:`install_user_loader` registers the demo's ``User`` table as the permission service's user
loader for the app, so ``get_permission_service(db).get_user_permissions(user_id)`` works there.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.exceptions import ResourceNotFoundException
from crown_nexus.core.permissions import set_user_loader
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_users import User
from crown_nexus.demo.routers.registration import decrypt_phone

__all__ = ["install_user_loader", "router"]

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
async def get_current_user_profile(
    request: Request,
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """The caller's profile, how they authenticated, and the permissions of this credential."""
    found = await db.get(User, user["id"])
    if found is None or not found.is_active:
        raise ResourceNotFoundException(resource_type="User", resource_id=user["id"])
    profile = found.to_response()
    profile["phone"] = decrypt_phone(found, request.app.state.settings)
    profile["auth_method"] = user["auth_method"]
    profile["credential_permissions"] = list(user["permissions"])
    return profile


def install_user_loader(app: Any) -> None:
    """Resolve user ids for the permission service from this app's ``users`` table.

    The loader uses the service's ``db`` when it is an ``AsyncSession``, else a session of the
    app's own sessionmaker; an unknown id is ``None`` (the service answers 404).
    """

    async def load_user(user_id: str, db: Any) -> User | None:
        if isinstance(db, AsyncSession):
            return await db.get(User, user_id)
        async with app.state.sessionmaker() as session:
            found: User | None = await session.get(User, user_id)
            return found

    set_user_loader(load_user, app=app)
