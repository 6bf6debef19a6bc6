"""/health/ready on a loaded machine: one slow or failed reply is no 503, a dead dependency is,
and an outage is logged once however often the probe asks."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from fastapi import FastAPI

from crown_nexus.integrations.fastapi import health_router
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client, capture_logs

SECRET = "observability-secret-0123456789-abcdefgh"


def _app(**router: Any) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings(secret_key=SECRET, REDIS_URI=router.pop("redis_url", None))
    app.include_router(health_router(**router))
    return app


async def test_a_check_failing_once_is_still_ready() -> None:
    """A check that fails (or hangs past its share of the budget) once, then answers: 200."""
    calls = {"refused": 0, "slow": 0}

    async def refused_once() -> None:
        calls["refused"] += 1
        if calls["refused"] == 1:
            raise ConnectionError("refused")

    async def slow_once() -> None:
        calls["slow"] += 1
        if calls["slow"] == 1:
            await asyncio.sleep(5)

    app = _app(checks={"db": refused_once, "search": slow_once}, timeout=1.0)
    async with app_client(app) as client:
        resp = await client.get("/health/ready")
    assert resp.status_code == 200, resp.text
    assert calls == {"refused": 2, "slow": 2}


async def test_a_check_that_keeps_failing_is_503() -> None:
    """Every attempt refused: 503 naming the dependency."""

    async def down() -> None:
        raise ConnectionError("refused")

    app = _app(checks={"db": down}, timeout=0.5)
    async with app_client(app) as client:
        resp = await client.get("/health/ready")
    assert resp.status_code == 503
    assert resp.json()["details"]["checks"] == {"db": "down"}


async def test_redis_stalled_briefly_is_ready_killed_is_not(redis_server: Any) -> None:
    """Redis SIGSTOPped for 0.3 s (past the 0.25 s dependency bound) during a probe: 200. Killed:
    503 on every probe, one warning for the whole outage, one info when it is back."""
    app = _app(redis_url=redis_server.url, timeout=1.0, dependency_timeout=0.25)
    async with app_client(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        loop = asyncio.get_running_loop()
        redis_server.proc.send_signal(signal.SIGSTOP)
        loop.call_later(0.3, redis_server.proc.send_signal, signal.SIGCONT)
        try:
            stalled = await client.get("/health/ready")
        finally:
            await asyncio.sleep(0.35)
            redis_server.proc.send_signal(signal.SIGCONT)
        assert stalled.status_code == 200, stalled.text
        with capture_logs() as logs:
            redis_server.stop()
            for _ in range(4):
                down = await client.get("/health/ready")
                assert down.status_code == 503
                assert down.json()["details"]["checks"] == {"redis": "down"}
            redis_server.start()
            assert (await client.get("/health/ready")).status_code == 200
    warnings = [e for e in logs if e["log_level"] == "warning" and e.get("dependency") == "redis"]
    backs = [e for e in logs if e["event"] == "Readiness check passes again"]
    assert len(warnings) == 1 and warnings[0]["event"] == "Readiness check failed"
    assert len(backs) == 1 and backs[0]["dependency"] == "redis"
