"""``SecurityHeadersMiddleware``: add the security headers to every HTTP response (pure ASGI)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.core.security.headers import (
    DEFAULT_CONTENT_SECURITY_POLICY,
    get_security_headers,
)
from crown_nexus.middleware._send import RawHeaders, add_start_hook

__all__ = ["SecurityHeadersMiddleware"]

#: FastAPI's interactive docs load their scripts from a CDN; a strict CSP would blank them
DEFAULT_CSP_EXEMPT_PATHS = ("/docs", "/redoc")


class SecurityHeadersMiddleware:
    """Add :func:`~crown_nexus.core.security.get_security_headers` to each response.

    Headers the application already set are left alone. ``content_security_policy`` replaces
    the default policy (``None`` sends none); paths starting with one of ``csp_exempt_paths``
    (by default FastAPI's ``/docs`` and ``/redoc``) get every header except the CSP.
    """

    def __init__(
        self,
        app: ASGIApp,
        content_security_policy: str | None = DEFAULT_CONTENT_SECURITY_POLICY,
        *,
        hsts: bool = True,
        csp_exempt_paths: Iterable[str] = DEFAULT_CSP_EXEMPT_PATHS,
        **header_options: Any,
    ) -> None:
        self.app = app
        headers = get_security_headers(
            content_security_policy=content_security_policy, hsts=hsts, **header_options
        )
        self._headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self._headers_no_csp = [h for h in self._headers if h[0] != b"content-security-policy"]
        self._exempt = tuple(csp_exempt_paths)
        self._names = frozenset(name for name, _ in self._headers)
        self._names_no_csp = frozenset(name for name, _ in self._headers_no_csp)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hook = self._hook
        if self._exempt and scope.get("path", "").startswith(self._exempt):
            hook = self._hook_no_csp
        await self.app(scope, receive, add_start_hook(send, hook))

    def _hook(self, message: Message, headers: RawHeaders, names: set[bytes]) -> None:
        """Add the security headers the response does not have yet."""
        if names.isdisjoint(self._names):  # the usual case: none set by the app
            headers += self._headers
        else:
            headers.extend(h for h in self._headers if h[0] not in names)
        names |= self._names

    def _hook_no_csp(self, message: Message, headers: RawHeaders, names: set[bytes]) -> None:
        """The same, without the Content-Security-Policy (``csp_exempt_paths``)."""
        extra = self._headers_no_csp
        if names.isdisjoint(self._names_no_csp):
            headers += extra
        else:
            headers.extend(h for h in extra if h[0] not in names)
        names |= self._names_no_csp
