"""``RequestContextMiddleware``: one request id per request, in the log context and the response.

Pure ASGI (STYLE habit 4). For each HTTP/WebSocket request it takes the id from the
``X-Request-ID`` header when that is a sane token (1-128 of ``A-Z a-z 0-9 . _ : -``), otherwise
generates a UUID4; sets it (and clears the user id) in :mod:`crown_nexus.logging`'s context
for the whole request, stores it in ``request.state.request_id``, echoes it as ``X-Request-ID``
on the response, and (``log_requests=True``) logs one ``"Request completed"`` line with method,
path, status code and duration. When ``scope["user"]`` carries an ``id`` (an authentication
middleware ran first), that becomes the user id.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

from starlette.types import Message

from crown_nexus.logging import get_logger
from crown_nexus.logging.context import _request_id, _user_id
from crown_nexus.middleware._send import RawHeaders, add_start_hook

__all__ = ["REQUEST_ID_HEADER", "RequestContextMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")

Scope = dict[str, Any]
ASGIApp = Any

_urandom = os.urandom
_perf_counter = time.perf_counter
#: clears the version and variant bits of a 128-bit number / sets version 4, variant RFC 4122
_UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)


#: random bytes are read from the OS this many at a time (256 ids per ``getrandom`` call)
_RANDOM_BLOCK = 4096
#: ``[iterator of 16-byte slices]``; a list iterator hands each slice out once, even to
#: threads racing for it, so two requests never share an id
_random_ids: list[Iterator[bytes]] = [iter(())]


def _refill() -> Iterator[bytes]:
    block = _urandom(_RANDOM_BLOCK)
    ids = iter([block[i : i + 16] for i in range(0, _RANDOM_BLOCK, 16)])
    _random_ids[0] = ids
    return ids


def _forget_random_ids() -> None:
    """A forked worker must not hand out the ids its parent had drawn."""
    _random_ids[0] = iter(())


os.register_at_fork(after_in_child=_forget_random_ids)


def new_request_id() -> str:
    """A random (version 4) UUID as text, ``str(uuid.uuid4())`` without the ``UUID`` object.

    As random as ``uuid4`` (the OS's CSPRNG), read in blocks rather than 16 bytes per id.
    """
    raw = next(_random_ids[0], None)
    if raw is None:
        raw = next(_refill())
    n = (int.from_bytes(raw, "big") & _UUID4_MASK) | _UUID4_BITS
    h = n.to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class RequestContextMiddleware:
    """Give every request a request id (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        header_name: str = REQUEST_ID_HEADER,
        log_requests: bool = True,
        logger_name: str = "crown_nexus.request",
    ) -> None:
        self.app = app
        self.header_name = header_name
        self._header_key = header_name.lower().encode("latin-1")
        self.log_requests = log_requests
        self._logger = get_logger(logger_name)

    def _incoming_id(self, scope: Scope) -> str:
        key = self._header_key
        for name, value in scope.get("headers") or ():
            if name == key:
                if _VALID_ID.match(value):
                    return value.decode("latin-1")
                break
        return new_request_id()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Run the request with its id in the log context; add the id header to the response."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = self._incoming_id(scope)
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["request_id"] = request_id
        user = scope.get("user")
        user_id = getattr(user, "id", None) if user is not None else None
        rid_token = _request_id.set(request_id)
        uid_token = _user_id.set(None if user_id is None else str(user_id))
        key = self._header_key
        header = (key, request_id.encode("latin-1"))
        status = [500]
        start = _perf_counter()

        def request_id_hook(message: Message, headers: RawHeaders, names: set[bytes]) -> None:
            status[0] = message.get("status", 200)
            if key not in names:
                headers.append(header)
                names.add(key)

        try:
            await self.app(scope, receive, add_start_hook(send, request_id_hook))
        finally:
            if self.log_requests and scope["type"] == "http":
                self._logger.info(
                    "Request completed",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    status_code=status[0],
                    duration_ms=round((_perf_counter() - start) * 1000.0, 3),
                )
            _user_id.reset(uid_token)
            _request_id.reset(rid_token)
