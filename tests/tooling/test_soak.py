"""The soak's verdict (benches/soak.py): which outcomes break a promise and fail CI.

The soak itself runs in CI (``.ci/run``: ``benches/soak.py --short``); these tests pin the
judgement it applies to what it measured, on hand-made measurements.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def soak() -> ModuleType:
    """benches/soak.py as a module."""
    spec = importlib.util.spec_from_file_location("crown_nexus_soak", ROOT / "benches" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def clean_result(soak: ModuleType) -> dict[str, Any]:
    """What a run that kept every promise measured."""
    timeline = soak.Timeline(start=0.0, end=30.0, kill=10.0, restart=20.0)
    stats = soak.Stats(timeline)
    for phase in ("before", "outage", "after"):
        stats.counts[(phase, "GET /products", 200)] += 100
        stats.counts[(phase, "POST /rate-limits/reports", 429)] += 3
    stats.counts[("outage", "GET /health/ready", 503)] += 2
    stats.documents = {"d1": "u1", "d2": "u1"}
    stats.document_writes["document_create"] = 2
    stats.logins = 3
    return {
        "stats": stats,
        "service_alive_at_end": True,
        "redis_return": {
            "rate_limit_s": 0.5,
            "cache_s": 1.0,
            "revoked_after_restart_s": 1.2,
            "revoked_during_outage_s": 1.1,
            "revoked_after_restart_refused": True,
            "revoked_during_outage_refused": True,
        },
        "redis_before_kill": {"rate_limit": True, "cache": True, "revocation": True},
        "documents": {
            "created": 2,
            "deleted": 0,
            "missing": [],
            "missing_count": 0,
            "deleted_but_present": [],
        },
        "orders": {"statuses": {}, "not_terminal": [], "not_terminal_count": 0},
        "database": {
            "audit_actions": {"LOGIN": 5, "document_create": 2},
            "audited_document_ids": {"d1", "d2"},
            "outbox_undelivered": 0,
            "outbox_delivered": 0,
            "dead_letters": 0,
        },
        "audit_chain": {"ok": True},
        "relay": soak.relay_report([(1.0, 1.01), (2.0, 2.02)], [0.1], (0.0, 30.0)),
        "rss": [(float(t), 100_000, 120_000) for t in range(31)],
        "load_s": 30.0,
        "routes": None,
    }


def test_a_clean_run_keeps_every_promise(soak: ModuleType) -> None:
    """Expected 4xx and the readiness 503 during the outage break nothing."""
    report, broken = soak.verdict(clean_result(soak), 10.0)
    assert broken == []
    assert report["per_phase"]["outage"]["5xx_policy"] == 2
    assert report["per_phase"]["before"]["4xx_expected"] == 3


def test_policy_covers_only_the_outage(soak: ModuleType) -> None:
    """Readiness 503 and flag-store 502 are policy only while Redis is down."""
    assert soak.policy_allows("outage", "GET /health/ready", 503)
    assert soak.policy_allows("outage", "PUT /features/{name}", 502)
    assert not soak.policy_allows("after", "GET /health/ready", 503)
    assert not soak.policy_allows("before", "PUT /features/{name}", 502)
    assert not soak.policy_allows("outage", "GET /products", 500)


def test_a_5xx_beyond_the_policy_fails(soak: ModuleType) -> None:
    """A 500 on a read during the outage is a broken promise."""
    result = clean_result(soak)
    result["stats"].counts[("outage", "GET /products/{id}", 500)] += 1
    report, broken = soak.verdict(result, 10.0)
    assert report["unexpected_5xx"] == {"outage GET /products/{id} 500": 1}
    assert any("5xx beyond the policy" in line for line in broken)


def test_slow_or_missing_return_to_redis_fails(soak: ModuleType) -> None:
    """Over 5 s, or never seen, is a broken promise; a served revoked token too."""
    result = clean_result(soak)
    result["redis_return"].update(
        cache_s=5.5, rate_limit_s=None, revoked_after_restart_refused=False
    )
    _, broken = soak.verdict(result, 10.0)
    text = "\n".join(broken)
    assert "cache_s = 5.5" in text and "rate_limit_s = None" in text
    assert "revoked_after_restart_refused" in text


def test_lost_writes_fail(soak: ModuleType) -> None:
    """A missing document, a missing audit row, an undelivered event: each fails."""
    result = clean_result(soak)
    result["documents"]["missing_count"] = 1
    result["database"]["audit_actions"]["LOGIN"] = 2  # fewer than the 3 logins seen
    result["database"]["audited_document_ids"] = {"d1"}
    result["database"]["outbox_undelivered"] = 4
    result["orders"]["not_terminal_count"] = 1
    _, broken = soak.verdict(result, 10.0)
    text = "\n".join(broken)
    for needle in (
        "lost documents",
        "audit rows missing",
        "without a document_create",
        "outbox: 4 undelivered",
        "orders not finished",
    ):
        assert needle in text


def test_rss_verdict_reads_floors_not_one_spike(soak: ModuleType) -> None:
    """A transient spike in the last sample passes; a raised floor fails."""
    result = clean_result(soak)
    result["rss"][-1] = (30.0, 180_000, 200_000)  # one sample caught a password hash
    report, broken = soak.verdict(result, 10.0)
    assert broken == [] and report["rss"]["single_sample_growth_pct"] == 80.0
    result["rss"] = [(float(t), 100_000 + 1_000 * t, 0) for t in range(31)]  # steady growth
    report, broken = soak.verdict(result, 10.0)
    assert any("RSS floor grew" in line for line in broken)
    assert report["rss"]["growth_pct"] > 10.0


def test_timeline_phases(soak: ModuleType) -> None:
    """Requests count in the phase they started in, or the outage when in flight at the kill."""
    timeline = soak.Timeline(start=0.0, end=30.0, kill=10.0, restart=20.0)
    assert [timeline.phase(t) for t in (0.0, 9.9, 10.0, 19.9, 20.0, 29.0)] == [
        "before",
        "before",
        "outage",
        "outage",
        "after",
        "after",
    ]
    assert timeline.phase(9.0, 10.5) == "outage"  # in flight when Redis was killed
    assert timeline.phase(9.0, 9.5) == "before"
