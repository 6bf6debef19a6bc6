"""``CORSMiddleware``: Starlette's CORS with the per-request work precomputed (pure ASGI).

A subclass of :class:`starlette.middleware.cors.CORSMiddleware` that answers exactly as it does
-- same preflight responses (Starlette's own code), same response headers in the same order --
but without building ``Headers``/``MutableHeaders`` objects or a ``functools.partial`` per
request: the request's ``Origin`` is found by one scan of the raw headers, the simple headers
are encoded once, and the response headers are edited in the raw list with Starlette's
``MutableHeaders.__setitem__`` semantics (replace the first entry, drop duplicates, else
append; ``Vary`` gets ``Origin`` appended to all its values joined).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware as _StarletteCORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.middleware._send import add_start_hook

__all__ = ["CORSMiddleware"]

RawHeaders = list[tuple[bytes, bytes]]


def _set(raw: RawHeaders, keys: list[bytes], key: bytes, value: bytes) -> None:
    """``MutableHeaders.__setitem__`` on a raw list: first ``key`` entry replaced, others
    removed, appended when absent (``key`` is lower case). ``keys`` is ``[k for k, _ in raw]``,
    kept in step, so the usual cases (absent, or present once) are C-level scans."""
    count = keys.count(key)
    if count == 0:
        raw.append((key, value))
        keys.append(key)
        return
    first = keys.index(key)
    raw[first] = (key, value)
    if count > 1:
        for i in range(len(raw) - 1, first, -1):
            if keys[i] == key:
                del raw[i]
                del keys[i]


def _add_vary_origin(raw: RawHeaders, keys: list[bytes]) -> None:
    """``headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])`` on a raw list."""
    count = keys.count(b"vary")
    if count == 0:
        value = b"Origin"
    elif count == 1:
        value = raw[keys.index(b"vary")][1] + b", Origin"
    else:
        values = [v for k, v in raw if k == b"vary"]
        values.append(b"Origin")
        value = b", ".join(values)
    _set(raw, keys, b"vary", value)


class CORSMiddleware(_StarletteCORSMiddleware):
    """Starlette's ``CORSMiddleware`` (same arguments, same answers), cheaper per request."""

    def __init__(
        self,
        app: ASGIApp,
        allow_origins: Collection[str] = (),
        allow_methods: Collection[str] = ("GET",),
        allow_headers: Collection[str] = (),
        allow_credentials: bool = False,
        allow_origin_regex: str | None = None,
        allow_private_network: bool = False,
        expose_headers: Collection[str] = (),
        max_age: int = 600,
    ) -> None:
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_methods=allow_methods,
            allow_headers=allow_headers,
            allow_credentials=allow_credentials,
            allow_origin_regex=allow_origin_regex,
            allow_private_network=allow_private_network,
            expose_headers=expose_headers,
            max_age=max_age,
        )
        self._simple_raw = [
            (key.lower().encode("latin-1"), value.encode("latin-1"))
            for key, value in self.simple_headers.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin_raw: bytes | None = None
        for key, value in scope.get("headers") or ():
            if key == b"origin":
                origin_raw = value
                break
        if origin_raw is not None and scope["method"] == "OPTIONS":
            headers = Headers(scope=scope)
            if "access-control-request-method" in headers:
                response = self.preflight_response(request_headers=headers)
                await response(scope, receive, send)
                return
        if origin_raw is None:
            await self.app(scope, receive, add_start_hook(send, _vary_hook))
            return
        origin = origin_raw.decode("latin-1")
        if self.allow_all_origins:
            explicit = self.allow_credentials
        else:
            explicit = self.is_allowed_origin(origin=origin)
        simple = self._simple_raw
        allowed_origin: bytes = origin_raw

        def cors_hook(message: Message, raw: RawHeaders, names: set[bytes]) -> None:
            for key, value in simple:
                _put(raw, names, key, value)
            if explicit:
                _put(raw, names, b"access-control-allow-origin", allowed_origin)
            _vary_hook(message, raw, names)

        await self.app(scope, receive, add_start_hook(send, cors_hook))


def _put(raw: RawHeaders, names: set[bytes], key: bytes, value: bytes) -> None:
    """:func:`_set` when ``names`` (the lower-cased names of ``raw``) may hold ``key``, else a
    plain append (the usual case: the application set no CORS header)."""
    if key in names:  # raw names compared as they are, as Starlette's MutableHeaders does
        _set(raw, [k for k, _ in raw], key, value)
    else:
        raw.append((key, value))
        names.add(key)


def _vary_hook(message: Message, raw: RawHeaders, names: set[bytes]) -> None:
    """``Vary: Origin`` added to the response (to its Vary values, joined)."""
    if b"vary" in names:
        keys = [k for k, _ in raw]
        if keys.count(b"vary") == 1:  # the usual case (compression's Accept-Encoding): extend it
            i = keys.index(b"vary")
            raw[i] = (b"vary", raw[i][1] + b", Origin")
        else:
            _add_vary_origin(raw, keys)
    else:
        raw.append((b"vary", b"Origin"))
        names.add(b"vary")
