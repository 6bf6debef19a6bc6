"""The audit trail's I/O thread: one event loop per process where every audit statement runs.

Owns the thread, its loop and one :class:`Trail` (store + write queue) per database URL.
Running the database work on a loop of its own makes ``log_action`` usable from synchronous
code and unawaited (guide §4), keeps engines away from the callers' short-lived test loops,
and lets queued records be appended in batches. Pending records are written before the
process exits (``atexit``); a forked child (prefork servers, Celery) starts its own thread.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from crown_nexus.core.audit.models import AuditRecord
from crown_nexus.core.audit.store import AuditStore, PendingRecord
from crown_nexus.core.exceptions import (
    ConfigurationException,
    DatabaseException,
    DatabaseUnavailableException,
    transient_database_error,
)

__all__ = ["Trail", "get_runner", "run"]

logger = logging.getLogger("crown_nexus.audit")

T = TypeVar("T")
_BATCH = 500


class Trail:
    """The audit trail in one database: its store and the queue of records waiting to be appended.

    Every method except :meth:`submit` runs on the runner's loop.
    """

    def __init__(self, url: str) -> None:
        self.store = AuditStore(url)
        self._pending: list[tuple[PendingRecord, concurrent.futures.Future[AuditRecord]]] = []
        self._drainer: asyncio.Task[None] | None = None

    def _enqueue(
        self, item: PendingRecord, future: concurrent.futures.Future[AuditRecord]
    ) -> None:
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            try:
                records = await self.store.append([item for item, _ in batch])
            except Exception as exc:
                logger.error(
                    "audit trail: %d record(s) could not be written: %r", len(batch), exc
                )
                error = _database_error("The audit record could not be written", exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), record in zip(batch, records, strict=True):
                if not future.done():
                    future.set_result(record)

    async def flush(self) -> None:
        """Wait until every record queued so far is written (or failed)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    def submit(self, item: PendingRecord) -> concurrent.futures.Future[AuditRecord]:
        """Queue ``item`` from any thread; the future resolves to the stored record."""
        future: concurrent.futures.Future[AuditRecord] = concurrent.futures.Future()
        get_runner().loop.call_soon_threadsafe(self._enqueue, item, future)
        return future


class _Runner:
    """A daemon thread running an event loop, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.trails: dict[str, Trail] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's loop (the thread is started when needed)."""
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            return loop
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                new_loop = asyncio.new_event_loop()

                def main() -> None:
                    asyncio.set_event_loop(new_loop)
                    new_loop.call_soon(ready.set)
                    new_loop.run_forever()

                self.trails = {}
                self._thread = threading.Thread(
                    target=main, name="crown-nexus-audit", daemon=True
                )
                self._loop = new_loop
                self._thread.start()
                ready.wait()
            return self._loop

    def trail(self, url: str) -> Trail:
        """The trail of ``url`` (created on first use)."""
        _ = self.loop  # a restarted runner forgets trails bound to its old loop
        with self._lock:
            trail = self.trails.get(url)
            if trail is None:
                try:
                    trail = Trail(url)
                except Exception as exc:
                    raise ConfigurationException(
                        "The audit database URL cannot be used",
                        details={"error_type": type(exc).__name__},
                    ) from exc
                self.trails[url] = trail
            return trail

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the runner's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def in_runner(self) -> bool:
        """True when called on the runner's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    async def _close_all(self) -> None:
        for trail in list(self.trails.values()):
            try:
                await trail.flush()
            finally:
                await trail.store.dispose()
        self.trails = {}

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending, dispose every engine and stop the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout)
        except Exception as exc:
            logger.error("audit trail: closing failed: %r", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


    def forget_after_fork(self) -> None:
        """In a forked child: the parent's thread and connections are not ours; start afresh."""
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
        self.trails = {}


_runner = _Runner()
atexit.register(_runner.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_runner.forget_after_fork)


def get_runner() -> _Runner:
    """The process's audit I/O runner."""
    return _runner


def _database_error(message: str, exc: BaseException) -> DatabaseException:
    """The typed error for a failed audit statement: 503 when the database is only unavailable
    for now (down, unreachable, busy), else 500; the driver's text stays out of the details."""
    kind = (
        DatabaseUnavailableException
        if transient_database_error(exc) or isinstance(exc, ConnectionError)
        else DatabaseException
    )
    return kind(message, details={"error_type": type(exc).__name__}, original_error=exc)


async def run(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` run on the audit loop (directly when already on it).

    A database or connection failure is raised as :class:`DatabaseException` (500), or as
    :class:`DatabaseUnavailableException` (503, ``Retry-After``) when the database is only
    unavailable for now (down, unreachable, busy); other exceptions (e.g. a bad pagination
    cursor) pass through.
    """
    try:
        if _runner.in_runner():
            return await coro
        return await asyncio.wrap_future(_runner.submit(coro))
    except (SQLAlchemyError, OSError) as exc:
        raise _database_error("The audit trail could not be read", exc) from exc
