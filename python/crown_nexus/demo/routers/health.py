"""``GET /health``: version, hot path implementations and the backends in use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

import crown_nexus
from crown_nexus import accel

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Report liveness, the package version, ``accel.implementations()`` and the backends."""
    state = request.app.state
    backends: dict[str, Any] = dict(getattr(state, "backends", {}))
    return {
        "status": "ok",
        "version": crown_nexus.__version__,
        "environment": state.settings.ENVIRONMENT.value,
        "implementations": accel.implementations(),
        "backends": backends,
    }
