"""``PermissionChecker``: role/grant checks and the object-level rule (guide §11, SPEC §4).

All checks read the user's mask once and test bits through the registry (``accel.get
("permissions")``). Rules:

* A user holding ``system:admin`` passes every check (it is the superuser permission).
* An inactive user (``is_active`` false) holds nothing; ``None`` as the user holds nothing.
* Asking about a permission that was never registered is denied (and logged), never an error.
* Object level: granted with ``system:admin``, or the resource's admin permission
  (``"<resource>:admin"``), or both holding ``permission`` and owning the object
  (``str(obj.<owner_field>) == str(user.id)``).

A denied check logs a warning and publishes ``permission.denied`` / ``permission.object_denied``
(payload ``user_id``, ``permission``, ``resource_type``, ``resource_id``, ``action``: what the call
was given). Every check records the guide's metrics once: ``permission_checks_total`` /
``permission_check_duration_seconds`` (labels ``permission``, ``granted``) for one permission,
``multiple_permissions_*`` (``require_all``, ``granted``) for several and ``object_permission_*``
(``object_type``, ``permission``, ``granted``) for the object rule — whichever entry point ran the
check (this class, the permission service, the decorators or the utilities). The metrics and event
services are imported and registered on first use when the application has not done so
(:mod:`crown_nexus.core.permissions._telemetry`); failures there never change a decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from crown_nexus.core.exceptions import PermissionDeniedException
from crown_nexus.core.permissions._telemetry import record_check
from crown_nexus.core.permissions._telemetry import service as _registered
from crown_nexus.core.permissions._user import field, plain_permission, user_id, user_mask
from crown_nexus.core.permissions.models import Permission
from crown_nexus.core.permissions.registry import get_registry
from crown_nexus.logging import get_logger

__all__ = ["PermissionChecker", "object_denied", "wait_for_events"]

logger = get_logger("crown_nexus.core.permissions")

_SYSTEM_ADMIN = Permission.SYSTEM_ADMIN.value
_background: set[asyncio.Task[Any]] = set()


def _name(permission: Any) -> str:
    value = plain_permission(permission)
    return value.value if isinstance(value, Permission) else str(value)


def _holds(registry: Any, mask: int, permission: Any) -> bool:
    perm = permission if type(permission) is str else plain_permission(permission)
    try:
        return bool(registry.has(mask, perm))
    except KeyError:
        logger.warning("Permission check for an unregistered permission", permission=str(perm))
        return False


def _is_superuser(registry: Any, mask: int) -> bool:
    return mask != 0 and bool(registry.has(mask, _SYSTEM_ADMIN))


def _finished(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.debug("Permission event was not published", error=repr(task.exception()))


async def wait_for_events() -> None:
    """Wait until every denial event scheduled by a check has been handed to the event service.

    Checks are synchronous, so under a running loop they publish in a background task; await this
    (then ``event_service.wait_for_pending()`` for the handlers) to observe the events in order.
    """
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def _publish(event_name: str, payload: dict[str, Any]) -> None:
    """Publish a denial event if an event service is registered; never raises."""
    try:
        service = _registered("event_service")
        if service is None:
            return
        result = service.publish(event_name=event_name, payload=payload)
        if asyncio.iscoroutine(result):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                result.close()
                return
            task = loop.create_task(result)
            _background.add(task)
            task.add_done_callback(_finished)
    except Exception as exc:  # events must never break an authorization decision
        logger.debug("Could not publish permission event", event_name=event_name, error=repr(exc))


def _resource_of(obj: Any) -> tuple[str, str | None]:
    rid = field(obj, "id")
    return type(obj).__name__, None if rid is None else str(rid)


def _denied(
    event: str,
    user: Any,
    permission: str,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    action: str | None = None,
) -> None:
    uid = user_id(user)
    logger.warning(
        "Permission denied",
        user_id=uid,
        permission=permission,
        resource_type=resource_type,
        resource_id=resource_id,
    )
    _publish(
        event,
        {
            "user_id": uid,
            "permission": permission,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "action": action or permission.partition(":")[2] or None,
        },
    )


def _check_one(
    user: Any,
    permission: Any,
    resource_type: str | None = None,
    resource_id: str | None = None,
    action: str | None = None,
) -> bool:
    """One permission check: the decision, its denial log/event and its metrics."""
    started = time.perf_counter()
    registry = get_registry()
    mask = user_mask(user)
    ok = _holds(registry, mask, permission) or _is_superuser(registry, mask)
    name = _name(permission)
    if not ok:
        _denied(
            "permission.denied",
            user,
            name,
            resource_type=resource_type,
            resource_id=resource_id,
            action=action,
        )
    record_check("permission", started, (name,), ok)
    return ok


class PermissionChecker:
    """Static permission checks on a user (object or dict per SPEC §4)."""

    @staticmethod
    def has_permission(user: Any, permission: Permission | str) -> bool:
        """True when ``user`` holds ``permission`` (or ``system:admin``); a denial is logged."""
        return _check_one(user, permission)

    @staticmethod
    def has_permissions(
        user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> bool:
        """All (``require_all``) or any of ``permissions``; ``system:admin`` passes; denial logged.

        An empty list passes with ``require_all`` and fails without it.
        """
        started = time.perf_counter()
        registry = get_registry()
        mask = user_mask(user)
        perms = list(permissions)
        if _is_superuser(registry, mask) and (perms or require_all):
            ok = True
        else:
            held = [_holds(registry, mask, p) for p in perms]
            ok = all(held) if require_all else any(held)
            if not ok:
                missing = [_name(p) for p, h in zip(perms, held, strict=True) if not h]
                _denied("permission.denied", user, ",".join(missing) or "")
        record_check("multiple_permissions", started, (str(require_all),), ok)
        return ok

    @staticmethod
    def check_object_permission(
        user: Any, obj: Any, permission: Permission | str, owner_field: str = "owner_id"
    ) -> bool:
        """The SPEC §4 object rule (admin, resource admin, or permission + ownership)."""
        started = time.perf_counter()
        registry = get_registry()
        mask = user_mask(user)
        name = _name(permission)
        owner = field(obj, owner_field)
        uid = user_id(user)
        is_owner = owner is not None and uid is not None and str(owner) == uid
        try:
            ok = bool(registry.object_allowed(mask, name, is_owner))
        except KeyError:
            logger.warning("Permission check for an unregistered permission", permission=name)
            ok = _is_superuser(registry, mask)
        if not ok:
            rtype, rid = _resource_of(obj)
            _denied("permission.object_denied", user, name, resource_type=rtype, resource_id=rid)
        record_check("object_permission", started, (type(obj).__name__, name), ok)
        return ok

    @staticmethod
    def ensure_permission(
        user: Any,
        permission: Permission | str,
        resource_type: str | None = None,
        resource_id: Any = None,
        action: str | None = None,
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless :meth:`has_permission`.

        ``resource_type``, ``resource_id`` and ``action`` go into the exception and into the
        ``permission.denied`` event (``action`` defaults to the permission's action part).
        """
        rid = None if resource_id is None else str(resource_id)
        if not _check_one(user, permission, resource_type, rid, action):
            name = _name(permission)
            raise PermissionDeniedException(
                message=f"Permission denied: {name} required",
                action=action,
                resource_type=resource_type,
                permission=name,
                details={"resource_id": rid},
            )

    @staticmethod
    def ensure_permissions(
        user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless :meth:`has_permissions`."""
        perms = [_name(p) for p in permissions]
        if not PermissionChecker.has_permissions(user, perms, require_all=require_all):
            joiner = " and " if require_all else " or "
            raise PermissionDeniedException(
                message=f"Permission denied: {joiner.join(perms)} required",
                permission=",".join(perms),
                details={"required": perms, "require_all": require_all},
            )

    @staticmethod
    def ensure_object_permission(
        user: Any, obj: Any, permission: Permission | str, owner_field: str = "owner_id"
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless :meth:`check_object_permission`."""
        if not PermissionChecker.check_object_permission(user, obj, permission, owner_field):
            raise object_denied(obj, permission)


def object_denied(obj: Any, permission: Permission | str) -> PermissionDeniedException:
    """The 403 raised when the object rule denies ``permission`` on ``obj``."""
    name = _name(permission)
    rtype, rid = _resource_of(obj)
    return PermissionDeniedException(
        message=f"Permission denied: {name} on this {rtype}",
        action=name.partition(":")[2] or None,
        resource_type=rtype,
        permission=name,
        details={"resource_id": rid},
    )
