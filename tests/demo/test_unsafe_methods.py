"""Walk the reference service's OpenAPI: no unsafe method answers 2xx without credentials.

Every POST/PUT/PATCH/DELETE operation except the stated exceptions (login, registration,
refresh) is sent anonymously with path parameters and a body built from its own schema, so the
request is one only authentication can refuse: the answer must be 401. The same requests sent
by the demo admin are checked not to be 422, which proves the generated requests are valid (a
422 would otherwise hide a missing authentication check).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi.routing import APIRoute

from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import bearer

UNSAFE = ("post", "put", "patch", "delete")
#: the operations that must work without credentials (you cannot log in while logged in)
ANONYMOUS_ALLOWED = {
    ("POST", "/auth/login"),
    ("POST", "/auth/register"),
    ("POST", "/auth/refresh"),
}
#: operations the walk must find (so it cannot pass by finding nothing)
MUST_COVER = {
    ("PUT", "/products/{product_id}"),
    ("POST", "/orders"),
    ("POST", "/rate-limits/reports"),
    ("POST", "/auth/api-keys"),
    ("POST", "/auth/logout"),
    ("PUT", "/features/{name}"),
    ("DELETE", "/features/{name}"),
    ("POST", "/documents"),
}
#: bodies of operations whose OpenAPI schema is an untyped object (validated in the endpoint)
#: or has patterns the example builder below does not generate
UNTYPED_BODIES = {
    ("POST", "/documents"): {"title": "walk"},
    ("PUT", "/documents/{document_id}"): {"title": "walk"},
    ("PUT", "/features/{name}"): {"enabled": True},
    ("POST", "/audit/checkpoints/verify"): {
        "seq": 0,
        "hash": "0" * 64,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "signature": "0" * 64,
    },
}


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def example(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    """A minimal value that satisfies ``schema`` (the subset of JSON Schema FastAPI emits)."""
    schema = _resolve(schema, spec)
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s, spec).get("type") != "null"]
            return example(options[0] if options else schema[key][0], spec)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example(props[name], spec) for name in schema.get("required", [])}
    if kind == "array":
        count = max(int(schema.get("minItems", 0)), 1)
        return [example(schema.get("items", {}), spec) for _ in range(count)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), int(schema.get("exclusiveMinimum", 0)) + 1)
    if kind == "number":
        return float(schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") == "email":
            return "someone@example.org"
        return "x" * max(int(schema.get("minLength", 1)), 1)
    if kind == "null":
        return None
    return {}  # an untyped body (``dict[str, Any]``): an empty object


def unsafe_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path template, operation)`` of every unsafe operation, logout last."""
    found = [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in UNSAFE
    ]
    return sorted(found, key=lambda item: (item[1] == "/auth/logout", item[1], item[0]))


def request_for(
    method: str, path: str, op: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    """URL and JSON body of a schema-valid request to the operation."""
    params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}

    def fill(match: re.Match[str]) -> str:
        return str(example(params[match.group(1)].get("schema", {}), spec))

    url = re.sub(r"\{(\w+)\}", fill, path)
    query = {
        p["name"]: example(p.get("schema", {}), spec)
        for p in op.get("parameters", [])
        if p["in"] == "query" and p.get("required")
    }
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    out: dict[str, Any] = {"url": url, "params": query}
    if (method, path) in UNTYPED_BODIES:
        out["json"] = UNTYPED_BODIES[(method, path)]
    elif body is not None:
        out["json"] = example(body.get("schema", {}), spec)
    return out


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app (development: every router is mounted)."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/walk.db"))
    async with app_client(app) as c:
        c.app = app
        yield c


async def test_openapi_lists_every_unsafe_route(client: Any) -> None:
    """Every unsafe route the app serves is in its OpenAPI (the walk below sees them all)."""
    spec = client.app.openapi()
    documented = {(m, p) for m, p, _ in unsafe_operations(spec)}
    served = {
        (method, route.path)
        for route in client.app.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method.lower() in UNSAFE
    }
    assert served <= documented
    assert MUST_COVER <= documented and ANONYMOUS_ALLOWED <= documented


async def test_no_unsafe_method_answers_2xx_without_credentials(client: Any) -> None:
    """Anonymous, schema-valid requests to every unsafe operation are 401 (except login,
    registration and refresh); as the admin none of them is a 422."""
    spec = client.app.openapi()
    operations = [
        (m, p, op) for m, p, op in unsafe_operations(spec) if (m, p) not in ANONYMOUS_ALLOWED
    ]
    assert MUST_COVER <= {(m, p) for m, p, _ in operations}
    refused: dict[tuple[str, str], int] = {}
    for method, path, op in operations:
        resp = await client.request(method, **request_for(method, path, op, spec))
        refused[(method, path)] = resp.status_code
    assert {k: v for k, v in refused.items() if v != 401} == {}, refused

    admin = await bearer(client)
    accepted: dict[tuple[str, str], int] = {}
    for method, path, op in operations:
        resp = await client.request(method, headers=admin, **request_for(method, path, op, spec))
        accepted[(method, path)] = resp.status_code
    assert {k: v for k, v in accepted.items() if v == 422 or v >= 500} == {}, accepted
    # the valid requests did something as the admin: the walk is not refusing everything
    assert accepted[("PUT", "/products/{product_id}")] == 200
    assert accepted[("POST", "/orders")] == 202
    assert accepted[("POST", "/rate-limits/reports")] == 201
