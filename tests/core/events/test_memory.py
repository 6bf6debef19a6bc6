"""The event service on the memory backend: delivery, ordering, filters, isolation, limits."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.events import (
    EventBackendType,
    EventConfig,
    EventConfigurationException,
    EventHandlerException,
    EventPublishException,
    EventService,
    event_service,
    get_event_service,
)
from crown_nexus.testing import capture_errors


def test_registered_service_is_the_module_singleton() -> None:
    """get_service("event_service") is get_event_service(); event_service reads that same bus."""
    assert get_service("event_service") is get_event_service()
    assert isinstance(event_service, EventService)
    assert event_service.stats is get_event_service().stats


async def test_handler_receives_spec_shape(service: EventService) -> None:
    """Handlers get {id, name, data, context, timestamp} with default context merged under."""
    got: list[dict[str, Any]] = []

    @service.event_handler("user.created")
    async def handle(event: dict[str, Any]) -> None:
        got.append(event)

    service.set_default_context({"application": "app", "version": "1"})
    event_id = await service.publish(
        "user.created", {"user_id": "7"}, context={"user_id": 7, "version": "2"}
    )
    assert await service.wait_for_pending(2)
    [event] = got
    assert set(event) == {"id", "name", "data", "context", "timestamp"}
    assert event["id"] == event_id and isinstance(event_id, str) and len(event_id) == 32
    assert event["name"] == "user.created"
    assert event["data"] == {"user_id": "7"}
    assert event["context"] == {"application": "app", "version": "2", "user_id": 7}
    assert datetime.fromisoformat(event["timestamp"]).tzinfo is not None


async def test_handlers_start_in_publish_then_subscription_order(service: EventService) -> None:
    """Handler runs start in publish order and, per event, in subscription order."""
    seen: list[tuple[str, int]] = []

    async def first(event: dict[str, Any]) -> None:
        seen.append(("first", event["data"]["n"]))
        await asyncio.sleep(0)

    async def second(event: dict[str, Any]) -> None:
        seen.append(("second", event["data"]["n"]))

    service.subscribe("tick", first)
    service.subscribe("tick", second)
    for n in range(50):
        await service.publish("tick", {"n": n})
    assert await service.wait_for_pending(2)
    assert [n for who, n in seen if who == "first"] == list(range(50))
    assert [n for who, n in seen if who == "second"] == list(range(50))
    assert seen[:2] == [("first", 0), ("second", 0)]


async def test_filter_func_selects_events(service: EventService) -> None:
    """A handler with filter_func only sees the events the filter accepts (guide example)."""
    large: list[str] = []

    @service.event_handler(
        "order.completed", filter_func=lambda event: event["data"]["total_amount"] > 1000
    )
    async def handle_large_orders(event: dict[str, Any]) -> None:
        """Only large orders."""
        large.append(event["data"]["order_id"])

    for oid, amount in (("a", 10), ("b", 5000), ("c", 1000), ("d", 1001)):
        await service.publish("order.completed", {"order_id": oid, "total_amount": amount})
    assert await service.wait_for_pending(2)
    assert sorted(large) == ["b", "d"]
    assert service.stats.filtered_out == 2


async def test_failing_handler_is_isolated_reported_and_counted(service: EventService) -> None:
    """A raising handler is reported and counted; the other handlers still run."""
    ran: list[str] = []

    @service.event_handler("job.done")
    async def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    @service.event_handler("job.done")
    async def healthy(event: dict[str, Any]) -> None:
        ran.append(event["data"]["job"])

    metrics = get_service("metrics_service")
    labels = {"event_type": "job.done", "handler": f"{__name__}:{broken.__qualname__}"}
    before = metrics.get_counter_sum("event_handler_errors_total", labels)
    with capture_errors() as reporter:
        await service.publish("job.done", {"job": 1})
        await service.publish("job.done", {"job": 2})
        assert await service.wait_for_pending(2)
    assert sorted(ran) == [1, 2]
    reported = [r for r in reporter.recent() if issubclass(r.exception_type, RuntimeError)]
    assert len(reported) == 2
    assert reported[0].context.extra["event_name"] == "job.done"
    assert metrics.get_counter_sum("event_handler_errors_total", labels) - before == 2
    assert service.stats.failed == 2 and service.stats.succeeded == 2


async def test_failing_filter_counts_as_handler_error(service: EventService) -> None:
    """A filter that raises is reported like a failing handler and the handler is skipped."""
    ran: list[Any] = []
    service.subscribe("x", ran.append, filter_func=lambda e: e["data"]["missing"])
    with capture_errors() as reporter:
        await service.publish("x", {})
        assert await service.wait_for_pending(2)
    assert ran == []
    assert [r.type for r in reporter.recent()] == ["KeyError"]


async def test_handler_timeout(service: EventService) -> None:
    """A handler exceeding its timeout is cancelled and reported as EventHandlerException."""
    done: list[str] = []

    @service.event_handler("slow", timeout=0.05)
    async def slow(event: dict[str, Any]) -> None:
        await asyncio.sleep(5)
        done.append("slow")

    @service.event_handler("slow")
    async def fast(event: dict[str, Any]) -> None:
        done.append("fast")

    with capture_errors() as reporter:
        await service.publish("slow", {})
        assert await service.wait_for_pending(2)
    assert done == ["fast"]
    [err] = reporter.recent()
    assert issubclass(err.exception_type, EventHandlerException)
    assert err.details["handler"].endswith("slow")
    assert service.stats.timed_out == 1


async def test_handler_raising_timeout_error_is_not_a_timeout(service: EventService) -> None:
    """A handler's own TimeoutError is reported as itself, not as an exceeded timeout."""

    async def raises(event: dict[str, Any]) -> None:
        raise TimeoutError("upstream")

    service.subscribe("t", raises)
    with capture_errors() as reporter:
        await service.publish("t", {})
        assert await service.wait_for_pending(2)
    assert [r.type for r in reporter.recent()] == ["TimeoutError"]
    assert service.stats.timed_out == 0


async def test_sync_handler(service: EventService) -> None:
    """Plain functions work as handlers too."""
    got: list[Any] = []
    service.subscribe("s", lambda e: got.append(e["data"]))
    await service.publish("s", [1, 2])
    assert await service.wait_for_pending(2)
    assert got == [[1, 2]]


async def test_backpressure_blocks_publisher_at_bound() -> None:
    """With max_pending handler runs pending, publish waits until one finishes."""
    svc = EventService(EventConfig(shutdown_timeout=1.0))
    await svc.initialize(EventBackendType.MEMORY, max_pending=2)
    gate = asyncio.Event()
    started: list[int] = []

    @svc.event_handler("work")
    async def work(event: dict[str, Any]) -> None:
        started.append(event["data"])
        await gate.wait()

    await svc.publish("work", 1)
    await svc.publish("work", 2)
    third = asyncio.create_task(svc.publish("work", 3))
    await asyncio.sleep(0.05)
    assert not third.done()
    assert svc.pending_count() == 2
    gate.set()
    await asyncio.wait_for(third, 2)
    assert await svc.wait_for_pending(2)
    assert started == [1, 2, 3]
    await svc.shutdown()


async def test_backpressure_timeout_raises_publish_exception() -> None:
    """With backpressure_timeout, a publisher that cannot get room gets EventPublishException."""
    svc = EventService(EventConfig(shutdown_timeout=0.5))
    await svc.initialize(EventBackendType.MEMORY, max_pending=1, backpressure_timeout=0.05)
    gate = asyncio.Event()
    svc.subscribe("w", lambda e: gate.wait())
    await svc.publish("w", 1)
    with pytest.raises(EventPublishException, match="queue full"):
        await svc.publish("w", 2)
    gate.set()
    assert await svc.wait_for_pending(2)
    await svc.shutdown()


async def test_chained_publish_from_handlers_does_not_deadlock_when_full() -> None:
    """Handlers publishing follow-up events never wait for room, so chains finish."""
    svc = EventService()
    await svc.initialize(EventBackendType.MEMORY, max_pending=1)
    out: list[str] = []

    @svc.event_handler("a")
    async def a(event: dict[str, Any]) -> None:
        await svc.publish("b", event["data"])

    @svc.event_handler("b")
    async def b(event: dict[str, Any]) -> None:
        await svc.publish("c", event["data"])

    svc.subscribe("c", lambda e: out.append(e["data"]))
    for i in range(5):
        await svc.publish("a", str(i))
    assert await asyncio.wait_for(svc.wait_for_pending(), 2)
    assert sorted(out) == [str(i) for i in range(5)]
    await svc.shutdown()


async def test_wait_for_pending_timeout_returns_false(service: EventService) -> None:
    """wait_for_pending returns False when handlers are still running at the timeout."""
    gate = asyncio.Event()
    service.subscribe("hold", lambda e: gate.wait())
    await service.publish("hold", None)
    assert await service.wait_for_pending(0.02) is False
    gate.set()
    assert await service.wait_for_pending(1) is True


async def test_unsubscribe(service: EventService) -> None:
    """Unsubscribed handlers no longer run; unsubscribing everything of a name works too."""
    got: list[str] = []

    async def one(event: dict[str, Any]) -> None:
        got.append("one")

    async def two(event: dict[str, Any]) -> None:
        got.append("two")

    service.subscribe("e", one)
    sub = service.subscribe("e", two)
    assert service.unsubscribe("e", one) == 1
    await service.publish("e", {})
    assert await service.wait_for_pending(1)
    assert got == ["two"]
    assert service.unsubscribe("e", sub) == 1
    assert service.unsubscribe("e") == 0
    await service.publish("e", {})
    assert await service.wait_for_pending(1)
    assert got == ["two"]


async def test_wildcard_handler_sees_every_event(service: EventService) -> None:
    """A handler subscribed to "*" sees events of every name."""
    names: list[str] = []
    service.subscribe("*", lambda e: names.append(e["name"]))
    await service.publish("a", 1)
    await service.publish("b", 2)
    assert await service.wait_for_pending(1)
    assert names == ["a", "b"]


async def test_handlers_get_a_copy_of_the_payload(service: EventService) -> None:
    """Handlers see decoded JSON: mutating it does not touch the publisher's object or peers."""
    seen: list[Any] = []

    async def mutate(event: dict[str, Any]) -> None:
        event["data"]["items"].append("x")

    async def look(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)
        seen.append(event["data"])

    service.subscribe("m", mutate)
    service.subscribe("m", look)
    payload = {"items": [1], "tags": ("a", "b")}
    await service.publish("m", payload)
    assert await service.wait_for_pending(1)
    assert payload == {"items": [1], "tags": ("a", "b")}
    assert seen == [{"items": [1, "x"], "tags": ["a", "b"]}]


@pytest.mark.parametrize(
    ("payload", "context"),
    [
        ({"x": object()}, None),
        ({1: "non-string key"}, None),
        ({"n": 2**70}, None),
        ({"ok": 1}, {"bad": object()}),
        ({"ok": 1}, ["not", "a", "mapping"]),
        ({"s": {1, 2}.__class__}, None),
    ],
)
async def test_bad_payloads_raise_publish_exception(
    service: EventService, payload: Any, context: Any
) -> None:
    """Payloads or contexts that are not JSON-serializable raise EventPublishException."""
    with pytest.raises(EventPublishException) as info:
        await service.publish("bad", payload, context=context)
    assert info.value.status_code == 500 and info.value.code == "EVENT_PUBLISH_ERROR"


@pytest.mark.parametrize("name", ["", None, 5, "*", "x" * 300])
async def test_bad_event_names_raise_publish_exception(service: EventService, name: Any) -> None:
    """Empty, non-string, wildcard or overlong names raise EventPublishException."""
    with pytest.raises(EventPublishException):
        await service.publish(name, {})


async def test_too_large_payload_raises_publish_exception() -> None:
    """An event larger than max_event_bytes raises EventPublishException naming the sizes."""
    svc = EventService(EventConfig(max_event_bytes=1024))
    await svc.initialize(EventBackendType.MEMORY)
    await svc.publish("fits", "x" * 100)
    with pytest.raises(EventPublishException) as info:
        await svc.publish("big", "x" * 2000)
    assert info.value.details["max_bytes"] == 1024 and info.value.details["size"] > 1024
    await svc.shutdown()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.binary(max_size=5) | st.builds(object) | st.sets(st.integers(), max_size=3)
    | st.tuples(st.integers()),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4),
    max_leaves=15,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_json)
def test_any_payload_publishes_or_raises_publish_exception(payload: Any) -> None:
    """Any value either publishes or raises EventPublishException, never another exception."""
    svc = EventService(EventConfig(max_event_bytes=400))

    async def run() -> None:
        await svc.initialize(EventBackendType.MEMORY)
        try:
            await svc.publish("prop", payload)
        except EventPublishException:
            pass
        await svc.shutdown()

    asyncio.run(run())


async def test_published_metric_counts(service: EventService) -> None:
    """events_published_total counts published events by event_type and backend."""
    metrics = get_service("metrics_service")
    labels = {"event_type": "metric.test", "backend": "memory"}
    before = metrics.get_counter_sum("events_published_total", labels)
    for _ in range(3):
        await service.publish("metric.test", {})
    await asyncio.sleep(0.08)  # batched counts reach the metrics service within 50 ms
    assert metrics.get_counter_sum("events_published_total", labels) - before == 3
    for _ in range(2):
        await service.publish("metric.test", {})
    service.flush_metrics()
    assert metrics.get_counter_sum("events_published_total", labels) - before == 5


async def test_duration_metric_observed(service: EventService) -> None:
    """event_handler_duration_seconds records handler runs (the first one always)."""
    metrics = get_service("metrics_service")

    async def timed(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)

    service.subscribe("dur.test", timed)
    await service.publish("dur.test", {})
    assert await service.wait_for_pending(1)
    q = metrics.get_histogram_quantile(
        "event_handler_duration_seconds", 1.0, {"event_type": "dur.test"}
    )
    assert q >= 0.009


async def test_shutdown_drains_and_publish_after_restarts_memory() -> None:
    """shutdown waits for pending handlers; handlers stay registered; publish starts again."""
    svc = EventService()
    done: list[int] = []

    @svc.event_handler("d")
    async def slowish(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.02)
        done.append(event["data"])

    await svc.publish("d", 1)  # before initialize: memory backend
    assert svc.backend_type is EventBackendType.MEMORY
    await svc.shutdown()
    assert done == [1] and not svc.initialized
    await svc.publish("d", 2)
    assert await svc.wait_for_pending(1)
    assert done == [1, 2]
    await svc.shutdown()


async def test_shutdown_cancels_handlers_past_timeout() -> None:
    """Handlers still running after the shutdown timeout are cancelled."""
    svc = EventService()
    svc.subscribe("stuck", lambda e: asyncio.sleep(10))
    await svc.publish("stuck", None)
    await asyncio.wait_for(svc.shutdown(timeout=0.05), 2)
    assert svc.pending_count() == 0


async def test_initialize_rejects_unknown_backend() -> None:
    """An unknown backend name raises EventConfigurationException."""
    with pytest.raises(EventConfigurationException):
        await EventService().initialize("kafka")


async def test_initialize_twice_keeps_backend(service: EventService) -> None:
    """A second initialize with the same type, or with no type, keeps the running backend."""
    backend = service.backend
    await service.initialize(EventBackendType.MEMORY)
    assert service.backend is backend
    await service.initialize("memory")
    await service.initialize()
    assert service.backend is backend


async def test_initialize_without_type_keeps_celery_backend() -> None:
    """An app start-up's initialize() does not undo an earlier initialize(CELERY)."""
    svc = EventService()
    await svc.initialize(EventBackendType.CELERY)
    await svc.initialize()
    assert svc.backend_type is EventBackendType.CELERY
    await svc.shutdown()


async def test_initialize_rejects_unknown_options() -> None:
    """Unknown or bad backend options raise EventConfigurationException."""
    svc = EventService()
    with pytest.raises(EventConfigurationException):
        await svc.initialize(EventBackendType.MEMORY, max_pendings=3)
    with pytest.raises(EventConfigurationException):
        await svc.initialize(EventBackendType.MEMORY, max_pending=0)
    with pytest.raises(EventConfigurationException):
        await svc.initialize(EventBackendType.CELERY, broker="x")


def test_subscribe_validates_arguments() -> None:
    """Bad handler registrations raise EventConfigurationException."""
    svc = EventService()
    with pytest.raises(EventConfigurationException):
        svc.subscribe("", print)
    with pytest.raises(EventConfigurationException):
        svc.subscribe("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(EventConfigurationException):
        svc.set_default_context({"x": object()})


async def test_request_id_from_logging_context(service: EventService) -> None:
    """Without an explicit request_id, the current request's id lands in the context."""
    from crown_nexus.logging import request_context

    got: list[dict[str, Any]] = []
    service.subscribe("r", got.append)
    with request_context(request_id="req-123"):
        await service.publish("r", {})
    assert await service.wait_for_pending(1)
    assert got[0]["context"]["request_id"] == "req-123"


def test_importing_events_imports_no_celery_or_redis() -> None:
    """The event system imports Celery (and redis) only when the Celery backend is chosen."""
    import subprocess
    import sys

    code = (
        "import sys, crown_nexus.core.events as e; "
        "print(sorted(m for m in ('celery', 'kombu', 'redis') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


async def test_publish_does_not_wait_for_handlers_which_run_concurrently(
    service: EventService,
) -> None:
    """publish returns before its handlers finish, and handlers of many events overlap."""
    gate = asyncio.Event()
    running: list[int] = []

    async def slow(event: dict[str, Any]) -> None:
        running.append(event["data"])
        await gate.wait()

    service.subscribe("slow.many", slow)
    for n in range(20):
        await asyncio.wait_for(service.publish("slow.many", n), 0.5)
    await asyncio.sleep(0.01)
    assert sorted(running) == list(range(20)) and service.pending_count() == 20
    gate.set()
    assert await service.wait_for_pending(1)
    assert service.pending_count() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    failing=st.lists(st.booleans(), min_size=1, max_size=4),
    events=st.lists(st.integers(min_value=0, max_value=3), max_size=25),
    max_pending=st.integers(min_value=1, max_value=8),
)
def test_every_handler_sees_every_event_once_in_order(
    failing: list[bool], events: list[int], max_pending: int
) -> None:
    """Whatever fails and however small the bound: each handler runs once per event, in order."""
    svc = EventService(EventConfig(shutdown_timeout=2.0))
    seen: dict[int, list[int]] = {i: [] for i in range(len(failing))}

    def make(i: int, fails: bool) -> Any:
        async def handler(event: dict[str, Any]) -> None:
            seen[i].append(event["data"]["seq"])
            await asyncio.sleep(0)
            if fails:
                raise RuntimeError("boom")

        return handler

    for i, fails in enumerate(failing):
        svc.subscribe(f"topic.{i % 2}", make(i, fails))

    async def run() -> None:
        await svc.initialize(EventBackendType.MEMORY, max_pending=max_pending)
        with capture_errors():
            for seq, topic in enumerate(events):
                await svc.publish(f"topic.{topic}", {"seq": seq})
            assert await svc.wait_for_pending(5)
        await svc.shutdown()

    asyncio.run(run())
    for i in seen:
        expected = [seq for seq, topic in enumerate(events) if topic == i % 2]
        assert seen[i] == expected
    assert svc.stats.failed == sum(len(seen[i]) for i, f in enumerate(failing) if f)
