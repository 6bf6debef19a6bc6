"""Request facts the audit trail records without being told: the client's IP address.

Owns the ``client_ip`` context variable and the pure-ASGI middleware that sets it per HTTP
request (trusted-proxy aware, the same rule as rate limiting). ``log_action`` reads it when no
``client_ip=`` is passed; the request id comes from the logging context.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["AuditContextMiddleware", "client_ip_context", "get_client_ip"]

_client_ip: ContextVar[str | None] = ContextVar("crown_nexus_audit_client_ip", default=None)


def get_client_ip() -> str | None:
    """The client IP of the current request (set by :class:`AuditContextMiddleware`), or None."""
    return _client_ip.get()


@contextmanager
def client_ip_context(client_ip: str | None) -> Iterator[None]:
    """Within the block, audit records default to ``client_ip``."""
    token = _client_ip.set(client_ip)
    try:
        yield
    finally:
        _client_ip.reset(token)


class AuditContextMiddleware:
    """Pure ASGI: records each HTTP/WebSocket request's client IP for the audit trail.

    The peer address is used unless it is one of ``trusted_proxies``; then ``X-Forwarded-For``
    is read as :func:`crown_nexus.core.rate_limiting.service.client_ip_from_scope` does.
    """

    def __init__(self, app: Any, trusted_proxies: Iterable[str] = ()) -> None:
        from crown_nexus.core.rate_limiting.service import TrustedProxies, client_ip_from_scope

        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)
        self._client_ip_of = client_ip_from_scope

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        token = _client_ip.set(self._client_ip_of(scope, self.trusted))
        try:
            await self.app(scope, receive, send)
        finally:
            _client_ip.reset(token)
