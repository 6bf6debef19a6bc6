# cython: language_level=3
"""Permission bitsets, compiled twin of ``crown_nexus._pure.permissions``.

Registration (start-up, rare) reuses the pure module's definitions so both twins validate and
resolve roles identically; the checks (every request) run here: dict lookups through the C API and,
for the first 64 bits, the bit test on the mask's low machine word instead of Python int objects.
Masks stay Python ints, so any number of permissions works (bits >= 64 use int arithmetic).
"""

from collections.abc import Iterable

from cpython.dict cimport PyDict_GetItem, PyDict_SetItem
from cpython.long cimport PyLong_AsSsize_t
from cpython.ref cimport PyObject

from crown_nexus._pure.permissions import (
    SUPERUSER_PERMISSION,
    UnknownPermissionError,
    UnknownRoleError,
    _admin_bits,
    _Definitions,
    _perm_list,
    normalize_permission,
    normalize_role,
)

cdef extern from "Python.h":
    unsigned long long PyLong_AsUnsignedLongLongMask(object) except? -1

_ONE = 1

__all__ = [
    "SUPERUSER_PERMISSION",
    "PermissionRegistry",
    "UnknownPermissionError",
    "UnknownRoleError",
    "normalize_permission",
    "normalize_role",
]


cdef inline str _plain(object value):
    return value if type(value) is str else str.__str__(value)


cdef inline int _check_mask(object mask) except -1:
    if type(mask) is not int:
        if not isinstance(mask, int) or isinstance(mask, bool):
            raise TypeError(f"mask must be an int, got {type(mask).__name__}")
    if mask < 0:
        raise ValueError("mask must be >= 0")
    return 0


cdef inline bint _test(object mask, Py_ssize_t bit) except -1:
    if bit < 64:
        return (PyLong_AsUnsignedLongLongMask(mask) >> bit) & 1
    return (mask >> bit) & 1 == 1


cdef class PermissionRegistry:
    """Permissions as bits, roles as masks, and fast checks on masks (see the pure module docs)."""

    cdef object _defs
    cdef dict _bits
    cdef dict _roles
    cdef list _admin
    cdef Py_ssize_t _super

    def __init__(self):
        self._defs = _Definitions()
        self._bits = {}
        self._roles = {}
        self._admin = []
        self._super = -1

    cdef void _publish(self):
        self._bits = dict(self._defs.bits)
        self._roles = dict(self._defs.masks)
        self._admin = _admin_bits(self._defs.names, self._bits)
        self._super = self._bits.get(SUPERUSER_PERMISSION, -1)

    def register_permission(self, name):
        """Register ``name`` (``"<resource>:<action>"``) and return its bit (stable once given)."""
        with self._defs.lock:
            bit = self._defs.add_permission(name)
            self._publish()
        return bit

    def register_role(self, name, permissions, inherits=()):
        """Define role ``name`` with ``permissions`` plus those of ``inherits``; return its mask.

        The role's permissions are registered if new. Inherited roles must exist
        (:class:`UnknownRoleError`); a cycle raises ``ValueError`` and changes nothing.
        """
        with self._defs.lock:
            mask = self._defs.add_role(name, permissions, inherits)
            self._publish()
        return mask

    cdef Py_ssize_t _bit(self, object perm) except -1:
        cdef PyObject* found = NULL
        cdef str s
        if type(perm) is str or isinstance(perm, str):
            found = PyDict_GetItem(self._bits, perm)
        if found != NULL:
            return PyLong_AsSsize_t(<object>found)
        if not isinstance(perm, str):
            raise TypeError(f"permission must be a str, got {type(perm).__name__}")
        s = _plain(perm)
        found = PyDict_GetItem(self._bits, s)
        if found == NULL:
            raise UnknownPermissionError(s)
        PyDict_SetItem(self._bits, perm, <object>found)
        return PyLong_AsSsize_t(<object>found)

    cdef object _role(self, object role):
        cdef PyObject* found = NULL
        cdef str s
        if type(role) is str or isinstance(role, str):
            found = PyDict_GetItem(self._roles, role)
        if found != NULL:
            return <object>found
        if not isinstance(role, str):
            raise TypeError(f"role must be a str, got {type(role).__name__}")
        s = _plain(role)
        found = PyDict_GetItem(self._roles, s)
        if found == NULL:
            raise UnknownRoleError(s)
        PyDict_SetItem(self._roles, role, <object>found)
        return <object>found

    def bit_of(self, perm):
        """Return the bit of a registered permission (``UnknownPermissionError`` otherwise)."""
        return self._bit(perm)

    def __contains__(self, perm):
        """True when ``perm`` is a registered permission name."""
        try:
            self._bit(perm)
        except (KeyError, TypeError):
            return False
        return True

    def mask_of(self, permissions):
        """Return the mask granting exactly ``permissions`` (all must be registered)."""
        mask = 0
        for p in _perm_list(permissions, "permissions"):
            mask |= _ONE << self._bit(p)
        return mask

    def role_mask(self, role):
        """Return the mask of ``role`` including inherited roles (``UnknownRoleError`` if none)."""
        return self._role(role)

    def user_mask(self, role, extra_permissions=None, is_active=True):
        """Return a user's mask: role mask | extra grants; ``0`` when ``is_active`` is false.

        Lenient by design (this reads stored user data): an unknown or missing role, unknown or
        malformed grants, and a grants value that is not an iterable (or is a bare str) add
        nothing.
        """
        cdef PyObject* found
        cdef Py_ssize_t bit
        if not is_active:
            return 0
        mask = 0
        if role is not None:
            found = PyDict_GetItem(self._roles, role) if type(role) is str else NULL
            if found != NULL:
                mask = <object>found
            elif type(role) is str:
                mask = 0
            else:
                try:
                    mask = self._role(role)
                except (KeyError, TypeError):
                    mask = 0
        if extra_permissions is None:
            return mask
        if type(extra_permissions) is not list and type(extra_permissions) is not tuple:
            if isinstance(extra_permissions, str) or not isinstance(extra_permissions, Iterable):
                return mask
        for p in extra_permissions:
            found = PyDict_GetItem(self._bits, p) if type(p) is str else NULL
            if found != NULL:
                bit = PyLong_AsSsize_t(<object>found)
            elif type(p) is str:
                continue
            else:
                try:
                    bit = self._bit(p)
                except (KeyError, TypeError):
                    continue
            mask |= _ONE << bit
        return mask

    def has(self, mask, perm):
        """True when ``mask`` grants ``perm``."""
        _check_mask(mask)
        return _test(mask, self._bit(perm))

    def has_all(self, mask, perms):
        """True when ``mask`` grants every permission in ``perms`` (true for none)."""
        _check_mask(mask)
        cdef list items = _perm_list(perms, "perms")
        cdef Py_ssize_t bit
        cdef bint ok = True
        for p in items:
            bit = self._bit(p)
            if ok and not _test(mask, bit):
                ok = False
        return ok

    def has_any(self, mask, perms):
        """True when ``mask`` grants at least one permission in ``perms`` (false for none)."""
        _check_mask(mask)
        cdef list items = _perm_list(perms, "perms")
        cdef Py_ssize_t bit
        cdef bint ok = False
        for p in items:
            bit = self._bit(p)
            if not ok and _test(mask, bit):
                ok = True
        return ok

    def object_allowed(self, mask, perm, is_owner):
        """The object rule: superuser, or ``<resource>:admin``, or ``perm`` plus ownership."""
        _check_mask(mask)
        cdef Py_ssize_t bit = self._bit(perm)
        cdef Py_ssize_t admin
        if self._super >= 0 and _test(mask, self._super):
            return True
        admin = self._admin[bit]
        if admin >= 0 and _test(mask, admin):
            return True
        return bool(is_owner) and _test(mask, bit)

    def permissions_of(self, mask):
        """Registered permission names granted by ``mask``, in bit order."""
        _check_mask(mask)
        names = self._defs.names
        cdef Py_ssize_t n = min(mask.bit_length(), len(names))
        cdef Py_ssize_t b
        return [names[b] for b in range(n) if _test(mask, b)]

    def permissions(self):
        """Every registered permission name, in bit order."""
        return list(self._defs.names)

    def roles(self):
        """Every registered role name, in registration order."""
        return list(self._defs.own)

    def role_permissions(self, role):
        """Every permission of ``role``, inherited ones included."""
        return frozenset(self.permissions_of(self._role(role)))

    def inherits(self, role):
        """The roles ``role`` directly inherits."""
        self._role(role)
        return self._defs.parents[_plain(role)]
