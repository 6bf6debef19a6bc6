"""The reference service's audit trail (issue 13): what is recorded and the admin endpoints.

Recorded from the events the systems already publish (no router is edited for it): logins
(``security.token_created`` of a token pair), failed password checks, logouts and revocations,
API-key creation, permission denials (``permission.denied`` / ``permission.object_denied``)
and feature-flag changes (``feature.updated``). Each app writes to its own database
(``audit_database_url`` or ``database_url``) and subscribes to its own event bus only while it
runs, so two apps in one process stay apart.

``GET /audit`` (``system:admin``) pages through the trail, newest first, filtered by
``actor_id``, ``action``, ``resource_type``, ``resource_id``, ``since``, ``until``, with the
library's signed cursors; ``GET /audit/verify`` (``system:admin``) re-hashes the chain;
``POST /audit/checkpoints`` signs the chain's head for keeping elsewhere and
``POST /audit/checkpoints/verify`` checks one (a history rewritten whole is found there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from crown_nexus.core.audit import AuditContextMiddleware, AuditService
from crown_nexus.core.pagination import CursorPaginationParams
from crown_nexus.core.permissions import require_admin
from crown_nexus.core.security.dependencies import get_current_user_with_permissions

__all__ = ["EVENT_ACTIONS", "install", "router"]

router = APIRouter(prefix="/audit", tags=["audit"])

Handler = Callable[[dict[str, Any]], Awaitable[None]]


def _service(request: Request) -> AuditService:
    service: AuditService = request.app.state.audit_service
    return service


@router.get("")
@require_admin()
async def read_trail(
    request: Request,
    actor_id: str | None = Query(default=None, max_length=255),
    action: str | None = Query(default=None, max_length=255),
    resource_type: str | None = Query(default=None, max_length=255),
    resource_id: str | None = Query(default=None, max_length=255),
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = Query(default=None, max_length=2048),
    limit: int = Query(default=50, ge=1, le=100),
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """One page of audit records, newest first (``next_cursor`` continues); admins only."""
    settings = request.app.state.settings
    page = await _service(request).query(
        actor_id=actor_id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        params=CursorPaginationParams(cursor=cursor, limit=limit),
        newest_first=True,
        secret_key=settings.secret_key.get_secret_value(),
    )
    return page.model_dump()


@router.get("/verify")
@require_admin()
async def verify_trail(
    request: Request,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Re-hash the whole chain: ``ok``, ``first_broken``, ``reason``, ``checked``; admins only."""
    return (await _service(request).verify_chain()).to_dict()


class CheckpointBody(BaseModel):
    """A checkpoint as ``POST /audit/checkpoints`` returned it."""

    model_config = ConfigDict(extra="forbid")

    seq: int = Field(ge=0)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


@router.post("/checkpoints", status_code=201)
@require_admin()
async def create_checkpoint(
    request: Request,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Sign the chain's head now (``seq``, ``hash``, ``created_at``, ``signature``); keep it
    outside the database and hand it back to ``POST /audit/checkpoints/verify``; admins only."""
    secret = request.app.state.settings.secret_key.get_secret_value()
    return (await _service(request).checkpoint(secret_key=secret)).to_dict()


@router.post("/checkpoints/verify")
@require_admin()
async def verify_checkpoint(
    request: Request,
    body: CheckpointBody,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
) -> dict[str, Any]:
    """Whether the trail still holds a checkpoint's head (``ok``, ``reason``: ``bad_signature``,
    ``chain_broken``, ``truncated``, ``rewritten``, ``before_anchor``); admins only."""
    secret = request.app.state.settings.secret_key.get_secret_value()
    result = await _service(request).verify_checkpoint(body.model_dump(), secret_key=secret)
    return result.to_dict()


def _login(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    return ("LOGIN", {}) if data.get("token_type") == "pair" else None


#: event name -> (data -> (action, extra record fields) or None to skip)
EVENT_ACTIONS: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]] = {
    "security.token_created": _login,
    "security.password_verification_failed": lambda d: ("LOGIN_FAILED", {}),
    "security.token_revoked": lambda d: ("TOKEN_REVOKED", {}),
    "security.api_key_created": lambda d: (
        "API_KEY_CREATED",
        {"resource_type": "ApiKey", "resource_id": d.get("key_id")},
    ),
    "permission.denied": lambda d: ("PERMISSION_DENIED", {}),
    "permission.object_denied": lambda d: ("PERMISSION_DENIED", {}),
    "feature.updated": lambda d: (
        "FLAG_CHANGED",
        {"resource_type": "FeatureFlag", "resource_id": d.get("flag")},
    ),
}


def _handler_for(service: AuditService, event_name: str) -> Handler:
    mapping = EVENT_ACTIONS[event_name]

    async def record(event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        if not isinstance(data, dict):
            data = {"value": data}
        mapped = mapping(data)
        if mapped is None:
            return
        action, fields = mapped
        for key in ("resource_type", "resource_id"):
            if fields.get(key) is None and isinstance(data.get(key), str):
                fields[key] = data[key]
        actor = data.get("user_id")
        if actor is None:
            from crown_nexus.logging import get_current_user_id

            actor = get_current_user_id()
        context = event.get("context") or {}
        await service.log_action(
            user_id=actor,
            action=action,
            details={"event": event_name, **data},
            request_id=context.get("request_id") if isinstance(context, dict) else None,
            **{k: v for k, v in fields.items() if v is not None},
        )

    record.__name__ = f"audit_{event_name.replace('.', '_')}"
    return record


def _with_subscriptions(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        from crown_nexus.core.events import get_event_service

        events = get_event_service()
        service: AuditService = app.state.audit_service
        subscriptions = [
            (name, events.subscribe(name, _handler_for(service, name), name=f"audit-{id(app)}-{name}"))
            for name in EVENT_ACTIONS
        ]
        try:
            async with inner(app) as state:
                yield state
        finally:
            for name, subscription in subscriptions:
                events.unsubscribe(name, subscription)
            await service.flush()

    return lifespan


def install(app: Any) -> Any:
    """Give the demo ``app`` its audit trail, the endpoints and the event subscriptions."""
    settings = app.state.settings
    app.state.audit_service = AuditService(
        database_url=settings.audit_database_url or settings.database_url
    )
    app.add_middleware(AuditContextMiddleware, trusted_proxies=settings.trusted_proxies)
    app.include_router(router)
    app.router.lifespan_context = _with_subscriptions(app.router.lifespan_context)
    return app
