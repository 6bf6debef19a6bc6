"""``SecureRequestMiddleware``: request size caps (414/431/413) and attack filtering (400). Pure ASGI.

In order, before the application sees the request:

1. **Size caps**, O(n) and before any pattern runs: a URL (path and query string) over
   ``max_url_length`` bytes answers 414 ``URI_TOO_LONG``; a header (name and value) over
   ``max_header_bytes`` or all headers over ``max_total_header_bytes`` answer 431
   ``REQUEST_HEADER_FIELDS_TOO_LARGE``.
2. **Unambiguous attacks** in the URL (:func:`~crown_nexus.core.security.validation.find_url_attacks`:
   ``<script``, an event-handler tag, a value starting with a ``javascript:`` URL, ``' OR '1'='1``,
   ``UNION SELECT`` with SQL structure, ``../``, NUL) answer 400 ``SECURITY_ERROR`` when
   ``block_suspicious_requests`` is on (the default).
3. **Content heuristics** (:func:`~crown_nexus.core.security.validation.find_suspicious_patterns`,
   fuzzy signs that ordinary text sometimes shows) run in ``content_heuristics`` mode:
   ``"report"`` (default) logs a warning and counts ``suspicious_content_detections_total`` but
   lets the request through; ``"enforce"`` refuses it with 400 like step 2; ``"off"`` skips them.
4. **Body size**: a body over ``max_body_size`` bytes answers 413 ``PAYLOAD_TOO_LARGE``, at once
   when ``Content-Length`` says so, otherwise as soon as the streamed body passes the limit.
   ``max_body_sizes`` (path prefix -> bytes, the longest matching prefix wins) gives some routes
   their own cap (``CROWN_NEXUS_MAX_BODY_SIZE`` / ``CROWN_NEXUS_MAX_BODY_SIZES``).

Every detection (blocked or reported) is logged and counted by category. Every refusal carries
the SPEC §3 error body. ``setup_app`` passes the ``Settings`` values (``CROWN_NEXUS_MAX_URL_LENGTH``,
``CROWN_NEXUS_MAX_HEADER_BYTES``, ``CROWN_NEXUS_MAX_TOTAL_HEADER_BYTES``,
``CROWN_NEXUS_SUSPICIOUS_CONTENT_MODE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, ErrorCode, render_exception
from crown_nexus.core.security.validation import (
    find_suspicious_patterns,
    find_url_attacks,
    url_is_plain,
)
from crown_nexus.core.tracing import end_span, start_span, tracing_enabled
from crown_nexus.logging import get_logger
from crown_nexus.middleware._send import bodiless

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_TOTAL_HEADER_BYTES",
    "DEFAULT_MAX_URL_LENGTH",
    "ContentHeuristicsMode",
    "HeadersTooLargeException",
    "RequestTooLargeException",
    "SecureRequestMiddleware",
    "SuspiciousRequestException",
    "UriTooLongException",
]

logger = get_logger("crown_nexus.middleware.secure_request")

DEFAULT_MAX_BODY_SIZE = 10 * 1024 * 1024
DEFAULT_MAX_URL_LENGTH = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 8 * 1024
DEFAULT_MAX_TOTAL_HEADER_BYTES = 32 * 1024

#: what the content heuristics do: nothing, log and count, or refuse the request
ContentHeuristicsMode = Literal["off", "report", "enforce"]
_MODES = ("off", "report", "enforce")

DETECTIONS_METRIC = "suspicious_content_detections_total"


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


class UriTooLongException(AppException):
    """The request URL (path and query string) is longer than allowed: 414."""

    status_code = 414
    default_code = "URI_TOO_LONG"
    default_message = "Request URL too long"


class HeadersTooLargeException(AppException):
    """A request header, or all of them together, is larger than allowed: 431."""

    status_code = 431
    default_code = "REQUEST_HEADER_FIELDS_TOO_LARGE"
    default_message = "Request header fields too large"


def _limit(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive number of bytes or None, got {value!r}")
    return value


class SecureRequestMiddleware:
    """Refuse oversized URLs (414), headers (431) and bodies (413), and attacks in the URL (400).

    ``block_suspicious_requests`` refuses unambiguous attacks (and, with ``content_heuristics=
    "enforce"``, heuristic hits); when it is off every detection is only reported.
    ``exclude_paths`` (prefixes) are not checked for suspicious content (size caps still apply).
    A limit of ``None`` switches that cap off. See the module docstring for the order of checks.
    """

    def __init__(
        self,
        app: ASGIApp,
        block_suspicious_requests: bool = True,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        exclude_paths: Iterable[str] = (),
        *,
        max_url_length: int | None = DEFAULT_MAX_URL_LENGTH,
        max_header_bytes: int | None = DEFAULT_MAX_HEADER_BYTES,
        max_total_header_bytes: int | None = DEFAULT_MAX_TOTAL_HEADER_BYTES,
        content_heuristics: ContentHeuristicsMode = "report",
        metrics_service: Any = None,
        max_body_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if content_heuristics not in _MODES:
            raise ValueError(
                f"content_heuristics must be one of {_MODES}, got {content_heuristics!r}"
            )
        self.app = app
        self.block_suspicious_requests = block_suspicious_requests
        self.max_body_size = max_body_size
        #: per path prefix body caps, longest prefix first (it wins over shorter ones)
        self.max_body_sizes: tuple[tuple[str, int | None], ...] = tuple(
            sorted(
                ((prefix, _limit(size, f"max_body_sizes[{prefix!r}]"))
                 for prefix, size in (max_body_sizes or {}).items()),
                key=lambda item: -len(item[0]),
            )
        )
        self.exclude_paths = tuple(exclude_paths)
        self.max_url_length = _limit(max_url_length, "max_url_length")
        self.max_header_bytes = _limit(max_header_bytes, "max_header_bytes")
        self.max_total_header_bytes = _limit(max_total_header_bytes, "max_total_header_bytes")
        self.content_heuristics: ContentHeuristicsMode = content_heuristics
        self._metrics_service = metrics_service

    async def _reject(self, send: Send, exc: AppException) -> None:
        status, body, headers = render_exception(exc)
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
        ]
        if status in (414, 431):  # the connection may hold the rest of a huge request
            raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    # --- size caps (O(n), before anything else looks at the request) -------------------------

    def _oversized(self, scope: Scope) -> AppException | None:
        limit = self.max_url_length
        if limit is not None:
            raw_path = scope.get("raw_path")
            if not isinstance(raw_path, bytes | bytearray):
                raw_path = scope.get("path", "").encode("utf-8", "surrogateescape")
            length = len(raw_path) + len(scope.get("query_string", b""))
            if length > limit:
                return UriTooLongException(details={"max_url_length": limit})
        per_header, total_limit = self.max_header_bytes, self.max_total_header_bytes
        if per_header is None and total_limit is None:
            return None
        total = 0
        for name, value in scope.get("headers", ()):
            size = len(name) + len(value)
            if per_header is not None and size > per_header:
                return HeadersTooLargeException(
                    details={
                        "header": bytes(name[:64]).decode("latin-1"),
                        "max_header_bytes": per_header,
                    }
                )
            total += size
            if total_limit is not None and total > total_limit:
                return HeadersTooLargeException(details={"max_total_header_bytes": total_limit})
        return None

    # --- attacks in the URL -----------------------------------------------------------------

    def inspect(self, scope: Scope) -> tuple[list[str], list[str]]:
        """``(unambiguous, heuristic)`` attack classes found in the request's path and query.

        ``heuristic`` is empty when ``content_heuristics`` is ``"off"``; excluded paths give
        ``([], [])``.
        """
        path = scope.get("path", "")
        if self.exclude_paths and path.startswith(self.exclude_paths):
            return [], []
        raw_path = scope.get("raw_path")
        raw_query = scope.get("query_string", b"")
        if isinstance(raw_path, bytes | bytearray):
            raw_path = bytes(raw_path)
            if url_is_plain(raw_path, raw_query):  # the usual URL: nothing can match
                return [], []
            path = raw_path.decode("utf-8", "replace")
        elif url_is_plain(path.encode("utf-8", "surrogateescape"), raw_query):
            return [], []
        query = raw_query.decode("utf-8", "replace")
        strict = find_url_attacks(path, query)
        fuzzy: list[str] = []
        if self.content_heuristics != "off":
            fuzzy = find_suspicious_patterns(path if not query else f"{path}?{query}")
        return strict, fuzzy

    def _count(self, categories: Iterable[str]) -> None:
        """Add one to ``suspicious_content_detections_total{category}`` per category (best effort)."""
        try:
            service = self._metrics_service
            if service is None:
                from crown_nexus.core.dependency_manager import get_service

                service = get_service("metrics_service")
            service.create_counter(
                DETECTIONS_METRIC, "Inputs flagged as suspicious", labelnames=["category"]
            )
            for category in categories:
                service.increment_counter(DETECTIONS_METRIC, labels={"category": category})
        except Exception as exc:  # metrics never break request handling
            logger.debug("suspicious content metric not recorded", error=str(exc))

    def _verdict(self, scope: Scope) -> SuspiciousRequestException | None:
        """Inspect the URL, log and count what was found; the refusal to send, if any."""
        strict, fuzzy = self.inspect(scope)
        if not strict and not fuzzy:
            return None
        blocked: list[str] = []
        if self.block_suspicious_requests:
            blocked = strict or (fuzzy if self.content_heuristics == "enforce" else [])
        categories = list(dict.fromkeys([*strict, *fuzzy]))
        self._count(categories)
        logger.warning(
            "suspicious request",
            action="blocked" if blocked else "reported",
            categories=categories,
            unambiguous=strict,
            heuristic=fuzzy,
            method=scope.get("method"),
            path=str(scope.get("path", ""))[:200],
        )
        if blocked:
            return SuspiciousRequestException(details={"categories": blocked})
        return None

    def body_limit_for(self, path: str) -> int | None:
        """The body cap of ``path``: its longest ``max_body_sizes`` prefix, else ``max_body_size``."""
        for prefix, size in self.max_body_sizes:
            if path.startswith(prefix):
                return size
        return self.max_body_size

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sp = (
            start_span("security.request_checks", tracer="crown_nexus.middleware")
            if tracing_enabled()
            else None
        )
        oversized = self._oversized(scope)
        if oversized is not None:
            end_span(sp, attributes={"crown_nexus.security.refused": type(oversized).__name__})
            await self._reject(send, oversized)
            return
        refusal = self._verdict(scope)
        if sp is not None:
            refused = type(refusal).__name__ if refusal is not None else ""
            end_span(sp, attributes={"crown_nexus.security.refused": refused})
        if refusal is not None:
            await self._reject(send, refusal)
            return
        limit = self.max_body_size
        if self.max_body_sizes:
            limit = self.body_limit_for(scope.get("path", ""))
        if limit is None:
            await self.app(scope, receive, send)
            return
        if bodiless(scope):  # e.g. a GET without Content-Length: no body to count
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
        # set once the streamed body passed the limit: the app may turn the exception raised in
        # its receive() into its own answer (FastAPI: 400 "error parsing the body"), so that
        # answer is replaced by the 413 the client is owed
        too_large: RequestTooLargeException | None = None

        async def receive_wrapper() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = RequestTooLargeException(details={"max_body_size": limit})
                    raise too_large
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if too_large is not None and not started:
                if message["type"] == "http.response.start":
                    started = True
                    await self._reject(send, too_large)
                return  # the app's own answer to the oversized body is dropped
            if too_large is not None and message["type"] == "http.response.body":
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except RequestTooLargeException as exc:
            if started:
                raise
            await self._reject(send, exc)
