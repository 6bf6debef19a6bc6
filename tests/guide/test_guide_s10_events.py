"""Guide §10 (Events) examples, run as written against the shared ``event_service`` (``app.`` -> ``crown_nexus.``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from crown_nexus.core.config import settings
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.events import EventBackendType, get_event_service
from crown_nexus.core.events.domain_events import UserCreatedEvent
from crown_nexus.core.events.exceptions import (
    EventConfigurationException,
    EventHandlerException,
    EventPublishException,
)
from crown_nexus.logging import get_current_request_id, get_logger, request_context
from crown_nexus.testing import capture_errors

logger = get_logger(__name__)


@dataclass
class User:
    """The user's own domain object (not shipped by crown-nexus)."""

    id: uuid.UUID
    username: str
    email: str


class EmailService:
    """Records the welcome emails the examples send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_welcome_email(self, address: str) -> None:
        self.sent.append(address)


@pytest.fixture
async def event_service() -> AsyncIterator[Any]:
    """The shared event service, initialized as the guide does; handlers removed afterwards."""
    service = get_service("event_service")
    before = {name: list(subs) for name, subs in service.subscriptions().items()}
    await service.initialize(EventBackendType.MEMORY)
    try:
        yield service
    finally:
        await service.wait_for_pending(5)
        for name, subs in service.subscriptions().items():
            for sub in subs:
                if sub not in before.get(name, []):
                    service.unsubscribe(name, sub)
        service.set_default_context({})
        if service.backend_type is not EventBackendType.MEMORY:
            # a publish after shutdown restarts the backend last initialized: leave the shared
            # bus on memory, not on the Celery backend the last example switched to
            await service.initialize(EventBackendType.MEMORY)
        await service.shutdown()


async def test_publish_and_subscribe_examples(event_service: Any) -> None:
    """'Publishing Events' + 'Subscribing to Events': the handler gets data and context."""
    email_service = EmailService()
    assert get_event_service() is event_service

    @event_service.event_handler("user.created")
    async def handle_new_user(event: dict[str, Any]) -> None:
        user_data = event["data"]
        user_id = user_data["user_id"]
        logger.info("Processing new user creation", user_id=user_id)
        await email_service.send_welcome_email(user_data["email"])

    user = User(id=uuid.uuid4(), username="ann", email="ann@example.com")
    with request_context(request_id="req-guide"):
        await event_service.publish(
            event_name="user.created",
            payload={"user_id": str(user.id), "username": user.username, "email": user.email},
            context={"user_id": user.id, "request_id": get_current_request_id()},
        )
    assert await event_service.wait_for_pending(2)
    assert email_service.sent == ["ann@example.com"]


async def test_typed_event_example(event_service: Any) -> None:
    """'Using Typed Domain Events': publish(e.data, context=e.to_dict()), handler from_dict."""
    email_service = EmailService()
    seen: list[str] = []

    @event_service.event_handler("user.created.typed")
    async def handle_typed_user_event(event: dict[str, Any]) -> None:
        typed_event = UserCreatedEvent.from_dict(event)
        user_data = typed_event.data
        seen.append(user_data.user_id)
        await email_service.send_welcome_email(user_data.email)

    user = User(id=uuid.uuid4(), username="bo", email="bo@example.com")
    user_created = UserCreatedEvent.create(
        data={"user_id": str(user.id), "username": user.username, "email": user.email},
        user_id=str(user.id),
        request_id=get_current_request_id(),
    )
    await event_service.publish(
        event_name=user_created.event_name,
        payload=user_created.data,
        context=user_created.to_dict(),
    )
    assert await event_service.wait_for_pending(2)
    assert seen == [str(user.id)] and email_service.sent == ["bo@example.com"]


async def test_error_handling_example(event_service: Any) -> None:
    """'Error Handling': bad publishes raise EventPublishException; handler errors are reported."""
    error_service = get_service("error_service")
    caught: list[str] = []

    async def publish_with_error_handling(event_data: Any) -> None:
        try:
            await event_service.publish("order.created", event_data)
        except EventPublishException as e:
            logger.error(f"Failed to publish order.created event: {e!s}")
            await error_service.report_error(e, {"event_data": "unserializable"})
            caught.append(type(e).__name__)

    @event_service.event_handler("order.created")
    async def explode(event: dict[str, Any]) -> None:
        raise ValueError("inventory down")

    with capture_errors() as reporter:
        await publish_with_error_handling({"order": object()})
        await publish_with_error_handling({"order_id": "1"})
        assert await event_service.wait_for_pending(2)
    assert caught == ["EventPublishException"]
    assert sorted(r.type for r in reporter.recent()) == ["EventPublishException", "ValueError"]
    assert issubclass(EventHandlerException, Exception)
    assert issubclass(EventConfigurationException, Exception)


async def test_advanced_configuration_example(event_service: Any) -> None:
    """'Advanced Configuration': default context, then re-initialize with the Celery backend."""
    event_service.set_default_context(
        {"application": "my-app", "environment": settings.ENVIRONMENT, "version": "1.0.0"}
    )
    got: list[dict[str, Any]] = []
    event_service.subscribe("ctx.check", got.append)
    await event_service.publish("ctx.check", {})
    assert await event_service.wait_for_pending(2)
    assert got[0]["context"]["application"] == "my-app"
    assert got[0]["context"]["environment"] == settings.ENVIRONMENT.value

    async def initialize_with_celery() -> None:
        from crown_nexus.core.celery_app import celery_app

        assert celery_app.conf.accept_content == ["json"]
        await event_service.initialize(backend_type=EventBackendType.CELERY)

    await initialize_with_celery()
    assert event_service.backend_type is EventBackendType.CELERY
