"""Small ASGI apps for middleware tests."""

from __future__ import annotations

import asyncio

import orjson


def json_app(payload, status: int = 200, extra_headers=()):
    """An ASGI app answering ``payload`` as JSON."""

    async def app(scope, receive, send):
        body = orjson.dumps(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += list(extra_headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def raw_app(body: bytes, content_type: bytes, status: int = 200):
    """An ASGI app answering ``body`` with ``content_type``."""

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def streaming_app(chunks, content_type: bytes = b"application/json", delay: float = 0.0):
    """An ASGI app streaming ``chunks`` (one body message each)."""

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", content_type)],
            }
        )
        for i, chunk in enumerate(chunks):
            if delay:
                await asyncio.sleep(delay)
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1}
            )

    return app


def raising_app(exc: BaseException, after_start: bool = False):
    """An ASGI app that raises ``exc`` (optionally after starting the response)."""

    async def app(scope, receive, send):
        if after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise exc

    return app


def sleeping_app(seconds: float):
    """An ASGI app that sleeps before answering."""

    async def app(scope, receive, send):
        await asyncio.sleep(seconds)
        await json_app({"slept": seconds})(scope, receive, send)

    return app


async def call(app, method: str = "GET", path: str = "/", headers=()):
    """Run one HTTP request through ``app``; return (start message, body bytes, all messages)."""
    messages = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start, body, messages


def header(start, name: str):
    """The value of header ``name`` in a start message, or None."""
    for k, v in start["headers"]:
        if k.decode("latin-1").lower() == name.lower():
            return v.decode("latin-1")
    return None
