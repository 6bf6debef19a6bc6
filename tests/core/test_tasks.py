"""Stopping background tasks: a swallowed cancellation can neither hang the caller nor keep a
poller alive (the feature-flag poller hung a whole CI run this way)."""

from __future__ import annotations

import asyncio
import time

from crown_nexus.core._tasks import cancel_and_wait, raise_if_cancelling
from crown_nexus.core.features import FeatureService, MemoryFeatureStore


async def _stubborn(started: asyncio.Event, release: asyncio.Event) -> None:
    started.set()
    while not release.is_set():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            continue  # swallows every cancellation, like a misbehaving library


async def test_cancel_and_wait_is_bounded_for_a_task_that_ignores_cancel() -> None:
    """A task that swallows its cancellation costs the caller ``timeout``, not forever."""
    started, release = asyncio.Event(), asyncio.Event()
    task = asyncio.get_running_loop().create_task(_stubborn(started, release))
    await started.wait()
    start = time.monotonic()
    assert await cancel_and_wait(task, 0.2, what="stubborn") is False
    assert time.monotonic() - start < 2.0
    assert task.cancelling() >= 1
    release.set()  # let it end so the loop can close
    assert await cancel_and_wait(task, 1.0) is True


async def test_cancel_and_wait_reports_a_stopped_task() -> None:
    """A well-behaved task is awaited to its end; a failed one does not raise into the caller."""

    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("boom")

    ok = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    assert await cancel_and_wait(ok, 1.0) is True and ok.cancelled()
    bad = asyncio.get_running_loop().create_task(fails())
    await asyncio.sleep(0.01)
    assert await cancel_and_wait(bad, 1.0) is True
    assert await cancel_and_wait(None) is True


async def test_raise_if_cancelling_re_raises_a_swallowed_cancel() -> None:
    """A loop that checks at each turn stops even though its body swallowed the cancel."""
    turns = 0

    async def loop_body() -> None:
        nonlocal turns
        while True:
            raise_if_cancelling()
            turns += 1
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                pass

    task = asyncio.get_running_loop().create_task(loop_body())
    await asyncio.sleep(0.01)
    assert await cancel_and_wait(task, 1.0) is True
    assert task.cancelled() and turns == 1


class _SwallowingStore(MemoryFeatureStore):
    """A shared store whose client swallows a cancellation arriving during ``version()``."""

    shared = True  # type: ignore[misc]

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def version(self) -> str:
        self.entered.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            pass
        return await super().version()


async def test_feature_poller_stops_although_the_store_swallowed_the_cancel() -> None:
    """FeatureService.shutdown returns promptly and its poller is gone (CI hang regression)."""
    store = _SwallowingStore()
    service = FeatureService(store=store, environment="test", poll_interval=0.01, op_timeout=5.0)
    await service.initialize()
    poller = service._task
    assert poller is not None
    store.entered.clear()
    await asyncio.wait_for(store.entered.wait(), 2.0)  # the poller is inside version() now
    start = time.monotonic()
    await service.shutdown()
    assert time.monotonic() - start < 3.0
    assert poller.done()
