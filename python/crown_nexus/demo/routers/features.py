"""Feature flag endpoints of the reference service (guide §14), built on the public API only.

* ``GET /features`` (``system:admin``): every known flag and the rule in force.
* ``PUT /features/{name}`` (``system:admin``): set a flag's rule; the body holds the
  :class:`~crown_nexus.core.features.FlagRule` fields (``enabled``, ``percentage``, ``allow``,
  ``deny``, ``environments``, ``expires_at``, ...). A bad rule is a 422, an unknown flag a 404.
* ``DELETE /features/{name}`` (``system:admin``): drop the rule (back to the flag's default).
* ``GET /features/{name}``: evaluate a flag for the caller: an authenticated caller is a
  ``USER`` whose role is its group; an anonymous one gets the ``GLOBAL`` answer.

The service registers its own flag, ``new_checkout``, as applications do with ``register_flag``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends

from crown_nexus.core.features import FeatureTarget, get_feature_service, register_flag
from crown_nexus.core.permissions.decorators import require_admin
from crown_nexus.core.security.dependencies import (
    get_current_user_with_permissions,
    get_optional_user,
)

__all__ = ["NEW_CHECKOUT", "router"]

#: the reference service's own flag
NEW_CHECKOUT = register_flag("new_checkout", description="The reference service's new checkout")

router = APIRouter(prefix="/features", tags=["demo: feature flags"])


@router.get("")
@require_admin()
async def list_flags(
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Every known flag with the rule in force (``system:admin`` only)."""
    service = get_feature_service()
    return {
        "flags": [rule.to_json() for rule in await service.list_flags()],
        "store": service.status(),
    }


@router.put("/{name}")
@require_admin()
async def set_flag(
    name: str,
    rule: dict[str, Any] = Body(...),
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Set the rule of flag ``name`` (``system:admin`` only); returns the stored rule."""
    stored = await get_feature_service().set_flag(name, rule)
    return stored.to_json()


@router.delete("/{name}")
@require_admin()
async def delete_flag(
    name: str,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Drop the rule of flag ``name`` (``system:admin`` only); it goes back to its default."""
    deleted = await get_feature_service().delete_flag(name)
    return {"flag": name, "deleted": deleted}


@router.get("/{name}")
async def evaluate_flag(
    name: str, user: dict[str, Any] | None = Depends(get_optional_user)
) -> dict[str, Any]:
    """Whether flag ``name`` is on for the caller (anonymous callers: the global answer)."""
    service = get_feature_service()
    if user is None:
        result = service.evaluate(name, FeatureTarget.GLOBAL)
        target = FeatureTarget.GLOBAL
    else:
        role = user.get("role")
        groups = [str(getattr(role, "value", role))] if role else []
        result = service.evaluate(name, FeatureTarget.USER, str(user["id"]), groups=groups)
        target = FeatureTarget.USER
    return {
        "flag": result.flag,
        "enabled": result.enabled,
        "value": result.value,
        "reason": result.reason,
        "target": target.value,
    }
