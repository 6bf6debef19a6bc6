"""``GET /metrics``: every metric of the process in Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from crown_nexus.core.dependency_manager import get_service

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Return the Prometheus exposition of the ``metrics_service`` (all workers in
    multiprocess mode), with Prometheus's text content type."""
    body, content_type = get_service("metrics_service").render_latest()
    return Response(content=body, media_type=content_type)
