"""Who may read the service's internals (``/metrics``, the detailed ``/health``) in production.

An operator is a request the library's :class:`~crown_nexus.integrations.observability.MetricsAccess`
admits without help (``Authorization: Bearer <CROWN_NEXUS_METRICS_TOKEN>``, compared in constant
time, or a peer address in ``CROWN_NEXUS_METRICS_ALLOWED_IPS``) or the credentials of a user
holding ``system:admin``. Outside production every request may read them.
"""

from __future__ import annotations

from fastapi import Request

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.permissions import Permission, PermissionChecker
from crown_nexus.core.security.dependencies import authenticate_request
from crown_nexus.integrations.observability import MetricsAccess

__all__ = ["is_admin", "is_operator"]


async def is_admin(request: Request) -> bool:
    """True when ``request`` carries the credentials of a ``system:admin`` user."""
    try:
        user = await authenticate_request(request)
    except AuthenticationException:
        return False
    return user is not None and PermissionChecker.has_permission(user, Permission.SYSTEM_ADMIN)


async def is_operator(request: Request) -> bool:
    """True when ``request`` may see internals (always outside production)."""
    settings = request.app.state.settings
    if not settings.is_production:
        return True
    access = MetricsAccess(settings)
    if access.token_matches(request) or access.peer_allowed(request):
        return True
    return await is_admin(request)
