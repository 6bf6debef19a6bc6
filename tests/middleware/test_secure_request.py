"""SecureRequestMiddleware over HTTP on the reference service: size caps (414/431) before any
pattern runs, the labelled URL corpus (benign → 200, attacks refused or reported), the
report/enforce modes, Settings wiring and rate limits checked before content."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import crown_nexus.middleware.secure_request as secure_request
from crown_nexus.core.rate_limiting import RateLimitRule
from crown_nexus.demo.app import create_app
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.middleware.secure_request import SecureRequestMiddleware
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.core.security._corpus import load_corpus

SPEC_KEYS = {"success", "message", "code", "details", "request_id", "timestamp"}
BENIGN, ATTACKS = load_corpus()


def _settings(tmp_path, **extra: Any) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/secure.db",
        secret_key="secure-request-test-secret-0123456789",
        **extra,
    )


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    body = resp.json()
    assert set(body) == SPEC_KEYS and body["success"] is False and body["code"] == code
    return body


def _detections(metrics_text: str, category: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if (
                sample.name == "suspicious_content_detections_total"
                and sample.labels.get("category") == category
            ):
                total += sample.value
    return total


class _NoPatterns:
    """Stands in for the pattern functions: records any call (none may happen)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, *args: Any) -> list[str]:
        self.calls.append(repr(args)[:40])
        return []


# --- size caps -----------------------------------------------------------------------------


async def _raw_get(app: Any, raw_path: bytes, query: bytes) -> tuple[int, bytes]:
    """Call ``app`` with a hand-made scope: bytes exactly as a server such as granian hands
    them over (httpx would percent-encode them)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_huge_url_is_414_before_any_pattern_runs(tmp_path, monkeypatch) -> None:
    """A 48 KB URL of '<' answers 414 with the SPEC §3 body and no regex ever sees it."""
    import orjson

    spy = _NoPatterns()
    monkeypatch.setattr(secure_request, "find_url_attacks", spy)
    monkeypatch.setattr(secure_request, "find_suspicious_patterns", spy)
    app = create_app(_settings(tmp_path))
    async with app_client(app) as client:
        status, raw_body = await _raw_get(app, b"/products", b"q=" + b"<" * 48_000)
        encoded = await client.get("/products?q=" + "%3C" * 16_000)
        path = await client.get("/products/" + "a" * 9_000)
    assert status == 414
    body = orjson.loads(raw_body)
    assert set(body) == SPEC_KEYS and body["code"] == "URI_TOO_LONG"
    assert body["details"] == {"max_url_length": 8192}
    _error(encoded, 414, "URI_TOO_LONG")
    _error(path, 414, "URI_TOO_LONG")
    assert spy.calls == []


async def test_url_at_the_cap_is_served(tmp_path) -> None:
    """A URL (path and query string bytes) of exactly max_url_length passes; one more is 414."""
    async with app_client(create_app(_settings(tmp_path, max_url_length=100))) as client:
        ok = await client.get("/products?q=" + "a" * (100 - len("/products") - len("q=")))
        over = await client.get("/products?q=" + "a" * (101 - len("/products") - len("q=")))
    assert ok.status_code == 200
    _error(over, 414, "URI_TOO_LONG")


async def test_huge_header_is_431(tmp_path) -> None:
    """One header over 8 KiB, or many headers over 32 KiB together, answer 431."""
    many = {f"x-h{i}": "v" * 4000 for i in range(9)}
    async with app_client(create_app(_settings(tmp_path))) as client:
        one = await client.get("/products", headers={"X-Big": "a" * 9000})
        total = await client.get("/products", headers=many)
        fine = await client.get("/products", headers={"X-Ok": "a" * 7000})
    body = _error(one, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert body["details"] == {"header": "x-big", "max_header_bytes": 8192}
    body = _error(total, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert body["details"] == {"max_total_header_bytes": 32768}
    assert fine.status_code == 200


async def test_caps_come_from_the_environment(tmp_path, monkeypatch) -> None:
    """CROWN_NEXUS_MAX_URL_LENGTH / _MAX_HEADER_BYTES reach the middleware through setup_app."""
    monkeypatch.setenv("CROWN_NEXUS_MAX_URL_LENGTH", "64")
    monkeypatch.setenv("CROWN_NEXUS_MAX_HEADER_BYTES", "128")
    settings = _settings(tmp_path)
    assert settings.max_url_length == 64 and settings.max_header_bytes == 128
    async with app_client(create_app(settings)) as client:
        url = await client.get("/products?q=" + "a" * 80)
        header = await client.get("/products", headers={"X-Mid": "a" * 200})
    _error(url, 414, "URI_TOO_LONG")
    _error(header, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")


def test_bad_limits_and_modes_are_refused() -> None:
    """A zero or negative cap, or an unknown heuristics mode, is a configuration error."""
    with pytest.raises(ValueError):
        SecureRequestMiddleware(FastAPI(), max_url_length=0)
    with pytest.raises(ValueError):
        SecureRequestMiddleware(FastAPI(), max_header_bytes=-1)
    with pytest.raises(ValueError):
        SecureRequestMiddleware(FastAPI(), content_heuristics="block")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Settings(suspicious_content_mode="block")


# --- the corpus over HTTP ---------------------------------------------------------------------


async def test_benign_corpus_is_served(tmp_path) -> None:
    """Every benign corpus URL (seven languages, book titles, O'Reilly, on=1...) reaches the app."""
    refused = []
    async with app_client(
        create_app(_settings(tmp_path, suspicious_content_mode="enforce"))
    ) as client:
        for target in BENIGN:
            resp = await client.get(target.url)
            if target.path == "/products":
                served = resp.status_code == 200
            else:  # a path the app does not serve: the route answers, not the filter
                served = resp.status_code != 400
            if not served:
                refused.append((str(target), resp.status_code))
    assert refused == []


async def test_strict_attacks_are_refused_by_default(tmp_path) -> None:
    """Every unambiguous attack in the corpus answers 400 SECURITY_ERROR with its category."""
    missed = []
    async with app_client(create_app(_settings(tmp_path))) as client:
        for target in ATTACKS:
            if target.tier != "strict":
                continue
            resp = await client.get(target.url)
            if resp.status_code != 400 or target.label not in resp.json()["details"]["categories"]:
                missed.append((str(target), resp.status_code))
            else:
                _error(resp, 400, "SECURITY_ERROR")
    assert missed == []


async def test_heuristic_hits_are_reported_not_blocked_by_default(tmp_path, monkeypatch) -> None:
    """In report mode a heuristic hit is logged and counted, and the request is served."""
    warnings: list[dict] = []

    class _Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            warnings.append({"event": event, **fields})

        def debug(self, event: str, **fields: Any) -> None:
            return None

    monkeypatch.setattr(secure_request, "logger", _Recorder())
    heuristic = [t for t in ATTACKS if t.tier == "heuristic"]
    async with app_client(create_app(_settings(tmp_path))) as client:
        before = _detections((await client.get("/metrics")).text, "command_injection")
        statuses = {str(t): (await client.get(t.url)).status_code for t in heuristic}
        after = _detections((await client.get("/metrics")).text, "command_injection")
    assert set(statuses.values()) == {200}, statuses
    assert after - before == sum(1 for t in heuristic if t.label == "command_injection")
    assert len(warnings) == len(heuristic)
    assert all(w["action"] == "reported" and w["event"] == "suspicious request" for w in warnings)
    assert {w["categories"][0] for w in warnings} >= {"xss", "sql_injection", "command_injection"}


async def test_heuristic_hits_are_refused_in_enforce_mode(tmp_path) -> None:
    """CROWN_NEXUS_SUSPICIOUS_CONTENT_MODE=enforce refuses every corpus attack with 400."""
    missed = []
    settings = _settings(tmp_path, suspicious_content_mode="enforce")
    async with app_client(create_app(settings)) as client:
        for target in ATTACKS:
            resp = await client.get(target.url)
            if resp.status_code != 400:
                missed.append((str(target), resp.status_code))
    assert missed == []


async def test_strict_attacks_are_counted_when_blocked(tmp_path) -> None:
    """A refused attack also counts in suspicious_content_detections_total."""
    async with app_client(create_app(_settings(tmp_path))) as client:
        before = _detections((await client.get("/metrics")).text, "xss")
        assert (
            await client.get("/products", params={"q": "<script>x</script>"})
        ).status_code == 400
        after = _detections((await client.get("/metrics")).text, "xss")
    assert after - before == 1


# --- rate limits first ---------------------------------------------------------------------


async def test_rate_limit_is_checked_before_content() -> None:
    """Once a client is over its limit, attack URLs get 429 (throttled) without being inspected."""
    app = FastAPI()

    @app.get("/search")
    async def search(q: str = "") -> dict:
        return {"q": q}

    rule = RateLimitRule(requests_per_window=2, window_seconds=60)
    setup_app(
        app,
        Settings(),
        middleware_options={"RateLimitMiddleware": {"rules": [rule], "use_redis": False}},
    )
    order = app.state.crown_nexus_middleware
    assert order.index("RateLimitMiddleware") < order.index("SecureRequestMiddleware")
    async with app_client(app) as client:
        codes = [
            (await client.get("/search", params={"q": "<script>x</script>"})).status_code
            for _ in range(3)
        ]
    assert codes == [400, 400, 429]
