"""Stopping background tasks without trusting every library to honour a cancellation.

A background loop (a poller, a replica listener, a probe) is stopped by cancelling its task and
waiting for it. If a library awaited inside the loop swallows the ``CancelledError`` (seen with
redis-py 8 under Python 3.11: the poller went back to sleep with its cancel request still
pending), an unbounded ``await task`` waits forever: a shutdown, a test or a whole CI run hangs.
:func:`cancel_and_wait` bounds that wait, and :func:`raise_if_cancelling` lets a loop notice a
cancellation that was requested but swallowed below it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

__all__ = ["cancel_and_wait", "raise_if_cancelling"]

logger = logging.getLogger("crown_nexus.tasks")


def raise_if_cancelling() -> None:
    """Raise ``CancelledError`` when the current task has a cancel request pending.

    Call it at the top of each turn of a background loop: a cancellation that something below
    swallowed still stops the loop at its next turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(
    task: asyncio.Task[Any] | None, grace: float = 5.0, *, what: str = "background task"
) -> bool:
    """Cancel ``task`` and wait at most ``grace`` seconds for it to end.

    Returns ``True`` when the task is done (or there was none, or it runs on another loop, which
    cannot be awaited here: it is only cancelled). A task that outlives the wait is logged once
    and left cancelled; the caller goes on. Never raises the task's own exception; a cancellation
    of the *caller* propagates.
    """
    if task is None or task.done():
        return True
    task.cancel()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return False
    if task.get_loop() is not running:
        return False
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        logger.warning("%s did not stop within %.1f s of its cancellation", what, grace)
        return False
    if not task.cancelled():
        task.exception()  # retrieved: never "exception was never retrieved"
    return True
