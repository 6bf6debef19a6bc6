"""HTTP-level tests of the reference service's /health."""

from __future__ import annotations

import httpx

from crown_nexus import __version__, accel
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings


async def test_health_reports_version_and_implementations() -> None:
    """/health answers 200 with the version, accel.implementations() and the backends."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        resp = await client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["version"] == __version__
    assert body["implementations"] == accel.implementations()
    assert body["backends"]["database"] == "sqlite+aiosqlite"
