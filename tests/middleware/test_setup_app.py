"""setup_app: handlers, the guide §13 middleware order, services started and stopped in the lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from crown_nexus.core import dependency_manager as dm
from crown_nexus.integrations.fastapi import MIDDLEWARE_ORDER, middleware_stack, setup_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

#: guide §13's order, except that security headers and CORS wrap the layers that refuse requests
#: and rate limits come before SecureRequest's content checks
GUIDE_ORDER = [
    "RequestContextMiddleware",
    "TracingMiddleware",
    "MetricsMiddleware",
    "SecurityHeadersMiddleware",
    "CORSMiddleware",
    "RateLimitMiddleware",
    "SecureRequestMiddleware",
    "CsrfMiddleware",
    "TimeoutMiddleware",
    "CacheControlMiddleware",
    "ResponseFormatterMiddleware",
    "CompressionMiddleware",
    "IdempotencyMiddleware",
    "ErrorHandlerMiddleware",
]


def test_order_is_the_guides() -> None:
    """MIDDLEWARE_ORDER lists guide §13's middleware outermost first."""
    assert [name for name, _ in MIDDLEWARE_ORDER] == GUIDE_ORDER


def test_installed_stack_keeps_relative_order() -> None:
    """The app's user_middleware is the guide's order (those available), ErrorHandler innermost."""
    app = FastAPI()
    setup_app(app, Settings(cors_origins=["https://a.example"]))
    installed = [m.cls.__name__ for m in app.user_middleware]
    assert installed == app.state.crown_nexus_middleware
    assert installed == [n for n in GUIDE_ORDER if n in installed]
    assert installed[-1] == "ErrorHandlerMiddleware"
    assert "CORSMiddleware" in installed
    for mine in (
        "TimeoutMiddleware",
        "CacheControlMiddleware",
        "ResponseFormatterMiddleware",
        "CompressionMiddleware",
    ):
        assert mine in installed


def test_cors_only_when_configured_and_exclusions() -> None:
    """CORS is left out without origins; exclude drops named middleware."""
    names = [
        cls.__name__ for cls, _ in middleware_stack(Settings(), exclude=["CompressionMiddleware"])
    ]
    assert "CORSMiddleware" not in names and "CompressionMiddleware" not in names
    assert "ErrorHandlerMiddleware" in names


def test_setup_twice_is_harmless() -> None:
    """A second setup_app call adds nothing."""
    app = FastAPI()
    setup_app(app, Settings())
    count = len(app.user_middleware)
    setup_app(app, Settings())
    assert len(app.user_middleware) == count


class Journal:
    """A service recording start/stop."""

    events: list[str] = []

    async def initialize(self) -> None:
        Journal.events.append("service start")

    async def shutdown(self) -> None:
        Journal.events.append("service stop")


async def test_lifespan_starts_services_around_app_lifespan() -> None:
    """Services start before the app's own lifespan and stop after it."""
    Journal.events = []

    @asynccontextmanager
    async def lifespan(app):
        Journal.events.append("app start")
        yield
        Journal.events.append("app stop")

    app = FastAPI(lifespan=lifespan)
    setup_app(app, Settings())
    dm.register_service(Journal, name="journal_t_setup")
    try:
        async with app_client(app) as client:
            assert "journal_t_setup" in app.state.services_started
            resp = await client.get("/missing")
            assert resp.status_code == 404
            assert resp.json()["code"] == "RESOURCE_NOT_FOUND"
    finally:
        dm.unregister_service("journal_t_setup")
    assert Journal.events == ["service start", "app start", "app stop", "service stop"]


async def test_settings_stored_and_used(tmp_path) -> None:
    """setup_app stores the settings; production hides exception types."""
    app = FastAPI()
    settings = Settings(ENVIRONMENT="production", secret_key="k" * 40)
    setup_app(app, settings)
    assert app.state.settings is settings

    @app.get("/boom")
    async def boom() -> None:
        raise ZeroDivisionError("secret")

    async with app_client(app) as client:
        resp = await client.get("/boom")
    assert resp.status_code == 500
    assert resp.json()["message"] == "Internal server error"


async def test_service_dependency_in_endpoint_and_override() -> None:
    """service_dependency(name) injects a registered service; override_service swaps it."""
    from fastapi import Depends

    from crown_nexus.core.dependency_manager import service_dependency
    from crown_nexus.testing import override_service

    dm.register_service(lambda: {"greeting": "hello"}, name="greeter_t_setup")
    app = FastAPI()
    setup_app(app, Settings(), manage_services=False)

    @app.get("/greet")
    async def greet(greeter=Depends(service_dependency("greeter_t_setup"))) -> dict:
        return {"message": greeter["greeting"]}

    try:
        async with app_client(app) as client:
            assert (await client.get("/greet")).json()["data"] == {"message": "hello"}
            with override_service("greeter_t_setup", {"greeting": "fake"}):
                assert (await client.get("/greet")).json()["data"] == {"message": "fake"}
        assert not hasattr(app.state, "services_started")
    finally:
        dm.unregister_service("greeter_t_setup")
