"""Fixtures for the logging tests: JSON logging into an in-memory stream, per implementation."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from crown_nexus.logging import configure_logging
from crown_nexus.settings import Settings
from tests.conftest import implementations_of


class JsonLines:
    """An in-memory binary sink whose lines parse as JSON."""

    def __init__(self) -> None:
        self.stream = io.BytesIO()

    def raw(self) -> bytes:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        data = self.raw()
        assert data == b"" or data.endswith(b"\n")
        return [orjson.loads(line) for line in data.splitlines()]

    def last(self) -> dict[str, Any]:
        return self.lines()[-1]


@pytest.fixture(params=implementations_of("log_render"))
def render_kind(request: pytest.FixtureRequest) -> str:
    """Every available implementation of the log_render hot path."""
    return str(request.param)


@pytest.fixture
def json_logs(render_kind: str) -> Iterator[JsonLines]:
    """Logging configured for JSON at DEBUG into an in-memory stream (each renderer); stdlib
    records are not bridged (asyncio's own debug lines would interleave)."""
    sink = JsonLines()
    configure_logging(
        Settings(ENVIRONMENT="test"),
        stream=sink.stream,
        log_format="json",
        level="debug",
        render_kind=render_kind,
        stdlib=False,
    )
    yield sink
    configure_logging(Settings(ENVIRONMENT="test"))


@pytest.fixture
def configure() -> Iterator[Callable[..., None]]:
    """Call ``configure_logging`` freely; restores the default configuration afterwards."""
    yield configure_logging
    configure_logging(Settings(ENVIRONMENT="test"))
