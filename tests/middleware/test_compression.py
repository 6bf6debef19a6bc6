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


def _tagged_app(body: bytes, content_type: bytes, extra=()):
    """An ASGI app answering ``body`` with a strong ETag (and ``extra`` headers)."""

    async def app(scope, receive, send):
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"etag", b'"v1"'),
            *extra,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_gzipped_body_gets_its_own_etag_and_vary() -> None:
    """Attack: the gzip representation must not reuse the identity body's strong ETag."""
    app = CompressionMiddleware(_tagged_app(b"x" * 5000, b"text/plain"), minimum_size=1000)
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") == "gzip"
    assert header(start, "etag") == '"v1-gzip"'
    assert header(start, "vary") == "Accept-Encoding"
    plain, body, _ = await call(app, headers=[("Accept-Encoding", "identity")])
    assert header(plain, "etag") == '"v1"' and body == b"x" * 5000
    assert header(plain, "vary") == "Accept-Encoding"


async def test_uncompressed_bodies_keep_their_etag_and_vary_once() -> None:
    """A small body keeps its ETag; an existing Vary gains Accept-Encoding exactly once."""
    app = CompressionMiddleware(
        _tagged_app(b"y" * 10, b"text/plain", [(b"vary", b"Origin, accept-encoding")])
    )
    start, _, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "etag") == '"v1"' and header(start, "content-encoding") is None
    assert header(start, "vary") == "Origin, accept-encoding"
    app = CompressionMiddleware(_tagged_app(b"y" * 5000, b"text/plain", [(b"vary", b"Origin")]))
    start, _, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "vary") == "Origin, Accept-Encoding"


async def test_app_encoded_bodies_keep_their_etag() -> None:
    """A body the app already encoded passes through with its ETag untouched."""
    app = CompressionMiddleware(
        _tagged_app(b"z" * 5000, b"text/plain", [(b"content-encoding", b"br")])
    )
    start, body, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "etag") == '"v1"' and body == b"z" * 5000


async def test_formatter_weakens_and_suffixes_the_etag() -> None:
    """Wrapped JSON gets W/"x" (bytes change per response), and W/"x-gzip" when gzipped."""
    from crown_nexus.middleware import ResponseFormatterMiddleware
    from tests.middleware._apps import json_app

    payload = {"items": ["x" * 50] * 100}
    app = ResponseFormatterMiddleware(
        CompressionMiddleware(json_app(payload, extra_headers=[(b"etag", b'"v1"')]))
    )
    start, _, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") == "gzip"
    assert header(start, "etag") == 'W/"v1-gzip"'
    assert header(start, "vary") == "Accept-Encoding"
    start, _, _ = await call(app)
    assert header(start, "etag") == 'W/"v1"'
    assert header(start, "vary") == "Accept-Encoding"
    small = ResponseFormatterMiddleware(
        CompressionMiddleware(json_app({"a": 1}, extra_headers=[(b"etag", b'"v2"')]))
    )
    start, _, _ = await call(small, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "content-encoding") is None and header(start, "etag") == 'W/"v2"'
    assert header(start, "vary") == "Accept-Encoding"


async def test_formatter_leaves_non_json_etag_to_compression() -> None:
    """Non-JSON bodies under the formatter are gzipped by compression, ETag suffixed once."""
    from crown_nexus.middleware import ResponseFormatterMiddleware

    app = ResponseFormatterMiddleware(
        CompressionMiddleware(_tagged_app(b"t" * 4000, b"text/plain"))
    )
    start, _, _ = await call(app, headers=[("Accept-Encoding", "gzip")])
    assert header(start, "etag") == '"v1-gzip"'
    assert header(start, "vary") == "Accept-Encoding"


def test_default_level_is_the_fast_one() -> None:
    """The default compresslevel is DEFAULT_COMPRESSLEVEL (3): fast deflate, a few % larger."""
    from crown_nexus.middleware.compression import DEFAULT_COMPRESSLEVEL

    assert DEFAULT_COMPRESSLEVEL == 3
    assert CompressionMiddleware(raw_app(b"", b"text/plain")).compresslevel == 3


@pytest.mark.parametrize("accept", ["gzip", "GZIP", "br"])
async def test_formatter_path_compresses_what_gzip_middleware_would(accept: str) -> None:
    """Under the formatter a non-JSON body gets exactly the responder Starlette's GZipMiddleware
    would pick (its case-sensitive 'gzip' test), with Vary either way."""
    from crown_nexus.middleware import ResponseFormatterMiddleware

    payload = b"t" * 5000
    app = ResponseFormatterMiddleware(CompressionMiddleware(raw_app(payload, b"text/plain")))
    start, body, _ = await call(app, headers=[("Accept-Encoding", accept)])
    if accept == "gzip":
        assert header(start, "content-encoding") == "gzip" and gzip.decompress(body) == payload
    else:
        assert header(start, "content-encoding") is None and body == payload
    assert "Accept-Encoding" in (header(start, "vary") or "")
