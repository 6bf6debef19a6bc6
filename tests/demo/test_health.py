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
