"""One log event, end to end, into the same sink: crown-nexus vs structlog vs stdlib.

Group ``log-event``: the guide's call (issue 11), ``get_logger("app.api").info("request
handled", method=..., path=..., status=..., duration_ms=...)`` with a request id and user id
bound, written as one JSON line to an unbuffered ``os.devnull`` file descriptor by

- ``crown-nexus[native]`` / ``crown-nexus[pure]``: ``crown_nexus.logging.get_logger(...).info``
  with the Rust or pure ``log_render`` ``LineRenderer`` as the chain's last step (timestamp,
  level, logger, ids, caller location and redaction included);
- ``structlog-chain``: the leanest structlog production chain ``merge_contextvars,
  add_log_level, TimeStamper(fmt="iso"), JSONRenderer(serializer=orjson.dumps)`` into a
  ``BytesLogger``;
- ``stdlib-python-json-logger``: ``logging`` + ``pythonjsonlogger`` ``JsonFormatter``.

Each benchmark first checks its line is the right JSON. Run:
``pytest benches/bench_logging.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from crown_nexus import accel
from crown_nexus.logging import configure_logging, get_logger, request_context
from crown_nexus.settings import Settings

KINDS = sorted(accel.available("log_render"))
LOGGER = "app.api"
MESSAGE = "request handled"
FIELDS: dict[str, Any] = {"method": "GET", "path": "/api/users", "status": 200, "duration_ms": 12.5}


def _info(benchmark: Any, who: str) -> None:
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["logger"] = who


@pytest.fixture
def devnull_fd() -> Iterator[int]:
    """An unbuffered file descriptor on os.devnull (every line is one write syscall)."""
    fd = os.open(os.devnull, os.O_WRONLY)
    yield fd
    os.close(fd)


def _check_line(line: bytes) -> None:
    rec = orjson.loads(line)
    assert rec.get("event", rec.get("message")) == MESSAGE
    assert rec["request_id"] == "req-1"
    assert rec["duration_ms"] == 12.5


@pytest.mark.parametrize("kind", KINDS)
def test_crown_nexus(benchmark: Any, kind: str, devnull_fd: int, tmp_path: Any) -> None:
    """crown-nexus's public logger, JSON, with the chosen log_render implementation."""
    _info(benchmark, f"crown-nexus[{kind}]")
    benchmark.group = "log-event"
    check = tmp_path / "line.json"
    with open(check, "wb", buffering=0) as f:
        configure_logging(
            Settings(ENVIRONMENT="production", secret_key="b" * 40), fd=f.fileno(), render_kind=kind
        )
        log = get_logger(LOGGER)
        with request_context(request_id="req-1", user_id="u-1"):
            log.info(MESSAGE, **FIELDS)
    _check_line(check.read_bytes())
    configure_logging(
        Settings(ENVIRONMENT="production", secret_key="b" * 40), fd=devnull_fd, render_kind=kind
    )
    try:
        with request_context(request_id="req-1", user_id="u-1"):
            benchmark(log.info, MESSAGE, **FIELDS)
    finally:
        configure_logging(Settings(ENVIRONMENT="test"))


def test_structlog_chain(benchmark: Any, devnull_fd: int, tmp_path: Any) -> None:
    """structlog's production chain with orjson into a BytesLogger."""
    _info(benchmark, "structlog-chain")
    benchmark.group = "log-event"
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
    ]
    wrapper = structlog.make_filtering_bound_logger(logging.INFO)

    def make(file: Any) -> Any:
        return structlog.wrap_logger(
            structlog.BytesLogger(file=file), processors=processors, wrapper_class=wrapper
        )

    check = tmp_path / "line.json"
    structlog.contextvars.bind_contextvars(request_id="req-1", user_id="u-1")
    try:
        with open(check, "wb", buffering=0) as f:
            make(f).info(MESSAGE, **FIELDS)
        _check_line(check.read_bytes())
        with open(devnull_fd, "wb", buffering=0, closefd=False) as sink:
            log = make(sink).bind()
            benchmark(log.info, MESSAGE, **FIELDS)
    finally:
        structlog.contextvars.clear_contextvars()


def test_stdlib_python_json_logger(benchmark: Any, devnull_fd: int, tmp_path: Any) -> None:
    """stdlib logging with python-json-logger's JsonFormatter."""
    try:
        from pythonjsonlogger.json import JsonFormatter
    except ImportError:  # python-json-logger < 3
        from pythonjsonlogger.jsonlogger import JsonFormatter  # type: ignore[no-redef]

    _info(benchmark, "stdlib-python-json-logger")
    benchmark.group = "log-event"
    extra = {"request_id": "req-1", "user_id": "u-1", **FIELDS}

    def make(stream: Any) -> logging.Logger:
        logger = logging.Logger("bench-stdlib", logging.INFO)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        return logger

    check = tmp_path / "line.json"
    with open(check, "w", buffering=1) as f:
        make(f).info(MESSAGE, extra=extra)
    _check_line(check.read_bytes())
    with open(devnull_fd, "w", buffering=1, closefd=False) as sink:
        benchmark(make(sink).info, MESSAGE, extra=extra)
