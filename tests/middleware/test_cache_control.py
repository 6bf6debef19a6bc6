"""CacheControlMiddleware: sensible Cache-Control by method, status and path."""

from __future__ import annotations

from crown_nexus.middleware import CacheControlMiddleware
from tests.middleware._apps import call, header, json_app


async def test_defaults_by_method_and_status() -> None:
    """GET gets no-cache; writes and errors get no-store."""
    ok = CacheControlMiddleware(json_app({}))
    start, _, _ = await call(ok)
    assert header(start, "cache-control") == "no-cache"
    start, _, _ = await call(ok, method="POST")
    assert header(start, "cache-control") == "no-store"
    start, _, _ = await call(CacheControlMiddleware(json_app({}, status=500)))
    assert header(start, "cache-control") == "no-store"


async def test_rules_by_prefix_and_privacy() -> None:
    """The longest matching prefix wins; public becomes private for authenticated requests."""
    app = CacheControlMiddleware(
        json_app({}), rules={"/static": "public, max-age=60", "/static/live": "no-store"}
    )
    start, _, _ = await call(app, path="/static/a.css")
    assert header(start, "cache-control") == "public, max-age=60"
    start, _, _ = await call(app, path="/static/live/x")
    assert header(start, "cache-control") == "no-store"
    start, _, _ = await call(app, path="/staticky")
    assert header(start, "cache-control") == "no-cache"
    start, _, _ = await call(app, path="/static/a.css", headers=[("Authorization", "Bearer t")])
    assert header(start, "cache-control") == "private, max-age=60"


async def test_route_header_is_kept() -> None:
    """A Cache-Control set by the route is never replaced."""
    app = CacheControlMiddleware(json_app({}, extra_headers=[(b"cache-control", b"max-age=5")]))
    start, _, _ = await call(app)
    assert header(start, "cache-control") == "max-age=5"


async def test_health_is_no_store() -> None:
    """/health is never cached by default."""
    start, _, _ = await call(CacheControlMiddleware(json_app({})), path="/health")
    assert header(start, "cache-control") == "no-store"
