"""Guide §4 (Dependency Management System), run as written with the user's services supplied."""
# ruff: noqa: I001, E402, F811 - the guide's blocks are copied verbatim (their imports and order)

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, Depends

from crown_nexus.core.dependency_manager import (
    ServiceNotFoundException,
    has_service,
    unregister_service,
)
from crown_nexus.core.error import AuditService
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.guide._support import assert_error_body, data_of, guide_app

# --- the user's own objects -------------------------------------------------------------------


class AsyncSession:
    """The user's database session type (a marker)."""


async def get_db() -> Any:
    """The user's ``get_db`` dependency."""
    yield AsyncSession()


SENT: list[tuple[str, str, Any]] = []


class NotificationService:
    """The user's notification service; records what it sends and with which db."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    async def send_notification(self, user_id: str, message: str) -> None:
        SENT.append((user_id, message, self.db))

    async def notify_profile_update(self, user_id: str) -> None:
        SENT.append((user_id, "profile updated", self.db))


class EmailService:
    """The user's email sender."""

    def __init__(self, smtp_host: str, smtp_port: int) -> None:
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port


class AppSettings(Settings):
    """The user's settings: crown-nexus Settings plus their own SMTP fields."""

    SMTP_HOST: str = "mail.example.com"
    SMTP_PORT: int = 2525


settings = AppSettings()


@pytest.fixture(autouse=True)
def _clean_registry() -> Iterator[None]:
    """Each test registers the guide's services itself; they are removed afterwards."""
    SENT.clear()
    yield
    for name in ("notification_service", "email_sender", "UserService"):
        if has_service(name):
            unregister_service(name)


def register_guide_services() -> tuple[Any, Any]:
    """§4 'Service Registration', verbatim."""
    from crown_nexus.core.dependency_manager import register_service

    # Register a service factory function
    @register_service
    def get_notification_service(db=None):
        """Create and return a notification service instance."""
        return NotificationService(db)

    # Register with explicit name
    @register_service(name="email_sender")
    def get_email_service():
        """Create and return an email service instance."""
        return EmailService(
            smtp_host=settings.SMTP_HOST,
            smtp_port=settings.SMTP_PORT
        )

    return get_notification_service, get_email_service


def test_service_registration() -> None:
    """Bare @register_service names a get_<x> factory "<x>"; name= registers under that name; decorators return the function."""
    from crown_nexus.core.dependency_manager import get_service

    get_notification_service, get_email_service = register_guide_services()
    assert get_notification_service.__name__ == "get_notification_service"
    shared = get_service("notification_service")
    assert isinstance(shared, NotificationService) and shared.db is None
    assert get_service("notification_service") is shared  # one shared instance without kwargs
    db = AsyncSession()
    fresh = get_service("notification_service", db=db)
    assert fresh is not shared and fresh.db is db  # kwargs build a fresh instance
    email = get_service("email_sender")
    assert (email.smtp_host, email.smtp_port) == ("mail.example.com", 2525)
    with pytest.raises(ServiceNotFoundException) as info:
        get_service("email_service")
    assert "email_sender" in info.value.message  # close names are suggested


async def test_getting_services_in_endpoint_and_by_class_name() -> None:
    """§4 'Getting Services': the endpoint gets a service built with its db; get_dependency finds a class by name."""
    from crown_nexus.core.dependency_manager import get_dependency, get_service

    register_guide_services()
    router = APIRouter()

    # In FastAPI endpoints
    @router.post("/users/{user_id}/notify")
    async def notify_user(
        user_id: str,
        message: str,
        db: AsyncSession = Depends(get_db)
    ):
        # Get service with database session
        notification_service = get_service("notification_service", db=db)
        await notification_service.send_notification(user_id, message)
        return {"status": "notification sent"}

    app = guide_app(router)
    async with app_client(app) as client:
        ok = await client.post("/users/u1/notify", params={"message": "hello"})
        missing = await client.post("/users/u1/notify")
    assert ok.status_code == 200
    assert data_of(ok.json()) == {"status": "notification sent"}
    [(user_id, message, db)] = SENT
    assert (user_id, message) == ("u1", "hello") and isinstance(db, AsyncSession)
    assert missing.status_code == 422  # FastAPI's own validation error, in the SPEC §3 body
    assert_error_body(missing.json(), "VALIDATION_ERROR")
    assert missing.json()["details"][0]["loc"] == ["query", "message"]

    # "from app.services.user_service import UserService": the user's class, registered by class name
    from crown_nexus.core.dependency_manager import register_service

    @register_service
    class UserService:
        def __init__(self, db: Any = None) -> None:
            self.db = db

    db = AsyncSession()
    # Get by class name
    user_service = get_dependency(UserService.__name__, db=db)
    assert isinstance(user_service, UserService) and user_service.db is db


async def test_dependency_injection() -> None:
    """§4 'Dependency Injection': the audit and notification services are injected and used."""
    register_guide_services()
    from crown_nexus.core.dependency_manager import inject_dependency, with_dependencies

    # Inject a single dependency
    @inject_dependency("audit_service")
    def log_user_action(user_id, action, audit_service=None):
        """Log a user action using the injected audit service."""
        audit_service.log_action(user_id, action)

    # Inject multiple dependencies
    @with_dependencies(notifier="notification_service", audit="audit_service")
    async def process_order(order_data, user_id, notifier=None, audit=None):
        """Process an order with multiple injected services."""
        # Process order...

        # Use injected services
        await notifier.send_notification(user_id, "Order processed")
        audit.log_action(user_id, "order_processed", order_id=order_data["id"])

    audit_log = AuditService()  # the same durable trail as the registered audit service
    log_user_action("u1", "login")  # not awaited: the record is still written
    entry = (await audit_log.recent(1))[0]
    assert (entry["user_id"], entry["action"]) == ("u1", "login")
    assert log_user_action.__doc__ == "Log a user action using the injected audit service."

    await process_order({"id": "o-7"}, "u2")
    assert SENT == [("u2", "Order processed", None)]
    entry = (await audit_log.recent(1))[0]
    assert (entry["user_id"], entry["action"]) == ("u2", "order_processed")
    assert entry["details"] == {"order_id": "o-7"}  # extra keyword fields land in details
    assert (await audit_log.verify_chain()).ok

    # an argument passed explicitly wins over the injected service
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[Any, ...]] = []

        def log_action(self, *args: Any, **kwargs: Any) -> None:
            self.calls.append((args, kwargs))

    recorder = Recorder()
    log_user_action("u3", "logout", audit_service=recorder)
    assert recorder.calls == [(("u3", "logout"), {})]


async def test_in_service_classes() -> None:
    """§4 'In Service Classes': the constructor gets audit and notification services bound to its db."""
    register_guide_services()
    from crown_nexus.core.dependency_manager import get_service

    class UserService:
        def __init__(self, db):
            self.db = db
            # Get dependencies in constructor
            self.audit_service = get_service("audit_service", db=db)
            self.notification_service = get_service("notification_service", db=db)

        async def update_user(self, user_id, data):
            # Business logic
            user = await self.repository.update(user_id, data)

            # Use services
            await self.audit_service.log_user_update(user_id, data)
            await self.notification_service.notify_profile_update(user_id)

            return user

    class Repository:  # the user's repository
        async def update(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
            return {"id": user_id, **data}

    db = AsyncSession()
    service = UserService(db)
    service.repository = Repository()
    assert service.audit_service.db is db and service.notification_service.db is db
    user = await service.update_user("u5", {"name": "Eve", "email": "e@example.com"})
    assert user == {"id": "u5", "name": "Eve", "email": "e@example.com"}
    assert SENT == [("u5", "profile updated", db)]
    entry = (await AuditService().recent(1))[0]
    assert (entry["user_id"], entry["action"]) == ("u5", "user_update")
    assert entry["details"] == {"fields": ["email", "name"]}


# every shipped service the guide fetches with get_service(...)
GUIDE_SERVICES = {
    "audit_service": "crown_nexus.core.error",
    "cache_service": "crown_nexus.core.cache",
    "error_service": "crown_nexus.core.error",
    "event_service": "crown_nexus.core.events",
    "feature_service": "crown_nexus.core.features",
    "metrics_service": "crown_nexus.core.metrics",
    "permission_service": "crown_nexus.core.permissions",
    "rate_limiting_service": "crown_nexus.core.rate_limiting",
    "security_service": "crown_nexus.core.security",
    "validation_service": "crown_nexus.core.validation",
}


def test_guide_service_names_are_known() -> None:
    """Each shipped service name the guide passes to get_service maps to the module providing it."""
    from crown_nexus.core.dependency_manager import BUILTIN_PROVIDERS

    for name, module in GUIDE_SERVICES.items():
        assert BUILTIN_PROVIDERS.get(name) == module, name


def test_get_service_works_with_only_the_dependency_manager_imported() -> None:
    """As in §3 (``error_service = get_service("error_service")``): no other import is needed."""
    import importlib.util
    import subprocess
    import sys

    landed = [
        name for name, module in GUIDE_SERVICES.items() if importlib.util.find_spec(module) is not None
    ]
    assert "error_service" in landed and "permission_service" in landed
    code = (
        "import sys\n"
        "from crown_nexus.core.dependency_manager import get_service\n"
        f"for name in {landed!r}:\n"
        "    svc = get_service(name)\n"
        "    assert svc is get_service(name), name\n"
        "    print('SERVICE', name, type(svc).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("SERVICE ")]
    assert found == landed
