"""``GET /metrics``: the library's guarded Prometheus route, admins admitted too.

The route is :func:`crown_nexus.integrations.fastapi.metrics_router`: in production only the
metrics token (``CROWN_NEXUS_METRICS_TOKEN``), an allowed peer address
(``CROWN_NEXUS_METRICS_ALLOWED_IPS``) or a ``system:admin`` user reads it; others get 401. It is
rate limited like every other route of the reference service.
"""

from __future__ import annotations

from crown_nexus.demo.routers._operator import is_admin
from crown_nexus.integrations.fastapi import metrics_router

__all__ = ["router"]

router = metrics_router(authorize=is_admin, tags=("metrics",))
