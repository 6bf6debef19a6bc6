"""The guide §8 metrics are recorded through crown_nexus.core.metrics."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitingService,
    RateLimitRule,
    _metrics,
)
from crown_nexus.middleware.rate_limiting import RateLimitMiddleware
from crown_nexus.settings import Settings

GUIDE_METRICS = [
    "rate_limit_exceeded_total",
    "rate_limiting_requests_total",
    "rate_limiting_middleware_duration_seconds",
    "rate_limiting_check_duration_seconds",
    "rate_limiting_checks_total",
]


def total(name: str, labels: dict[str, str] | None = None) -> float:
    return get_service("metrics_service").get_counter_sum(name, labels)


async def test_checks_and_refusals_are_counted() -> None:
    """Every check counts in rate_limiting_checks_total; refusals in rate_limit_exceeded_total."""
    _metrics.reset()
    svc = RateLimitingService(MemoryRateLimitBackend(), settings=Settings())
    rule = RateLimitRule(requests_per_window=2, window_seconds=60, path_pattern="/metrics-test/")
    checks = total("rate_limiting_checks_total", {"backend": "memory"})
    limited = total("rate_limiting_checks_total", {"result": "limited"})
    exceeded = total("rate_limit_exceeded_total", {"path": "/metrics-test/"})
    for _ in range(5):
        await svc.check("m", rule)
    _metrics.flush()
    assert total("rate_limiting_checks_total", {"backend": "memory"}) == checks + 5
    assert total("rate_limiting_checks_total", {"result": "limited"}) == limited + 3
    assert total("rate_limit_exceeded_total", {"path": "/metrics-test/"}) == exceeded + 3


async def test_allowed_checks_are_batched_and_written(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Allowed checks reach rate_limiting_checks_total in batches: every FLUSH_EVERY, by the timer,
    and on flush(); none is lost or counted twice."""
    import asyncio

    _metrics.reset()
    monkeypatch.setattr(_metrics, "FLUSH_AFTER_SECONDS", 0.05)
    svc = RateLimitingService(MemoryRateLimitBackend(), settings=Settings())
    rule = RateLimitRule(requests_per_window=10_000, window_seconds=60, name="batched")
    labels = {"backend": "memory", "result": "allowed"}
    start = total("rate_limiting_checks_total", labels)
    for _ in range(_metrics.FLUSH_EVERY + 3):
        await svc.check("b", rule)
    # one full batch of FLUSH_EVERY was written; 3 are pending
    assert total("rate_limiting_checks_total", labels) == start + _metrics.FLUSH_EVERY
    await asyncio.sleep(0.15)  # the timer writes the remaining 3
    assert total("rate_limiting_checks_total", labels) == start + _metrics.FLUSH_EVERY + 3
    await svc.check("b", rule)
    _metrics.flush()
    _metrics.flush()
    assert total("rate_limiting_checks_total", labels) == start + _metrics.FLUSH_EVERY + 4


async def test_every_guide_metric_exists_after_traffic() -> None:
    """After requests through the middleware every metric named in the guide is exported."""
    _metrics.reset()
    app = FastAPI()

    @app.get("/m")
    async def m() -> dict[str, bool]:
        return {"ok": True}

    service = RateLimitingService(MemoryRateLimitBackend(), settings=Settings())
    app.add_middleware(
        RateLimitMiddleware, rules=[RateLimitRule(requests_per_window=1, window_seconds=60)],
        service=service,
    )
    before = total("rate_limiting_requests_total", {"result": "limited"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/m")
        await c.get("/m")
    assert total("rate_limiting_requests_total", {"result": "limited"}) == before + 1
    exposition, _ = get_service("metrics_service").render_latest()
    text = exposition.decode()
    for name in GUIDE_METRICS:
        assert name in text, name


async def test_each_middleware_times_its_own_first_request() -> None:
    """The decision time is sampled per middleware (its first request, then 1 in N), not at a
    process-wide position: a new app's first request is observed however many requests other
    apps served before it (CI once saw the histogram missing because of such a position)."""

    def app_with_limit() -> FastAPI:
        app = FastAPI()

        @app.get("/m")
        async def m() -> dict[str, bool]:
            return {"ok": True}

        app.add_middleware(
            RateLimitMiddleware,
            rules=[RateLimitRule(requests_per_window=10_000, window_seconds=60)],
            service=RateLimitingService(MemoryRateLimitBackend(), settings=Settings()),
        )
        return app

    def observations() -> float:
        metric = get_service("metrics_service").get_metric(
            "rate_limiting_middleware_duration_seconds"
        )
        if metric is None:
            return 0.0
        return sum(
            s.value for fam in metric.collect() for s in fam.samples if s.name.endswith("_count")
        )

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_with_limit()), base_url="http://t"
    ) as c:
        for _ in range(3):  # leaves any shared position past the first
            await c.get("/m")
    before = observations()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app_with_limit()), base_url="http://t"
    ) as c:
        assert (await c.get("/m")).status_code == 200
    assert observations() == before + 1
