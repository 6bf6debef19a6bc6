"""The transactional outbox (SQLAlchemy 2 async): events saved with the data they describe.

``await event_service.publish(name, payload, session=db)`` inside a transaction inserts the event
into ``crown_nexus_event_outbox`` *in that transaction*: commit and both the data and the event
exist; roll back and neither does. An :class:`OutboxRelay` (a background task) delivers
committed events to the event service's backend after commit, marks them delivered, retries
failures with exponential backoff and, after ``max_attempts``, moves them to
``crown_nexus_event_dead_letter``, where :meth:`OutboxRelay.dead_letters` lists them and
:meth:`OutboxRelay.replay` puts them back in the outbox.

Delivery is at least once. A relay *claims* a batch (pushing the rows' next attempt
``claim_timeout`` seconds ahead, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent
relays take different rows), delivers outside any transaction, then marks each row. A relay
that dies after claiming leaves the rows to be delivered again once the claim lapses; a relay
that was not running when the transaction committed delivers when it starts. Handlers can use
the event ``id`` to ignore a repeat.

Each pass also measures the backlog: one ``count(*)`` of the undelivered rows in the claim's
transaction, less what the pass delivered or moved to the dead letters, goes to the gauge
``event_outbox_pending`` (:meth:`EventService.record_outbox_backlog`) and to
:attr:`OutboxRelay.backlog`. Events committed while a pass runs are counted by the next one.

Create the tables with :func:`create_outbox_tables` (or include :data:`outbox_metadata` in your
migrations). Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from crown_nexus.core.events.envelope import decode
from crown_nexus.core.events.exceptions import EventConfigurationException, EventPublishException
from crown_nexus.core.tracing import resume_span, tracing_enabled
from crown_nexus.logging import get_logger

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from crown_nexus.core.events.service import EventService

__all__ = [
    "OutboxRelay",
    "create_outbox_tables",
    "dead_letter_table",
    "outbox_metadata",
    "outbox_table",
    "write_to_outbox",
]

logger = get_logger("crown_nexus.core.events.outbox")

#: metadata holding the outbox and dead-letter tables (add it to your migrations)
outbox_metadata = MetaData()

outbox_table = Table(
    "crown_nexus_event_outbox",
    outbox_metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False, index=True),
    Column("delivered_at", Float, nullable=True, index=True),
    Column("last_error", Text, nullable=True),
)

dead_letter_table = Table(
    "crown_nexus_event_dead_letter",
    outbox_metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("failed_at", Float, nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
)

_WAKE_FLAG = "crown_nexus_outbox_wake"

Deliver = Callable[[dict[str, Any], bytes], Awaitable[None]]


async def create_outbox_tables(engine: AsyncEngine) -> None:
    """Create the outbox and dead-letter tables on ``engine`` when missing."""
    async with engine.begin() as conn:
        await conn.run_sync(outbox_metadata.create_all)


_last_created = [0.0]


def _creation_time() -> float:
    """Wall-clock time, strictly increasing within this process (relays deliver in this order)."""
    now = time.time()
    if now <= _last_created[0]:
        now = _last_created[0] + 1e-6
    _last_created[0] = now
    return now


async def write_to_outbox(
    session: Any, event: dict[str, Any], encoded: bytes, relays: Iterable[OutboxRelay] = ()
) -> None:
    """Insert ``event`` into the outbox in ``session``'s transaction (it does not commit).

    Relays in ``relays`` are woken when the session commits. Raises
    :class:`EventPublishException` when the insert fails (e.g. the tables were not created).
    """
    now = _creation_time()
    stmt = insert(outbox_table).values(
        id=event["id"],
        name=event["name"],
        body=encoded.decode(),
        created_at=now,
        attempts=0,
        next_attempt_at=now,
    )
    try:
        result = session.execute(stmt)
        if inspect.isawaitable(result):
            await result
    except SQLAlchemyError as exc:
        raise EventPublishException(
            "could not write the event to the outbox (were its tables created? "
            "see crown_nexus.core.events.outbox.create_outbox_tables)",
            event_name=event["name"],
            original_exception=exc,
        ) from exc
    relays = list(relays)
    if relays:
        _wake_after_commit(session, relays)


def _wake_after_commit(session: Any, relays: list[OutboxRelay]) -> None:
    sync = getattr(session, "sync_session", session)
    if sync.info.get(_WAKE_FLAG):
        return
    sync.info[_WAKE_FLAG] = True
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def _committed(s: Any) -> None:
        s.info.pop(_WAKE_FLAG, None)
        for relay in relays:
            if loop is not None:
                loop.call_soon_threadsafe(relay.wake)
            else:
                relay.wake()

    def _rolled_back(s: Any) -> None:
        s.info.pop(_WAKE_FLAG, None)

    event.listen(sync, "after_commit", _committed, once=True)
    event.listen(sync, "after_rollback", _rolled_back, once=True)


def _engine_of(target: Any) -> AsyncEngine:
    if hasattr(target, "begin") and hasattr(target, "dispose"):
        return target  # type: ignore[no-any-return]
    bind = getattr(target, "kw", {}).get("bind")
    if bind is not None:
        return bind  # type: ignore[no-any-return]
    raise EventConfigurationException("OutboxRelay needs an AsyncEngine or an async_sessionmaker")


def _row_dict(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    d["event"] = decode(d.pop("body"))
    return d


class OutboxRelay:
    """Delivers committed outbox events to an event service's backend (a background task).

    ``service`` is the event service whose backend delivers (``get_event_service()`` for the
    process-wide one; the service module imports this one, never the reverse).
    ``deliver(event, encoded)`` defaults to ``service.deliver``. Start with :meth:`start` (or
    call :meth:`run_once` yourself); :meth:`stop` ends the task.
    """

    def __init__(
        self,
        engine: Any,
        service: EventService,
        *,
        deliver: Deliver | None = None,
        poll_interval: float = 1.0,
        batch_size: int = 100,
        max_attempts: int = 5,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        claim_timeout: float = 30.0,
        concurrency: int = 1,
    ) -> None:
        if (
            batch_size < 1
            or max_attempts < 1
            or concurrency < 1
            or poll_interval <= 0
            or claim_timeout <= 0
        ):
            raise EventConfigurationException(
                "OutboxRelay needs batch_size >= 1, max_attempts >= 1, concurrency >= 1, "
                "positive poll_interval and claim_timeout"
            )
        self.engine = _engine_of(engine)
        self.service = service
        self._deliver: Deliver = deliver or service.deliver
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.claim_timeout = claim_timeout
        self.concurrency = concurrency
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        #: undelivered outbox events at the end of the last pass (``None`` before the first)
        self.backlog: int | None = None
        self._dead_in_pass = 0

    # ------------------------------------------------------------------ one pass
    async def _claim(self) -> tuple[list[Any], int]:
        """Claim a batch of due rows; also return how many rows are undelivered (the claimed
        ones included), counted in the same transaction."""
        now = time.time()
        t = outbox_table
        query = (
            select(t.c.id, t.c.name, t.c.body, t.c.attempts)
            .where(t.c.delivered_at.is_(None), t.c.next_attempt_at <= now)
            .order_by(t.c.created_at, t.c.id)
            .limit(self.batch_size)
        )
        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = (await conn.execute(query)).all()
            undelivered = int(
                (
                    await conn.execute(
                        select(func.count()).select_from(t).where(t.c.delivered_at.is_(None))
                    )
                ).scalar_one()
            )
            if rows:
                await conn.execute(
                    update(t)
                    .where(t.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + self.claim_timeout)
                )
        return list(rows), undelivered

    def _backoff(self, attempts: int) -> float:
        return float(min(self.retry_backoff_max, self.retry_backoff * (2 ** max(0, attempts - 1))))

    async def run_once(self) -> int:
        """Deliver one batch of due events; return how many were delivered.

        With ``concurrency`` 1 (the default) the batch is delivered one event after the other,
        in the order the events were written; with more, up to that many deliveries run at
        once (for a ``deliver`` that waits on the handlers). The delivered rows of the batch are
        marked in one transaction after the batch (one write per batch, not one per event: on
        SQLite every write transaction queues behind the application's own writes). A relay
        that dies before marking them leaves them to be delivered again once their claim lapses
        (delivery is at least once). The pass ends by updating :attr:`backlog` and the gauge
        ``event_outbox_pending``.
        """
        rows, undelivered = await self._claim()
        self._dead_in_pass = 0
        if self.concurrency == 1 or len(rows) < 2:
            outcomes = [await self._deliver_row(row) for row in rows]
        else:
            gate = asyncio.Semaphore(self.concurrency)

            async def bounded(row: Any) -> bool:
                async with gate:
                    return await self._deliver_row(row)

            outcomes = list(await asyncio.gather(*(bounded(row) for row in rows)))
        delivered = [row.id for row, ok in zip(rows, outcomes, strict=True) if ok]
        marked = 0
        try:
            if delivered:
                await self._mark_delivered(delivered)
                marked = len(delivered)
        finally:
            self._report_backlog(undelivered - marked - self._dead_in_pass)
        return len(delivered)

    def _report_backlog(self, count: int) -> None:
        self.backlog = count = max(0, count)
        record = getattr(self.service, "record_outbox_backlog", None)
        if record is not None:
            record(count)

    async def _deliver_row(self, row: Any) -> bool:
        """Deliver one claimed row: True when delivered, False when it failed (then recorded
        for a retry or moved to the dead letters)."""
        body = row.body.encode()
        try:
            event = decode(body)
            if tracing_enabled():  # the delivery continues the publisher's trace
                with resume_span(
                    f"outbox.deliver {event.get('name')}",
                    event.get("context"),
                    tracer="crown_nexus.events",
                    attributes={
                        "messaging.message.id": str(event.get("id")),
                        "crown_nexus.outbox.attempt": row.attempts + 1,
                    },
                ):
                    await self._deliver(event, body)
            else:
                await self._deliver(event, body)
        except Exception as exc:
            await self._failed(row, exc)
            return False
        return True

    async def _mark_delivered(self, ids: list[str], tries: int = 3) -> None:
        """Mark ``ids`` delivered in one write, tried ``tries`` times (a busy SQLite refuses a
        writer after its busy timeout); raises the last error when every try failed (the rows
        are then delivered again once their claim lapses)."""
        t = outbox_table
        for attempt in range(1, tries + 1):
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(t)
                        .where(t.c.id.in_(ids))
                        .values(delivered_at=time.time(), attempts=t.c.attempts + 1, last_error=None)
                    )
                return
            except SQLAlchemyError:
                if attempt == tries:
                    raise
                await asyncio.sleep(0.05 * attempt)

    async def _failed(self, row: Any, exc: Exception) -> None:
        attempts = row.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:1000]
        now = time.time()
        t = outbox_table
        async with self.engine.begin() as conn:
            if attempts >= self.max_attempts:
                created = (
                    await conn.execute(select(t.c.created_at).where(t.c.id == row.id))
                ).scalar_one()
                await conn.execute(
                    insert(dead_letter_table).values(
                        id=row.id, name=row.name, body=row.body, created_at=created,
                        failed_at=now, attempts=attempts, last_error=error,
                    )
                )
                await conn.execute(delete(t).where(t.c.id == row.id))
            else:
                await conn.execute(
                    update(t)
                    .where(t.c.id == row.id)
                    .values(
                        attempts=attempts,
                        next_attempt_at=now + self._backoff(attempts),
                        last_error=error,
                    )
                )
        if attempts >= self.max_attempts:
            self._dead_in_pass += 1  # committed: the row left the outbox
            logger.error(
                "Outbox event moved to the dead-letter table",
                event_id=row.id, event_name=row.name, attempts=attempts, error_type=type(exc).__name__,
            )
            try:
                from crown_nexus.core.error import report_error

                await report_error(
                    exc, {"event_id": row.id, "event_name": row.name, "attempts": attempts,
                          "stage": "outbox_dead_letter"},
                )
            except Exception as report_exc:
                logger.warning("could not report outbox failure", error=repr(report_exc))
        else:
            logger.warning(
                "Outbox delivery failed; will retry",
                event_id=row.id, event_name=row.name, attempts=attempts,
                error_type=type(exc).__name__,
            )

    # ------------------------------------------------------------------ inspection
    async def pending(self) -> list[dict[str, Any]]:
        """Undelivered outbox rows (``id``, ``name``, ``event``, ``attempts``, ``last_error``, ...)."""
        t = outbox_table
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t).where(t.c.delivered_at.is_(None)).order_by(t.c.created_at, t.c.id)
                )
            ).all()
        return [_row_dict(r) for r in rows]

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Events that exhausted their attempts, oldest failure first."""
        t = dead_letter_table
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(t).order_by(t.c.failed_at, t.c.id).limit(limit))
            ).all()
        return [_row_dict(r) for r in rows]

    async def replay(self, ids: Sequence[str] | None = None) -> int:
        """Move dead letters (all, or those in ``ids``) back to the outbox with fresh attempts;
        return how many. The relay is woken to deliver them."""
        d = dead_letter_table
        query = select(d)
        if ids is not None:
            query = query.where(d.c.id.in_(list(ids)))
        now = time.time()
        async with self.engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            for r in rows:
                await conn.execute(
                    insert(outbox_table).values(
                        id=r.id, name=r.name, body=r.body, created_at=r.created_at, attempts=0,
                        next_attempt_at=now, last_error=r.last_error,
                    )
                )
            if rows:
                await conn.execute(delete(d).where(d.c.id.in_([r.id for r in rows])))
        self.wake()
        return len(rows)

    async def purge_delivered(self, older_than: float = 0.0) -> int:
        """Delete rows delivered more than ``older_than`` seconds ago; return how many."""
        t = outbox_table
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(t).where(
                    t.c.delivered_at.is_not(None), t.c.delivered_at <= time.time() - older_than
                )
            )
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ background task
    @property
    def running(self) -> bool:
        """True while the background task runs."""
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Ask the running relay to look for events now (called after a commit)."""
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Start the background task on the running loop (no-op when running)."""
        if self.running:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self.service.attach_relay(self)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            try:
                delivered = await self.run_once()
            except Exception as exc:
                logger.warning("Outbox relay pass failed", error_type=type(exc).__name__,
                               error=str(exc)[:300])
                delivered = 0
            if delivered >= self.batch_size or self._stopping:
                continue
            try:
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def stop(self, grace: float = 5.0) -> None:
        """Finish the current pass (up to ``grace`` seconds, then cancel) and stop."""
        self._stopping = True
        self.service.detach_relay(self)
        task, self._task = self._task, None
        if task is None:
            return
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        except asyncio.CancelledError:
            task.cancel()
            raise
