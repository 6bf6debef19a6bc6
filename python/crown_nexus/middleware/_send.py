"""One ``send`` for the response-start edits of several layers (pure ASGI, issue 11).

Most layers of the stack only touch the ``http.response.start`` message: they add headers
(request id, security headers, CORS, rate limits, Cache-Control) or note that the response
started (timeout). Wrapping ``send`` in a closure per layer costs a coroutine per layer per
message and a scan of every header per layer. Instead a layer calls :func:`add_start_hook`:
when the ``send`` it was given is already a :class:`StartHookSend` (an outer layer's), the
result is a new :class:`StartHookSend` over the same real ``send`` with this layer's hook put
first. Sending through it runs the hooks innermost layer first -- exactly the order nested
wrappers would run in -- and sends once; a message an outer layer sends itself (a 429, a 504)
goes through the outer layers' hooks only, as it would through their wrappers.

A hook gets ``(message, headers, names)``: ``headers`` is the message's header list (a copy
made once per response, already stored in ``message["headers"]``; append or replace entries in
place) and ``names`` the set of its lower-cased header names, which a hook that adds or
removes headers keeps in step. Each layer still works alone: with a plain ``send`` it gets a
:class:`StartHookSend` holding only its own hook.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message, Scope, Send

__all__ = ["RawHeaders", "StartHook", "StartHookSend", "add_start_hook", "bodiless"]

RawHeaders = list[tuple[bytes, bytes]]
#: ``hook(message, headers, names)``, run on the ``http.response.start`` message
StartHook = Callable[[Message, RawHeaders, set[bytes]], None]


class StartHookSend:
    """``send`` that runs ``hooks`` (innermost layer's first) on the response start message."""

    __slots__ = ("hooks", "send")

    def __init__(self, send: Send, hooks: tuple[StartHook, ...]) -> None:
        self.send = send
        self.hooks = hooks

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers") or ())
            message["headers"] = headers
            names = {name.lower() for name, _ in headers}
            for hook in self.hooks:
                hook(message, headers, names)
        await self.send(message)


def add_start_hook(send: Send, hook: StartHook) -> Send:
    """``send`` with ``hook`` run on the response start message before the hooks (or wrapper)
    ``send`` already has: what wrapping ``send`` in a closure does, in one shared frame."""
    if type(send) is StartHookSend:
        return StartHookSend(send.send, (hook, *send.hooks))
    return StartHookSend(send, (hook,))


#: HTTP versions whose requests have no body unless a header frames one (RFC 9112 §6.3)
_FRAMED_BODY_VERSIONS = frozenset({"1.0", "1.1"})
#: methods whose requests normally carry no body
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


def bodiless(scope: Scope) -> bool:
    """True when the request certainly has no body: a GET (HEAD, OPTIONS, DELETE, TRACE) over
    HTTP/1.x without ``Content-Length`` or ``Transfer-Encoding`` (RFC 9112 §6.3: its body
    length is zero). Other methods are never called bodiless, so a layer given a hand-built
    scope without those headers still guards the body it streams."""
    if scope.get("method") not in _BODILESS_METHODS:
        return False
    if scope.get("http_version", "1.1") not in _FRAMED_BODY_VERSIONS:
        return False
    for name, _ in scope.get("headers") or ():
        if name == b"content-length" or name == b"transfer-encoding":
            return False
    return True
