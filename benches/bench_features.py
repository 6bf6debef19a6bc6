"""Feature flags: ``is_enabled`` for a user on a 10% percentage flag.

Group ``features-user-percentage``:

* ``native`` / ``pure``: ``await feature_service.is_enabled(flag, target=FeatureTarget.USER,
  target_id=uid, percentage=10)`` with the rollout bucket from the compiled (Rust BLAKE2b) or the
  pure (hashlib) ``cache_keys`` twin; metrics counted as in production (batched);
* ``openfeature-inmemory``: the OpenFeature SDK's ``InMemoryProvider`` with a context evaluator
  doing the usual ``sha256(flag:key) % 100 < 10`` split, read through an SDK client
  (``get_boolean_value``);
* ``openfeature-crown-nexus``: the same SDK client reading our flags through
  ``CrownNexusProvider`` (the cost of the SDK layer on top of ours).

``extra_info`` records ``accel.implementations()`` and the answer for the benchmarked user (the
two crown-nexus twins must agree). Run:
``python -m pytest benches/bench_features.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from crown_nexus import accel
from crown_nexus.core.features import FeatureService, FeatureTarget, Flag, MemoryFeatureStore
from crown_nexus.core.features.openfeature import CrownNexusProvider

KINDS = sorted(accel.available("cache_keys"))
FLAG = Flag.SMS_NOTIFICATIONS
USER_ID = "user-12345"


def _drive(coro: Any) -> Any:
    """Run a coroutine that never suspends (is_enabled never waits on I/O) to completion."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("is_enabled suspended")


def _split(flag: InMemoryFlag[bool], ctx: EvaluationContext) -> FlagResolutionDetails[bool]:
    key = ctx.targeting_key or ""
    bucket = int(hashlib.sha256(f"{FLAG.value}:{key}".encode()).hexdigest()[:8], 16) % 100
    on = bucket < 10
    return FlagResolutionDetails(value=on, reason=Reason.SPLIT, variant="on" if on else "off")


def _service(kind: str | None) -> FeatureService:
    svc = FeatureService(store=MemoryFeatureStore(), environment="bench", bucket_impl=kind)
    asyncio.run(svc.set_flag(FLAG, enabled=True))
    return svc


def _run_in_loop(benchmark: Any, fn: Callable[[], Any]) -> Any:
    """Benchmark ``fn`` inside a running event loop (as in an app: metrics batch on a timer)."""

    async def main() -> Any:
        return benchmark(fn)

    return asyncio.run(main())


@pytest.mark.parametrize(
    "impl", [*KINDS, "openfeature-inmemory", "openfeature-crown-nexus"]
)
def test_is_enabled_user_percentage(benchmark: Any, impl: str) -> None:
    """One evaluation of a 10% rollout flag for one user."""
    benchmark.group = "features-user-percentage"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl
    answers = {
        kind: _service(kind).check(FLAG, FeatureTarget.USER, USER_ID, 10) for kind in KINDS
    }
    assert len(set(answers.values())) == 1
    if impl in KINDS:
        svc = _service(impl)

        def call() -> bool:
            return bool(
                _drive(
                    svc.is_enabled(FLAG, target=FeatureTarget.USER, target_id=USER_ID, percentage=10)
                )
            )

        result = _run_in_loop(benchmark, call)
        assert result is answers[impl]
    else:
        if impl == "openfeature-inmemory":
            flag = InMemoryFlag("off", {"on": True, "off": False}, context_evaluator=_split)
            api.set_provider(InMemoryProvider({FLAG.value: flag}))
        else:
            svc = _service(None)
            asyncio.run(svc.set_flag(FLAG, enabled=True, percentage=10))
            api.set_provider(CrownNexusProvider(svc))
        client = api.get_client()
        ctx = EvaluationContext(USER_ID)
        try:
            result = _run_in_loop(
                benchmark, lambda: client.get_boolean_value(FLAG.value, False, ctx)
            )
        finally:
            api.clear_providers()
        if impl == "openfeature-crown-nexus":
            assert result is answers[KINDS[0]]
    benchmark.extra_info["answer"] = result
