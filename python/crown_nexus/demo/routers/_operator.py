"""Who may read the service's internals (``/metrics``, the detailed ``/health``) in production.

An operator is a request carrying ``Authorization: Bearer <CROWN_NEXUS_METRICS_TOKEN>`` (compared
in constant time) or the credentials of a user holding ``system:admin``. Outside production every
request may read them.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.permissions import Permission, PermissionChecker
from crown_nexus.core.security.dependencies import authenticate_request

__all__ = ["is_operator"]


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def is_operator(request: Request) -> bool:
    """True when ``request`` may see internals (always outside production)."""
    settings = request.app.state.settings
    if not settings.is_production:
        return True
    token = settings.metrics_token
    presented = _bearer(request)
    if token is not None and presented is not None:
        if hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
            return True
    try:
        user = await authenticate_request(request)
    except AuthenticationException:
        return False
    return user is not None and PermissionChecker.has_permission(user, Permission.SYSTEM_ADMIN)
