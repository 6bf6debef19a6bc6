"""``CacheControlMiddleware``: a sensible ``Cache-Control`` header by method, status and path."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crown_nexus.middleware._send import RawHeaders, add_start_hook

__all__ = ["CacheControlMiddleware"]

DEFAULT_RULES: dict[str, str] = {
    "/health": "no-store",
    "/metrics": "no-store",
    "/static": "public, max-age=86400",
}
_CACHEABLE_STATUS = frozenset({200, 203, 204, 300, 301, 308, 404, 410})


class CacheControlMiddleware:
    """Set ``Cache-Control`` where the route did not set one itself.

    - methods other than GET/HEAD, and error statuses (other than 404/410): ``no-store``;
    - the longest matching path prefix in ``rules`` (defaults: ``/health``, ``/metrics``
      ``no-store``, ``/static`` public for a day);
    - otherwise ``default`` (``no-cache``: stored, but revalidated every time).

    A ``public`` policy becomes ``private`` for requests carrying ``Authorization`` or ``Cookie``,
    so shared caches never keep one user's answer for another.
    """

    def __init__(
        self,
        app: ASGIApp,
        default: str = "no-cache",
        rules: Mapping[str, str] | None = None,
        private_when_authenticated: bool = True,
    ) -> None:
        self.app = app
        self.default = default
        merged = dict(DEFAULT_RULES if rules is None else rules)
        self.rules = sorted(merged.items(), key=lambda kv: len(kv[0]), reverse=True)
        self.private_when_authenticated = private_when_authenticated
        #: the rules as (exact path, path prefix ending in "/", policy), longest first
        self._prefixes = [(prefix, prefix.rstrip("/") + "/", value) for prefix, value in self.rules]
        #: policy text -> header value bytes (a handful of distinct policies)
        self._encoded: dict[str, bytes] = {}

    def policy_for(self, method: str, path: str, status: int, authenticated: bool) -> str:
        """The ``Cache-Control`` value for one response."""
        if method not in ("GET", "HEAD") or status not in _CACHEABLE_STATUS:
            return "no-store"
        policy = self.default
        for prefix, below, value in self._prefixes:
            if path == prefix or path.startswith(below):
                policy = value
                break
        if authenticated and self.private_when_authenticated and "public" in policy:
            policy = policy.replace("public", "private")
        return policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = scope.get("path", "")

        def cache_hook(message: Message, headers: RawHeaders, names: set[bytes]) -> None:
            if b"cache-control" in names:
                return
            status = message["status"]
            policy = self.policy_for(method, path, status, False)
            if "public" in policy and any(  # only a public policy depends on the caller
                k in (b"authorization", b"cookie") for k, _ in scope.get("headers", ())
            ):
                policy = self.policy_for(method, path, status, True)
            value = self._encoded.get(policy)
            if value is None:
                value = policy.encode("latin-1")
                if len(self._encoded) < 64:
                    self._encoded[policy] = value
            headers.append((b"cache-control", value))
            names.add(b"cache-control")

        await self.app(scope, receive, add_start_hook(send, cache_hook))
