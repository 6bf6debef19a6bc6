"""One trace from an HTTP request through the outbox and the Celery broker into a real worker."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from crown_nexus.container import use_container
from crown_nexus.core.celery_app import create_celery_app
from crown_nexus.core.events import EventBackendType, get_event_service
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.core.events.test_celery import Worker
from tests.core.tracing.conftest import Spans, span_id_of, trace_id_of
from tests.demo._auth import USER, bearer

pytestmark = pytest.mark.celery

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def _wait_for(path: Path, count: int, seconds: float = 30.0) -> list[dict[str, Any]]:
    async with asyncio.timeout(seconds):
        while len(rows := _read(path)) < count:  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.05)
    return rows


async def test_http_request_to_celery_worker_is_one_trace(
    spans: Spans, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /orders with a traceparent: the request's server span, the event.publish into the
    outbox, the relay's delivery (here) and the worker's task and handler spans (a real
    `celery worker` process) all carry the request's trace id, each parented on the one before."""
    queue = f"trace-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("CROWN_NEXUS_CELERY_QUEUE", queue)  # the worker's (its env is a copy)
    record_dir = tmp_path / "worker"
    record_dir.mkdir()
    worker = Worker(redis_url, record_dir, modules="tests.core.tracing.celery_trace_handlers")
    app = create_app(
        Settings(ENVIRONMENT="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/orders.db")
    )
    with use_container(app.state.container):  # the demo's own event bus (app-scoped)
        service = get_event_service()
    try:
        async with app_client(app) as client:
            as_user = await bearer(client, USER)  # orders need an authenticated caller
            # this process's settings were read before the variable was set: name the queue
            producer = create_celery_app(redis_url, task_default_queue=queue)
            await service.initialize(EventBackendType.CELERY, app=producer)
            try:
                resp = await client.post(
                    "/orders",
                    json={"items": [{"product_id": 1, "quantity": 1}]},
                    headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", **as_user},
                )
                assert resp.status_code == 202
                handled = await _wait_for(record_dir / "handled.jsonl", 1)
                worker_spans = await _wait_for(record_dir / "spans.jsonl", 2)
            finally:
                await service.initialize(EventBackendType.MEMORY)
    finally:
        worker.stop()

    # the handler ran in the worker process, inside the request's trace
    assert handled[0]["name"] == "order.created" and handled[0]["pid"] == worker.proc.pid
    assert handled[0]["trace_id"] == TRACE_ID
    # here: server span → endpoint → event.publish → (outbox) outbox.deliver
    server = next(s for s in spans.all() if s.name == "POST /orders")
    assert trace_id_of(server) == TRACE_ID
    assert format(server.parent.span_id, "016x") == PARENT_ID  # type: ignore[union-attr]
    publish = spans.one("event.publish order.created")
    deliver = spans.one("outbox.deliver order.created")
    assert trace_id_of(publish) == trace_id_of(deliver) == TRACE_ID
    assert format(deliver.parent.span_id, "016x") == span_id_of(publish)  # type: ignore[union-attr]
    # there: the task span continues the publisher's span, the handler span is its child
    by_name = {s["name"]: s for s in worker_spans}
    task = by_name["crown_nexus.events.dispatch order.created"]
    handle = by_name["event.handle order.created"]
    assert {s["trace_id"] for s in worker_spans} == {TRACE_ID}
    assert {s["pid"] for s in worker_spans} == {worker.proc.pid} != {os.getpid()}
    assert task["kind"] == "CONSUMER" and task["parent_id"] == span_id_of(publish)
    assert handle["parent_id"] == task["span_id"]
    assert handled[0]["span_id"] == handle["span_id"]
