"""``POST /auth/register``: self-service sign-up of the reference service (issue 15).

The body is checked with the guide's §5 validation: :func:`validate_data` (the pydantic model
:class:`RegistrationRequest`), :func:`validate_composite` (:data:`REGISTRATION_RULES`: e-mail
syntax by email-validator, name length, phone format), the password policy
(:func:`validate_password_policy`) and :func:`validate_unique` (the e-mail is not taken: 409).
The unique index on ``users.email`` makes it race-free: of concurrent registrations of one
address exactly one is created, the others get the same 409 (the ``IntegrityError`` of the
loser is that 409, never a 500). It sits under ``/auth/``, so the ``auth`` rate limit (20 per
minute per IP, :data:`crown_nexus.demo.routers.rate_limits.AUTH_RULE`) applies.

A registered user gets the ``user`` role (its grants come from the role). The phone number, when
given, is stored encrypted (``encrypt_data``, guide §12) and only its owner reads it back
(``GET /users/me``). The account and its typed domain event :class:`UserRegisteredEvent` are
written in one transaction (the outbox); the app's handler records the registration in the audit
trail (``USER_REGISTERED``). The insert is timed with ``@track_db_insert`` (guide §6).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.events import get_event_service
from crown_nexus.core.events.domain_events import DomainEvent
from crown_nexus.core.exceptions import ResourceAlreadyExistsException, ValidationException
from crown_nexus.core.metrics import track_db_insert
from crown_nexus.core.security import SecurityService, decrypt_data, encrypt_data
from crown_nexus.core.security.passwords import validate_password_policy
from crown_nexus.core.validation import validate_composite, validate_data, validate_unique
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_users import User
from crown_nexus.logging import get_current_request_id, get_logger
from crown_nexus.settings import Settings

__all__ = [
    "REGISTRATION_RULES",
    "RegisteredUser",
    "RegistrationRequest",
    "UserRegisteredEvent",
    "decrypt_phone",
    "install",
    "router",
]

logger = get_logger("crown_nexus.demo.registration")

router = APIRouter(prefix="/auth", tags=["auth"])


class RegistrationRequest(BaseModel):
    """Body of ``POST /auth/register``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, min_length=1, max_length=32)


#: the §5 composite rules every registration passes (all failures are reported together)
REGISTRATION_RULES: dict[str, dict[str, Any]] = {
    "email": {"required": True, "email": True},
    "name": {"required": True, "length": {"min_length": 1, "max_length": 200}},
    "phone": {"phone": True},
}


@dataclass
class RegisteredUser:
    """Data of :class:`UserRegisteredEvent` (no secret, no phone number)."""

    user_id: str
    email: str
    name: str
    role: str


@dataclass
class UserRegisteredEvent(DomainEvent[RegisteredUser]):
    """A user registered themselves (typed data: :class:`RegisteredUser`)."""

    event_name: ClassVar[str] = "user.registered"


def _already_registered() -> ResourceAlreadyExistsException:
    return ResourceAlreadyExistsException(
        resource_type="User", field="email", message="This e-mail address is already registered"
    )


def _in_body(errors: list[dict[str, Any]]) -> ValidationException:
    return ValidationException(
        "Validation failed", errors=[{**e, "loc": ["body", *e.get("loc", [])]} for e in errors]
    )


def _encryption_keys(settings: Settings) -> list[str] | None:
    """The app's own encryption keys when it has some, else the process' (``None``)."""
    return list(settings.encryption_keys) or None


def decrypt_phone(user: User, settings: Settings) -> str | None:
    """The user's phone number in clear (for its owner only), or ``None`` when none is stored."""
    if user.phone_encrypted is None:
        return None
    phone: str = decrypt_data(user.phone_encrypted, keys=_encryption_keys(settings))
    return phone


@track_db_insert(entity="user")
async def _insert_user(db: AsyncSession, user: User, event: UserRegisteredEvent) -> None:
    """Insert ``user`` and its event (outbox) in one transaction; ``IntegrityError`` when the
    e-mail was taken meanwhile (nothing is written then)."""
    db.add(user)
    await db.flush()  # the unique index decides here, before the event is queued
    await get_event_service().publish(
        event.event_name, event.data_dict(), context=event.to_dict(), session=db
    )
    await db.commit()


_REGISTRATION_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RegistrationRequest.model_json_schema()}},
    }
}


@router.post("/register", status_code=201, openapi_extra=_REGISTRATION_DOC)
async def register(
    request: Request,
    payload: dict[str, Any] = Body(...),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Create an account (``user`` role) and return its public view (201).

    422 (SPEC §3 ``errors``) for a body that fails the model, the composite rules or the
    password policy; 409 when the e-mail address is registered already, also when another
    registration of it wins a race.
    """
    try:
        data = validate_data(payload, RegistrationRequest)
    except ValidationException as exc:  # located in the body, like FastAPI's own 422s
        raise _in_body(exc.errors) from None
    ok, errors = validate_composite(data.model_dump(), REGISTRATION_RULES)
    if not ok:
        raise _in_body(errors)
    email = data.email.lower()
    valid, message = await validate_password_policy(data.password, email=email)
    if not valid:
        raise ValidationException(
            "Validation failed",
            errors=[{"loc": ["body", "password"], "msg": message,
                     "type": "value_error.password_policy"}],
        )
    if not await validate_unique("email", email, User, db):
        raise _already_registered()
    await db.rollback()  # hold no transaction (nor connection) while the password is hashed
    service: SecurityService = request.app.state.security_service
    settings: Settings = request.app.state.settings
    user = User(
        id=str(uuid.uuid4()),  # known before the insert: the event carries it
        email=email,
        name=data.name,
        hashed_password=await service.hash_password(data.password),
        role="user",
        permissions=[],
        is_active=True,
        created_at=datetime.datetime.now(datetime.UTC),
        phone_encrypted=None
        if data.phone is None
        else encrypt_data(data.phone, keys=_encryption_keys(settings)),
    )
    event = UserRegisteredEvent.create(
        RegisteredUser(user_id=user.id, email=email, name=data.name, role="user"),
        user_id=user.id,
        request_id=get_current_request_id(),
    )
    try:
        await _insert_user(db, user, event)
    except IntegrityError:
        await db.rollback()
        raise _already_registered() from None
    logger.info("User registered", user_id=user.id)
    return user.to_response()


Handler = Callable[[dict[str, Any]], Awaitable[None]]


def _audit_handler(app: Any) -> Handler:
    """Record a :class:`UserRegisteredEvent` of this app's database in its audit trail."""

    async def on_user_registered(event: dict[str, Any]) -> None:
        typed = UserRegisteredEvent.from_dict(event)
        async with app.state.sessionmaker() as db:
            if await db.get(User, typed.data.user_id) is None:
                return  # a user of another app's database (one event bus per process)
        audit = getattr(app.state, "audit_service", None)
        if audit is None:
            return
        await audit.log_action(
            user_id=typed.data.user_id,
            action="USER_REGISTERED",
            resource_type="User",
            resource_id=typed.data.user_id,
            details={"event": typed.event_name, "event_id": typed.id, "role": typed.data.role},
            request_id=typed.request_id,
        )

    return on_user_registered


def _with_handler(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        events = get_event_service()
        subscription = events.subscribe(
            UserRegisteredEvent.event_name,
            _audit_handler(app),
            name=f"registration-audit-{id(app)}",
        )
        try:
            async with inner(app) as state:
                yield state
        finally:
            events.unsubscribe(UserRegisteredEvent.event_name, subscription)

    return lifespan


def install(app: Any) -> Any:
    """Give the demo ``app`` ``POST /auth/register`` and the audit handler of its event."""
    app.include_router(router)
    app.router.lifespan_context = _with_handler(app.router.lifespan_context)
    return app
