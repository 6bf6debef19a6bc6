"""``GET /metrics``: every metric of the process in Prometheus text format.

In production only operators read it (``CROWN_NEXUS_METRICS_TOKEN`` as a bearer token, or a
``system:admin`` user); others get 401. It is rate limited like every other route.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.demo.routers._operator import is_operator

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Return the Prometheus exposition of the ``metrics_service`` (all workers in
    multiprocess mode), with Prometheus's text content type; operators only in production."""
    if not await is_operator(request):
        raise AuthenticationException(message="Metrics need the metrics token or an admin")
    body, content_type = get_service("metrics_service").render_latest()
    return Response(content=body, media_type=content_type)
