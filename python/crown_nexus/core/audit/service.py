"""``AuditService``: the public face of the audit trail (guide §4, §14) and its configuration.

Owns the call shapes (``log_action``, ``log_user_update``, ``query``, ``verify_chain``,
``export_jsonl``, ``apply_retention``), turning a call into a redacted :class:`PendingRecord`,
and choosing the database: an explicit ``database_url``, else the engine of the ``db`` session
the service was given, else :func:`configure_audit`'s URL, else the settings'
``audit_database_url`` or ``database_url``. Storage is :mod:`.store`, hashing :mod:`.chain`,
the I/O thread :mod:`.runner`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Generator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crown_nexus.container import current_container, default_container
from crown_nexus.core._redact import redact
from crown_nexus.core.audit import export as _export
from crown_nexus.core.audit.chain import ChainVerification, jsonable
from crown_nexus.core.audit.checkpoint import (
    Checkpoint,
    CheckpointVerification,
    check,
    genuine,
)
from crown_nexus.core.audit.context import get_client_ip
from crown_nexus.core.audit.models import AuditRecord
from crown_nexus.core.audit.runner import Trail, get_runner, run
from crown_nexus.core.audit.store import PendingRecord, PurgeResult
from crown_nexus.core.dependency_manager import register_service
from crown_nexus.core.exceptions import ValidationException
from crown_nexus.logging import get_logger

__all__ = [
    "AuditService",
    "RecordedAction",
    "audit_service",
    "configure_audit",
    "get_audit_service",
]

_logger = get_logger("crown_nexus.audit")
_MAX_FIELD = 255
_EMPTY_CONFIG: dict[str, Any] = {"database_url": None, "retention_days": None, "secret_key": None}
_CONFIG_KEY = "audit.config"


def _config_now() -> dict[str, Any]:
    """The current app's audit configuration, else the one made outside any app, else empty."""
    found: dict[str, Any] | None = current_container().state.get(_CONFIG_KEY)
    if found is None:
        found = default_container().state.get(_CONFIG_KEY, _EMPTY_CONFIG)
    return found


def configure_audit(
    settings: Any = None,
    *,
    database_url: str | None = None,
    retention_days: int | None = None,
    secret_key: str | None = None,
) -> dict[str, Any]:
    """Set where services without their own database write (the app's settings or a URL), for
    the current app (outside an app: for every app that configures none itself).

    ``settings`` supplies ``audit_database_url`` (else ``database_url``),
    ``audit_retention_days`` and ``secret_key`` (for query cursors); keyword arguments win.
    ``configure_audit()`` with nothing goes back to reading :func:`get_settings` lazily.
    Returns the previous configuration; ``configure_audit(**previous)`` restores it.
    """
    previous = dict(_config_now())
    url = database_url
    days = retention_days
    secret = secret_key
    if settings is not None:
        url = url or getattr(settings, "audit_database_url", None) or settings.database_url
        if days is None:
            days = getattr(settings, "audit_retention_days", None)
        key: Any = getattr(settings, "secret_key", None)
        if secret is None:
            secret = key.get_secret_value() if hasattr(key, "get_secret_value") else key
    current_container().state[_CONFIG_KEY] = {
        "database_url": url,
        "retention_days": days,
        "secret_key": secret,
    }
    return previous


def _settings_value(name: str) -> Any:
    from crown_nexus.settings import get_settings

    return getattr(get_settings(), name, None)


def _url_of(db: Any) -> str | None:
    """The database URL behind an ``AsyncSession`` / ``AsyncEngine`` / ``AsyncConnection``."""
    bind = getattr(db, "bind", None) if db is not None else None
    if bind is None and db is not None and hasattr(db, "sync_engine"):
        bind = db
    engine = getattr(bind, "engine", bind)
    url = getattr(engine, "url", None)
    if url is None or not hasattr(url, "render_as_string"):
        return None
    return str(url.render_as_string(hide_password=False))


def _text(name: str, value: Any, *, required: bool = False) -> str | None:
    if value is None or (value == "" and not required):
        if required:
            raise ValidationException(
                f"{name} is required", errors=[{"loc": [name], "msg": "required", "type": "missing"}]
            )
        return None
    text = str(value)
    if required and not text.strip():
        raise ValidationException(
            f"{name} must not be empty", errors=[{"loc": [name], "msg": "empty", "type": "value_error"}]
        )
    if len(text) > _MAX_FIELD:
        raise ValidationException(
            f"{name} is longer than {_MAX_FIELD} characters",
            errors=[{"loc": [name], "msg": "too long", "type": "string_too_long"}],
        )
    return text


def _redact(details: Any) -> dict[str, Any]:
    data = jsonable(redact(jsonable(details)))
    return data if isinstance(data, dict) else {"value": data}


def _request_id() -> str | None:
    try:
        from crown_nexus.logging import get_current_request_id

        rid = get_current_request_id()
    except Exception:
        return None
    return str(rid) if rid else None


def _pending(
    user_id: Any,
    action: str,
    resource_id: Any,
    details: dict[str, Any] | None,
    resource_type: Any,
    target_id: Any,
    request_id: Any,
    client_ip: Any,
    timestamp: datetime | None,
    extra: dict[str, Any],
) -> PendingRecord:
    """One validated, redacted record to append (see :meth:`AuditService.log_action`)."""
    merged: dict[str, Any] = {**extra, **dict(details or {})}
    ts = timestamp or datetime.now(UTC)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return PendingRecord(
        created_at=ts.astimezone(UTC),
        actor_id=_text("user_id", user_id),
        action=_text("action", action, required=True) or "",
        resource_type=_text("resource_type", resource_type),
        resource_id=_text("resource_id", resource_id),
        target_id=_text("target_id", target_id),
        details=_redact(merged),
        request_id=_text("request_id", request_id if request_id is not None else _request_id()),
        client_ip=_text("client_ip", client_ip if client_ip is not None else get_client_ip()),
    )


class RecordedAction:
    """What ``log_action`` returns: the record is already queued; ``await`` it for the stored one.

    Awaiting gives the stored record as a dict (with ``seq`` and ``hash``) once it is committed,
    and raises if it could not be written. Left unawaited (guide §4's synchronous
    ``log_user_action``), the record is still written.
    """

    __slots__ = ("future",)

    def __init__(self, future: concurrent.futures.Future[AuditRecord]) -> None:
        self.future = future

    def __await__(self) -> Generator[Any, None, dict[str, Any]]:
        record = yield from asyncio.wrap_future(self.future).__await__()
        return record.to_dict()

    def result(self, timeout: float | None = 30.0) -> dict[str, Any]:
        """Block until written (from synchronous code); the stored record as a dict."""
        return self.future.result(timeout).to_dict()


class AuditService:
    """Records who did what in a durable, hash-chained SQL trail shared by every worker.

    ``AuditService(db)`` writes to the database of the ``db`` session (its engine's URL; the
    record is committed on its own, so it survives the caller's rollback);
    ``AuditService(database_url=...)`` to that URL; ``AuditService()`` to the configured one.
    """

    def __init__(self, db: Any = None, *, database_url: str | None = None) -> None:
        self.db = db
        self._database_url = database_url

    # --- where ---------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The URL this service writes to (resolved now; see the module docstring)."""
        return (
            self._database_url
            or _url_of(self.db)
            or _config_now()["database_url"]
            or _settings_value("audit_database_url")
            or str(_settings_value("database_url"))
        )

    def _trail(self) -> Trail:
        return get_runner().trail(self.database_url)

    # --- writing -------------------------------------------------------------------------

    def log_action(
        self,
        user_id: Any = None,
        action: str = "",
        resource_id: Any = None,
        details: dict[str, Any] | None = None,
        *,
        resource_type: Any = None,
        target_id: Any = None,
        request_id: Any = None,
        client_ip: Any = None,
        timestamp: datetime | None = None,
        **extra: Any,
    ) -> RecordedAction:
        """Queue one record; ``await`` the result to wait until it is committed.

        ``user_id`` is the actor; ``extra`` keyword fields (``order_id=...``) are stored in
        ``details`` next to the given ones (``details`` wins on a clash). Secrets in
        ``details`` are redacted. ``request_id`` and ``client_ip`` default to the current
        request's. Raises :class:`ValidationException` (422) for an empty ``action`` or a field
        longer than 255 characters.
        """
        item = _pending(
            user_id, action, resource_id, details, resource_type, target_id, request_id,
            client_ip, timestamp, extra,
        )
        return RecordedAction(self._trail().submit(item))

    async def log_action_in(
        self,
        session: AsyncSession,
        user_id: Any = None,
        action: str = "",
        resource_id: Any = None,
        details: dict[str, Any] | None = None,
        *,
        resource_type: Any = None,
        target_id: Any = None,
        request_id: Any = None,
        client_ip: Any = None,
        timestamp: datetime | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Append one record inside the caller's transaction: it commits or rolls back with it.

        Same fields and validation as :meth:`log_action`, but written through ``session`` (an
        ``AsyncSession`` on the database that holds the trail) and flushed, not committed: the
        change being audited and its record are one unit of work, so a rolled-back change leaves
        no record and the chain stays unbroken. Until ``session``'s transaction ends the chain
        head stays locked -- other audit writers wait -- so commit promptly. Records of things
        that must survive a rollback (a refused login) belong to :meth:`log_action`. Returns the
        record as a dict (``seq``, ``hash``), final once the transaction commits.
        """
        item = _pending(
            user_id, action, resource_id, details, resource_type, target_id, request_id,
            client_ip, timestamp, extra,
        )
        store = get_runner().trail(_url_of(session) or self.database_url).store
        await store.ensure_schema_in(session)
        (record,) = await store.extend(session, [item])
        return record.to_dict()

    async def log_user_update(
        self, user_id: Any, data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record a ``user_update`` of user ``user_id`` listing the updated field names."""
        return await self.log_action(
            user_id=user_id,
            action="user_update",
            resource_type="User",
            resource_id=user_id,
            details={"fields": sorted(data or {})},
        )

    async def flush(self) -> None:
        """Wait until every record this process queued for this database is written."""
        trail = self._trail()
        await run(trail.flush())

    # --- reading -------------------------------------------------------------------------

    def _filtered(
        self,
        actor_id: Any,
        action: str | None,
        resource_type: str | None,
        resource_id: Any,
        since: datetime | None,
        until: datetime | None,
    ) -> Any:
        stmt = select(AuditRecord)
        if actor_id is not None:
            stmt = stmt.where(AuditRecord.actor_id == str(actor_id))
        if action is not None:
            stmt = stmt.where(AuditRecord.action == action)
        if resource_type is not None:
            stmt = stmt.where(AuditRecord.resource_type == resource_type)
        if resource_id is not None:
            stmt = stmt.where(AuditRecord.resource_id == str(resource_id))
        if since is not None:
            stmt = stmt.where(AuditRecord.created_at >= since)
        if until is not None:
            stmt = stmt.where(AuditRecord.created_at < until)
        return stmt

    async def query(
        self,
        *,
        actor_id: Any = None,
        action: str | None = None,
        resource_type: str | None = None,
        resource_id: Any = None,
        since: datetime | None = None,
        until: datetime | None = None,
        params: Any = None,
        newest_first: bool = False,
        secret_key: str | bytes | None = None,
    ) -> Any:
        """One page of records matching every filter given, as a ``CursorPaginationResult``.

        Filters: actor, action, resource type / id, ``since`` (inclusive) and ``until``
        (exclusive) timestamps. ``params`` is a ``CursorPaginationParams`` (cursor, limit,
        sort); without sort keys the order is ``seq`` ascending, or descending with
        ``newest_first``. Items are record dicts. Bad cursors or params raise the pagination
        exceptions (422).
        """
        from crown_nexus.core.pagination import (
            CursorPaginationParams,
            SortDirection,
            SortField,
            paginate_with_cursor,
        )

        if params is None:
            params = CursorPaginationParams()
        if newest_first and isinstance(params, CursorPaginationParams) and not params.sort:
            params = params.model_copy(
                update={"sort": [SortField(field="seq", direction=SortDirection.DESC)]}
            )
        stmt = self._filtered(actor_id, action, resource_type, resource_id, since, until)
        trail = self._trail()
        key = secret_key or _config_now()["secret_key"]

        async def page() -> Any:
            await trail.flush()
            await trail.store.ensure_schema()
            async with trail.store.read_sessions() as session:
                return await paginate_with_cursor(
                    session,
                    AuditRecord,
                    stmt,
                    params,
                    transform_func=lambda r: r.to_dict(),
                    secret_key=key,
                )

        return await run(page())

    async def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest ``limit`` records, newest last."""
        trail = self._trail()

        async def read() -> list[dict[str, Any]]:
            await trail.flush()
            await trail.store.ensure_schema()
            async with trail.store.read_sessions() as session:
                stmt = select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(max(0, limit))
                rows = list((await session.execute(stmt)).scalars())
            return [r.to_dict() for r in reversed(rows)]

        return await run(read())

    async def verify_chain(self) -> ChainVerification:
        """Re-hash the whole trail from its anchor to its head (see :class:`ChainVerification`)."""
        trail = self._trail()

        async def check() -> ChainVerification:
            await trail.flush()
            return await trail.store.verify()

        return await run(check())

    async def checkpoint(self, *, secret_key: str | bytes | None = None) -> Checkpoint:
        """Sign the chain's head now and log it; keep the result outside the database.

        Returns a :class:`~crown_nexus.core.audit.checkpoint.Checkpoint` (``seq``, ``hash``,
        ``created_at``, ``signature``: HMAC-SHA256 under ``secret_key``, by default the
        configured secret key, which the database does not hold). Records queued before the
        call are written first. The checkpoint is also logged (``audit checkpoint``), so log
        shipping stores a copy. Raises :class:`ConfigurationException` without a key.
        """
        key = secret_key or _config_now()["secret_key"]
        trail = self._trail()

        async def read() -> tuple[int, str]:
            await trail.flush()
            return await trail.store.head()

        seq, head_hash = await run(read())
        checkpoint = Checkpoint.create(seq, head_hash, datetime.now(UTC), key)
        _logger.info("audit checkpoint", **checkpoint.to_dict())
        return checkpoint

    async def verify_checkpoint(
        self,
        checkpoint: Checkpoint | Mapping[str, Any],
        *,
        secret_key: str | bytes | None = None,
    ) -> CheckpointVerification:
        """Whether the trail still holds ``checkpoint``'s head (see
        :class:`~crown_nexus.core.audit.checkpoint.CheckpointVerification`): the signature is
        checked first (constant time), then the whole chain, then the record at its ``seq``.
        A malformed checkpoint is a :class:`ValidationException` (422).
        """
        found = Checkpoint.from_dict(checkpoint)
        key = secret_key or _config_now()["secret_key"]
        if not genuine(found, key):
            return CheckpointVerification(
                False, "bad_signature", "not signed with this key, or a field was changed"
            )
        chain = await self.verify_chain()
        trail = self._trail()
        anchor_hash, stored = await run(trail.store.hashes_for(found.seq))
        return check(found, chain, anchor_hash, stored)

    # --- export and retention -----------------------------------------------------------

    async def export_jsonl(
        self,
        *,
        actor_id: Any = None,
        action: str | None = None,
        resource_type: str | None = None,
        resource_id: Any = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AsyncIterator[str]:
        """The matching records in ``seq`` order, one JSON line each (``"...\\n"``)."""
        stmt = self._filtered(actor_id, action, resource_type, resource_id, since, until)
        trail = self._trail()
        await run(trail.flush())
        async for line in _export.jsonl_lines(trail.store, stmt, run):
            yield line

    async def export_to(self, target: str | IO[str], **filters: Any) -> int:
        """Write :meth:`export_jsonl` to a path or text file; return the number of records."""
        return await _export.write_jsonl(self.export_jsonl(**filters), target)

    async def apply_retention(
        self, days: int | None = None, *, now: datetime | None = None
    ) -> PurgeResult:
        """Delete records older than ``days`` (default: the configured retention; None keeps all).

        Only the oldest prefix of the chain is deleted and its last hash is kept as the anchor,
        so :meth:`verify_chain` still holds for the rest. The purge itself is recorded as an
        ``audit.retention`` record.
        """
        from crown_nexus.core.audit.retention import purge_older_than

        if days is None:
            days = _config_now()["retention_days"]
            if days is None:
                days = _settings_value("audit_retention_days")
        trail = self._trail()
        await run(trail.flush())
        result = await run(purge_older_than(trail.store, days, now=now))
        if result.deleted:
            await self.log_action(
                action="audit.retention",
                details={
                    "deleted": result.deleted,
                    "anchor_seq": result.anchor_seq,
                    "retention_days": days,
                },
            )
        return result


#: The process-wide audit service (configured database; see :func:`configure_audit`).
audit_service = AuditService()


@register_service(name="audit_service")
def get_audit_service(db: Any = None) -> AuditService:
    """The shared ``audit_service``, or one writing to the database of ``db`` when given."""
    return audit_service if db is None else AuditService(db)
