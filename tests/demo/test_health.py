"""HTTP-level tests of the reference service's /health."""

from __future__ import annotations

from crown_nexus import __version__, accel
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client


async def test_health_reports_version_and_implementations(tmp_path) -> None:
    """/health answers 200 with the version, accel.implementations() and the backends."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/h.db"))
    async with app_client(app) as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    body = body.get("data", body)
    assert body["version"] == __version__
    assert body["implementations"] == accel.implementations()
    assert body["backends"]["database"] == "sqlite+aiosqlite"


async def test_health_reports_live_backends(tmp_path) -> None:
    """/health names the database driver and its status, and the cache/event/revocation backends."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/h2.db"))
    async with app_client(app) as client:
        resp = await client.get("/health")
    body = resp.json()
    body = body.get("data", body)
    assert body["status"] == "ok"
    backends = body["backends"]
    assert backends["database_status"] == "ok"
    services = backends["services"]
    assert services["cache"]["active"] == "memory"
    assert services["events"] == "memory"
    assert "Blacklist" in services["token_revocation"]


async def test_one_slow_redis_ping_does_not_report_the_cache_off_redis(redis_client) -> None:  # type: ignore[no-untyped-def]
    """A PING slower than the bound once (a loaded machine) is asked again: the cache is still
    reported on Redis; a Redis that never answers in time is reported unreachable."""
    import asyncio

    from crown_nexus.demo.routers.health import REDIS_PROBE_ATTEMPTS, _cache_backend

    class SlowOnce:
        """The real Redis, whose first ``slow`` PINGs take 0.3 s."""

        def __init__(self, slow: int) -> None:
            self.slow, self.calls = slow, 0

        async def ping(self) -> bool:
            self.calls += 1
            if self.calls <= self.slow:
                await asyncio.sleep(0.3)
            return bool(await redis_client.ping())

    class Cache:
        active_backend_name = "redis"

        def __init__(self, backend: SlowOnce) -> None:
            self.backend = backend

    once = Cache(SlowOnce(slow=1))
    assert (await _cache_backend(once))["active"] == "redis"
    assert once.backend.calls == 2
    never = Cache(SlowOnce(slow=REDIS_PROBE_ATTEMPTS))
    report = await _cache_backend(never)
    assert report["active"] == "memory" and report["redis"] == "unreachable"
