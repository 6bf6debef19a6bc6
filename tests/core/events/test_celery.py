"""The Celery backend against a real Redis broker and real worker processes (no eager mode)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from crown_nexus.core.events import EventBackendType, EventPublishException, EventService
from tests._servers import RedisServer

pytestmark = pytest.mark.celery

ROOT = Path(__file__).resolve().parents[3]


class Worker:
    """A `celery worker --pool=solo` subprocess with the test handlers loaded."""

    def __init__(
        self,
        broker: str,
        record_dir: Path,
        visibility_timeout: float = 2.0,
        modules: str = "tests.core.events.celery_handlers",
    ) -> None:
        env = {
            **os.environ,
            "CROWN_NEXUS_CELERY_BROKER_URL": broker,
            "CROWN_NEXUS_EVENT_HANDLER_MODULES": modules,
            "CROWN_NEXUS_TEST_EVENT_DIR": str(record_dir),
            "CROWN_NEXUS_CELERY_VISIBILITY_TIMEOUT": str(visibility_timeout),
            "CROWN_NEXUS_CELERY_RESTORE_INTERVAL": "1",
            "CROWN_NEXUS_EVENT_RETRY_BACKOFF": "0.2",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "ENVIRONMENT": "test",
        }
        self.log = open(record_dir / f"worker-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "crown_nexus.core.celery_app:celery_app",
             "worker", "--pool=solo", "--without-heartbeat", "--without-gossip",
             "--without-mingle", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL the worker (no chance to ack or requeue anything)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the worker (TERM, then KILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A private redis-server for this module's shared worker."""
    server = RedisServer()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.skip(f"no Redis server can run here: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One worker for the tests that do not kill it; yields the directory it records to."""
    record_dir = tmp_path_factory.mktemp("celery-shared")
    worker = Worker(broker, record_dir)
    try:
        yield record_dir
    finally:
        worker.stop()


@pytest.fixture
def workers(redis_server, tmp_path: Path) -> Iterator[Callable[[], Worker]]:  # type: ignore[no-untyped-def]
    """Start workers on a private Redis broker (this test's own); all stopped after the test."""
    started: list[Worker] = []

    def start() -> Worker:
        w = Worker(redis_server.url, tmp_path)
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


async def _publisher(url: str) -> EventService:
    from crown_nexus.core.celery_app import create_celery_app

    svc = EventService()
    await svc.initialize(EventBackendType.CELERY, app=create_celery_app(url))
    return svc


@pytest.fixture
async def publisher(broker: str) -> AsyncIterator[EventService]:
    """An EventService on the Celery backend, sending to the shared worker's broker."""
    svc = await _publisher(broker)
    yield svc
    await svc.shutdown()


def _handled(record_dir: Path) -> list[list[str]]:
    path = record_dir / "handled.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines()]


async def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def test_events_handled_exactly_once(shared: Path, publisher: EventService) -> None:
    """Each published event is handled exactly once by the worker when nothing goes wrong."""
    ids = [await publisher.publish("celery.test.record", {"n": n}) for n in range(5)]

    def handled() -> list[str]:
        return [r[0] for r in _handled(shared) if r[0] in ids]

    assert await _wait(lambda: len(handled()) >= 5, 30), _handled(shared)
    await asyncio.sleep(2.5)  # past the visibility timeout: nothing is delivered twice
    assert sorted(handled()) == sorted(ids)


async def test_failed_handler_retried_with_backoff_alone(shared: Path, publisher: EventService) -> None:
    """A failing handler is retried until it succeeds; the other handler ran once only."""
    event_id = await publisher.publish("celery.test.flaky", {})
    assert await _wait(lambda: any(r[:2] == [event_id, "flaky"] for r in _handled(shared)), 30)
    await asyncio.sleep(0.5)
    assert sorted(r[1] for r in _handled(shared) if r[0] == event_id) == ["flaky", "steady"]
    assert (shared / f"attempts-{event_id}").read_text() == "3"


async def test_handler_publishes_through_broker(shared: Path, publisher: EventService) -> None:
    """An event published by a handler in the worker goes back through Celery and is handled."""
    before = len(_handled(shared))
    await publisher.publish("celery.test.chain", {})
    assert await _wait(lambda: len(_handled(shared)) > before, 30)


async def test_event_survives_worker_killed_mid_handler(workers, redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A worker SIGKILLed mid-handler loses nothing: late ack makes Redis redeliver the event."""
    publisher = await _publisher(redis_server.url)
    first = workers()
    event_id = await publisher.publish("celery.test.slow_once", {})
    marker = tmp_path / f"started-{event_id}"
    assert await _wait(marker.exists, 30), "first worker never started the handler"
    first.kill()
    assert _handled(tmp_path) == []
    workers()
    assert await _wait(lambda: len(_handled(tmp_path)) >= 1, 40), "event was lost with the worker"
    [row] = _handled(tmp_path)
    assert row[0] == event_id and row[1] == "slow_once"
    assert row[2] != marker.read_text()
    await publisher.shutdown()


async def test_broker_down_and_bad_payload_raise_publish_exception() -> None:
    """With no broker listening, publish raises EventPublishException (after a short retry);
    a bad payload raises it before anything is sent."""
    from tests._servers import free_port

    publisher = await _publisher(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(EventPublishException, match="Celery broker"):
        await publisher.publish("celery.test.record", {"n": 1})
    with pytest.raises(EventPublishException, match="not JSON-serializable"):
        await publisher.publish("celery.test.record", {"n": object()})
    await publisher.shutdown()


def test_worker_with_unimportable_handler_module_fails_at_start(redis_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A misconfigured CROWN_NEXUS_EVENT_HANDLER_MODULES stops the worker at start-up."""
    worker = Worker(redis_server.url, tmp_path, modules="tests.core.events.no_such_module")
    try:
        assert worker.proc.wait(30) != 0
    finally:
        worker.stop()
    log = next(tmp_path.glob("worker-*.log")).read_text()
    assert "no_such_module" in log
