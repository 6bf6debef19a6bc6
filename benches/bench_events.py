"""Event dispatch on the memory backend vs blinker and pyee: throughput and latency.

Groups:

* ``events-dispatch``: publish a batch of :data:`BATCH` events to one async handler and wait
  until every handler run finished (throughput; divide the time by ``BATCH`` for the cost of
  one event).
* ``events-dispatch-latency``: publish one event and wait until its handler ran (latency).

Peers: pyee's ``AsyncIOEventEmitter`` (``emit`` schedules a task per coroutine handler, like our
backend) and blinker's ``Signal.send_async`` (awaits the receivers inline, no task). crown-nexus
does more per event: it validates and JSON-encodes the payload (size limit), copies it for the
handlers, adds id/timestamp/context, bounds pending runs, applies a timeout and records metrics.
Each benchmark checks that every handler ran. Run:
``pytest benches/bench_events.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from blinker import Signal
from pyee.asyncio import AsyncIOEventEmitter

from crown_nexus import accel
from crown_nexus.core.events import EventBackendType, EventService

BATCH = 1000
ROUNDS = 30
PAYLOAD = {"order_id": "3f2a9c", "user_id": "42", "total_amount": 1999, "items": [1, 2, 3]}


def _info(benchmark: Any, who: str, group: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["dispatcher"] = who
    benchmark.group = group


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private event loop driven by the benchmark."""
    lp = asyncio.new_event_loop()
    try:
        yield lp
    finally:
        lp.close()


class Counter:
    """Counts handler runs and wakes a waiter when a target is reached."""

    def __init__(self) -> None:
        self.n = 0
        self.target = 0
        self.done: asyncio.Event | None = None

    def arm(self, target: int) -> asyncio.Event:
        self.n = 0
        self.target = target
        self.done = asyncio.Event()
        return self.done

    async def handler(self, event: Any = None, **kwargs: Any) -> None:
        self.n += 1
        if self.n == self.target and self.done is not None:
            self.done.set()


def _run_batches(benchmark: Any, loop: asyncio.AbstractEventLoop, batch: Any) -> None:
    """Time whole batches: a fixed number of rounds after warm-up, the same for every peer."""
    benchmark.pedantic(
        lambda: loop.run_until_complete(batch()), rounds=ROUNDS, iterations=1, warmup_rounds=2
    )


def _crown(loop: asyncio.AbstractEventLoop, counter: Counter) -> EventService:
    svc = EventService()
    loop.run_until_complete(svc.initialize(EventBackendType.MEMORY))
    svc.subscribe("order.created", counter.handler)
    return svc


def test_throughput_crown_nexus(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """crown-nexus memory backend: publish BATCH events, wait for every handler run."""
    _info(benchmark, "crown-nexus", "events-dispatch")
    counter = Counter()
    svc = _crown(loop, counter)

    async def batch() -> None:
        done = counter.arm(BATCH)
        for _ in range(BATCH):
            await svc.publish("order.created", PAYLOAD)
        await done.wait()
        await svc.wait_for_pending()

    _run_batches(benchmark, loop, batch)
    assert counter.n == BATCH
    loop.run_until_complete(svc.shutdown())


def test_throughput_pyee(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """pyee AsyncIOEventEmitter: emit BATCH events (a task per handler run), wait for all."""
    _info(benchmark, "pyee", "events-dispatch")
    counter = Counter()

    async def make() -> AsyncIOEventEmitter:
        ee = AsyncIOEventEmitter()
        ee.on("order.created", counter.handler)
        return ee

    ee = loop.run_until_complete(make())

    async def batch() -> None:
        done = counter.arm(BATCH)
        for _ in range(BATCH):
            ee.emit("order.created", PAYLOAD)
        await done.wait()

    _run_batches(benchmark, loop, batch)
    assert counter.n == BATCH


def test_throughput_blinker(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """blinker Signal.send_async: BATCH sends, each awaiting the receiver inline."""
    _info(benchmark, "blinker", "events-dispatch")
    counter = Counter()
    signal = Signal()
    signal.connect(counter.handler)

    async def batch() -> None:
        counter.arm(BATCH)
        for _ in range(BATCH):
            await signal.send_async(None, payload=PAYLOAD)

    _run_batches(benchmark, loop, batch)
    assert counter.n == BATCH


def test_latency_crown_nexus(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """crown-nexus: one publish until its handler ran."""
    _info(benchmark, "crown-nexus", "events-dispatch-latency")
    counter = Counter()
    svc = _crown(loop, counter)

    async def one() -> None:
        done = counter.arm(1)
        await svc.publish("order.created", PAYLOAD)
        await done.wait()

    benchmark(lambda: loop.run_until_complete(one()))
    assert counter.n == 1
    loop.run_until_complete(svc.shutdown())


def test_latency_pyee(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """pyee: one emit until its handler ran."""
    _info(benchmark, "pyee", "events-dispatch-latency")
    counter = Counter()

    async def make() -> AsyncIOEventEmitter:
        ee = AsyncIOEventEmitter()
        ee.on("order.created", counter.handler)
        return ee

    ee = loop.run_until_complete(make())

    async def one() -> None:
        done = counter.arm(1)
        ee.emit("order.created", PAYLOAD)
        await done.wait()

    benchmark(lambda: loop.run_until_complete(one()))
    assert counter.n == 1


def test_latency_blinker(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    """blinker: one send_async (the receiver runs inline)."""
    _info(benchmark, "blinker", "events-dispatch-latency")
    counter = Counter()
    signal = Signal()
    signal.connect(counter.handler)

    async def one() -> None:
        counter.arm(1)
        await signal.send_async(None, payload=PAYLOAD)

    benchmark(lambda: loop.run_until_complete(one()))
    assert counter.n == 1
