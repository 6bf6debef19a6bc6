"""``SecureRequestMiddleware``: refuse suspicious URLs (400) and oversized bodies (413). Pure ASGI."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, ErrorCode, render_exception
from crown_nexus.core.security.validation import find_suspicious_patterns

__all__ = ["RequestTooLargeException", "SecureRequestMiddleware", "SuspiciousRequestException"]

DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024


class SuspiciousRequestException(AppException):
    """The request URL looks like an attack (SQL injection, XSS, path traversal...): 400."""

    status_code = 400
    default_code = ErrorCode.SECURITY_ERROR
    default_message = "Request blocked: suspicious content"


class RequestTooLargeException(AppException):
    """The request body is larger than allowed: 413."""

    status_code = 413
    default_code = ErrorCode.PAYLOAD_TOO_LARGE
    default_message = "Request body too large"


class SecureRequestMiddleware:
    """Block requests whose path or query string carries attack patterns, and oversized bodies.

    With ``block_suspicious_requests`` the URL-decoded path and query string are checked with
    :func:`~crown_nexus.core.security.validation.find_suspicious_patterns`; a hit answers 400
    (SPEC §3 body, code ``SECURITY_ERROR``, ``details.categories``) without calling the app.
    A body over ``max_body_size`` bytes answers 413 (``PAYLOAD_TOO_LARGE``): at once when
    ``Content-Length`` says so, otherwise as soon as the streamed body passes the limit.
    ``exclude_paths`` (prefixes) are not checked for suspicious content.
    """

    def __init__(
        self,
        app: ASGIApp,
        block_suspicious_requests: bool = True,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        exclude_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.block_suspicious_requests = block_suspicious_requests
        self.max_body_size = max_body_size
        self.exclude_paths = tuple(exclude_paths)

    async def _reject(self, send: Send, exc: AppException) -> None:
        status, body, headers = render_exception(exc)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _suspicious(self, scope: Scope) -> list[str]:
        path = scope.get("path", "")
        if self.exclude_paths and path.startswith(self.exclude_paths):
            return []
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes | bytearray):
            path = unquote(raw_path.decode("latin-1"), errors="replace")
        query = scope.get("query_string", b"")
        text = path if not query else path + "?" + query.decode("latin-1")
        return find_suspicious_patterns(text)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.block_suspicious_requests:
            categories = self._suspicious(scope)
            if categories:
                await self._reject(
                    send, SuspiciousRequestException(details={"categories": categories})
                )
                return
        limit = self.max_body_size
        if limit is None:
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._reject(
                        send, RequestTooLargeException(details={"max_body_size": limit})
                    )
                    return
                break

        received = 0
        started = False

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLargeException(details={"max_body_size": limit})
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except RequestTooLargeException as exc:
            if started:
                raise
            await self._reject(send, exc)
