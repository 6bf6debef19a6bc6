"""The OpenAPI document describes what the stack answers; a 405 names all the path's methods."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from crown_nexus.core.config import settings as loaded_settings
from crown_nexus.demo.app import create_app
from crown_nexus.integrations.fastapi import setup_app
from crown_nexus.integrations.openapi import install_openapi, truthful_openapi
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(autouse=True)
def _restore_shared_services() -> Iterator[None]:
    """Point the shared services back at the loaded settings after each test."""
    yield
    from crown_nexus.core.cache import configure_cache
    from crown_nexus.core.events import configure_events, get_event_service

    configure_cache(loaded_settings)
    events = get_event_service()
    configure_events(loaded_settings)
    events._configured = None


def _demo(tmp_path: Path, **options: Any) -> FastAPI:
    return create_app(
        Settings(
            secret_key="openapi-test-secret-key-0123456789abcdef",
            database_url=f"sqlite+aiosqlite:///{tmp_path}/o.db",
            **options,
        )
    )


def _schema(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    return doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]


async def test_405_allow_lists_every_method_of_the_path(tmp_path: Path) -> None:
    """DELETE /products/1: Allow names GET and PUT (it said only GET), with the SPEC §3 body."""
    async with app_client(_demo(tmp_path)) as client:
        resp = await client.delete("/products/1")
        assert resp.status_code == 405
        assert [m.strip() for m in resp.headers["allow"].split(",")] == ["GET", "PUT"]
        assert resp.json()["code"] == "METHOD_NOT_ALLOWED" and resp.json()["success"] is False
        docs = await client.post("/documents/abc")
        assert [m.strip() for m in docs.headers["allow"].split(",")] == ["GET", "PUT", "DELETE"]


async def test_success_schemas_are_enveloped_and_errors_are_the_spec_body(tmp_path: Path) -> None:
    """2xx JSON is documented inside the envelope; 4xx/5xx as ErrorBody; no HTTPValidationError."""
    app = _demo(tmp_path)
    doc = app.openapi()
    ok = _schema(doc, "/products/{product_id}", "get", "200")
    assert ok["required"] == ["success", "data", "meta"]
    assert ok["properties"]["meta"] == {"$ref": "#/components/schemas/ResponseMeta"}
    assert _schema(doc, "/products/{product_id}", "get", "422") == ERROR_REF
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert doc["components"]["schemas"]["ErrorBody"]["required"][:3] == [
        "success",
        "message",
        "code",
    ]
    # a body already in the success shape is sent as it is, and documented so
    logout = _schema(doc, "/auth/logout", "post", "200")
    assert logout == {"$ref": "#/components/schemas/LoggedOut"}
    async with app_client(app) as client:
        served = (await client.get("/openapi.json")).json()
        product = await client.get("/products/1")
    assert served == doc
    assert set(product.json()) == {"success", "data", "meta"}  # what the document says


def test_every_status_the_stack_answers_is_listed(tmp_path: Path) -> None:
    """Stack statuses per operation: size caps, timeouts, rate limits, auth, body limits."""
    doc = _demo(tmp_path).openapi()

    def statuses(path: str, method: str) -> set[str]:
        return set(doc["paths"][path][method]["responses"])

    product = statuses("/products/{product_id}", "get")
    assert {"400", "404", "414", "422", "429", "431", "500", "504"} <= product
    assert "401" not in product  # anonymous reads
    update = statuses("/products/{product_id}", "put")
    assert {"401", "403", "408", "413"} <= update
    assert "429" not in statuses("/health", "get")  # /health is exempt from the rate limits
    assert {"401", "409", "503"} <= statuses("/auth/login", "post")
    rate = doc["paths"]["/products"]["get"]["responses"]["429"]
    assert "Retry-After" in rate["headers"]
    # parameter bounds are stated
    params = {p["name"]: p["schema"] for p in doc["paths"]["/catalog/products"]["get"]["parameters"]}
    assert (params["page_size"]["minimum"], params["page_size"]["maximum"]) == (1, 100)
    assert params["page"]["minimum"] == 1


def test_production_document_is_the_same_kind(tmp_path: Path) -> None:
    """Production serves no /openapi.json, but app.openapi() is still the truthful document."""
    doc = _demo(tmp_path, ENVIRONMENT="production").openapi()
    assert "/demo/errors/{kind}" not in doc["paths"]
    assert _schema(doc, "/products/{product_id}", "get", "422") == ERROR_REF


def test_extra_responses_are_added_and_unknown_operations_refused() -> None:
    """Statuses an operation raises itself are listed; a key naming no operation is an error."""
    app = FastAPI()

    @app.get("/things/{name}")
    async def thing(name: str) -> dict[str, str]:
        return {"name": name}

    setup_app(app, Settings(secret_key="x" * 40))
    install_openapi(app, extra_responses={"GET /things/{name}": [409]})
    doc = app.openapi()
    assert _schema(doc, "/things/{name}", "get", "409") == ERROR_REF
    assert _schema(doc, "/things/{name}", "get", "200")["properties"]["data"]["type"] == "object"
    with pytest.raises(KeyError, match="GET /nothing"):
        truthful_openapi(doc, app, extra_responses={"GET /nothing": [404]})
