"""SecurityHeadersMiddleware and SecureRequestMiddleware on a small app, over HTTP."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from crown_nexus.core.exceptions import install_exception_handlers
from crown_nexus.middleware import SecureRequestMiddleware, SecurityHeadersMiddleware


def _app(**secure_options) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/items")
    async def items(q: str = "") -> dict:
        return {"q": q}

    @app.post("/upload")
    async def upload(request: Request) -> dict:
        return {"size": len(await request.body())}

    @app.get("/own")
    async def own() -> PlainTextResponse:
        return PlainTextResponse("x", headers={"X-Frame-Options": "SAMEORIGIN"})

    app.add_middleware(SecurityHeadersMiddleware, content_security_policy="default-src 'self'")
    app.add_middleware(SecureRequestMiddleware, block_suspicious_requests=True, **secure_options)
    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _assert_error_body(body: dict, code: str) -> None:
    assert body["success"] is False
    assert body["code"] == code
    assert set(body) == {"success", "message", "code", "details", "request_id", "timestamp"}


async def test_security_headers_are_added() -> None:
    """Every response carries the security headers and the configured CSP."""
    async with _client(_app()) as client:
        resp = await client.get("/items")
    assert resp.status_code == 200
    assert resp.headers["content-security-policy"] == "default-src 'self'"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-frame-options"] == "DENY"
    assert "max-age=" in resp.headers["strict-transport-security"]


async def test_headers_set_by_the_app_win() -> None:
    """A header the endpoint set itself is not overwritten."""
    async with _client(_app()) as client:
        resp = await client.get("/own")
    assert resp.headers["x-frame-options"] == "SAMEORIGIN"
    assert len(resp.headers.get_list("x-frame-options")) == 1


async def test_docs_are_exempt_from_the_csp() -> None:
    """/docs keeps working: no CSP there, the other headers still sent."""
    async with _client(_app()) as client:
        resp = await client.get("/docs")
    assert resp.status_code == 200
    assert "content-security-policy" not in resp.headers
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_suspicious_query_is_blocked_with_400() -> None:
    """SQLi / XSS / traversal in the query or path answers 400 with the SPEC §3 body."""
    async with _client(_app()) as client:
        for url in [
            "/items?q=1' OR '1'='1",
            "/items?q=<script>alert(1)</script>",
            "/items?q=..%2F..%2Fetc%2Fpasswd",
            "/items/..%2f..%2fetc/passwd",
        ]:
            resp = await client.get(url)
            assert resp.status_code == 400, url
            body = resp.json()
            _assert_error_body(body, "SECURITY_ERROR")
            assert body["details"]["categories"]
            assert resp.headers["x-content-type-options"] == "nosniff"
        ok = await client.get("/items", params={"q": "Don't panic"})
    assert ok.status_code == 200 and ok.json() == {"q": "Don't panic"}


async def test_blocking_can_be_switched_off() -> None:
    """block_suspicious_requests=False lets such URLs through."""
    app = FastAPI()

    @app.get("/items")
    async def items(q: str = "") -> dict:
        return {"q": q}

    app.add_middleware(SecureRequestMiddleware, block_suspicious_requests=False)
    async with _client(app) as client:
        resp = await client.get("/items", params={"q": "1' OR '1'='1"})
    assert resp.status_code == 200


async def test_oversized_body_by_content_length_is_413() -> None:
    """A declared Content-Length over the limit answers 413 before the app reads anything."""
    async with _client(_app(max_body_size=100)) as client:
        resp = await client.post("/upload", content=b"x" * 101)
        small = await client.post("/upload", content=b"x" * 100)
    assert resp.status_code == 413
    _assert_error_body(resp.json(), "PAYLOAD_TOO_LARGE")
    assert small.status_code == 200 and small.json() == {"size": 100}


async def test_oversized_streamed_body_is_413() -> None:
    """A chunked body (no Content-Length) is cut off with 413 once it passes the limit."""

    async def chunks():
        for _ in range(10):
            yield b"y" * 50

    async with _client(_app(max_body_size=200)) as client:
        resp = await client.post("/upload", content=chunks())
    assert resp.status_code == 413
    _assert_error_body(resp.json(), "PAYLOAD_TOO_LARGE")


async def test_non_http_scopes_pass_through() -> None:
    """Lifespan (non-HTTP) scopes go straight to the app."""
    seen: list[str] = []

    async def inner(scope, receive, send) -> None:
        seen.append(scope["type"])

    for cls in (SecureRequestMiddleware, SecurityHeadersMiddleware):
        await cls(inner)({"type": "lifespan"}, None, None)
    assert seen == ["lifespan", "lifespan"]


def test_no_base_http_middleware() -> None:
    """Both middleware are pure ASGI classes, not BaseHTTPMiddleware subclasses."""
    import inspect

    import crown_nexus.middleware.secure_request as a
    import crown_nexus.middleware.security_headers as b

    for module in (a, b):
        assert "BaseHTTPMiddleware" not in inspect.getsource(module)


async def test_exclusions_and_no_csp() -> None:
    """exclude_paths skips the suspicious check; content_security_policy=None sends no CSP."""
    app = FastAPI()

    @app.get("/raw/search")
    async def search(q: str = "") -> dict:
        return {"q": q}

    app.add_middleware(SecurityHeadersMiddleware, content_security_policy=None, hsts=False)
    app.add_middleware(SecureRequestMiddleware, exclude_paths=["/raw"])
    async with _client(app) as client:
        resp = await client.get("/raw/search", params={"q": "<script>x</script>"})
    assert resp.status_code == 200
    assert "content-security-policy" not in resp.headers
    assert "strict-transport-security" not in resp.headers
    assert resp.headers["x-frame-options"] == "DENY"


async def test_invalid_content_length_is_not_trusted() -> None:
    """A non-numeric Content-Length does not bypass the streamed-size limit."""
    seen: list[int] = []

    async def app(scope, receive, send) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        seen.append(total)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = SecureRequestMiddleware(app, max_body_size=10)
    chunks = [
        {"type": "http.request", "body": b"x" * 8, "more_body": True},
        {"type": "http.request", "body": b"x" * 8, "more_body": False},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return chunks.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-length", b"abc")],
    }
    await middleware(scope, receive, send)
    assert sent[0]["status"] == 413
    assert not seen


def _detections(category: str) -> float:
    from crown_nexus.core.dependency_manager import get_service

    return get_service("metrics_service").get_counter_sum(
        "suspicious_content_detections_total", {"category": category}
    )


async def test_blocking_off_still_reports_and_counts() -> None:
    """block_suspicious_requests=False serves an unambiguous attack but counts it."""
    app = FastAPI()

    @app.get("/items")
    async def items(q: str = "") -> dict:
        return {"q": q}

    app.add_middleware(SecureRequestMiddleware, block_suspicious_requests=False)
    before = _detections("xss")
    async with _client(app) as client:
        resp = await client.get("/items", params={"q": "<script>x</script>"})
    assert resp.status_code == 200
    assert _detections("xss") - before == 1


async def test_heuristics_modes() -> None:
    """A heuristic-only hit ('$(whoami)') passes in report and off modes, is 400 in enforce
    mode; only report and enforce count it. Unambiguous attacks are 400 in every mode."""
    results = {}
    for mode in ("off", "report", "enforce"):
        before = _detections("command_injection")
        async with _client(_app(content_heuristics=mode)) as client:
            fuzzy = await client.get("/items", params={"q": "$(whoami)"})
            strict = await client.get("/items", params={"q": "<script>x</script>"})
        results[mode] = (
            fuzzy.status_code,
            strict.status_code,
            _detections("command_injection") - before,
        )
    assert results == {"off": (200, 400, 0), "report": (200, 400, 1), "enforce": (400, 400, 1)}


async def test_caps_can_be_switched_off_and_apply_to_excluded_paths() -> None:
    """max_url_length=None admits long URLs; exclude_paths skips content checks, not size caps."""
    async with _client(_app(max_url_length=None)) as client:
        long = await client.get("/items", params={"q": "a" * 20_000})
    assert long.status_code == 200
    app = FastAPI()

    @app.get("/raw/search")
    async def search(q: str = "") -> dict:
        return {"q": q}

    app.add_middleware(SecureRequestMiddleware, exclude_paths=["/raw"], max_url_length=64)
    async with _client(app) as client:
        resp = await client.get("/raw/search", params={"q": "a" * 100})
    assert resp.status_code == 414
    _assert_error_body(resp.json(), "URI_TOO_LONG")
