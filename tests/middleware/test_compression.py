"""CompressionMiddleware: gzip above minimum_size when accepted."""

from __future__ import annotations

import gzip

import pytest

from crown_nexus.middleware import CompressionMiddleware
from tests.middleware._apps import call, header, raw_app


async def test_large_bodies_are_gzipped() -> None:
    """A body >= minimum_size is gzipped when the client accepts gzip."""
    payload = b"x" * 5000
    app = CompressionMiddleware(raw_app(payload, b"text/plain"), minimum_size=1000)
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") == "gzip"
    assert gzip.decompress(body) == payload
    assert header(start, "content-length") == str(len(body))
    assert "Accept-Encoding" in header(start, "vary")


async def test_small_or_unaccepted_bodies_untouched() -> None:
    """Small bodies and clients without gzip get the plain body."""
    app = CompressionMiddleware(raw_app(b"y" * 10, b"text/plain"), minimum_size=1000)
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") is None and body == b"y" * 10
    big = CompressionMiddleware(raw_app(b"z" * 5000, b"text/plain"))
    start, body, _ = await call(big)
    assert header(start, "content-encoding") is None and body == b"z" * 5000


async def test_excluded_paths_and_media() -> None:
    """Excluded prefixes and already-compressed media are not compressed."""
    app = CompressionMiddleware(raw_app(b"a" * 5000, b"text/plain"), exclude_paths=["/files"])
    start, _, _ = await call(app, path="/files/1", headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") is None
    png = CompressionMiddleware(raw_app(b"a" * 5000, b"image/png"))
    start, _, _ = await call(png, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") is None


def test_bad_arguments_rejected() -> None:
    """Negative sizes and levels outside 0-9 are refused."""
    with pytest.raises(ValueError):
        CompressionMiddleware(raw_app(b"", b"text/plain"), minimum_size=-1)
    with pytest.raises(ValueError):
        CompressionMiddleware(raw_app(b"", b"text/plain"), compresslevel=10)


async def test_formatter_outside_compression_still_wraps_large_json() -> None:
    """In the guide's order (formatter outside compression) big JSON is wrapped, then gzipped."""
    import orjson

    from crown_nexus.middleware import ResponseFormatterMiddleware
    from tests.middleware._apps import json_app

    payload = {"items": ["x" * 50] * 100}
    app = ResponseFormatterMiddleware(CompressionMiddleware(json_app(payload), minimum_size=1000))
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") == "gzip"
    assert header(start, "content-length") == str(len(body))
    decoded = orjson.loads(gzip.decompress(body))
    assert decoded["success"] is True and decoded["data"] == payload
    start, body, _ = await call(app)
    assert header(start, "content-encoding") is None
    assert orjson.loads(body)["data"] == payload


async def test_formatter_outside_compression_non_json_still_gzipped() -> None:
    """Responses the formatter leaves alone are compressed by the compression middleware."""
    from crown_nexus.middleware import ResponseFormatterMiddleware

    app = ResponseFormatterMiddleware(CompressionMiddleware(raw_app(b"t" * 4000, b"text/plain")))
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") == "gzip"
    assert gzip.decompress(body) == b"t" * 4000
