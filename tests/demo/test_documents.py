"""HTTP tests of the demo's documents: ownership, read/write shares, admins, list == detail,
validation, the audit record, the event and the cache (SQLite and PostgreSQL; memory and Redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete

from crown_nexus.core.events import event_service
from crown_nexus.core.security import configure_security, get_password_hash
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_documents import Document, DocumentShare
from crown_nexus.demo.models_users import User
from crown_nexus.demo.routers.documents import item_key
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}
PASSWORD = "Docs-Test-Pass-2024!"
SECRET = "documents-test-secret-0123456789abcdef"


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and body.get("success") is True else body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _login(client: Any, email: str, password: str = PASSWORD) -> dict[str, str]:
    resp = await client.post("/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.text
    return _bearer(_data(resp)["access_token"])


async def _reset(app: Any) -> None:
    """No documents and no test accounts (the PostgreSQL database outlives a test)."""
    async with app.state.sessionmaker() as db:
        await db.execute(delete(DocumentShare))
        await db.execute(delete(Document))
        await db.execute(delete(User).where(User.email.like("%@docs.test")))
        await db.commit()


async def _account(
    app: Any, name: str, role: str = "user", permissions: list[str] | None = None
) -> str:
    """Create an account ``<name>@docs.test`` directly in the users table; return its id."""
    async with app.state.sessionmaker() as db:
        user = User(
            email=f"{name}@docs.test",
            name=name,
            hashed_password=get_password_hash(PASSWORD),
            role=role,
            permissions=permissions or [],
            is_active=True,
        )
        db.add(user)
        await db.commit()
        return user.id


async def _user_id(client: Any, headers: dict[str, str]) -> str:
    return str(_data(await client.get("/users/me", headers=headers))["id"])


async def _create(client: Any, headers: dict[str, str], title: str, body: str = "text") -> str:
    resp = await client.post("/documents", json={"title": title, "body": body}, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(_data(resp)["id"])


async def _listed(client: Any, headers: dict[str, str]) -> set[str]:
    """Every document id of the caller's listing, following the cursors."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get("/documents", params=params, headers=headers)
        assert resp.status_code == 200, resp.text
        page = _data(resp)
        ids += [d["id"] for d in page["items"]]
        cursor = page["metadata"]["next_cursor"]
        if not cursor:
            break
    assert len(ids) == len(set(ids))
    return set(ids)


@pytest.fixture
async def demo(database_url: str) -> AsyncIterator[tuple[Any, Any]]:
    """A fresh demo app on the database under test, emptied of documents and test accounts."""
    app = create_app(Settings(database_url=database_url, secret_key=SECRET))
    async with app_client(app) as client:
        await _reset(app)
        try:
            yield app, client
        finally:
            await _reset(app)


async def test_owners_shares_admins_and_list_equals_detail(demo: tuple[Any, Any]) -> None:
    """Another user's document is neither listed nor readable (404); a read share reads but
    does not write (403); a write share updates but does not delete or share; unsharing takes
    it back; admins and document:admin see everything; for everyone the list is the detail."""
    app, client = demo
    await _account(app, "bob")
    await _account(app, "dora", permissions=["document:admin"])
    await _account(app, "gus", role="guest")
    owner = await _login(client, USER["email"], USER["password"])
    admin = await _login(client, ADMIN["email"], ADMIN["password"])
    bob = await _login(client, "bob@docs.test")
    dora = await _login(client, "dora@docs.test")
    gus = await _login(client, "gus@docs.test")
    bob_id = await _user_id(client, bob)

    a = await _create(client, owner, "A", "alpha")
    b = await _create(client, owner, "B")
    c = await _create(client, bob, "C")
    everyone = {a, b, c}
    missing = str(uuid.uuid4())

    assert await _listed(client, bob) == {c}
    refused = await client.get(f"/documents/{a}", headers=bob)
    absent = await client.get(f"/documents/{missing}", headers=bob)
    assert refused.status_code == absent.status_code == 404
    assert refused.json()["code"] == absent.json()["code"] == "RESOURCE_NOT_FOUND"
    assert refused.json()["message"].replace(a, "X") == absent.json()["message"].replace(
        missing, "X"
    )
    for call in (
        client.put(f"/documents/{a}", json={"title": "mine"}, headers=bob),
        client.delete(f"/documents/{a}", headers=bob),
        client.post(
            f"/documents/{a}/shares", json={"user_id": bob_id, "grant": "write"}, headers=bob
        ),
        client.delete(f"/documents/{a}/shares/{bob_id}", headers=bob),
    ):
        assert (await call).status_code == 404

    shared = await client.post(
        f"/documents/{a}/shares", json={"user_id": bob_id, "grant": "read"}, headers=owner
    )
    assert shared.status_code == 200, shared.text
    assert _data(shared) == {"document_id": a, "user_id": bob_id, "grant": "read", "created": True}
    assert await _listed(client, bob) == {a, c}
    seen = await client.get(f"/documents/{a}", headers=bob)
    assert (
        seen.status_code == 200
        and _data(seen)["body"] == "alpha"
        and _data(seen)["grant"] == "read"
    )
    denied = await client.put(f"/documents/{a}", json={"title": "mine"}, headers=bob)
    assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"
    assert (await client.delete(f"/documents/{a}", headers=bob)).status_code == 403

    upgraded = await client.post(
        f"/documents/{a}/shares", json={"user_id": bob_id, "grant": "write"}, headers=owner
    )
    assert _data(upgraded)["created"] is False and _data(upgraded)["grant"] == "write"
    edited = await client.put(f"/documents/{a}", json={"body": "edited by bob"}, headers=bob)
    assert edited.status_code == 200, edited.text
    assert _data(await client.get(f"/documents/{a}", headers=owner))["body"] == "edited by bob"
    assert (await client.delete(f"/documents/{a}", headers=bob)).status_code == 403
    resharing = await client.post(
        f"/documents/{a}/shares", json={"user_id": bob_id, "grant": "read"}, headers=bob
    )
    assert resharing.status_code == 403

    for headers in (admin, dora):
        assert await _listed(client, headers) == everyone
    assert (
        await client.put(f"/documents/{c}", json={"title": "by dora"}, headers=dora)
    ).status_code == 200

    # a guest holds no document permission: 403 (about the caller, not about a document)
    assert (await client.get("/documents", headers=gus)).status_code == 403
    assert (await client.get(f"/documents/{a}", headers=gus)).status_code == 403
    assert (await client.post("/documents", json={"title": "x"}, headers=gus)).status_code == 403

    # list == detail, for every caller that may list at all
    for headers in (owner, admin, bob, dora):
        listed = await _listed(client, headers)
        readable = {
            d
            for d in everyone
            if (await client.get(f"/documents/{d}", headers=headers)).status_code == 200
        }
        assert listed == readable

    unshared = await client.delete(f"/documents/{a}/shares/{bob_id}", headers=owner)
    assert unshared.status_code == 204
    assert (
        await client.delete(f"/documents/{a}/shares/{bob_id}", headers=owner)
    ).status_code == 404
    assert await _listed(client, bob) == {c}
    assert (await client.get(f"/documents/{a}", headers=bob)).status_code == 404

    assert (await client.delete(f"/documents/{b}", headers=owner)).status_code == 204
    assert (await client.get(f"/documents/{b}", headers=owner)).status_code == 404
    assert (await client.delete(f"/documents/{c}", headers=admin)).status_code == 204
    assert await _listed(client, admin) == {a}


async def test_validation_errors_are_typed(demo: tuple[Any, Any]) -> None:
    """Bad bodies, unknown recipients and sharing with the owner are 422/400, never a 500."""
    app, client = demo
    await _account(app, "bob")
    await _account(app, "ivy")
    owner = await _login(client, USER["email"], USER["password"])
    owner_id = await _user_id(client, owner)
    bob = await _login(client, "bob@docs.test")
    bob_id = await _user_id(client, bob)
    async with app.state.sessionmaker() as db:
        ivy = (await db.execute(User.__table__.select().where(User.email == "ivy@docs.test"))).one()
        await db.execute(User.__table__.update().where(User.id == ivy.id).values(is_active=False))
        await db.commit()
    doc = await _create(client, owner, "A")

    for body in (
        {"title": "   "},
        {"title": ""},
        {"body": "no title"},
        {"title": "x" * 201},
        {"title": 5},
    ):
        resp = await client.post("/documents", json=body, headers=owner)
        assert resp.status_code == 422 and resp.json()["code"] == "VALIDATION_ERROR", (
            body,
            resp.text,
        )
    assert (await client.put(f"/documents/{doc}", json={}, headers=owner)).status_code == 422
    for body in (
        {"user_id": bob_id, "grant": "admin"},
        {"user_id": bob_id},
        {"grant": "read"},
        {"user_id": str(uuid.uuid4()), "grant": "read"},
        {"user_id": ivy.id, "grant": "read"},
    ):
        resp = await client.post(f"/documents/{doc}/shares", json=body, headers=owner)
        assert resp.status_code == 422, (body, resp.text)
    to_owner = await client.post(
        f"/documents/{doc}/shares", json={"user_id": owner_id, "grant": "read"}, headers=owner
    )
    assert to_owner.status_code == 400 and to_owner.json()["code"] == "BUSINESS_LOGIC_ERROR"
    assert (await client.get("/documents/" + "x" * 65, headers=owner)).status_code == 422
    assert (
        await client.get("/documents", params={"sort": "body"}, headers=owner)
    ).status_code == 422
    assert (
        await client.get("/documents", params={"cursor": "forged"}, headers=owner)
    ).status_code == 422
    assert (await client.get("/documents")).status_code == 401


async def test_cursor_is_bound_to_the_caller(demo: tuple[Any, Any]) -> None:
    """Pages follow with next_cursor in the requested order; another user cannot reuse a cursor."""
    app, client = demo
    await _account(app, "bob")
    owner = await _login(client, USER["email"], USER["password"])
    bob = await _login(client, "bob@docs.test")
    for title in ("d", "b", "e", "a", "c"):
        await _create(client, owner, title)
    first = _data(
        await client.get("/documents", params={"limit": 2, "sort": "title"}, headers=owner)
    )
    assert [d["title"] for d in first["items"]] == ["a", "b"] and first["metadata"]["total"] == 5
    cursor = first["metadata"]["next_cursor"]
    second = _data(
        await client.get(
            "/documents", params={"limit": 2, "sort": "title", "cursor": cursor}, headers=owner
        )
    )
    assert [d["title"] for d in second["items"]] == ["c", "d"]
    stolen = await client.get(
        "/documents", params={"limit": 2, "sort": "title", "cursor": cursor}, headers=bob
    )
    assert stolen.status_code == 422 and stolen.json()["code"] == "INVALID_CURSOR"


async def test_share_is_audited_and_published(demo: tuple[Any, Any]) -> None:
    """Sharing writes a document_share audit record and publishes document.shared; a refused
    read is recorded as a permission denial."""
    app, client = demo
    await _account(app, "bob")
    await _account(app, "eve")
    owner = await _login(client, USER["email"], USER["password"])
    owner_id = await _user_id(client, owner)
    bob_id = await _user_id(client, await _login(client, "bob@docs.test"))
    eve = await _login(client, "eve@docs.test")
    doc = await _create(client, owner, "A")
    events: list[dict[str, Any]] = []

    async def record(event: dict[str, Any]) -> None:
        events.append(event)

    subscription = event_service.subscribe("document.shared", record, name=f"test-{uuid.uuid4()}")
    try:
        resp = await client.post(
            f"/documents/{doc}/shares", json={"user_id": bob_id, "grant": "write"}, headers=owner
        )
        assert resp.status_code == 200
        assert (await client.get(f"/documents/{doc}", headers=eve)).status_code == 404
        assert await event_service.wait_for_pending(timeout=10)
    finally:
        event_service.unsubscribe("document.shared", subscription)
    [event] = [e for e in events if e["data"]["document_id"] == doc]
    assert event["data"] == {
        "document_id": doc,
        "user_id": owner_id,
        "recipient_id": bob_id,
        "grant": "write",
        "owner_id": owner_id,
    }

    audit = app.state.audit_service
    await audit.flush()
    page = await audit.query(action="document_share", resource_id=doc, secret_key=SECRET)
    [entry] = page.items
    assert entry["actor_id"] == owner_id and entry["target_id"] == bob_id
    assert entry["resource_type"] == "Document" and entry["details"]["grant"] == "write"
    created = await audit.query(action="document_create", resource_id=doc, secret_key=SECRET)
    assert len(created.items) == 1
    for _ in range(50):  # the denial reaches the trail through its event
        denials = await audit.query(action="PERMISSION_DENIED", resource_id=doc, secret_key=SECRET)
        if denials.items:
            break
        await asyncio.sleep(0.05)
    assert any(d["details"].get("event") == "permission.object_denied" for d in denials.items)


@pytest.fixture(params=["memory", "redis"])
async def cached_demo(
    request: pytest.FixtureRequest, tmp_path: Any
) -> AsyncIterator[tuple[Any, Any]]:
    """A demo app on SQLite whose document cache is memory, or a real Redis."""
    options: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/d.db",
        "secret_key": SECRET,
    }
    if request.param == "redis":
        options["REDIS_URI"] = request.getfixturevalue("redis_url")
        options["CACHE_DEFAULT_BACKEND"] = "redis"
    app = create_app(Settings(**options))
    async with app_client(app) as client:
        yield app, client


async def test_reads_are_cached_and_writes_invalidate(cached_demo: tuple[Any, Any]) -> None:
    """A read fills the cache; update, share and unshare drop it, so read-after-write is fresh."""
    app, client = cached_demo
    await _account(app, "bob")
    owner = await _login(client, USER["email"], USER["password"])
    bob = await _login(client, "bob@docs.test")
    bob_id = await _user_id(client, bob)
    doc = await _create(client, owner, "A", "v1")
    cache = app.state.documents_cache
    assert (await client.get(f"/documents/{doc}", headers=owner)).status_code == 200
    cached = await cache.get(item_key(doc))
    assert cached["document"]["body"] == "v1" and cached["shares"] == {}

    assert (
        await client.put(f"/documents/{doc}", json={"body": "v2"}, headers=owner)
    ).status_code == 200
    assert await cache.get(item_key(doc)) is None
    assert _data(await client.get(f"/documents/{doc}", headers=owner))["body"] == "v2"

    # the cached entry (with no shares) must not keep refusing bob after the share
    assert (await client.get(f"/documents/{doc}", headers=bob)).status_code == 404
    await client.post(
        f"/documents/{doc}/shares", json={"user_id": bob_id, "grant": "read"}, headers=owner
    )
    assert _data(await client.get(f"/documents/{doc}", headers=bob))["body"] == "v2"
    assert (await cache.get(item_key(doc)))["shares"] == {bob_id: "read"}
    await client.delete(f"/documents/{doc}/shares/{bob_id}", headers=owner)
    assert (await client.get(f"/documents/{doc}", headers=bob)).status_code == 404
    await client.delete(f"/documents/{doc}", headers=owner)
    assert (await client.get(f"/documents/{doc}", headers=owner)).status_code == 404


async def test_api_key_carries_only_its_permissions(demo: tuple[Any, Any]) -> None:
    """An X-API-Key with document:read lists and reads the owner's documents but cannot create."""
    app, client = demo
    owner = await _login(client, USER["email"], USER["password"])
    doc = await _create(client, owner, "A")
    created = await client.post(
        "/auth/api-keys", json={"name": "ro", "permissions": ["document:read"]}, headers=owner
    )
    assert created.status_code == 201, created.text
    key = {"X-API-Key": _data(created)["api_key"]}
    assert await _listed(client, key) == {doc}
    assert (await client.get(f"/documents/{doc}", headers=key)).status_code == 200
    assert (
        await client.put(f"/documents/{doc}", json={"title": "x"}, headers=key)
    ).status_code == 403
    assert (await client.post("/documents", json={"title": "x"}, headers=key)).status_code == 403


async def test_deactivated_or_demoted_account_loses_access_at_once(demo: tuple[Any, Any]) -> None:
    """A still-valid token of a deactivated account is refused (401); a demotion counts at once."""
    app, client = demo
    await _account(app, "bob")
    await _account(app, "zed")
    bob = await _login(client, "bob@docs.test")
    zed = await _login(client, "zed@docs.test")
    doc = await _create(client, bob, "B")
    await _create(client, zed, "Z")
    async with app.state.sessionmaker() as db:
        await db.execute(
            User.__table__.update().where(User.email == "bob@docs.test").values(is_active=False)
        )
        await db.execute(
            User.__table__.update().where(User.email == "zed@docs.test").values(role="guest")
        )
        await db.commit()
    assert (await client.get(f"/documents/{doc}", headers=bob)).status_code == 401
    assert (await client.get("/documents", headers=bob)).status_code == 401
    assert (await client.get("/documents", headers=zed)).status_code == 403
    assert (await client.post("/documents", json={"title": "x"}, headers=zed)).status_code == 403
