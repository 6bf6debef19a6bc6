"""``PermissionService`` (guide §11): async checks with metrics, user permission lookup, caching.

``get_permission_service(db=None)`` returns a service; it is registered as ``"permission_service"``
(``get_service("permission_service", db=db)`` builds one bound to ``db``). The checks are those
of :class:`~crown_nexus.core.permissions.checker.PermissionChecker`, plus the guide's metrics.

``get_user_permissions(user_or_id)`` takes a user (object or dict) or a user id. An id is turned
into a user by the loader set with :func:`set_user_loader` (``loader(user_id, db)``, sync or
async, returning the user or ``None``). Results are cached under ``permissions:user:{user_id}``
(in the cache service when one is registered, else in process) until
:meth:`PermissionService.invalidate_permissions_cache` or the TTL.

The checks take a user id too: it is resolved through that same cached lookup (a cache hit counts
``permission_check_cache_hits_total``), so checking by id costs no user load while cached.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any

from crown_nexus.core.exceptions import ConfigurationException, ResourceNotFoundException
from crown_nexus.core.permissions._user import user_id as _user_id
from crown_nexus.core.permissions._user import user_mask
from crown_nexus.core.permissions.checker import PermissionChecker, object_denied
from crown_nexus.core.permissions.models import Permission, PermissionName
from crown_nexus.core.permissions.registry import get_registry
from crown_nexus.logging import get_logger

__all__ = [
    "PermissionService",
    "UserLoader",
    "get_permission_service",
    "set_user_loader",
]

logger = get_logger("crown_nexus.core.permissions")

UserLoader = Callable[[str, Any], Any]

#: seconds a user's permission list stays cached
CACHE_TTL = 300.0

_state: dict[str, Any] = {"loader": None}
_local_cache: dict[str, tuple[float, list[str]]] = {}


def set_user_loader(loader: UserLoader | None) -> None:
    """Set how a user id becomes a user: ``loader(user_id, db)`` (sync or async) or ``None``."""
    _state["loader"] = loader


def _cache_key(user_id: str) -> str:
    return f"permissions:user:{user_id}"


def _as_permission(name: str) -> Permission | PermissionName:
    try:
        return Permission(name)
    except ValueError:
        return PermissionName(name)


def _service(name: str) -> Any:
    from crown_nexus.core.dependency_manager import get_registry as services

    reg = services()
    if not reg.has(name):
        return None
    try:
        return reg.get(name)
    except Exception:
        return None


def _label(value: Any) -> str:
    return str(getattr(value, "value", value))


def _is_id(user: Any) -> bool:
    """True when ``user`` is a user id (str, int or UUID) rather than a user object or dict."""
    return isinstance(user, (str, int)) or type(user).__name__ == "UUID"


class PermissionService:
    """Async permission checks with metrics; user permission lookup with caching."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    # -- metrics --------------------------------------------------------------------
    @staticmethod
    def _record(prefix: str, started: float, labels: dict[str, str]) -> None:
        metrics = _service("metrics_service")
        if metrics is None:
            return
        try:
            metrics.increment_counter(f"{prefix}_checks_total", labels=labels)
            keep = {k: v for k, v in labels.items() if k != "granted"}
            metrics.observe_histogram(
                f"{prefix}_check_duration_seconds", time.perf_counter() - started, labels=keep
            )
        except Exception as exc:  # metrics never break an authorization decision
            logger.debug("Could not record permission metrics", error=repr(exc))

    # -- checks ---------------------------------------------------------------------
    async def has_permission(self, user: Any, permission: Permission | str) -> bool:
        """True when ``user`` holds ``permission`` (see ``PermissionChecker.has_permission``)."""
        t0 = time.perf_counter()
        user = await self._as_user(user)
        ok = PermissionChecker.has_permission(user, permission)
        self._record("permission", t0, {"permission": _label(permission), "granted": str(ok)})
        return ok

    async def has_permissions(
        self, user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> bool:
        """All (``require_all``) or any of ``permissions``."""
        t0 = time.perf_counter()
        user = await self._as_user(user)
        ok = PermissionChecker.has_permissions(user, permissions, require_all=require_all)
        self._record(
            "multiple_permissions",
            t0,
            {"require_all": str(require_all), "granted": str(ok)},
        )
        return ok

    async def check_object_permission(
        self, user: Any, obj: Any, permission: Permission | str, owner_field: str = "owner_id"
    ) -> bool:
        """The object-level rule (see ``PermissionChecker.check_object_permission``)."""
        t0 = time.perf_counter()
        user = await self._as_user(user)
        ok = PermissionChecker.check_object_permission(user, obj, permission, owner_field)
        self._record(
            "object_permission",
            t0,
            {
                "object_type": type(obj).__name__,
                "permission": _label(permission),
                "granted": str(ok),
            },
        )
        return ok

    async def ensure_permission(
        self,
        user: Any,
        permission: Permission | str,
        resource_type: str | None = None,
        resource_id: Any = None,
        action: str | None = None,
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless ``user`` holds ``permission``."""
        t0 = time.perf_counter()
        user = await self._as_user(user)
        try:
            PermissionChecker.ensure_permission(
                user, permission, resource_type, resource_id, action
            )
        except Exception:
            self._record("permission", t0, {"permission": _label(permission), "granted": "False"})
            raise
        self._record("permission", t0, {"permission": _label(permission), "granted": "True"})

    async def ensure_permissions(
        self, user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless all (or any) are held."""
        t0 = time.perf_counter()
        user = await self._as_user(user)
        labels = {"require_all": str(require_all)}
        try:
            PermissionChecker.ensure_permissions(user, permissions, require_all=require_all)
        except Exception:
            self._record("multiple_permissions", t0, {**labels, "granted": "False"})
            raise
        self._record("multiple_permissions", t0, {**labels, "granted": "True"})

    async def ensure_object_permission(
        self, user: Any, obj: Any, permission: Permission | str, owner_field: str = "owner_id"
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless the object rule grants it."""
        if not await self.check_object_permission(user, obj, permission, owner_field):
            raise object_denied(obj, permission)

    # -- lookup and cache -----------------------------------------------------------
    async def _as_user(self, user: Any) -> Any:
        """``user`` itself, or for a user id ``{"id", "permissions"}`` from the cached lookup."""
        if not _is_id(user):
            return user
        uid = str(user)
        names = await self._cached(uid, "permission_check_cache_hits_total")
        if names is None:
            names = get_registry().permissions_of(user_mask(await self._load_user(uid)))
            await self._store(uid, names)
        return {"id": uid, "role": None, "permissions": names}

    async def _load_user(self, user_id: str) -> Any:
        loader = _state["loader"]
        if loader is None:
            raise ConfigurationException(
                message="No user loader configured for the permission service",
                config_key="permissions.user_loader",
            )
        user = loader(user_id, self.db)
        if inspect.isawaitable(user):
            user = await user
        if user is None:
            raise ResourceNotFoundException(resource_type="User", resource_id=user_id)
        return user

    async def get_user_permissions(self, user: Any) -> list[Permission | PermissionName]:
        """Every permission ``user`` (a user, or a user id) holds, in registry order.

        Shipped permissions come back as :class:`Permission` members, the application's own as
        :class:`PermissionName` (both have ``.value``). Ids are resolved by the user loader and
        cached; raises ``ConfigurationException`` without a loader and
        ``ResourceNotFoundException`` when the loader finds nobody.
        """
        t0 = time.perf_counter()
        if _is_id(user):
            uid = str(user)
            names = await self._cached(uid)
            if names is None:
                loaded = await self._load_user(uid)
                names = get_registry().permissions_of(user_mask(loaded))
                await self._store(uid, names)
        else:
            names = get_registry().permissions_of(user_mask(user))
        self._record_duration(t0)
        return [_as_permission(n) for n in names]

    @staticmethod
    def _record_duration(started: float) -> None:
        metrics = _service("metrics_service")
        if metrics is not None:
            try:
                metrics.observe_histogram(
                    "get_user_permissions_duration_seconds", time.perf_counter() - started
                )
            except Exception as exc:
                logger.debug("Could not record permission metrics", error=repr(exc))

    async def _cached(
        self, uid: str, hit_counter: str = "user_permissions_cache_hits_total"
    ) -> list[str] | None:
        cache = _service("cache_service")
        names: list[str] | None = None
        if cache is not None:
            try:
                value = await cache.get(_cache_key(uid))
                names = list(value) if value is not None else None
            except Exception as exc:
                logger.debug("Permission cache read failed", error=repr(exc))
        else:
            hit = _local_cache.get(uid)
            if hit is not None and hit[0] > time.monotonic():
                names = list(hit[1])
        if names is not None:
            metrics = _service("metrics_service")
            if metrics is not None:
                try:
                    metrics.increment_counter(hit_counter)
                except Exception as exc:
                    logger.debug("Could not record permission metrics", error=repr(exc))
        return names

    async def _store(self, uid: str, names: list[str]) -> None:
        cache = _service("cache_service")
        if cache is not None:
            try:
                await cache.set(_cache_key(uid), list(names), ttl=CACHE_TTL)
            except Exception as exc:
                logger.debug("Permission cache write failed", error=repr(exc))
            return
        _local_cache[uid] = (time.monotonic() + CACHE_TTL, list(names))

    async def invalidate_permissions_cache(self, user_id: Any) -> None:
        """Forget the cached permissions of ``user_id`` (call after its role or grants change)."""
        uid = str(_user_id(user_id) if not isinstance(user_id, (str, int)) else user_id)
        _local_cache.pop(uid, None)
        cache = _service("cache_service")
        if cache is not None:
            try:
                await cache.delete(_cache_key(uid))
            except Exception as exc:
                logger.debug("Permission cache delete failed", error=repr(exc))


def get_permission_service(db: Any = None) -> PermissionService:
    """A :class:`PermissionService` (bound to ``db`` when given)."""
    return PermissionService(db)
