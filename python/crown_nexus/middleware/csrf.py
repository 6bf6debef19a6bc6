"""``CsrfMiddleware``: CSRF tokens checked on unsafe requests authenticated by the session cookie.

Guide §14: CSRF protection comes from the security middleware. A browser attaches cookies to
requests any site makes, so a request authenticated by a cookie proves nothing about who wrote
it; a bearer token or an API key has to be added by the caller's own code, so those requests
are not CSRF targets and pass untouched.

The rule, for ``POST``, ``PUT``, ``PATCH`` and ``DELETE`` requests that carry the session cookie
(:data:`~crown_nexus.core.security.dependencies.SESSION_COOKIE`) and **no** bearer token or
``X-API-Key`` (the credentials the authentication dependency would use instead of the cookie):

1. the session cookie is verified with the app's security service (signature, expiry,
   revocation); a cookie that does not verify authenticates nothing: the request goes on as
   an anonymous one and the authentication dependency is told to ignore the cookie (so a stale
   cookie never blocks signing in again, and never authenticates either);
2. the request must carry a CSRF token in the ``X-CSRF-Token`` header, or, for an
   ``application/x-www-form-urlencoded`` body, in its ``csrf_token`` field (the body is read,
   up to ``max_form_bytes``, and replayed to the application unchanged);
3. the token must be one :func:`~crown_nexus.core.security.csrf.generate_csrf_token` made for
   this session: :func:`~crown_nexus.core.security.csrf.csrf_session_id` binds it to the user
   **and** the login (the token family ``fam`` shared by every token of one login), so a token
   leaked from another session, another user or a logged-out login does not work; the MAC is
   compared in constant time (``hmac.compare_digest``) and the token expires.

A refusal is 403 with the SPEC §3 body, code ``CSRF_TOKEN_INVALID``. Safe methods are never
checked (they must not change state). ``exempt_paths`` (prefixes) are not checked: use it for
endpoints that authenticate by other means, such as the login form.

Every request that went through this middleware is marked (``request.state.
crown_nexus_csrf_guard``); the authentication dependency accepts the session cookie **only** on
marked requests, so an application that leaves this middleware out cannot be made to accept
cookie-authenticated requests without CSRF protection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.exceptions import AppException, AuthenticationException, render_asgi
from crown_nexus.core.security.csrf import csrf_session_id
from crown_nexus.core.security.dependencies import CSRF_GUARD_STATE, SESSION_COOKIE
from crown_nexus.logging import get_logger

__all__ = [
    "CSRF_FORM_FIELD",
    "CSRF_HEADER",
    "CsrfFailedException",
    "CsrfMiddleware",
]

logger = get_logger("crown_nexus.middleware.csrf")

#: request header carrying the CSRF token
CSRF_HEADER = "X-CSRF-Token"
#: form field carrying the CSRF token in ``application/x-www-form-urlencoded`` bodies
CSRF_FORM_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_MAX_FORM_BYTES = 1024 * 1024
_HEADER_KEY = CSRF_HEADER.lower().encode("latin-1")


class CsrfFailedException(AppException):
    """A cookie-authenticated unsafe request without a valid CSRF token: 403."""

    status_code = 403
    default_code = "CSRF_TOKEN_INVALID"
    default_message = "CSRF token missing or invalid"


def _credentials_other_than_cookie(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the request has a bearer token or an API key: the dependency uses those, never
    the cookie (and neither can be attached by a cross-site form)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return True
        elif name == b"x-api-key" and value.strip():
            return True
    return False


class CsrfMiddleware:
    """Refuse (403) unsafe cookie-authenticated requests without a valid session-bound CSRF token.

    ``exempt_paths``: path prefixes never checked. ``max_form_bytes``: the largest urlencoded
    body read to find the ``csrf_token`` field (larger forms must send the header).
    ``security_service``: verifies the session cookie (default: the app's
    ``app.state.security_service``, else the shared service — the one the authentication
    dependency uses). See the module docstring for the rule.
    """

    def __init__(
        self,
        app: ASGIApp,
        exempt_paths: Iterable[str] = (),
        *,
        max_form_bytes: int = DEFAULT_MAX_FORM_BYTES,
        security_service: Any = None,
    ) -> None:
        if isinstance(max_form_bytes, bool) or not isinstance(max_form_bytes, int) or max_form_bytes < 0:
            raise ValueError(f"max_form_bytes must be a non-negative int, got {max_form_bytes!r}")
        self.app = app
        self.exempt_paths = tuple(exempt_paths)
        self.max_form_bytes = max_form_bytes
        self.security_service = security_service

    def _service(self, scope: Scope) -> Any:
        from crown_nexus.core.security.service import SecurityService, get_security_service

        if self.security_service is not None:
            return self.security_service
        app = scope.get("app")
        service = getattr(getattr(app, "state", None), "security_service", None)
        return service if isinstance(service, SecurityService) else get_security_service()

    async def _refuse(self, send: Send, message: str, reason: str, scope: Scope) -> None:
        logger.warning(
            "CSRF check failed",
            reason=reason,
            method=scope.get("method"),
            path=str(scope.get("path", ""))[:200],
        )
        start, body = render_asgi(CsrfFailedException(message=message, details={"reason": reason}))
        await send(start)
        await send(body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})[CSRF_GUARD_STATE] = True
        if scope.get("method") not in UNSAFE_METHODS or (
            self.exempt_paths and scope.get("path", "").startswith(self.exempt_paths)
        ):
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        cookie_header = b"; ".join(v for k, v in headers if k == b"cookie")
        if not cookie_header:
            await self.app(scope, receive, send)
            return
        session = cookie_parser(cookie_header.decode("latin-1")).get(SESSION_COOKIE)
        if not session or _credentials_other_than_cookie(headers):
            await self.app(scope, receive, send)
            return
        service = self._service(scope)
        try:
            data = await service.decode_token(session)
        except AuthenticationException:
            # expired, revoked or forged: the cookie authenticates nothing on this request (the
            # dependency is told to ignore it), so the request runs as an anonymous one — a
            # stale cookie must not lock the user out of signing in again
            scope["state"][CSRF_GUARD_STATE] = False
            await self.app(scope, receive, send)
            return
        token = next(
            (v.decode("latin-1") for k, v in headers if k == _HEADER_KEY and v.strip()), None
        )
        replay: list[Message] | None = None
        if token is None:
            token, replay = await self._form_token(headers, receive)
            if token is None and replay is None:
                await self._refuse(
                    send,
                    f"Form too large to look for {CSRF_FORM_FIELD}: send the {CSRF_HEADER} header",
                    "form_too_large",
                    scope,
                )
                return
        if token is None:
            await self._refuse(send, "CSRF token missing", "missing", scope)
            return
        if not service.validate_csrf_token(token.strip(), csrf_session_id(data.sub, data.fam)):
            await self._refuse(send, "CSRF token invalid", "invalid", scope)
            return
        if replay is None:
            await self.app(scope, receive, send)
            return
        await self.app(scope, _replaying(replay, receive), send)

    async def _form_token(
        self, headers: list[tuple[bytes, bytes]], receive: Receive
    ) -> tuple[str | None, list[Message] | None]:
        """``(token, messages read)`` from an urlencoded body; ``(None, None)`` when too large.

        Other content types give ``(None, [])`` without reading anything.
        """
        content_type = next((v for k, v in headers if k == b"content-type"), b"")
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/x-www-form-urlencoded":
            return None, []
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # disconnect: the app sees it too
            body += message.get("body", b"")
            if len(body) > self.max_form_bytes:
                return None, None
            if not message.get("more_body", False):
                break
        try:
            fields = parse_qs(body.decode("latin-1"), max_num_fields=1000)
        except ValueError:  # more fields than any real form has: no token found
            fields = {}
        values = fields.get(CSRF_FORM_FIELD)
        return (values[0] if values else None), messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``messages`` first, then the real ``receive``."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
