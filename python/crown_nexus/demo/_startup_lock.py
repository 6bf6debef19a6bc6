"""One start-up at a time: the workers of one host create tables and seed data in turn.

``granian --workers N`` starts N copies of the app at once on one database; their start-ups
(``create_all``, seeding the demo users and products, the outbox and audit tables) would race
and fail on unique constraints. :func:`serialized_startup` wraps an app's lifespan so the start-up
part runs under an exclusive file lock (``fcntl.flock`` on a file in the temp directory, named
after the database URL); the first worker creates and seeds, the others then find everything in
place. Serving and shutdown are not serialized. Without ``fcntl`` (Windows) nothing is locked.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["lock_path", "serialized_startup"]


def lock_path(database_url: str) -> str:
    """The lock file shared by every worker of this host that uses ``database_url``."""
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"crown-nexus-startup-{digest}.lock")


def _acquire(path: str) -> int | None:
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release(fd: int | None) -> None:
    if fd is None or fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def serialized_startup(
    inner: Callable[[Any], Any], database_url: str
) -> Callable[[Any], Any]:
    """Wrap the lifespan ``inner`` so its start-up holds the host-wide lock of ``database_url``."""
    path = lock_path(database_url)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            fd = await asyncio.to_thread(_acquire, path)
            try:
                state = await stack.enter_async_context(inner(app))
            finally:
                _release(fd)
            yield state

    return lifespan
