"""The reference service's ASGI app.

Serve it with ``nox -s serve`` (granian, ``crown_nexus.demo.app:app``) on embedded defaults: no
server is needed; set ``REDIS_URI`` / ``CROWN_NEXUS_DATABASE_URL`` to use Redis / PostgreSQL.
"""

from __future__ import annotations

from fastapi import FastAPI

from crown_nexus.demo.routers import health
from crown_nexus.settings import Settings

__all__ = ["app", "create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a fresh reference service for ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    app = FastAPI(title="crown-nexus reference service", version="0.1.0")
    app.state.settings = settings
    app.state.backends = {
        "database": settings.database_url.split(":", 1)[0],
        "redis": "configured" if settings.redis_url else "not configured",
    }
    app.include_router(health.router)
    return app


app = create_app()
