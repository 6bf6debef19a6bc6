"""Default permissions and roles (guide §11): ``Permission``, ``UserRole``, ``ROLE_PERMISSIONS``.

These are defaults, not a closed set: applications add their own permission strings and roles at
start-up with :func:`crown_nexus.core.permissions.register_permission` and
:func:`crown_nexus.core.permissions.register_role`. Every value is ``"<resource>:<action>"``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ROLE_PERMISSIONS", "Permission", "PermissionName", "UserRole"]


class Permission(StrEnum):
    """The shipped permissions; each value is ``"<resource>:<action>"``."""

    USER_CREATE = "user:create"
    USER_READ = "user:read"
    USER_UPDATE = "user:update"
    USER_DELETE = "user:delete"
    USER_ADMIN = "user:admin"

    PRODUCT_CREATE = "product:create"
    PRODUCT_READ = "product:read"
    PRODUCT_UPDATE = "product:update"
    PRODUCT_DELETE = "product:delete"
    PRODUCT_ADMIN = "product:admin"

    DOCUMENT_CREATE = "document:create"
    DOCUMENT_READ = "document:read"
    DOCUMENT_UPDATE = "document:update"
    DOCUMENT_DELETE = "document:delete"
    DOCUMENT_SHARE = "document:share"
    DOCUMENT_ADMIN = "document:admin"

    ORDER_CREATE = "order:create"
    ORDER_READ = "order:read"
    ORDER_UPDATE = "order:update"
    ORDER_DELETE = "order:delete"
    ORDER_ADMIN = "order:admin"

    API_KEY_CREATE = "api_key:create"
    API_KEY_READ = "api_key:read"
    API_KEY_DELETE = "api_key:delete"
    API_KEY_ADMIN = "api_key:admin"

    SYSTEM_ADMIN = "system:admin"


class UserRole(StrEnum):
    """The shipped roles; a user's ``role`` may be a member or its string value."""

    ADMIN = "admin"
    MANAGER = "manager"
    USER = "user"
    CLIENT = "client"
    READ_ONLY = "read_only"
    GUEST = "guest"


class PermissionName(str):
    """A registered permission that is not a :class:`Permission` member (an application's own).

    Behaves as its string and, like the enum, offers ``.value`` and ``.name``.
    """

    __slots__ = ()

    @property
    def value(self) -> str:
        """The permission string, ``"<resource>:<action>"``."""
        return str.__str__(self)

    @property
    def name(self) -> str:
        """An enum-style name: ``"report:export"`` -> ``"REPORT_EXPORT"``."""
        return str.__str__(self).replace(":", "_").upper()


def _all(*actions: str) -> set[Permission]:
    return {p for p in Permission if p.value.split(":", 1)[1] in actions}


_READS = _all("read")

#: What each shipped role grants (flat: every role lists all its permissions).
ROLE_PERMISSIONS: dict[UserRole, set[Permission]] = {
    UserRole.ADMIN: set(Permission),
    UserRole.MANAGER: set(Permission)
    - {
        Permission.SYSTEM_ADMIN,
        Permission.USER_ADMIN,
        Permission.USER_DELETE,
        Permission.API_KEY_ADMIN,
    },
    UserRole.USER: {
        Permission.USER_READ,
        Permission.PRODUCT_READ,
        Permission.DOCUMENT_CREATE,
        Permission.DOCUMENT_READ,
        Permission.DOCUMENT_UPDATE,
        Permission.DOCUMENT_DELETE,
        Permission.DOCUMENT_SHARE,
        Permission.ORDER_CREATE,
        Permission.ORDER_READ,
        Permission.API_KEY_CREATE,
        Permission.API_KEY_READ,
        Permission.API_KEY_DELETE,
    },
    UserRole.CLIENT: {
        Permission.PRODUCT_READ,
        Permission.DOCUMENT_READ,
        Permission.ORDER_CREATE,
        Permission.ORDER_READ,
    },
    UserRole.READ_ONLY: set(_READS),
    UserRole.GUEST: {Permission.PRODUCT_READ},
}
