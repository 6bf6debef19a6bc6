"""check_rate_limit on every rate_window implementation: its fast path (``CheckRateLimit`` +
``UnitCheck``) answers and meters exactly what awaiting the service's check does."""

from __future__ import annotations

import math
from typing import Any

import pytest

from crown_nexus.core.dependency_manager import get_service, override_service
from crown_nexus.core.rate_limiting import (
    MemoryRateLimitBackend,
    RateLimitAlgorithm,
    RateLimitingService,
    RateLimitRule,
    RateLimitStrategy,
    _metrics,
    check_rate_limit,
    utils,
)
from crown_nexus.settings import Settings

from .conftest import FakeClock


@pytest.fixture
def fast_of(window_impl: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """check_rate_limit's fast path built from ``window_impl``; returns a one-item list counting
    the calls that took the full path (validating the rule, building the checker)."""
    from crown_nexus.core.dependency_manager import get_registry

    spec = get_registry().direct_lookup("rate_limiting_service")
    monkeypatch.setattr(
        utils, "_fast", window_impl.CheckRateLimit(utils._service, utils._RULES, utils._SLIDING_WINDOW, spec).fast
    )
    full = utils._full_check
    calls = [0]

    async def counted(*args: Any) -> tuple[bool, int, int]:
        calls[0] += 1
        return await full(*args)

    monkeypatch.setattr(utils, "_full_check", counted)
    return calls


@pytest.mark.parametrize("algo", ["sliding_window", "sliding_log", "token_bucket"])
async def test_every_implementation_matches_the_service(window_impl: Any, fast_of: list[int], algo: str) -> None:
    """Allowed, refused and sampled checks: the guide's tuple from the service's own answer;
    none takes the full path -- the sampled checks (one in DURATION_SAMPLE_EVERY) are timed by
    the compiled/pure checker itself and observed in the check-duration histogram."""
    clock_a, clock_b = FakeClock(), FakeClock()
    fast = RateLimitingService(MemoryRateLimitBackend(clock=clock_a, impl=window_impl), settings=Settings())
    ref = RateLimitingService(MemoryRateLimitBackend(clock=clock_b, impl=window_impl), settings=Settings())
    algorithm = RateLimitAlgorithm(algo)
    rule = RateLimitRule(
        requests_per_window=7, window_seconds=10, strategy=RateLimitStrategy.USER, algorithm=algorithm
    )
    rounds = 3 * _metrics.DURATION_SAMPLE_EVERY
    limited = 0
    awaited = [0]
    check = fast.check

    async def counted_check(*args: Any) -> Any:
        awaited[0] += 1
        return await check(*args)

    fast.check = counted_check  # type: ignore[method-assign]
    observed_before = _duration_count()
    with override_service("rate_limiting_service", fast):
        for i in range(rounds):
            key = f"k{i % 3}"
            got = await check_rate_limit(key, 7, 10, algorithm=algorithm)
            want = await ref.check(key, rule)
            reset = (
                max(0, math.ceil(want.reset_after - 1e-9)) if want.allowed else want.retry_after_seconds
            )
            assert got == (not want.allowed, want.count, reset), i
            assert [type(v) for v in got] == [bool, int, int], got
            limited += got[0]
            clock_a.advance(0.37)
            clock_b.advance(0.37)
    assert 0 < limited < rounds
    # the first call builds the rule and checker; the sampled checks (the first and one in
    # DURATION_SAMPLE_EVERY) are timed in the checker: the service's check is never awaited
    assert fast_of[0] == 1
    assert awaited[0] == 0
    # three timed by the fast path's checker, three by the reference service's own check()
    assert _duration_count() == observed_before + 6


def _duration_count() -> float:
    """Observations of ``rate_limiting_check_duration_seconds`` on the memory backend so far."""
    metric = get_service("metrics_service").get_metric("rate_limiting_check_duration_seconds")
    if metric is None:
        return 0.0
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith("_count") and sample.labels.get("backend") == "memory"
    )


async def test_every_implementation_meters_every_check(window_impl: Any, fast_of: list[int]) -> None:
    """Allowed checks reach the tally, refusals are recorded at once: all in the counters."""
    _metrics.reset()
    metrics = get_service("metrics_service")
    allowed = {"backend": "memory", "result": "allowed"}
    limited = {"backend": "memory", "result": "limited"}
    before = (
        metrics.get_counter_sum("rate_limiting_checks_total", allowed),
        metrics.get_counter_sum("rate_limiting_checks_total", limited),
    )
    svc = RateLimitingService(MemoryRateLimitBackend(impl=window_impl), settings=Settings())
    with override_service("rate_limiting_service", svc):
        answers = [await check_rate_limit("metered", 100, 60) for _ in range(150)]
    _metrics.flush()
    assert sum(a[0] for a in answers) == 50
    assert metrics.get_counter_sum("rate_limiting_checks_total", allowed) == before[0] + 100
    assert metrics.get_counter_sum("rate_limiting_checks_total", limited) == before[1] + 50
    assert fast_of[0] == 1


async def test_every_implementation_sends_bad_keys_to_the_service(window_impl: Any, fast_of: list[int]) -> None:
    """A key that is not a plain str takes the full path: TypeError from the service."""
    svc = RateLimitingService(MemoryRateLimitBackend(impl=window_impl), settings=Settings())
    with override_service("rate_limiting_service", svc):
        await check_rate_limit("warm", 5, 60)
        await check_rate_limit("warm", 5, 60)
        for bad in (b"bytes", 7, None):
            with pytest.raises(TypeError):
                await check_rate_limit(bad, 5, 60)  # type: ignore[arg-type]
        assert fast_of[0] == 1
        assert (await check_rate_limit("warm", 5, 60))[:2] == (False, 3)


async def test_every_implementation_follows_a_replaced_service(window_impl: Any, fast_of: list[int]) -> None:
    """The cached checker belongs to one service: another registered service counts afresh."""
    first = RateLimitingService(MemoryRateLimitBackend(impl=window_impl), settings=Settings())
    second = RateLimitingService(MemoryRateLimitBackend(impl=window_impl), settings=Settings())
    with override_service("rate_limiting_service", first):
        for n in (1, 2):
            assert (await check_rate_limit("swap-impl", 2, 60))[:2] == (False, n)
        assert (await check_rate_limit("swap-impl", 2, 60))[:2] == (True, 2)
    with override_service("rate_limiting_service", second):
        assert (await check_rate_limit("swap-impl", 2, 60))[:2] == (False, 1)
    with override_service("rate_limiting_service", first):
        assert (await check_rate_limit("swap-impl", 2, 60))[:2] == (True, 2)


def test_direct_lookup_answers_what_the_getter_answers(window_impl: Any) -> None:
    """CheckRateLimit's own service lookup (ServiceRegistry.direct_lookup) gives exactly the
    getter's answer in every registry state: built, overridden, inherited override, another app
    container, an instance dropped, a service being resolved."""
    from crown_nexus.container import AppContainer, use_container
    from crown_nexus.core.dependency_manager import get_registry
    from crown_nexus.core.dependency_manager._registry import _resolving

    spec = get_registry().direct_lookup("rate_limiting_service")
    assert spec is not None
    fast = window_impl.CheckRateLimit(utils._service, utils._RULES, utils._SLIDING_WINDOW, spec)

    def same() -> Any:
        got = fast.current_service()
        assert got is utils._service()
        return got

    built = same()
    assert isinstance(built, RateLimitingService)
    other = RateLimitingService(settings=Settings())
    with override_service("rate_limiting_service", other):
        assert same() is other
    assert same() is built
    app = AppContainer(name="direct-lookup")
    with use_container(app):
        in_app = same()
        assert in_app is not built
        with override_service("rate_limiting_service", other):  # the app's own override
            assert same() is other
        assert same() is in_app
    with override_service("rate_limiting_service", other):  # set outside: inherited by the app
        with use_container(app):
            assert same() is other
    with use_container(app):
        assert same() is in_app
        registry = get_registry()
        registry._instances.pop("rate_limiting_service")
        rebuilt = same()
        assert rebuilt is not in_app and registry._instances["rate_limiting_service"] is rebuilt
    token = _resolving.set(("some_service",))
    try:
        assert same() is built
    finally:
        _resolving.reset(token)


def test_direct_lookup_is_none_for_a_registry_of_its_own() -> None:
    """A registry with factories of its own gets no direct lookup (its getter always runs)."""
    from crown_nexus.core.dependency_manager import ServiceRegistry

    assert ServiceRegistry().direct_lookup("rate_limiting_service") is None


@pytest.mark.parametrize(
    "bad",
    ["name", ("rate_limiting_service",), ("rate_limiting_service", None, None), (1, None, None)],
)
def test_check_rate_limit_rejects_a_bad_registry_spec(window_impl: Any, bad: Any) -> None:
    """The registry argument must be (name, container_var, resolving_var)."""
    with pytest.raises(TypeError, match="registry must be"):
        window_impl.CheckRateLimit(utils._service, utils._RULES, utils._SLIDING_WINDOW, bad)


def test_the_public_call_runs_the_chosen_implementation() -> None:
    """check_rate_limit's fast path and the service's checkers are the implementation accel
    chose (compiled whenever CROWN_NEXUS_EXPECT_COMPILED=1, so a silent fallback fails here)."""
    import os

    from crown_nexus import accel

    chosen = accel.get("rate_window")
    assert type(utils._fast.__self__) is chosen.CheckRateLimit  # type: ignore[attr-defined]
    svc = RateLimitingService(settings=Settings())
    checker = svc.memory_checker(RateLimitRule(requests_per_window=3, window_seconds=60))
    assert type(checker) is chosen.UnitCheck
    if os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "") not in ("", "0"):
        assert chosen is accel.available("rate_window")["cython"]
