"""Log line rendering: native (Rust) vs pure (orjson) for one typical structlog event dict.

Group ``log_render``: the event dict a production chain hands its last processor (timestamp,
level, logger, request/user ids, caller, a few values), rendered to one JSON line. Also
``log_render-odd`` with a datetime, UUID, Decimal, Enum and an exception among the values (the
pure renderer's slow path). Each benchmark checks its output equals the pure renderer's. Run:
``python -m pytest benches/bench_log_render.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid
from typing import Any

import orjson
import pytest

from crown_nexus import accel

IMPLS = accel.available("log_render")
KINDS = sorted(IMPLS)


class Status(enum.Enum):
    """An Enum value in a log event."""

    PAID = "paid"


TYPICAL: dict[str, Any] = {
    "event": "order placed",
    "timestamp": "2026-11-27T15:50:12.123456Z",
    "level": "info",
    "logger": "shop.orders",
    "request_id": "3f2a9c1e-7b4d-4e8f-9a10-2b3c4d5e6f70",
    "user_id": "user-12345",
    "filename": "orders.py",
    "func_name": "place_order",
    "lineno": 214,
    "order_id": 987654,
    "total": 149.95,
    "items": 3,
    "currency": "EUR",
    "express": False,
    "tags": ["web", "checkout"],
}
ODD: dict[str, Any] = {
    **TYPICAL,
    "at": dt.datetime(2026, 11, 27, 15, 50, 12, tzinfo=dt.UTC),
    "order_uuid": uuid.UUID(int=987654),
    "amount": decimal.Decimal("149.95"),
    "status": Status.PAID,
    "error": ValueError("card declined"),
}
CASES = {"log_render": TYPICAL, "log_render-odd": ODD}


@pytest.mark.parametrize("group", sorted(CASES))
@pytest.mark.parametrize("impl", [*KINDS, "orjson.dumps"])
def test_render(benchmark: Any, group: str, impl: str) -> None:
    """Render one event dict to one JSON line."""
    benchmark.group = group
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl
    event = CASES[group]
    expected = IMPLS["pure"].render(event)
    if impl == "orjson.dumps":
        # the floor: orjson alone, default=str, no never-raise guarantees or canonical forms
        def render(ev: dict[str, Any]) -> bytes:
            return orjson.dumps(ev, default=str, option=orjson.OPT_APPEND_NEWLINE)

        benchmark.extra_info["correct"] = render(event) == expected
        benchmark(render, event)
        return
    result = benchmark(IMPLS[impl].render, event)
    benchmark.extra_info["correct"] = result == expected
    assert result == expected


GUIDE_EVENT: dict[str, Any] = {
    "logger": "app.api",
    "method": "GET",
    "path": "/api/users",
    "status": 200,
    "duration_ms": 12.5,
    "event": "request handled",
}


@pytest.mark.parametrize("impl", KINDS)
def test_line_renderer(benchmark: Any, impl: str) -> None:
    """The JSON chain's last step on the guide's request line (group ``log_render-line``):
    ``LineRenderer(logger, method_name, event_dict)``, redaction and caller location included
    (the pure one is the general path, EventPreparer + render). Checks both write one line."""
    from crown_nexus.logging import request_context
    from crown_nexus.logging.redaction import Redactor
    from crown_nexus.logging.render import json_renderer

    benchmark.group = "log_render-line"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl
    renderer = json_renderer(Redactor(), impl)
    with request_context(request_id="req-1", user_id="u-1"):
        line = benchmark(renderer, None, "info", GUIDE_EVENT)
    record = orjson.loads(line)
    assert record["event"] == "request handled" and record["request_id"] == "req-1"
