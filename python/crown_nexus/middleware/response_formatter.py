"""``ResponseFormatterMiddleware``: successful JSON bodies wrapped in the SPEC §3 envelope."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import current_request_id, utc_timestamp

__all__ = ["ResponseFormatterMiddleware"]

DEFAULT_EXCLUDE_PATHS = ("/metrics", "/openapi.json", "/docs", "/redoc")


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _already_enveloped(body: object) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("success"), bool)
        and ("data" in body or "message" in body)
    )


class ResponseFormatterMiddleware:
    """Wrap 2xx JSON bodies as ``{"success": true, "data": <body>, "meta": {request_id, timestamp}}``.

    Leaves alone: non-JSON responses, streamed bodies (more than one body message), error
    statuses, ``HEAD`` requests, bodies that already carry ``success``, and ``exclude_paths``
    (prefixes). Content-Length is recomputed for wrapped bodies.
    """

    def __init__(self, app: ASGIApp, exclude_paths: Iterable[str] = DEFAULT_EXCLUDE_PATHS) -> None:
        self.app = app
        self.exclude_paths = tuple(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") == "HEAD"
            or (self.exclude_paths and scope.get("path", "").startswith(self.exclude_paths))
        ):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        passthrough = False
        chunks: list[bytes] = []

        async def send_wrapper(message: Message) -> None:
            nonlocal start, passthrough
            kind = message["type"]
            if passthrough:
                await send(message)
                return
            if kind == "http.response.start":
                headers = MutableHeaders(raw=message.setdefault("headers", []))
                status = message["status"]
                if (
                    200 <= status < 300
                    and status not in (204, 205)
                    and _is_json(headers.get("content-type", ""))
                    and "content-encoding" not in headers
                ):
                    start = message
                else:
                    passthrough = True
                    await send(message)
                return
            if kind != "http.response.body" or start is None:
                passthrough = True
                if start is not None:
                    await send(start)
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            await send_formatted(start, b"".join(chunks))

        async def send_formatted(start_message: Message, body: bytes) -> None:
            try:
                payload = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                payload = _UNPARSEABLE
            if payload is not _UNPARSEABLE and not _already_enveloped(payload):
                rid = current_request_id() or scope.get("state", {}).get("request_id")
                body = orjson.dumps(
                    {
                        "success": True,
                        "data": payload,
                        "meta": {"request_id": rid, "timestamp": utc_timestamp()},
                    }
                )
                headers = MutableHeaders(raw=start_message["headers"])
                headers["content-length"] = str(len(body))
            await send(start_message)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_wrapper)


_UNPARSEABLE = object()
