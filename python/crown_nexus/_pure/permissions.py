"""Permission bitsets: a registry giving each permission a bit and each role a mask (pure Python).

``crown_nexus._cython.permissions`` is the compiled twin: same class, same results, same
exceptions (it raises the error classes defined here, so ``except UnknownPermissionError`` works
whichever implementation is in use).

Model:

* A permission is a string ``"<resource>:<action>"`` (both parts non-empty, no whitespace, one
  colon). :meth:`PermissionRegistry.register_permission` assigns it the next free bit (0, 1, 2, ...);
  registering it again returns the same bit. There is no limit on how many permissions exist:
  masks are Python ints of any size.
* A role has its own permissions plus everything of the roles it inherits (transitively).
  Inherited roles must already be registered; re-registering a role replaces its definition and
  updates every role that inherits it. A definition that would make a cycle raises ``ValueError``.
* A mask is a non-negative ``int``; bit ``b`` set means the permission with bit ``b`` is granted.

Object rule (:meth:`PermissionRegistry.object_allowed`): a mask may act on an object when it
holds :data:`SUPERUSER_PERMISSION` (``system:admin``), or the permission's resource admin
(``"<resource>:admin"``, when registered), or holds the permission itself and owns the object.

Lookup keys may be plain strings or ``str`` subclasses (e.g. ``Permission`` / ``UserRole`` enum
members): a subclass instance is looked up by its string value (``str.__str__(value)``).

Strictness: the checks (``has``, ``has_all``, ``has_any``, ``mask_of``, ``role_mask``) raise
:class:`UnknownPermissionError` / :class:`UnknownRoleError` (both ``KeyError``) for names never
registered and ``TypeError`` for non-strings, because asking about an unknown permission is a
programming error. :meth:`~PermissionRegistry.user_mask` reads *data* (a user's role and grants)
and is lenient: an unknown role or grant grants nothing, and an inactive user has mask ``0``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = [
    "SUPERUSER_PERMISSION",
    "PermissionRegistry",
    "UnknownPermissionError",
    "UnknownRoleError",
    "normalize_permission",
    "normalize_role",
]


#: the permission that passes every object check
SUPERUSER_PERMISSION = "system:admin"


class UnknownPermissionError(KeyError):
    """A permission name that was never registered."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown permission {self.name!r}"


class UnknownRoleError(KeyError):
    """A role name that was never registered."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown role {self.name!r}"


def _plain(value: str) -> str:
    return value if type(value) is str else str.__str__(value)


def normalize_permission(name: object) -> str:
    """Return ``name`` as a plain ``str`` if it is a well-formed permission name.

    Raises ``TypeError`` for non-strings and ``ValueError`` for anything but
    ``"<resource>:<action>"`` with non-empty parts, one colon and no whitespace.
    """
    if not isinstance(name, str):
        raise TypeError(f"permission must be a str, got {type(name).__name__}")
    s = _plain(name)
    resource, sep, action = s.partition(":")
    if not sep or not resource or not action or ":" in action or any(c.isspace() for c in s):
        raise ValueError(f"invalid permission {s!r}: expected '<resource>:<action>'")
    return s


def normalize_role(name: object) -> str:
    """Return ``name`` as a plain non-empty ``str`` without whitespace at either end.

    Raises ``TypeError`` for non-strings and ``ValueError`` for empty or padded names.
    """
    if not isinstance(name, str):
        raise TypeError(f"role must be a str, got {type(name).__name__}")
    s = _plain(name)
    if not s or s.strip() != s:
        raise ValueError(f"invalid role name {s!r}")
    return s


def _check_mask(mask: object) -> None:
    if not isinstance(mask, int) or isinstance(mask, bool):
        raise TypeError(f"mask must be an int, got {type(mask).__name__}")
    if mask < 0:
        raise ValueError("mask must be >= 0")


def _perm_list(permissions: object, what: str) -> list[object]:
    if isinstance(permissions, str) or not isinstance(permissions, Iterable):
        raise TypeError(f"{what} must be an iterable of str, got {type(permissions).__name__}")
    return list(permissions)


class _Definitions:
    """Registration state shared by both twins: names, bits, role definitions, resolved masks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: list[str] = []
        self.bits: dict[str, int] = {}
        self.own: dict[str, int] = {}
        self.parents: dict[str, tuple[str, ...]] = {}
        self.masks: dict[str, int] = {}

    def add_permission(self, name: object) -> int:
        s = normalize_permission(name)
        bit = self.bits.get(s)
        if bit is None:
            bit = len(self.names)
            self.names.append(s)
            self.bits[s] = bit
        return bit

    def add_role(self, name: object, permissions: object, inherits: object) -> int:
        role = normalize_role(name)
        perms = [normalize_permission(p) for p in _perm_list(permissions, "permissions")]
        parents = tuple(normalize_role(r) for r in _perm_list(inherits, "inherits"))
        for parent in parents:
            if parent == role:
                raise ValueError(f"role inheritance cycle: {role} -> {role}")
            if parent not in self.own:
                raise UnknownRoleError(parent)
        graph = dict(self.parents)
        graph[role] = parents
        cycle = _find_cycle(graph, role)
        if cycle:
            raise ValueError("role inheritance cycle: " + " -> ".join(cycle))
        own = 0
        for p in perms:
            own |= 1 << self.add_permission(p)
        self.own[role] = own
        self.parents[role] = parents
        self.masks = _resolve(self.own, self.parents)
        return self.masks[role]


def _admin_bits(names: list[str], bits: dict[str, int]) -> list[int]:
    """For each bit, the bit of its resource's ``"<resource>:admin"`` permission, or ``-1``."""
    return [bits.get(name.partition(":")[0] + ":admin", -1) for name in names]


def _find_cycle(graph: dict[str, tuple[str, ...]], start: str) -> list[str]:
    """Return a path ``start -> ... -> start`` if one exists, else ``[]``."""
    stack: list[tuple[str, list[str]]] = [(p, [start, p]) for p in graph.get(start, ())]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == start:
            return path
        if node in seen:
            continue
        seen.add(node)
        stack.extend((p, [*path, p]) for p in graph.get(node, ()))
    return []


def _resolve(own: dict[str, int], parents: dict[str, tuple[str, ...]]) -> dict[str, int]:
    masks: dict[str, int] = {}

    def visit(role: str) -> int:
        if role not in masks:
            m = own[role]
            for p in parents[role]:
                m |= visit(p)
            masks[role] = m
        return masks[role]

    for role in own:
        visit(role)
    return masks


class PermissionRegistry:
    """Permissions as bits, roles as masks, and fast checks on masks (see the module docs)."""

    __slots__ = ("_admin", "_bits", "_defs", "_roles", "_super")

    def __init__(self) -> None:
        self._defs = _Definitions()
        # lookup tables used by the checks; enum members get cached here on first use
        self._bits: dict[str, int] = {}
        self._roles: dict[str, int] = {}
        self._admin: list[int] = []
        self._super: int = -1

    def _publish(self) -> None:
        self._bits = dict(self._defs.bits)
        self._roles = dict(self._defs.masks)
        self._admin = _admin_bits(self._defs.names, self._bits)
        self._super = self._bits.get(SUPERUSER_PERMISSION, -1)

    def register_permission(self, name: str) -> int:
        """Register ``name`` (``"<resource>:<action>"``) and return its bit (stable once given)."""
        with self._defs.lock:
            bit = self._defs.add_permission(name)
            self._publish()
        return bit

    def register_role(
        self, name: str, permissions: Iterable[str], inherits: Iterable[str] = ()
    ) -> int:
        """Define role ``name`` with ``permissions`` plus those of ``inherits``; return its mask.

        The role's permissions are registered if new. Inherited roles must exist
        (:class:`UnknownRoleError`); a cycle raises ``ValueError`` and changes nothing.
        """
        with self._defs.lock:
            mask = self._defs.add_role(name, permissions, inherits)
            self._publish()
        return mask

    def _bit(self, perm: object) -> int:
        try:
            return self._bits[perm]  # type: ignore[index]
        except (KeyError, TypeError):
            if not isinstance(perm, str):
                raise TypeError(f"permission must be a str, got {type(perm).__name__}") from None
            s = _plain(perm)
            bit = self._bits.get(s)
            if bit is None:
                raise UnknownPermissionError(s) from None
            self._bits[perm] = bit
            return bit

    def _role(self, role: object) -> int:
        try:
            return self._roles[role]  # type: ignore[index]
        except (KeyError, TypeError):
            if not isinstance(role, str):
                raise TypeError(f"role must be a str, got {type(role).__name__}") from None
            s = _plain(role)
            mask = self._roles.get(s)
            if mask is None:
                raise UnknownRoleError(s) from None
            self._roles[role] = mask
            return mask

    def bit_of(self, perm: str) -> int:
        """Return the bit of a registered permission (``UnknownPermissionError`` otherwise)."""
        return self._bit(perm)

    def __contains__(self, perm: object) -> bool:
        """True when ``perm`` is a registered permission name."""
        try:
            self._bit(perm)
        except (KeyError, TypeError):
            return False
        return True

    def mask_of(self, permissions: Iterable[str]) -> int:
        """Return the mask granting exactly ``permissions`` (all must be registered)."""
        mask = 0
        for p in _perm_list(permissions, "permissions"):
            mask |= 1 << self._bit(p)
        return mask

    def role_mask(self, role: str) -> int:
        """Return the mask of ``role`` including inherited roles (``UnknownRoleError`` if none)."""
        return self._role(role)

    def user_mask(
        self,
        role: str | None,
        extra_permissions: Iterable[str] | None = None,
        is_active: bool = True,
    ) -> int:
        """Return a user's mask: role mask | extra grants; ``0`` when ``is_active`` is false.

        Lenient by design (this reads stored user data): an unknown or missing role, unknown or
        malformed grants, and a grants value that is not an iterable (or is a bare str) add
        nothing.
        """
        if not is_active:
            return 0
        mask = 0
        if role is not None:
            if type(role) is str:
                mask = self._roles.get(role, 0)
            else:
                try:
                    mask = self._role(role)
                except (KeyError, TypeError):
                    mask = 0
        if type(extra_permissions) in (list, tuple) or (
            isinstance(extra_permissions, Iterable) and not isinstance(extra_permissions, str)
        ):
            bits = self._bits
            for p in extra_permissions:  # type: ignore[union-attr]
                bit = bits.get(p) if type(p) is str else None
                if bit is None:
                    if type(p) is str:
                        continue
                    try:
                        bit = self._bit(p)
                    except (KeyError, TypeError):
                        continue
                mask |= 1 << bit
        return mask

    def has(self, mask: int, perm: str) -> bool:
        """True when ``mask`` grants ``perm``."""
        _check_mask(mask)
        return (mask >> self._bit(perm)) & 1 == 1

    def has_all(self, mask: int, perms: Iterable[str]) -> bool:
        """True when ``mask`` grants every permission in ``perms`` (true for none)."""
        _check_mask(mask)
        required = 0
        for p in _perm_list(perms, "perms"):
            required |= 1 << self._bit(p)
        return mask & required == required

    def has_any(self, mask: int, perms: Iterable[str]) -> bool:
        """True when ``mask`` grants at least one permission in ``perms`` (false for none)."""
        _check_mask(mask)
        wanted = 0
        for p in _perm_list(perms, "perms"):
            wanted |= 1 << self._bit(p)
        return mask & wanted != 0

    def object_allowed(self, mask: int, perm: str, is_owner: bool) -> bool:
        """The object rule: superuser, or ``<resource>:admin``, or ``perm`` plus ownership."""
        _check_mask(mask)
        bit = self._bit(perm)
        if self._super >= 0 and (mask >> self._super) & 1:
            return True
        admin = self._admin[bit]
        if admin >= 0 and (mask >> admin) & 1:
            return True
        return bool(is_owner) and (mask >> bit) & 1 == 1

    def permissions_of(self, mask: int) -> list[str]:
        """Registered permission names granted by ``mask``, in bit order."""
        _check_mask(mask)
        names = self._defs.names
        return [names[b] for b in range(min(mask.bit_length(), len(names))) if (mask >> b) & 1]

    def permissions(self) -> list[str]:
        """Every registered permission name, in bit order."""
        return list(self._defs.names)

    def roles(self) -> list[str]:
        """Every registered role name, in registration order."""
        return list(self._defs.own)

    def role_permissions(self, role: str) -> frozenset[str]:
        """Every permission of ``role``, inherited ones included."""
        return frozenset(self.permissions_of(self._role(role)))

    def inherits(self, role: str) -> tuple[str, ...]:
        """The roles ``role`` directly inherits."""
        self._role(role)
        return self._defs.parents[_plain(role)]
