"""Handlers a test Celery worker imports (CROWN_NEXUS_EVENT_HANDLER_MODULES); they record to files.

``CROWN_NEXUS_TEST_EVENT_DIR`` is the directory the test reads: ``handled.log`` gets one line
``<event id> <handler> <pid>`` per successful handler run.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from crown_nexus.core.events import get_event_service

event_service = get_event_service()


def _dir() -> Path:
    return Path(os.environ["CROWN_NEXUS_TEST_EVENT_DIR"])


def _record(event: dict[str, Any], handler: str) -> None:
    line = f"{event['id']} {handler} {os.getpid()}\n".encode()
    fd = os.open(_dir() / "handled.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@event_service.event_handler("celery.test.record")
async def record(event: dict[str, Any]) -> None:
    """Record the event."""
    _record(event, "record")


@event_service.event_handler("celery.test.slow_once")
async def slow_once(event: dict[str, Any]) -> None:
    """First run: mark it started and hang (the test kills the worker); later runs record."""
    marker = _dir() / f"started-{event['id']}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        await asyncio.sleep(60)
    _record(event, "slow_once")


@event_service.event_handler("celery.test.flaky")
async def flaky(event: dict[str, Any]) -> None:
    """Fail on the first two attempts, then record."""
    attempts = _dir() / f"attempts-{event['id']}"
    n = int(attempts.read_text()) if attempts.exists() else 0
    attempts.write_text(str(n + 1))
    if n < 2:
        raise RuntimeError(f"flaky attempt {n + 1}")
    _record(event, "flaky")


@event_service.event_handler("celery.test.flaky")
async def steady(event: dict[str, Any]) -> None:
    """Always succeeds: must run once, not again on the flaky handler's retries."""
    _record(event, "steady")


@event_service.event_handler("celery.test.chain")
async def chain(event: dict[str, Any]) -> None:
    """Publish a follow-up event from inside the worker (goes back through the broker)."""
    await event_service.publish("celery.test.record", {"from": event["id"]})
