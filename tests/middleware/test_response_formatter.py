"""ResponseFormatterMiddleware: successful JSON bodies get the envelope, nothing else does."""

from __future__ import annotations

from datetime import datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.logging import request_context
from crown_nexus.middleware import ResponseFormatterMiddleware
from tests.middleware._apps import call, header, json_app, raw_app, streaming_app


async def test_wraps_json_and_fixes_content_length() -> None:
    """A 200 JSON body becomes {success, data, meta} with a correct Content-Length."""
    app = ResponseFormatterMiddleware(json_app({"id": 1}))
    start, body, _ = await call(app)
    decoded = orjson.loads(body)
    assert decoded["success"] is True
    assert decoded["data"] == {"id": 1}
    assert set(decoded["meta"]) == {"request_id", "timestamp"}
    datetime.fromisoformat(decoded["meta"]["timestamp"].replace("Z", "+00:00"))
    assert header(start, "content-length") == str(len(body))


async def test_meta_carries_request_id() -> None:
    """meta.request_id is the current request id."""
    inner = ResponseFormatterMiddleware(json_app([1, 2]))

    async def app(scope, receive, send):
        with request_context(request_id="rid-9"):
            await inner(scope, receive, send)

    _, body, _ = await call(app)
    decoded = orjson.loads(body)
    assert decoded["meta"]["request_id"] == "rid-9"
    assert decoded["data"] == [1, 2]


async def test_leaves_errors_non_json_streaming_and_enveloped_alone() -> None:
    """Error statuses, non-JSON, streamed and already-enveloped bodies are not touched."""
    error = {"success": False, "message": "x", "code": "C"}
    _, body, _ = await call(ResponseFormatterMiddleware(json_app(error, status=404)))
    assert orjson.loads(body) == error
    _, body, _ = await call(ResponseFormatterMiddleware(raw_app(b"hello", b"text/plain")))
    assert body == b"hello"
    _, body, messages = await call(ResponseFormatterMiddleware(streaming_app([b"[1,", b"2]"])))
    assert body == b"[1,2]" and len([m for m in messages if m["type"] == "http.response.body"]) == 2
    enveloped = {"success": True, "data": {"a": 1}}
    _, body, _ = await call(ResponseFormatterMiddleware(json_app(enveloped)))
    assert orjson.loads(body) == enveloped


async def test_excluded_paths_and_head() -> None:
    """/metrics-like excluded prefixes and HEAD requests pass through."""
    app = ResponseFormatterMiddleware(json_app({"a": 1}), exclude_paths=["/raw"])
    _, body, _ = await call(app, path="/raw/x")
    assert orjson.loads(body) == {"a": 1}
    _, body, _ = await call(app, method="HEAD")
    assert orjson.loads(body) == {"a": 1}


async def test_invalid_json_left_alone() -> None:
    """A body labelled JSON that does not parse is sent as it was."""
    _, body, _ = await call(ResponseFormatterMiddleware(raw_app(b"{oops", b"application/json")))
    assert body == b"{oops"


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53) | st.text(),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=10,
    )
)
def test_any_json_round_trips_as_data(payload) -> None:
    """Whatever JSON the route returns comes back unchanged under data (unless enveloped)."""
    import asyncio

    _, body, _ = asyncio.run(call(ResponseFormatterMiddleware(json_app(payload))))
    decoded = orjson.loads(body)
    if (
        isinstance(payload, dict)
        and isinstance(payload.get("success"), bool)
        and ("data" in payload or "message" in payload)
    ):
        assert decoded == payload
    else:
        assert decoded["data"] == payload


async def test_body_is_spliced_as_sent_whitespace_and_all() -> None:
    """A pretty-printed or padded JSON body is wrapped by splicing: the envelope is valid JSON,
    data equals the body's value, and the body's bytes appear unchanged inside it."""
    raw = b'  [\n  {"id": 1, "name": "caf\\u00e9"},\n  2.50, null\n]\n'
    _, body, _ = await call(ResponseFormatterMiddleware(raw_app(raw, b"application/json")))
    decoded = orjson.loads(body)
    assert decoded["success"] is True and decoded["data"] == orjson.loads(raw)
    assert set(decoded["meta"]) == {"request_id", "timestamp"}
    assert raw in body
