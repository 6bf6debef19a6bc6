"""One object rule for objects and lists: :class:`ObjectRule` and :func:`permission_filter`.

The SPEC §4 object rule decides whether a user may act on one object. A listing must show
exactly the objects that rule allows, or ``GET /things`` lists what ``GET /things/{id}`` refuses.
Here the rule is decided **once** per ``(user, permission)`` (:meth:`ObjectRule.decide`) and that
one decision is read two ways:

* :meth:`ObjectRule.allows` — for one loaded object, in Python;
* :meth:`ObjectRule.where` — the same test as an SQLAlchemy boolean clause for a ``select``
  (:func:`permission_filter` applies it), SQLite and PostgreSQL alike.

The decision (the same registry test :meth:`PermissionChecker.check_object_permission` makes):

* ``all`` — the user holds ``system:admin`` or the resource's admin permission
  (``"<resource>:admin"``): every object;
* ``scoped`` — the user holds ``permission`` itself: the objects they own
  (``str(owner) == str(user.id)``) and, when the rule has a :class:`ShareRelation`, the objects
  shared with them by a grant that covers the permission's action (``read`` and ``write``
  grants cover ``read``; only ``write`` covers ``update``/``write``; see
  :data:`DEFAULT_SHARE_GRANTS`);
* ``none`` — anything else, including inactive users, ``None`` and permissions never registered
  (unless the user is a superuser).

Without a share relation :meth:`ObjectRule.allows` is exactly ``check_object_permission``.
Shares live in another table, so :meth:`ObjectRule.allows` takes the grants the user holds on the
object (:meth:`ObjectRule.grants_of` loads them; :meth:`ObjectRule.check` does both); the SQL form
tests them with a correlated ``EXISTS`` (no join, so no duplicate rows).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true

from crown_nexus.core.exceptions import PermissionDeniedException
from crown_nexus.core.permissions._telemetry import record_check
from crown_nexus.core.permissions._user import field as read_field
from crown_nexus.core.permissions._user import user_id, user_mask
from crown_nexus.core.permissions.checker import _denied, _is_superuser, _name
from crown_nexus.core.permissions.models import Permission
from crown_nexus.core.permissions.registry import get_registry

__all__ = [
    "DEFAULT_SHARE_GRANTS",
    "ObjectDecision",
    "ObjectRule",
    "ShareRelation",
    "permission_filter",
]

#: permission action -> the share grants that allow it (other actions: owners and admins only)
DEFAULT_SHARE_GRANTS: Mapping[str, frozenset[str]] = {
    "read": frozenset({"read", "write"}),
    "update": frozenset({"write"}),
    "write": frozenset({"write"}),
}


@dataclass(frozen=True)
class ShareRelation:
    """Per-object grants: rows of a share table naming an object, a user and a grant.

    ``object_column`` (e.g. ``DocumentShare.document_id``) refers to ``target_column`` of the
    guarded model (e.g. ``Document.id``); ``user_column`` holds the grantee's id and
    ``grant_column`` the grant (``"read"``/``"write"``...). ``grants`` maps a permission's action
    to the grant values that allow it.
    """

    object_column: Any
    user_column: Any
    grant_column: Any
    target_column: Any
    grants: Mapping[str, frozenset[str]] = field(default_factory=lambda: DEFAULT_SHARE_GRANTS)

    def grants_for(self, permission: str) -> frozenset[str]:
        """The grant values that allow ``permission`` (by its action part); may be empty."""
        return frozenset(self.grants.get(permission.partition(":")[2], frozenset()))


@dataclass(frozen=True)
class ObjectDecision:
    """What a user may reach with a permission: ``all``, ``scoped`` (own/shared) or ``none``."""

    scope: Literal["all", "scoped", "none"]
    user_id: str | None
    share_grants: frozenset[str]


def _bind_value(column: Any, value: str) -> Any:
    """``value`` as the column's Python type, or ``None`` when it cannot equal ``str(value)``.

    The Python rule compares ``str(column value) == user id``; the SQL test must bind a value of
    the column's type whose ``str`` is exactly the id, so both forms agree (``"05"`` never
    matches an integer 5).
    """
    try:
        python_type = column.type.python_type
    except (AttributeError, NotImplementedError):
        return value
    if python_type is str:
        return value
    try:
        coerced = python_type(value)
    except (TypeError, ValueError):
        return None
    return coerced if str(coerced) == value else None


class ObjectRule:
    """The SPEC §4 object rule for one model, usable on an object and as an SQL filter.

    ``owner_column`` is the model's owner attribute (``Document.owner_id``); objects are read by
    its name (or ``owner_field``) with attribute or mapping access. ``shares`` adds grants from a
    share table. ``resource_type`` names the objects in denials (default: the owner column's
    model, else the object's class). Build one per model and use it for both the detail check
    and the listing.
    """

    def __init__(
        self,
        owner_column: Any,
        *,
        shares: ShareRelation | None = None,
        owner_field: str | None = None,
        resource_type: str | None = None,
    ) -> None:
        self.owner_column = owner_column
        self.owner_field = owner_field or str(owner_column.key)
        self.shares = shares
        model = getattr(owner_column, "class_", None)
        self.resource_type = resource_type or (model.__name__ if model is not None else None)

    def _type_of(self, obj: Any) -> str:
        return self.resource_type or type(obj).__name__

    # --- the one decision -----------------------------------------------------------------

    def decide(self, user: Any, permission: Permission | str) -> ObjectDecision:
        """Decide what ``user`` reaches with ``permission`` (the rule both forms read)."""
        name = _name(permission)
        registry = get_registry()
        mask = user_mask(user)
        uid = user_id(user)
        grants = self.shares.grants_for(name) if self.shares is not None else frozenset()
        try:
            if mask and registry.object_allowed(mask, name, False):
                return ObjectDecision("all", uid, grants)
            if mask and registry.object_allowed(mask, name, True):
                return ObjectDecision("scoped", uid, grants)
        except KeyError:  # never registered: only a superuser passes (as check_object_permission)
            if _is_superuser(registry, mask):
                return ObjectDecision("all", uid, grants)
        return ObjectDecision("none", uid, grants)

    # --- read one way: an object -----------------------------------------------------------

    def allows(
        self,
        user: Any,
        obj: Any,
        permission: Permission | str,
        *,
        grants: Iterable[str | None] = (),
    ) -> bool:
        """True when the rule lets ``user`` use ``permission`` on ``obj``.

        ``grants`` are the share grants ``user`` holds on ``obj`` (:meth:`grants_of`); they
        count only when the rule has a share relation. No side effects (no log, event or metric:
        :meth:`check` adds those).
        """
        decision = self.decide(user, permission)
        if decision.scope != "scoped":
            return decision.scope == "all"
        uid = decision.user_id
        if uid is None:
            return False
        owner = read_field(obj, self.owner_field)
        if owner is not None and str(owner) == uid:
            return True
        if self.shares is None:
            return False
        return any(g is not None and str(g) in decision.share_grants for g in grants)

    async def grants_of(self, session: Any, user: Any, obj: Any) -> frozenset[str]:
        """The share grants ``user`` holds on ``obj``, read with ``session`` (empty without shares)."""
        shares = self.shares
        uid = user_id(user)
        if shares is None or uid is None:
            return frozenset()
        target = read_field(obj, str(shares.target_column.key))
        bound = _bind_value(shares.user_column, uid)
        if target is None or bound is None:
            return frozenset()
        rows = await session.execute(
            select(shares.grant_column).where(
                shares.object_column == target, shares.user_column == bound
            )
        )
        return frozenset(str(g) for g in rows.scalars() if g is not None)

    async def check(
        self,
        session: Any,
        user: Any,
        obj: Any,
        permission: Permission | str,
        *,
        grants: Iterable[str | None] | None = None,
    ) -> bool:
        """:meth:`allows` with the user's grants (loaded with ``session`` unless ``grants`` are
        given, e.g. from a cache); a denial is logged and published
        (``permission.object_denied``) and the ``object_permission`` metrics are recorded."""
        started = time.perf_counter()
        if grants is None:
            grants = await self.grants_of(session, user, obj) if self.shares is not None else ()
        ok = self.allows(user, obj, permission, grants=grants)
        name = _name(permission)
        rtype = self._type_of(obj)
        if not ok:
            rid = read_field(obj, "id")
            _denied(
                "permission.object_denied",
                user,
                name,
                resource_type=rtype,
                resource_id=None if rid is None else str(rid),
            )
        record_check("object_permission", started, (rtype, name), ok)
        return ok

    async def ensure(
        self,
        session: Any,
        user: Any,
        obj: Any,
        permission: Permission | str,
        *,
        grants: Iterable[str | None] | None = None,
    ) -> None:
        """Raise ``PermissionDeniedException`` (403) unless :meth:`check` passes."""
        if not await self.check(session, user, obj, permission, grants=grants):
            name = _name(permission)
            rtype = self._type_of(obj)
            rid = read_field(obj, "id")
            raise PermissionDeniedException(
                message=f"Permission denied: {name} on this {rtype}",
                action=name.partition(":")[2] or None,
                resource_type=rtype,
                permission=name,
                details={"resource_id": None if rid is None else str(rid)},
            )

    # --- read the other way: a WHERE clause --------------------------------------------------

    def where(self, user: Any, permission: Permission | str) -> ColumnElement[bool]:
        """The rule as a boolean SQL clause over the model's rows (for ``select(...).where``)."""
        decision = self.decide(user, permission)
        if decision.scope == "all":
            return true()
        if decision.scope == "none" or decision.user_id is None:
            return false()
        uid = decision.user_id
        clauses: list[ColumnElement[bool]] = []
        owner = _bind_value(self.owner_column, uid)
        if owner is not None:
            clauses.append(self.owner_column == owner)
        shares = self.shares
        grantee = None if shares is None else _bind_value(shares.user_column, uid)
        if shares is not None and grantee is not None and decision.share_grants:
            clauses.append(
                exists(
                    select(shares.object_column).where(
                        and_(
                            shares.object_column == shares.target_column,
                            shares.user_column == grantee,
                            shares.grant_column.in_(sorted(decision.share_grants)),
                        )
                    )
                )
            )
        if not clauses:
            return false()
        return or_(*clauses)

    def filter(self, query: Select[Any], user: Any, permission: Permission | str) -> Select[Any]:
        """``query`` restricted to the rows :meth:`allows` would allow (unchanged for ``all``)."""
        decision = self.decide(user, permission)
        if decision.scope == "all":
            return query
        return query.where(self.where(user, permission))


def permission_filter(
    query: Select[Any],
    user: Any,
    permission: Permission | str,
    *,
    rule: ObjectRule | None = None,
    owner_column: Any = None,
    shares: ShareRelation | None = None,
) -> Select[Any]:
    """Restrict ``query`` to the rows the object rule lets ``user`` use ``permission`` on.

    Pass the model's ``rule`` (the same :class:`ObjectRule` the detail endpoint checks with), or
    ``owner_column`` (and optionally ``shares``) to build one. The rows kept are exactly those
    for which ``rule.allows(user, row, permission, grants=<the user's grants on row>)`` is true.
    """
    if rule is None:
        if owner_column is None:
            raise TypeError("permission_filter needs rule= or owner_column=")
        rule = ObjectRule(owner_column, shares=shares)
    return rule.filter(query, user, permission)
