"""``PermissionService`` (guide §11): async checks with metrics, user permission lookup, caching.

``get_permission_service(db=None)`` returns a service; it is registered as ``"permission_service"``
(``get_service("permission_service", db=db)`` builds one bound to ``db``). The checks are those
of :class:`~crown_nexus.core.permissions.checker.PermissionChecker`, plus the guide's metrics.

``get_user_permissions(user_or_id)`` takes a user (object or dict) or a user id. An id is turned
into a user, in this order, by:

1. the user loader the current request's app registered with ``set_user_loader(loader, app=app)``
   (the reference service registers one for its ``User`` table);
2. the process-wide loader registered with ``set_user_loader(loader)``;
3. the current request's authenticated user (``request.state.user``, set by the security
   dependencies) when its id is that id — so a request can look up its own caller's permissions
   with no loader at all.

A loader is ``loader(user_id: str, db) -> user | None`` (sync or ``async``; ``db`` is the session
the service was built with, possibly ``None``); it returns a user object or dict (SPEC §4: ``id``,
``role``, ``permissions``, ``is_active``) or ``None`` for nobody (``ResourceNotFoundException``).
Register it at start-up, e.g.::

    async def load_user(user_id: str, db: AsyncSession | None) -> User | None:
        return await db.get(User, user_id)

    set_user_loader(load_user)            # or set_user_loader(load_user, app=app)

When none of these applies, the lookup raises ``ConfigurationException`` saying exactly that.
Results are cached under ``permissions:user:{user_id}``
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

from crown_nexus.container import current_container, default_container
from crown_nexus.core.exceptions import ConfigurationException, ResourceNotFoundException
from crown_nexus.core.permissions._telemetry import record_value
from crown_nexus.core.permissions._user import user_id as _user_id
from crown_nexus.core.permissions._user import user_mask
from crown_nexus.core.permissions.checker import PermissionChecker, object_denied
from crown_nexus.core.permissions.models import Permission, PermissionName
from crown_nexus.core.permissions.registry import get_registry
from crown_nexus.core.security._request_user import request_app, request_user
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

#: the container state keys of the loader set without an app and of the in-process cache
_LOADER_KEY = "permissions.loader"
_CACHE_KEY = "permissions.cache"


def _local_cache() -> dict[str, tuple[float, list[str]]]:
    """The current app's in-process permission cache (used when no ``cache_service`` exists)."""
    state = current_container().state
    found: dict[str, tuple[float, list[str]]] | None = state.get(_CACHE_KEY)
    if found is None:
        found = state.setdefault(_CACHE_KEY, {})
    return found


#: the app attribute an app-scoped loader is kept in
_APP_STATE_KEY = "permission_user_loader"

_NO_LOADER = (
    "No user loader is configured, so the permission service cannot turn user id {uid!r} into a "
    "user. Register one at start-up with "
    "crown_nexus.core.permissions.set_user_loader(loader) (or set_user_loader(loader, app=app) "
    "for one app), where loader(user_id: str, db) -> user | None (sync or async) returns an "
    "object or dict with id, role, permissions and is_active; or pass the user itself instead "
    "of its id."
)


def set_user_loader(loader: UserLoader | None, app: Any = None) -> None:
    """Set how a user id becomes a user: ``loader(user_id, db)`` (sync or async) or ``None``.

    With ``app`` the loader is used only while that app serves an authenticated request (kept as
    ``app.state.permission_user_loader``); without it, for the current app's container — outside
    any app, every app without a loader of its own (``None`` removes it).
    """
    if app is not None:
        setattr(app.state, _APP_STATE_KEY, loader)
    elif loader is None:
        current_container().state.pop(_LOADER_KEY, None)
    else:
        current_container().state[_LOADER_KEY] = loader


def _loader() -> UserLoader | None:
    """The current request's app loader, else the current container's, else the one set
    outside any app."""
    app = request_app()
    state = getattr(app, "state", None)
    loader: UserLoader | None = getattr(state, _APP_STATE_KEY, None) if state is not None else None
    return (
        loader
        or current_container().state.get(_LOADER_KEY)
        or default_container().state.get(_LOADER_KEY)
    )


def _cache_key(user_id: str) -> str:
    return f"permissions:user:{user_id}"


def _as_permission(name: str) -> Permission | PermissionName:
    try:
        return Permission(name)
    except ValueError:
        return PermissionName(name)


def _service(name: str) -> Any:
    """A registered service such as ``cache_service``, or ``None``."""
    from crown_nexus.core.dependency_manager import get_registry as services

    reg = services()
    if not reg.has(name):
        return None
    try:
        return reg.get(name)
    except Exception:
        return None


def _is_id(user: Any) -> bool:
    """True when ``user`` is a user id (str, int or UUID) rather than a user object or dict."""
    return isinstance(user, (str, int)) or type(user).__name__ == "UUID"


class PermissionService:
    """Async permission checks with metrics; user permission lookup with caching."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    # -- checks (each records its metrics once, in the checker) ------------------------
    async def has_permission(self, user: Any, permission: Permission | str) -> bool:
        """True when ``user`` holds ``permission`` (see ``PermissionChecker.has_permission``)."""
        return PermissionChecker.has_permission(await self._as_user(user), permission)

    async def has_permissions(
        self, user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> bool:
        """All (``require_all``) or any of ``permissions``."""
        return PermissionChecker.has_permissions(
            await self._as_user(user), permissions, require_all=require_all
        )

    async def check_object_permission(
        self, user: Any, obj: Any, permission: Permission | str, owner_field: str = "owner_id"
    ) -> bool:
        """The object-level rule (see ``PermissionChecker.check_object_permission``)."""
        return PermissionChecker.check_object_permission(
            await self._as_user(user), obj, permission, owner_field
        )

    async def ensure_permission(
        self,
        user: Any,
        permission: Permission | str,
        resource_type: str | None = None,
        resource_id: Any = None,
        action: str | None = None,
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless ``user`` holds ``permission``.

        ``resource_type``/``resource_id``/``action`` go into the exception and the
        ``permission.denied`` event.
        """
        PermissionChecker.ensure_permission(
            await self._as_user(user), permission, resource_type, resource_id, action
        )

    async def ensure_permissions(
        self, user: Any, permissions: Iterable[Permission | str], require_all: bool = True
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless all (or any) are held."""
        PermissionChecker.ensure_permissions(
            await self._as_user(user), permissions, require_all=require_all
        )

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
        """The user with ``user_id`` (see the module docstring for where it comes from)."""
        loader = _loader()
        if loader is None:
            caller = request_user()
            if caller is not None and _user_id(caller) == user_id:
                return caller
            raise ConfigurationException(
                message=_NO_LOADER.format(uid=user_id),
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
        cached; raises ``ConfigurationException`` when no loader applies (module docstring) and
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
        record_value(
            "histogram", "get_user_permissions_duration_seconds", time.perf_counter() - started
        )

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
            hit = _local_cache().get(uid)
            if hit is not None and hit[0] > time.monotonic():
                names = list(hit[1])
        if names is not None:
            record_value("counter", hit_counter)
        return names

    async def _store(self, uid: str, names: list[str]) -> None:
        cache = _service("cache_service")
        if cache is not None:
            try:
                await cache.set(_cache_key(uid), list(names), ttl=CACHE_TTL)
            except Exception as exc:
                logger.debug("Permission cache write failed", error=repr(exc))
            return
        _local_cache()[uid] = (time.monotonic() + CACHE_TTL, list(names))

    async def invalidate_permissions_cache(self, user_id: Any) -> None:
        """Forget the cached permissions of ``user_id`` (call after its role or grants change)."""
        uid = str(_user_id(user_id) if not isinstance(user_id, (str, int)) else user_id)
        _local_cache().pop(uid, None)
        cache = _service("cache_service")
        if cache is not None:
            try:
                await cache.delete(_cache_key(uid))
            except Exception as exc:
                logger.debug("Permission cache delete failed", error=repr(exc))


def get_permission_service(db: Any = None) -> PermissionService:
    """A :class:`PermissionService` (bound to ``db`` when given)."""
    return PermissionService(db)
