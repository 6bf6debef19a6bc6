"""SQL storage of the audit trail: engine set-up, schema, chained append, reads and purge.

Owns every statement the audit trail runs (SQLAlchemy 2 async, SQLite and PostgreSQL).
Appends are serialised across processes by locking the chain-state row: ``SELECT ... FOR
UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` (the engine begins every transaction that way) on
SQLite, so several workers writing at once extend one unbroken chain; reads begin deferred
on SQLite (no write lock) and verification reads one snapshot (``REPEATABLE READ`` on
PostgreSQL). Table creation is lazy
(first use) and, on PostgreSQL, guarded by a transaction-level advisory lock so concurrent
workers do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, func, insert, select, text, update
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from crown_nexus.core.audit.chain import (
    GENESIS_HASH,
    ChainVerification,
    ChainVerifier,
    record_hash,
)
from crown_nexus.core.audit.models import AuditChainState, AuditRecord, audit_metadata

__all__ = ["AuditStore", "PendingRecord", "PurgeResult"]

_STATE_ID = 1
#: pg_advisory_xact_lock key guarding schema creation ("crown-nexus audit" folded to int64)
_SCHEMA_LOCK_KEY = 0x63_6E_61_75_64_69_74
_PAGE = 1000
#: execution option marking a read-only connection (SQLite: a deferred BEGIN, no write lock)
_READ_OPTION = "crown_nexus_audit_read"


@dataclass(frozen=True)
class PendingRecord:
    """The caller-supplied fields of a record to append (``seq`` and hashes come from the store)."""

    created_at: datetime
    actor_id: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    target_id: str | None
    details: dict[str, Any]
    request_id: str | None
    client_ip: str | None


@dataclass(frozen=True)
class PurgeResult:
    """What :meth:`AuditStore.purge_before` removed: ``deleted`` rows, the new anchor."""

    deleted: int
    anchor_seq: int
    anchor_hash: str


def _engine_for(url: str) -> AsyncEngine:
    """An engine of the audit trail's own (SQLite transactions begin IMMEDIATE)."""
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=2, max_overflow=3, pool_pre_ping=True)
    memory = url.rstrip("/").endswith(":memory:") or url.split("://", 1)[1] in ("", "/")
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        kwargs["poolclass"] = StaticPool
    engine = create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        read_only = conn.get_execution_options().get(_READ_OPTION)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class AuditStore:
    """The audit tables in one database (``url``); every method runs on the caller's loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine_for(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: sessions for reading only (on SQLite they do not take the write lock)
        self.read_sessions = async_sessionmaker(
            self.engine.execution_options(**{_READ_OPTION: True}), expire_on_commit=False
        )
        self.dialect = self.engine.dialect.name
        self._ready = False

    async def ensure_schema(self) -> None:
        """Create the tables and the chain-state row when missing (idempotent, race-safe)."""
        if self._ready:
            return
        async with self.engine.begin() as conn:
            await self._create(conn)
        self._ready = True

    async def ensure_schema_in(self, session: AsyncSession) -> None:
        """:meth:`ensure_schema` inside ``session``'s transaction (a caller that may already
        hold the database's write lock cannot wait for another connection to create the
        tables). Does nothing once the store knows they exist; a rolled-back creation is
        simply done again by the next writer."""
        if self._ready:
            return
        await self._create(await session.connection())

    async def _create(self, conn: AsyncConnection) -> None:
        """Create what is missing in ``conn``'s transaction: the tables, then the chain-state
        row, both under one lock (PostgreSQL: a transaction-level advisory lock; SQLite: the
        write lock) so concurrent first writers neither race on ``CREATE TABLE`` nor insert the
        row twice."""
        if self.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        await conn.run_sync(audit_metadata.create_all)
        found = await conn.scalar(
            select(AuditChainState.id).where(AuditChainState.id == _STATE_ID)
        )
        if found is None:
            await conn.execute(
                insert(AuditChainState).values(
                    id=_STATE_ID,
                    head_seq=0,
                    head_hash=GENESIS_HASH,
                    anchor_seq=0,
                    anchor_hash=GENESIS_HASH,
                )
            )

    async def _locked_state(self, session: AsyncSession) -> AuditChainState:
        """The chain-state row, locked until the transaction ends."""
        stmt = (
            select(AuditChainState)
            .where(AuditChainState.id == _STATE_ID)
            .execution_options(populate_existing=True)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        state = (await session.execute(stmt)).scalar_one_or_none()
        if state is None:
            self._ready = False
            raise RuntimeError("the audit chain-state row is missing")
        return state

    async def append(self, pending: Sequence[PendingRecord]) -> list[AuditRecord]:
        """Append ``pending`` in order as one transaction; return the stored records.

        After a failure the schema is checked again on the next call (tables dropped or a
        database recreated under a running process are created anew).
        """
        try:
            return await self._append(pending)
        except Exception:
            self._ready = False
            raise

    async def _append(self, pending: Sequence[PendingRecord]) -> list[AuditRecord]:
        await self.ensure_schema()
        async with self.sessions.begin() as session:
            return await self.extend(session, pending)

    async def extend(
        self, session: AsyncSession, pending: Sequence[PendingRecord]
    ) -> list[AuditRecord]:
        """Append ``pending`` in order inside ``session``'s transaction (which the caller ends).

        The chain-state row is locked first -- an ``UPDATE`` of it, which takes SQLite's write
        lock and PostgreSQL's row lock alike, even in a transaction that began deferred -- and
        stays locked until that transaction ends, so a rollback removes the records and the
        head together and other writers wait instead of forking the chain. Flushes; returns
        the records (with ``seq`` and ``hash``).
        """
        await session.execute(
            update(AuditChainState)
            .where(AuditChainState.id == _STATE_ID)
            .values(head_seq=AuditChainState.head_seq)
        )
        state = await self._locked_state(session)
        seq, prev = state.head_seq, state.head_hash
        records: list[AuditRecord] = []
        for item in pending:
            seq += 1
            fields: dict[str, Any] = {
                "seq": seq,
                "created_at": item.created_at,
                "actor_id": item.actor_id,
                "action": item.action,
                "resource_type": item.resource_type,
                "resource_id": item.resource_id,
                "target_id": item.target_id,
                "details": item.details,
                "request_id": item.request_id,
                "client_ip": item.client_ip,
                "prev_hash": prev,
            }
            prev = record_hash(fields)
            records.append(AuditRecord(**fields, hash=prev))
        session.add_all(records)
        state.head_seq, state.head_hash = seq, prev
        await session.flush()
        return records

    async def records(self, after_seq: int = 0, page: int = _PAGE) -> AsyncIterator[AuditRecord]:
        """Every record after ``after_seq`` in ``seq`` order, read in keyset pages."""
        await self.ensure_schema()
        last = after_seq
        while True:
            async with self.read_sessions() as session:
                stmt = (
                    select(AuditRecord)
                    .where(AuditRecord.seq > last)
                    .order_by(AuditRecord.seq)
                    .limit(page)
                )
                rows = list((await session.execute(stmt)).scalars())
            for row in rows:
                yield row
            if len(rows) < page:
                return
            last = rows[-1].seq

    async def verify(self) -> ChainVerification:
        """Check the whole chain from the anchor to the head in one consistent read."""
        await self.ensure_schema()
        options: dict[str, Any] = {_READ_OPTION: True}
        if self.dialect == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**options)
            async with conn.begin(), AsyncSession(bind=conn, expire_on_commit=False) as session:
                state = await session.get(AuditChainState, _STATE_ID)
                if state is None:
                    return ChainVerification(
                        ok=False, checked=0, reason="missing_state", detail="no chain-state row"
                    )
                verifier = ChainVerifier(
                    state.anchor_seq, state.anchor_hash, state.head_seq, state.head_hash
                )
                last: int | None = None
                while True:
                    stmt = select(AuditRecord).order_by(AuditRecord.seq).limit(_PAGE)
                    if last is not None:
                        stmt = stmt.where(AuditRecord.seq > last)
                    rows = list((await session.execute(stmt)).scalars())
                    for row in rows:
                        verifier.feed(row.chain_fields())
                    if len(rows) < _PAGE:
                        break
                    last = rows[-1].seq
                    session.expunge_all()
                return verifier.finish()

    async def head(self) -> tuple[int, str]:
        """The chain's head ``(seq, hash)`` as the chain-state row records it."""
        await self.ensure_schema()
        async with self.read_sessions() as session:
            state = await session.get(AuditChainState, _STATE_ID)
            if state is None:
                raise RuntimeError("the audit chain-state row is missing")
            return state.head_seq, state.head_hash

    async def hashes_for(self, seq: int) -> tuple[str, str | None]:
        """The anchor's hash and the stored hash of the record at ``seq`` (``None``: no such
        record)."""
        await self.ensure_schema()
        async with self.read_sessions() as session:
            state = await session.get(AuditChainState, _STATE_ID)
            found = await session.scalar(select(AuditRecord.hash).where(AuditRecord.seq == seq))
            return (state.anchor_hash if state is not None else GENESIS_HASH), found

    async def purge_before(self, cutoff: datetime) -> PurgeResult:
        """Delete the oldest records, up to the first one created at or after ``cutoff``.

        Only a prefix of the chain is removed, and the hash of its last record becomes the
        anchor the first remaining record links to, so verification of the rest still holds.
        """
        await self.ensure_schema()
        async with self.sessions.begin() as session:
            state = await self._locked_state(session)
            first_kept = await session.scalar(
                select(func.min(AuditRecord.seq)).where(AuditRecord.created_at >= cutoff)
            )
            last_deleted = state.head_seq if first_kept is None else int(first_kept) - 1
            if last_deleted <= state.anchor_seq:
                return PurgeResult(0, state.anchor_seq, state.anchor_hash)
            anchor_hash = await session.scalar(
                select(AuditRecord.hash).where(AuditRecord.seq == last_deleted)
            )
            if anchor_hash is None:  # that row is already gone: take the link the next one holds
                anchor_hash = await session.scalar(
                    select(AuditRecord.prev_hash).where(AuditRecord.seq == last_deleted + 1)
                )
            if anchor_hash is None:
                anchor_hash = state.head_hash if last_deleted == state.head_seq else GENESIS_HASH
            result = await session.execute(
                delete(AuditRecord).where(AuditRecord.seq <= last_deleted)
            )
            state.anchor_seq, state.anchor_hash = last_deleted, anchor_hash
            state.anchored_at = datetime.now(cutoff.tzinfo)
            deleted = int(getattr(result, "rowcount", 0) or 0)
        return PurgeResult(deleted, last_deleted, anchor_hash)

    async def dispose(self) -> None:
        """Close the engine's connections."""
        await self.engine.dispose()
