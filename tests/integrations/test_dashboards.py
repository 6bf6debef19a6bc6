"""The shipped Grafana dashboard and Prometheus rules query only what the service exports.

The reference service runs a short workload (logins, a token failure, a permission denial, a
429, cache misses and hits, an order's events, a 5xx), then ``/metrics`` is scraped; every metric
name in every PromQL expression of the dashboard and of the rule file must be a sample name of
that scrape, and every ``label="value"`` matcher must match one of its samples.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families

from crown_nexus.core.security import configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.dashboards import RULES, dashboard, export, rules_text
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}

#: PromQL words that are not metric names
_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "le",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"((?:[^"\\]|\\.)*)"')
_IDENT = re.compile(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels removed)."""
    e = _STRING.sub('""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for match in _IDENT.finditer(e):
        token = match.group()
        if e[match.end():].lstrip().startswith("("):
            continue  # a function call
        if token.lower() in _KEYWORDS:
            continue
        names.add(token)
    return names


def label_matchers(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """``(metric, [(label, op, value)])`` of every selector with label matchers."""
    return [
        (m.group(1), _MATCHER.findall(m.group(2)))
        for m in _SELECTOR.finditer(expr)
        if m.group(1) not in {"by", "without", "on", "ignoring"}
    ]


def test_metric_name_extraction() -> None:
    """The extractor finds names behind functions, groupings, ranges and arithmetic only."""
    expr = (
        'histogram_quantile(0.99, sum by (le, endpoint) (rate(http_request_duration_seconds_bucket'
        '{job=~"$job"}[$__rate_interval]))) / clamp_min(sum(up_total) + foo:bar, 1e-9) > 0.5 '
        'and min(cache_backend_up) == 0'
    )
    assert metric_names(expr) == {
        "http_request_duration_seconds_bucket", "up_total", "foo:bar", "cache_backend_up",
    }
    assert label_matchers('rate(x_total{a="1", b=~"5.."}[5m])') == [("x_total", [("a", "=", "1"), ("b", "=~", "5..")])]


def _dashboard_exprs() -> list[str]:
    model = dashboard()
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    for panel in walk(model["panels"]):
        exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
    for variable in model["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        found = re.match(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)", text or "")
        if found:
            exprs.append(found.group(1))
    return exprs


def _rule_exprs() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(rules_text())["groups"] for rule in group["rules"]]


def test_dashboard_and_rules_are_well_formed() -> None:
    """The dashboard covers what operators need, and every rule is an alert with severity."""
    model = dashboard()
    titles = " | ".join(p["title"] for p in model["panels"]).lower()
    for needed in ("request rate", "error ratio", "p50", "p95", "p99", "rate-limit", "cache hit",
                   "event backlog", "event handler failures", "token", "permission", "redis fallback"):
        assert needed in titles, needed
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    rules = [r for g in yaml.safe_load(rules_text())["groups"] for r in g["rules"]]
    assert rules and all(r["alert"] and r["labels"]["severity"] for r in rules)
    assert len(_dashboard_exprs()) > 20


@pytest.fixture
def cheap_argon2() -> Iterator[None]:
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


async def _workload(client: Any) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    admin = (await client.post("/auth/login", json=ADMIN)).json()["data"]["access_token"]
    user = (await client.post("/auth/login", json=USER)).json()["data"]["access_token"]
    as_user = {"Authorization": f"Bearer {user}"}
    # a token failure and a permission denial
    assert (await client.get("/users/me", headers={"Authorization": "Bearer forged.token.x"})).status_code == 401
    assert (await client.get("/permissions/roles", headers=as_user)).status_code == 403
    assert (await client.get("/permissions/roles", headers={"Authorization": f"Bearer {admin}"})).status_code == 200
    # cache miss then hit
    for _ in range(2):
        assert (await client.get("/products/1")).status_code == 200
    # events: an order runs its workflow through the event service
    as_admin = {"Authorization": f"Bearer {admin}"}
    order = await client.post(
        "/orders", json={"items": [{"product_id": 1, "quantity": 1}]}, headers=as_admin
    )
    assert order.status_code == 202
    # a 429 from the per-user report limit (3 per hour)
    statuses = [(await client.post("/rate-limits/reports", headers=as_user)).status_code for _ in range(4)]
    assert statuses[-1] == 429
    # a 5xx (development only route)
    assert (await client.get("/demo/errors/database")).status_code == 500
    await asyncio.sleep(1.2)  # batched counts reach the metrics service within 1 s (security, rate limits)


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "embedded"])
async def test_every_dashboard_and_rule_metric_is_exported(
    tmp_path: Any, cheap_argon2: None, request: pytest.FixtureRequest, with_redis: bool
) -> None:
    """After a short workload, the reference service's scrape has every queried metric (and,
    with Redis, every label value the queries match on); on embedded defaults (no Redis) every
    queried metric too."""
    redis = str(request.getfixturevalue("redis_url")) if with_redis else None
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/dash.db", REDIS_URI=redis)
    )
    async with app_client(app) as client:
        await _workload(client)
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    samples = [s for family in text_string_to_metric_families(scrape.text) for s in family.samples]
    exported = {s.name for s in samples}

    exprs = _dashboard_exprs() + _rule_exprs()
    queried = set().union(*(metric_names(e) for e in exprs))
    assert queried >= {"http_requests_total", "event_handlers_pending", "cache_backend_up"}
    missing = sorted(queried - exported)
    assert not missing, f"queried but not exported: {missing}"

    if not with_redis:
        assert any(s.name == "cache_backend_up" and s.labels["backend"] == "memory" for s in samples)
        return  # backend="redis" matchers cannot match without Redis
    for expr in exprs:
        for metric, matchers in label_matchers(expr):
            wanted = [(k, op, v) for k, op, v in matchers if "$" not in v and op in ("=", "=~")]
            if not wanted:
                continue
            assert any(
                s.name == metric
                and all(
                    (s.labels.get(k) == v) if op == "=" else re.fullmatch(v, s.labels.get(k, ""))
                    for k, op, v in wanted
                )
                for s in samples
            ), f"no sample of {metric} matches {wanted} (in {expr!r})"


def _promtool() -> str:
    """The ``promtool`` binary; the test is skipped without it, except in CI (``CI`` set: .ci/run
    installs it) where its absence fails."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI (.ci/run installs it from Debian's prometheus)")
        pytest.skip("promtool is not installed (Debian: the prometheus package)")
    return found


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    """Prometheus' own parser accepts the shipped rule file (YAML, PromQL, templates)."""
    export(tmp_path)
    done = subprocess.run(
        [_promtool(), "check", "rules", str(tmp_path / RULES)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    expected = sum(len(g["rules"]) for g in yaml.safe_load(rules_text())["groups"])
    assert f"SUCCESS: {expected} rules found" in done.stdout


_RULE_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # two workers' relays see the same outbox: the maximum counts, not the sum
      - series: 'event_outbox_pending{{instance="a"}}'
        values: '1500x30'
      - series: 'event_outbox_pending{{instance="b"}}'
        values: '1400x30'
      # 10% of requests fail with a 5xx for 30 minutes
      - series: 'http_requests_total{{endpoint="/x", status_code="500"}}'
        values: '0+10x30'
      - series: 'http_requests_total{{endpoint="/x", status_code="200"}}'
        values: '0+90x30'
      # in-process handler runs stay low: no backlog alert
      - series: 'event_handlers_pending{{instance="a"}}'
        values: '3x30'
    alert_rule_test:
      - eval_time: 5m
        alertname: CrownNexusOutboxBacklog
        exp_alerts: []
      - eval_time: 20m
        alertname: CrownNexusOutboxBacklog
        exp_alerts:
          - exp_labels: {{severity: warning}}
            exp_annotations:
              summary: More than 1000 outbox events committed but not delivered
              description: "1500 events wait in the transactional outbox: the relay is stopped, too slow, or its deliveries fail and are retried (the relay logs 'Outbox delivery failed'; see also the dead-letter table)."
      - eval_time: 25m
        alertname: CrownNexusHighErrorRatio
        exp_alerts:
          - exp_labels: {{severity: critical}}
            exp_annotations:
              summary: More than 5% of requests fail with a 5xx status
              description: "10% of responses were 5xx over the last 5 minutes."
      - eval_time: 25m
        alertname: CrownNexusEventBacklog
        exp_alerts: []
"""


def test_rules_fire_on_synthetic_series(tmp_path: Path) -> None:
    """promtool's rule unit tests: the outbox backlog alert fires on the maximum over workers
    after its ``for``, the error-ratio alert fires at 10% 5xx, the handler backlog stays quiet."""
    export(tmp_path)
    spec = tmp_path / "rules_test.yml"
    spec.write_text(_RULE_TESTS.format(rules=str(tmp_path / RULES)))
    done = subprocess.run(
        [_promtool(), "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
