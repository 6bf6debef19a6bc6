"""Documents owned by users and shared with read/write grants (guide §11 and §14, SPEC §4/§9).

Built only from the public API. One :class:`~crown_nexus.core.permissions.ObjectRule`
(:data:`RULE`) decides both what ``GET /documents`` lists (as an SQL filter) and what
``GET /documents/{id}`` and the writes allow (on the object), so a listing never shows what the
detail refuses. The rule: ``system:admin`` and ``document:admin`` reach every document;
otherwise the caller needs the permission (``document:read``/``update``/``delete``/``share``)
and must own the document or — for reading and updating only — hold a share on it (a ``read``
grant reads, a ``write`` grant reads and updates). Deleting and sharing stay with the owner and
the admins.

Answers (the same for every endpoint):

* a caller who holds no way to the permission at all (e.g. a guest asking for ``document:read``)
  gets **403** — that says something about the caller, nothing about any document;
* a document the caller may not *read* is **404**, exactly like one that does not exist (its
  existence is not leaked), for reads and writes alike;
* a document the caller may read but not change (a ``read`` share asked to update, a ``write``
  share asked to delete or share) is **403**.

:class:`DocumentService` follows guide §14's ``share_document``: validation
(``crown_nexus.core.validation.validate_data``), the object permission, the business rules, the
write, cache invalidation, the audit record (the app's durable trail, awaited) and an event
(``document.created`` / ``updated`` / ``deleted`` / ``shared`` / ``unshared``, published after
commit). Single documents are read through the app's own cache (``documents:document:<id>``,
the document with its grants), invalidated on every write. The caller is read from the
account as stored now (:func:`current_caller`): deactivated accounts are refused, demotions
count at once. :func:`install` wires it into an app.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.core.cache import CacheService
from crown_nexus.core.cache.keys import generate_model_key
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.exceptions import (
    AuthenticationException,
    BusinessException,
    PermissionDeniedException,
    ResourceNotFoundException,
    ValidationException,
)
from crown_nexus.core.pagination import CursorPaginationParams, paginate_with_cursor
from crown_nexus.core.permissions import ObjectRule, Permission, PermissionChecker, ShareRelation
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.core.validation import validate_data
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_documents import Document, DocumentShare
from crown_nexus.demo.models_users import User
from crown_nexus.demo.routers.catalog import parse_sort
from crown_nexus.logging import get_logger

__all__ = [
    "RULE",
    "SORTABLE",
    "DocumentCreate",
    "DocumentService",
    "DocumentShareSchema",
    "DocumentUpdate",
    "current_caller",
    "install",
    "item_key",
    "router",
]

logger = get_logger("crown_nexus.demo.documents")

router = APIRouter(prefix="/documents", tags=["demo: documents (object permissions)"])

#: the one rule of documents: detail checks and listings both read it
RULE = ObjectRule(
    Document.owner_id,
    shares=ShareRelation(
        object_column=DocumentShare.document_id,
        user_column=DocumentShare.user_id,
        grant_column=DocumentShare.grant,
        target_column=Document.id,
    ),
    resource_type="Document",
)

#: fields a client may sort ``GET /documents`` by (the id breaks ties)
SORTABLE = ("id", "title", "created_at", "updated_at")
TTL = 300

READ = Permission.DOCUMENT_READ.value
UPDATE = Permission.DOCUMENT_UPDATE.value
DELETE = Permission.DOCUMENT_DELETE.value
SHARE = Permission.DOCUMENT_SHARE.value
CREATE = Permission.DOCUMENT_CREATE.value


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _title(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("title must not be blank")
    return value


class DocumentCreate(BaseModel):
    """Body of ``POST /documents``."""

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=100_000)

    _check_title = field_validator("title")(_title)


class DocumentUpdate(BaseModel):
    """Body of ``PUT /documents/{id}``: the fields to change (at least one)."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=100_000)

    @field_validator("title")
    @classmethod
    def _check_title(cls, value: str | None) -> str | None:
        return None if value is None else _title(value)

    @model_validator(mode="after")
    def _something(self) -> DocumentUpdate:
        if self.title is None and self.body is None:
            raise ValueError("give title and/or body")
        return self


class DocumentShareSchema(BaseModel):
    """Body of ``POST /documents/{id}/shares``: who gets which grant."""

    user_id: str = Field(min_length=1, max_length=36)
    grant: Literal["read", "write"]


def item_key(document_id: str) -> str:
    """The cache key of one document (its fields and its grants)."""
    return generate_model_key("documents", "document", document_id)


def _not_found(document_id: str) -> ResourceNotFoundException:
    """The same 404 for a missing document and for one the caller may not read."""
    return ResourceNotFoundException(resource_type="Document", resource_id=document_id)


class DocumentService:
    """Guide §14's document service: every write validates, checks the object permission,
    commits, invalidates the cache, writes the audit record and publishes an event."""

    def __init__(
        self,
        db: AsyncSession,
        *,
        cache: CacheService,
        audit: Any,
        events: Any,
        secret_key: str,
    ) -> None:
        self.db = db
        self.cache = cache
        self.audit = audit
        self.events = events
        self.secret_key = secret_key

    # --- reading ---------------------------------------------------------------------------

    @staticmethod
    def require_some_access(user: Any, permission: str) -> None:
        """403 when no document at all could pass ``permission`` for ``user`` (says nothing
        about any one document)."""
        if RULE.decide(user, permission).scope == "none":
            raise PermissionDeniedException(
                message=f"Permission denied: {permission} required",
                resource_type="Document",
                permission=permission,
                action=permission.partition(":")[2],
            )

    async def _record(self, document_id: str) -> dict[str, Any] | None:
        """The document and its grants (``{"document": ..., "shares": {user_id: grant}}``),
        read through the cache; ``None`` when there is no such document."""
        key = item_key(document_id)
        record = await self.cache.get(key)
        if isinstance(record, dict):
            return record
        document = await self.db.get(Document, document_id)
        if document is None:
            return None
        rows = await self.db.execute(
            select(DocumentShare.user_id, DocumentShare.grant).where(
                DocumentShare.document_id == document_id
            )
        )
        record = {"document": document.to_dict(), "shares": {u: g for u, g in rows.all()}}
        await self.cache.set(key, record, ttl=TTL, tags=["documents", f"document:{document_id}"])
        return record

    async def get(self, user: Any, document_id: str) -> dict[str, Any]:
        """The document, when the rule lets ``user`` read it; else 404 (or 403, see module)."""
        self.require_some_access(user, READ)
        record = await self._record(document_id)
        if record is None:
            raise _not_found(document_id)
        grant = record["shares"].get(str(user["id"]))
        if not await RULE.check(self.db, user, record["document"], READ, grants=[grant]):
            raise _not_found(document_id)
        return {**record["document"], "grant": grant}

    async def list(self, user: Any, params: CursorPaginationParams) -> dict[str, Any]:
        """One keyset page of the documents ``user`` may read (the rule as an SQL filter)."""
        self.require_some_access(user, READ)
        query = RULE.filter(select(Document), user, READ)
        page = await paginate_with_cursor(
            self.db,
            Document,
            query,
            params,
            transform_func=lambda d: d.to_dict(),
            allowed_sort_fields=SORTABLE,
            secret_key=self.secret_key,
            cursor_scope=f"documents:{user['id']}",
        )
        return {
            "items": page.items,
            "metadata": {
                "total": page.total,
                "limit": page.limit,
                "has_next": page.has_next,
                "has_prev": page.has_prev,
                "next_cursor": page.next_cursor,
                "prev_cursor": page.prev_cursor,
            },
        }

    # --- writing ---------------------------------------------------------------------------

    async def _writable(self, user: Any, document_id: str, permission: str) -> Document:
        """The stored document, when ``user`` may read it (else 404) and use ``permission`` on
        it (else 403). Read fresh from the database, never from the cache."""
        document = await self.db.get(Document, document_id)
        if document is None:
            raise _not_found(document_id)
        grants = await RULE.grants_of(self.db, user, document)
        if not RULE.allows(user, document, READ, grants=grants):
            await RULE.check(self.db, user, document, permission, grants=grants)  # audit the denial
            raise _not_found(document_id)
        await RULE.ensure(self.db, user, document, permission, grants=grants)
        return document

    async def _forget(self, document_id: str) -> None:
        """Drop the cached document (before the commit too, so a concurrent read that cached
        the old state just before is dropped again by :meth:`_after_write`)."""
        await self.cache.delete(item_key(document_id))

    async def _after_write(
        self,
        user: Any,
        action: str,
        document_id: str,
        event: str,
        payload: dict[str, Any],
        *,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Invalidate the cached document, record the audit entry, publish the event."""
        await self.cache.delete(item_key(document_id))
        await self.audit.log_action(
            user_id=str(user["id"]),
            action=action,
            resource_type="Document",
            resource_id=document_id,
            target_id=target_id,
            details=details or {},
        )
        await self.events.publish(
            event_name=event,
            payload={"document_id": document_id, "user_id": str(user["id"]), **payload},
        )
        logger.info("Document changed", action=action, document_id=document_id, user_id=user["id"])

    async def create(self, user: Any, data: Any) -> dict[str, Any]:
        """Create a document owned by ``user`` (needs ``document:create``)."""
        PermissionChecker.ensure_permission(user, CREATE, resource_type="Document")
        valid = validate_data(data, DocumentCreate)
        document = Document(owner_id=str(user["id"]), title=valid.title, body=valid.body)
        self.db.add(document)
        await self.db.commit()
        await self._after_write(
            user,
            "document_create",
            document.id,
            "document.created",
            {"owner_id": document.owner_id},
            details={"title": document.title},
        )
        return document.to_dict()

    async def update(self, user: Any, document_id: str, data: Any) -> dict[str, Any]:
        """Change title and/or body (owner, ``write`` share or admin)."""
        document = await self._writable(user, document_id, UPDATE)
        valid = validate_data(data, DocumentUpdate)
        changed = valid.model_dump(exclude_none=True)
        for name, value in changed.items():
            setattr(document, name, value)
        document.updated_at = _now()
        await self._forget(document_id)
        await self.db.commit()
        await self._after_write(
            user,
            "document_update",
            document_id,
            "document.updated",
            {"owner_id": document.owner_id, "fields": sorted(changed)},
            details={"fields": sorted(changed)},
        )
        return document.to_dict()

    async def delete(self, user: Any, document_id: str) -> None:
        """Delete the document and its shares (owner or admin)."""
        document = await self._writable(user, document_id, DELETE)
        owner = document.owner_id
        await self.db.execute(delete(DocumentShare).where(DocumentShare.document_id == document_id))
        await self.db.delete(document)
        await self._forget(document_id)
        await self.db.commit()
        await self._after_write(
            user, "document_delete", document_id, "document.deleted", {"owner_id": owner}
        )

    async def share(self, user: Any, document_id: str, share_data: Any) -> dict[str, Any]:
        """Give (or change) a user's grant on the document (owner or admin).

        422 when the body is invalid or the recipient is not an active user; 400 when the
        recipient is the owner (who already holds every right).
        """
        document = await self._writable(user, document_id, SHARE)
        valid = validate_data(share_data, DocumentShareSchema)
        if valid.user_id == document.owner_id:
            raise BusinessException(
                message="The owner already has full access to the document",
                details={"document_id": document_id, "user_id": valid.user_id},
            )
        recipient = await self.db.get(User, valid.user_id)
        if recipient is None or not recipient.is_active:
            raise ValidationException(
                "Invalid share",
                errors=[
                    {
                        "loc": ["body", "user_id"],
                        "msg": "no active user has this id",
                        "type": "value_error.unknown_user",
                    }
                ],
            )
        existing = await self.db.get(DocumentShare, (document_id, valid.user_id))
        created = existing is None
        previous = None if existing is None else existing.grant
        if existing is None:
            self.db.add(
                DocumentShare(
                    document_id=document_id,
                    user_id=valid.user_id,
                    grant=valid.grant,
                    created_by=str(user["id"]),
                )
            )
        else:
            existing.grant = valid.grant
            existing.updated_at = _now()
        await self._forget(document_id)
        await self.db.commit()
        await self._after_write(
            user,
            "document_share",
            document_id,
            "document.shared",
            {"recipient_id": valid.user_id, "grant": valid.grant, "owner_id": document.owner_id},
            target_id=valid.user_id,
            details={"grant": valid.grant, "previous": previous},
        )
        return {
            "document_id": document_id,
            "user_id": valid.user_id,
            "grant": valid.grant,
            "created": created,
        }

    async def unshare(self, user: Any, document_id: str, recipient_id: str) -> None:
        """Take a user's grant away (owner or admin); 404 when there is none."""
        document = await self._writable(user, document_id, SHARE)
        existing = await self.db.get(DocumentShare, (document_id, recipient_id))
        if existing is None:
            raise ResourceNotFoundException(
                resource_type="DocumentShare", resource_id=f"{document_id}/{recipient_id}"
            )
        await self.db.delete(existing)
        await self._forget(document_id)
        await self.db.commit()
        await self._after_write(
            user,
            "document_unshare",
            document_id,
            "document.unshared",
            {"recipient_id": recipient_id, "owner_id": document.owner_id},
            target_id=recipient_id,
        )


async def current_caller(
    user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """The caller with the account as stored now (SPEC §4: inactive users hold nothing).

    A deactivated or deleted account is refused (401) even with an unexpired token; a bearer
    token's role and grants are replaced by the account's current ones (a demotion counts at
    once). An API key keeps exactly its own permissions (bounded by its owner's, see SPEC §5).
    """
    account = await db.get(User, str(user["id"]))
    if account is None or not account.is_active:
        raise AuthenticationException(message="Account not found or inactive")
    if user.get("auth_method") == "api_key":
        return user
    return {
        **user,
        "role": account.role,
        "permissions": list(account.permissions or []),
        "is_active": True,
    }


def _service(request: Request, db: AsyncSession) -> DocumentService:
    state = request.app.state
    audit = getattr(state, "audit_service", None) or get_service("audit_service")
    return DocumentService(
        db,
        cache=state.documents_cache,
        audit=audit,
        events=get_service("event_service"),
        secret_key=state.settings.secret_key.get_secret_value(),
    )


@router.post("", status_code=201)
async def create_document(
    request: Request,
    data: dict[str, Any] = Body(...),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Create a document owned by the caller (``document:create``)."""
    return await _service(request, db).create(user, data)


@router.get("")
async def list_documents(
    request: Request,
    cursor: str | None = Query(default=None, max_length=2048),
    limit: int = Query(default=20, ge=1, le=100),
    sort: str | None = Query(default=None, max_length=200),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """The documents the caller may read, one keyset page (``sort`` as in ``/catalog``)."""
    params = CursorPaginationParams(cursor=cursor, limit=limit, sort=parse_sort(sort))
    return await _service(request, db).list(user, params)


@router.get("/{document_id}")
async def get_document(
    request: Request,
    document_id: str = Path(max_length=64),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """One document (404 when it does not exist or the caller may not read it)."""
    return await _service(request, db).get(user, document_id)


@router.put("/{document_id}")
async def update_document(
    request: Request,
    document_id: str = Path(max_length=64),
    data: dict[str, Any] = Body(...),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Update title/body: owner, a ``write`` share or an admin (``read`` share: 403)."""
    return await _service(request, db).update(user, document_id, data)


@router.delete("/{document_id}", status_code=204)
async def delete_document(
    request: Request,
    document_id: str = Path(max_length=64),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> Response:
    """Delete a document: owner or admin."""
    await _service(request, db).delete(user, document_id)
    return Response(status_code=204)


@router.post("/{document_id}/shares")
async def share_document(
    request: Request,
    document_id: str = Path(max_length=64),
    data: dict[str, Any] = Body(...),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Share with a user (``{"user_id", "grant": "read"|"write"}``): owner or admin."""
    return await _service(request, db).share(user, document_id, data)


@router.delete("/{document_id}/shares/{user_id}", status_code=204)
async def unshare_document(
    request: Request,
    document_id: str = Path(max_length=64),
    user_id: str = Path(max_length=64),
    user: dict[str, Any] = Depends(current_caller),
    db: AsyncSession = Depends(get_db),
) -> Response:
    """Remove a user's grant: owner or admin."""
    await _service(request, db).unshare(user, document_id, user_id)
    return Response(status_code=204)


def _with_cache(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            cache: CacheService = app.state.documents_cache
            await cache.initialize()
            try:
                yield state
            finally:
                await cache.shutdown()

    return lifespan


def install(app: Any) -> Any:
    """Give ``app`` the document routes and its document cache (started with the app)."""
    app.state.documents_cache = CacheService(app.state.settings, component="documents")
    app.include_router(router)
    app.router.lifespan_context = _with_cache(app.router.lifespan_context)
    return app
