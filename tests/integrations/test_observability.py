"""The library's operator routes: the guarded ``/metrics`` and the ``/health/live|ready`` probes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import create_async_engine

from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.core.metrics import MetricsService
from crown_nexus.demo.routers.rate_limits import GLOBAL_RULE
from crown_nexus.integrations.fastapi import health_router, metrics_router, setup_app
from crown_nexus.middleware.rate_limiting import DEFAULT_RULES
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

SECRET = "observability-secret-0123456789-abcdefgh"
TOKEN = "scrape-token-abcdefghijklmnop"


def _metrics_app(**settings: Any) -> FastAPI:
    service = MetricsService()
    service.increment_counter("widgets_total", 3, {"colour": "red"})
    app = FastAPI()
    install_exception_handlers(app)
    app.state.settings = Settings(secret_key=SECRET, **settings)
    app.include_router(metrics_router(metrics_service=service))
    return app


async def _status(app: FastAPI, headers: dict[str, str] | None = None, client: tuple[str, int] | None = None) -> int:
    import httpx

    transport = httpx.ASGITransport(app=app, client=client or ("127.0.0.1", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        resp = await http.get("/metrics", headers=headers or {})
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.json()["code"] == "AUTHENTICATION_ERROR"
    if resp.status_code == 200:
        assert 'widgets_total{colour="red"} 3.0' in resp.text
        assert resp.headers["content-type"].startswith("text/plain")
    return resp.status_code


async def test_metrics_open_in_development_without_configuration() -> None:
    """Development with neither token nor allow-list: anyone scrapes."""
    assert await _status(_metrics_app()) == 200


async def test_metrics_in_production_are_never_anonymous() -> None:
    """Production with nothing configured: 403 for everyone, loopback included."""
    assert await _status(_metrics_app(ENVIRONMENT="production")) == 403


async def test_metrics_token_guard() -> None:
    """With a token: no or a wrong bearer token is 401 (WWW-Authenticate), the token reads."""
    for environment in ("production", "development"):
        app = _metrics_app(ENVIRONMENT=environment, metrics_token=TOKEN)
        assert await _status(app) == 401
        assert await _status(app, {"Authorization": "Bearer wrong"}) == 401
        assert await _status(app, {"Authorization": f"Bearer {TOKEN}x"}) == 401
        assert await _status(app, {"Authorization": f"Basic {TOKEN}"}) == 401
        assert await _status(app, {"Authorization": f"Bearer {TOKEN}"}) == 200


async def test_metrics_ip_allow_list() -> None:
    """Only peers inside the allowed networks read; X-Forwarded-For cannot fake the peer."""
    app = _metrics_app(ENVIRONMENT="production", metrics_allowed_ips=["10.1.0.0/16", "::1"])
    assert await _status(app, client=("10.1.2.3", 4000)) == 200
    assert await _status(app, client=("::1", 4000)) == 200
    assert await _status(app, client=("::ffff:10.1.9.9", 4000)) == 200  # IPv4-mapped IPv6
    assert await _status(app, client=("10.2.0.1", 4000)) == 403
    assert await _status(app, {"X-Forwarded-For": "10.1.2.3"}, client=("192.0.2.7", 4000)) == 403
    both = _metrics_app(ENVIRONMENT="production", metrics_allowed_ips=["10.1.0.0/16"], metrics_token=TOKEN)
    assert await _status(both, client=("192.0.2.7", 1)) == 401
    assert await _status(both, {"Authorization": f"Bearer {TOKEN}"}, client=("192.0.2.7", 1)) == 200
    assert await _status(both, client=("10.1.0.5", 1)) == 200


def test_allow_list_entries_are_validated() -> None:
    """A malformed address or network is refused when the settings load."""
    with pytest.raises(ValidationError, match="CIDR"):
        Settings(metrics_allowed_ips=["10.0.0.0/33"])
    with pytest.raises(ValidationError, match="CIDR"):
        Settings(metrics_allowed_ips=["example.com"])


async def test_metrics_authorize_callback_admits_extra_callers() -> None:
    """``authorize(request)`` is one more way in; refusing it still answers 401."""

    async def header_admin(request: Any) -> bool:
        return bool(request.headers.get("x-admin") == "yes")

    service = MetricsService()
    service.increment_counter("widgets_total", 3, {"colour": "red"})
    app = FastAPI()
    install_exception_handlers(app)
    app.state.settings = Settings(ENVIRONMENT="production", secret_key=SECRET)
    app.include_router(metrics_router(metrics_service=service, authorize=header_admin))
    assert await _status(app, {"x-admin": "yes"}) == 200
    assert await _status(app, {"x-admin": "no"}) == 401


def test_probe_and_metrics_paths_are_not_rate_limited() -> None:
    """The default and the reference service's global rules exclude /health/* and /metrics."""
    for path in ("/health", "/health/live", "/health/ready"):
        assert not GLOBAL_RULE.matches(path)
        assert not DEFAULT_RULES[0].matches(path)
    assert not DEFAULT_RULES[0].matches("/metrics")


# ----------------------------------------------------------------------------- probes


def _probe_app(settings: Settings, engine: Any = None) -> FastAPI:
    app = FastAPI()
    setup_app(app, settings)
    app.include_router(health_router(engine=engine, include_summary=True))
    return app


async def test_live_always_answers(tmp_path: Any) -> None:
    """/health/live is 200 even while every dependency is down."""
    settings = Settings(secret_key=SECRET, REDIS_URI="redis://127.0.0.1:1/0")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    async with app_client(_probe_app(settings, engine)) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
    await engine.dispose()
    assert live.status_code == 200
    assert live.json().get("data", live.json()) == {"status": "ok"}
    assert ready.status_code == 503
    assert sorted(ready.json()["details"]["failed"]) == ["database", "redis"]


async def test_ready_follows_redis(redis_server: Any, tmp_path: Any) -> None:
    """Redis stopped: 503 naming redis within the probe timeout; started again: 200."""
    settings = Settings(secret_key=SECRET, REDIS_URI=redis_server.url)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/ok.db")
    app = _probe_app(settings, engine)
    try:
        async with app_client(app) as client:
            ok = await client.get("/health/ready")
            assert ok.status_code == 200
            assert ok.json()["data"] == {
                "status": "ok",
                "checks": {"database": "ok", "redis": "ok"},
            }
            redis_server.stop()
            started = time.monotonic()
            down = await client.get("/health/ready")
            assert time.monotonic() - started < 2.0
            assert down.status_code == 503
            body = down.json()
            assert body["success"] is False and body["code"] == "NETWORK_ERROR"
            assert body["details"]["failed"] == ["redis"]
            assert body["details"]["status"] == "unavailable"
            assert body["details"]["checks"] == {"database": "ok", "redis": "down"}
            assert "Connection" not in down.text  # the reason is logged, not shown
            summary = await client.get("/health")
            assert summary.status_code == 200
            assert summary.json()["data"] == {"status": "degraded"}
            redis_server.start()
            again = await client.get("/health/ready")
            assert again.status_code == 200
    finally:
        await engine.dispose()


async def test_ready_checks_the_celery_broker(redis_server: Any, tmp_path: Any) -> None:
    """With Celery events the broker is a dependency: down → 503 naming celery_broker."""
    settings = Settings(
        secret_key=SECRET, event_backend="celery", celery_broker_url=redis_server.url
    )
    app = FastAPI()
    app.state.settings = settings
    app.include_router(health_router())
    async with app_client(app) as client:
        assert (await client.get("/health/ready")).status_code == 200
        redis_server.stop()
        started = time.monotonic()
        down = await client.get("/health/ready")
        assert time.monotonic() - started < 3.0
        assert down.status_code == 503
        assert down.json()["details"]["failed"] == ["celery_broker"]
        redis_server.start()


async def test_ready_bounds_a_stalled_check() -> None:
    """A dependency that never answers is reported as a timeout after ``timeout`` seconds."""
    import asyncio

    async def hangs() -> None:
        await asyncio.sleep(30)

    app = FastAPI()
    app.state.settings = Settings(secret_key=SECRET)
    app.include_router(health_router(checks={"search": hangs}, timeout=0.2))
    async with app_client(app) as client:
        started = time.monotonic()
        resp = await client.get("/health/ready")
    assert time.monotonic() - started < 1.5
    assert resp.status_code == 503
    assert resp.json()["details"]["checks"] == {"search": "timeout"}


async def test_demo_serves_the_probes(redis_server: Any, tmp_path: Any) -> None:
    """The reference service answers /health/live and /health/ready (Redis stopped: 503)."""
    from crown_nexus.demo.app import create_app

    app = create_app(
        Settings(
            ENVIRONMENT="production",
            secret_key=SECRET,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db",
            REDIS_URI=redis_server.url,
        )
    )
    async with app_client(app) as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 200
        redis_server.stop()
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.json()["details"]["failed"] == ["redis"]
        assert (await client.get("/health/live")).status_code == 200
        redis_server.start()


# ----------------------------------------------------------------------------- dead workers

_WORKER = textwrap.dedent(
    """
    from crown_nexus.core.metrics import MetricsService
    m = MetricsService()
    m.increment_counter("jobs_total", 2)
    m.track_in_progress("busy", None, 1)
    """
)


def test_cleanup_dead_workers_drops_only_their_live_gauges(tmp_path: Any) -> None:
    """An exited worker's live gauge file goes; its counter stays (totals never drop)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    worker = subprocess.run([sys.executable, "-c", _WORKER], env=env, timeout=60, check=True)
    assert worker.returncode == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    live = [f for f in files if f.startswith("gauge_livesum_")]
    assert len(live) == 1
    dead_pid = int(live[0].removeprefix("gauge_livesum_").removesuffix(".db"))
    # a live process's file (ours) must survive the cleanup
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").write_bytes(b"")
    reader = MetricsService(multiprocess_dir=str(tmp_path))
    assert reader.cleanup_dead_workers() == [dead_pid]
    remaining = {p.name for p in tmp_path.iterdir()}
    assert f"gauge_livesum_{dead_pid}.db" not in remaining
    assert f"gauge_livesum_{os.getpid()}.db" in remaining
    assert any(name.startswith("counter_") for name in remaining)
    assert reader.cleanup_dead_workers() == []
    assert MetricsService(multiprocess_dir=None).cleanup_dead_workers() == []
