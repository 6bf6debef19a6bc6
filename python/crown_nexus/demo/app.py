"""The reference service's ASGI app.

Serve it with ``nox -s serve`` (granian, ``crown_nexus.demo.app:app``) on embedded defaults: no
server is needed; set ``REDIS_URI`` / ``CROWN_NEXUS_DATABASE_URL`` to use Redis / PostgreSQL.
Each system adds a router module under ``crown_nexus.demo.routers``; start-up creates the tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from crown_nexus.core.security.login_throttle import create_login_throttle
from crown_nexus.demo._startup_lock import serialized_startup
from crown_nexus.demo.db import Base, create_engine_for, write_engine
from crown_nexus.demo.models_users import upgrade_users_table
from crown_nexus.demo.routers import audit as audit_router
from crown_nexus.demo.routers import auth, errors, health, rate_limits
from crown_nexus.demo.routers import catalog as catalog_router
from crown_nexus.demo.routers import documents as documents_router
from crown_nexus.demo.routers import features as features_router
from crown_nexus.demo.routers import metrics as metrics_router
from crown_nexus.demo.routers import orders as orders_router
from crown_nexus.demo.routers import permissions as permissions_router
from crown_nexus.demo.routers import products as products_router
from crown_nexus.demo.routers import registration as registration_router
from crown_nexus.demo.routers import users as users_router
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.integrations.malloc import pin_mmap_threshold
from crown_nexus.settings import Settings

__all__ = ["app", "create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a fresh reference service for ``settings`` (default: read from the environment)."""
    settings = settings or Settings()
    # glibc's dynamic mmap threshold fragmented the worker's heap (RSS creeping; issue 15)
    pin_mmap_threshold()
    engine = create_engine_for(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(upgrade_users_table)  # columns added since the table was made
        try:
            yield
        finally:
            await app.state.login_throttle.close()
            await engine.dispose()

    docs = settings.docs_are_enabled  # off in production unless CROWN_NEXUS_DOCS_ENABLED
    app = FastAPI(
        title="crown-nexus reference service",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    # POST/PUT/PATCH/DELETE sessions: on SQLite they begin IMMEDIATE (demo.db.WRITE_OPTION)
    app.state.write_sessionmaker = async_sessionmaker(
        write_engine(engine), expire_on_commit=False
    )
    #: failed-login backoff of POST /auth/login (Redis when configured, shared by workers)
    app.state.login_throttle = create_login_throttle(settings)
    app.state.backends = {
        "database": settings.database_url.split(":", 1)[0],
        "redis": "configured" if settings.redis_url else "not configured",
    }
    setup_app(app, settings, middleware_options=rate_limits.middleware_options(app, settings))
    app.include_router(health.router)
    app.include_router(health.probes)  # /health/live, /health/ready
    if not settings.is_production:
        app.include_router(errors.router)  # deliberate failures: never in production
    app.include_router(metrics_router.router)
    app.include_router(rate_limits.router)
    app.include_router(permissions_router.router)
    app.include_router(catalog_router.router)
    app.include_router(features_router.router)
    auth.install(app)
    users_router.install_user_loader(app)  # get_user_permissions(user_id) reads the users table
    products_router.install(app)
    orders_router.install(app)
    documents_router.install(app)  # owned documents shared with read/write grants
    audit_router.install(app)  # logins, API keys, denials, flag changes -> audit trail
    registration_router.install(app)  # POST /auth/register (§5 validation, typed event -> audit)
    # several workers on one host: start-ups (tables, seeding) run one after the other
    app.router.lifespan_context = serialized_startup(app.router.lifespan_context, settings.database_url)
    return app


app = create_app()
