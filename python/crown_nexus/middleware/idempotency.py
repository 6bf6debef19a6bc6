"""``IdempotencyMiddleware``: ``Idempotency-Key`` for ``POST`` and ``PATCH`` (IETF httpapi draft).

A client that may retry a non-idempotent request sends ``Idempotency-Key: <key>`` (a Structured
Field string, ``"..."``; a bare key is accepted too) with 1 to 255 visible ASCII characters —
anything else is 400 ``IDEMPOTENCY_KEY_INVALID``. The key is scoped to the caller (a hash of
its bearer token, API key or session cookie, else its address), the method and the URL, so one
caller's key never touches another's responses. The request is fingerprinted with the SHA-256
of its body.

* **First request**: the key is claimed atomically (Redis: one script that reads and sets the
  key, expiring after ``lock_timeout``), the application runs, and its response — status,
  headers except ``Set-Cookie`` and ``Date``, body — is stored for ``ttl_seconds`` (default 24 h).
* **Repeat with the same body**: the stored response is sent again, with
  ``Idempotent-Replayed: true``; the application does not run.
* **Same key, another body**: 422 ``IDEMPOTENCY_KEY_REUSED`` (the key is a client bug).
* **Same key while the first request still runs**: 409 ``IDEMPOTENCY_KEY_IN_PROGRESS`` with
  ``Retry-After: 1`` at once — the draft allows waiting or 409; answering at once keeps a worker
  from being held by a duplicate and cannot outlive the first request's timeout. The client
  retries and then gets the stored response.
* **Not stored**: 5xx and 429 answers (the client is meant to retry them: the claim is released
  and the retry runs the request again), a response whose body passes ``max_response_bytes``
  (released too; streaming endpoints should not take idempotency keys), and requests that raise
  or are cancelled.
* **Store unavailable** (Redis down): 503 ``IDEMPOTENCY_UNAVAILABLE``. A client that sent a key
  asked for at-most-once; running the request without the guarantee could run it twice.

Requests without the header, and other methods, pass untouched. ``setup_app`` places it just
outside ``ErrorHandlerMiddleware``: the stored response is the application's (an error already in
the SPEC §3 body), and the replay goes through formatting and compression again like any response,
so a replay to a client with another ``Accept-Encoding`` is still right.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, render_asgi
from crown_nexus.core.idempotency import (
    ClaimState,
    IdempotencyStore,
    StoredResponse,
    create_idempotency_store,
)
from crown_nexus.logging import get_logger

__all__ = [
    "DEFAULT_IDEMPOTENCY_TTL",
    "IDEMPOTENCY_HEADER",
    "IdempotencyKeyInProgressException",
    "IdempotencyKeyInvalidException",
    "IdempotencyKeyReusedException",
    "IdempotencyMiddleware",
    "IdempotencyUnavailableException",
    "parse_idempotency_key",
]

logger = get_logger("crown_nexus.middleware.idempotency")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_IDEMPOTENCY_TTL = 24 * 60 * 60
DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
MAX_KEY_LENGTH = 255
_HEADER_KEY = IDEMPOTENCY_HEADER.lower().encode("latin-1")
#: response headers never stored: cookies (credentials) and the original date
_NOT_STORED = frozenset({"set-cookie", "date"})


class IdempotencyKeyInvalidException(AppException):
    """The ``Idempotency-Key`` header is empty, too long or not visible ASCII: 400."""

    status_code = 400
    default_code = "IDEMPOTENCY_KEY_INVALID"
    default_message = "Idempotency-Key must be 1 to 255 visible ASCII characters"


class IdempotencyKeyReusedException(AppException):
    """The key was already used for a request with another body: 422."""

    status_code = 422
    default_code = "IDEMPOTENCY_KEY_REUSED"
    default_message = "Idempotency-Key already used for a different request"


class IdempotencyKeyInProgressException(AppException):
    """A request with this key is still being processed: 409 (retry later)."""

    status_code = 409
    default_code = "IDEMPOTENCY_KEY_IN_PROGRESS"
    default_message = "A request with this Idempotency-Key is still being processed"


class IdempotencyUnavailableException(AppException):
    """The idempotency store cannot be reached: 503 (retry later)."""

    status_code = 503
    default_code = "IDEMPOTENCY_UNAVAILABLE"
    default_message = "Idempotency keys cannot be checked right now"


def parse_idempotency_key(raw: bytes) -> str | None:
    """The key of an ``Idempotency-Key`` header value, or ``None`` when it is not valid.

    ``"key"`` (Structured Field string, as the draft writes it) and a bare ``key`` are accepted;
    the key is 1 to 255 characters from ``!`` to ``~`` (visible ASCII).
    """
    text = raw.strip()
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':
        text = text[1:-1]
    if not 1 <= len(text) <= MAX_KEY_LENGTH or any(b < 0x21 or b > 0x7E for b in text):
        return None
    return text.decode("ascii")


def _identity(scope: Scope) -> bytes:
    """Who is calling: their credential (bearer token, API key, session cookie), else address."""
    auth = api_key = cookie = b""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            auth = value
        elif name == b"x-api-key":
            api_key = value
        elif name == b"cookie":
            cookie += value + b";"
    if auth:
        return b"a:" + auth
    if api_key:
        return b"k:" + api_key
    if cookie:
        from starlette.requests import cookie_parser

        from crown_nexus.core.security.dependencies import SESSION_COOKIE

        session = cookie_parser(cookie.decode("latin-1")).get(SESSION_COOKIE)
        if session:
            return b"c:" + session.encode("latin-1", "replace")
    client = scope.get("client")
    return b"ip:" + str(client[0] if client else "").encode("utf-8")


class IdempotencyMiddleware:
    """Replay the stored response of a repeated ``POST``/``PATCH`` with the same key and body.

    ``store``: an :class:`~crown_nexus.core.idempotency.IdempotencyStore` (default: Redis at
    ``redis_url``, else process memory). ``ttl_seconds``: how long responses are kept.
    ``lock_timeout``: how long a claim holds the key if its request never finishes (longer than
    the request timeout). ``enabled=False`` passes every request through. See the module
    docstring for the behaviour.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore | None = None,
        redis_url: str | None = None,
        ttl_seconds: float = DEFAULT_IDEMPOTENCY_TTL,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        methods: Iterable[str] = ("POST", "PATCH"),
        enabled: bool = True,
    ) -> None:
        if not ttl_seconds > 0 or not lock_timeout > 0:
            raise ValueError("ttl_seconds and lock_timeout must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        self.app = app
        self._owns_store = store is None
        self.store: IdempotencyStore = store or create_idempotency_store(redis_url)
        self.ttl_seconds = float(ttl_seconds)
        self.lock_timeout = float(lock_timeout)
        self.max_response_bytes = max_response_bytes
        self.methods = frozenset(m.upper() for m in methods)
        self.enabled = enabled

    async def _answer(self, send: Send, exc: AppException) -> None:
        start, body = render_asgi(exc)
        await send(start)
        await send(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if scope["type"] != "http" or not self.enabled or scope.get("method") not in self.methods:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers") or () if k == _HEADER_KEY), None)
        if raw is None:
            await self.app(scope, receive, send)
            return
        key = parse_idempotency_key(raw)
        if key is None:
            await self._answer(send, IdempotencyKeyInvalidException())
            return
        messages, body, disconnected = await _read_body(receive)
        if disconnected:
            return  # the client left before sending its request: nothing to run or answer
        fingerprint = hashlib.sha256(body).hexdigest()
        path = scope.get("path", "") + "?" + scope.get("query_string", b"").decode("latin-1")
        store_key = hashlib.sha256(
            b"\x00".join(
                [_identity(scope), scope["method"].encode(), path.encode("utf-8", "replace"),
                 key.encode("ascii")]
            )
        ).hexdigest()
        try:
            claim = await self.store.claim(store_key, fingerprint, self.lock_timeout)
        except Exception as exc:
            logger.error("idempotency store unavailable", error=repr(exc), store=self.store.name)
            await self._answer(send, IdempotencyUnavailableException(headers={"Retry-After": "1"}))
            return
        if claim.state is not ClaimState.CLAIMED:
            if claim.fingerprint != fingerprint:
                await self._answer(send, IdempotencyKeyReusedException())
            elif claim.state is ClaimState.IN_PROGRESS or claim.response is None:
                await self._answer(
                    send, IdempotencyKeyInProgressException(headers={"Retry-After": "1"})
                )
            else:
                await _replay(send, claim.response)
            return
        owner = str(claim.owner)
        await self._run_and_store(scope, _replaying(messages, receive), send, store_key, owner,
                                  fingerprint)

    async def _run_and_store(
        self, scope: Scope, receive: Receive, send: Send, key: str, owner: str, fingerprint: str
    ) -> None:
        status = 0
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0
        complete = False
        overflow = False

        async def capture(message: Message) -> None:
            nonlocal status, size, complete, overflow
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
                headers[:] = [
                    (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                    for k, v in message.get("headers") or ()
                    if bytes(k).lower().decode("latin-1") not in _NOT_STORED
                ]
            elif kind == "http.response.body":
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > self.max_response_bytes:
                    overflow = True
                    chunks.clear()
                elif not overflow:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    complete = True
            await send(message)

        stored = False
        try:
            await self.app(scope, receive, capture)
            if complete and not overflow and status and status < 500 and status != 429:
                response = StoredResponse(status, tuple(headers), b"".join(chunks))
                stored = await self.store.complete(
                    key, owner, fingerprint, response, self.ttl_seconds
                )
        except Exception as exc:
            if status and complete:  # the response went out; only storing it failed
                logger.error("idempotent response not stored", error=repr(exc))
            else:
                raise
        finally:
            if not stored:
                try:
                    await self.store.release(key, owner)
                except Exception as exc:  # the claim expires after lock_timeout anyway
                    logger.warning("idempotency claim not released", error=repr(exc))

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        """``receive`` for the lifespan: closes a store this middleware created at shutdown."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self._owns_store:
                try:
                    await self.store.close()
                except Exception as exc:
                    logger.warning("idempotency store not closed", error=repr(exc))
            return message

        return wrapped


async def _read_body(receive: Receive) -> tuple[list[Message], bytes, bool]:
    """``(messages, body, disconnected)``: the whole request body, the messages to replay."""
    messages: list[Message] = []
    body = bytearray()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, bytes(body), True
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return messages, bytes(body), False


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then the real ``receive``."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _replay(send: Send, response: StoredResponse) -> None:
    """Send a stored response again, marked ``Idempotent-Replayed: true``."""
    raw: list[tuple[bytes, bytes]] = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
    ]
    raw.append((REPLAYED_HEADER.lower().encode("latin-1"), b"true"))
    start: dict[str, Any] = {"type": "http.response.start", "status": response.status,
                             "headers": raw}
    await send(start)
    await send({"type": "http.response.body", "body": response.body})
