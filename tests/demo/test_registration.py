"""HTTP-level tests of ``POST /auth/register``: §5 validation, race-free uniqueness (SQLite and
PostgreSQL), the encrypted phone number, the typed domain event in the audit trail and the
``@track_db_insert`` metric."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from crown_nexus.core.security import decrypt_data
from crown_nexus.demo.app import create_app
from crown_nexus.demo.models_users import User
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client
from tests.demo._auth import bearer

PASSWORD = "Sturdy-Pass-2024!"


def _data(resp: Any) -> Any:
    body = resp.json()
    return body["data"] if isinstance(body, dict) and "data" in body and "success" in body else body


def _email() -> str:
    """A fresh address (the PostgreSQL database outlives one test)."""
    return f"new-{uuid.uuid4().hex[:12]}@example.org"


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[Any]:  # type: ignore[no-untyped-def]
    """A client of a fresh demo app on its own SQLite file."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/reg.db"))
    async with app_client(app) as c:
        c.app = app
        yield c


async def test_register_then_login_and_read_profile(client: Any) -> None:
    """A registration is 201 with the public view (user role); the account logs in at once."""
    email = _email()
    resp = await client.post(
        "/auth/register", json={"email": email.upper(), "password": PASSWORD, "name": " Ann "}
    )
    assert resp.status_code == 201, resp.text
    user = _data(resp)
    assert user["email"] == email and user["name"] == "Ann" and user["role"] == "user"
    assert "hashed_password" not in user and "password" not in str(user)
    assert resp.headers["RateLimit-Policy"].startswith('"auth"')  # the /auth/ limit applies
    me = _data(await client.get("/users/me", headers=await bearer(client, {"email": email, "password": PASSWORD})))
    assert me["id"] == user["id"] and me["phone"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "a@@example.org", "password": PASSWORD, "name": "A"}, "email"),
        ({"email": "ok@example.org", "password": "short", "name": "A"}, "password"),
        ({"email": "ok@example.org", "password": "password123", "name": "A"}, "password"),
        ({"email": "ok@example.org", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "ok@example.org", "password": PASSWORD}, "name"),
        ({"email": "ok@example.org", "password": PASSWORD, "name": "A", "phone": "call me"}, "phone"),
        ({"email": "ok@example.org", "password": PASSWORD, "name": "A", "role": "admin"}, "role"),
        ({"email": "ok@example.org", "password": PASSWORD, "name": "A",
          "permissions": ["system:admin"]}, "permissions"),
    ],
)
async def test_invalid_registration_is_422_naming_the_field(
    client: Any, body: dict[str, Any], field: str
) -> None:
    """Each §5 check refuses with 422 and names the field; nobody can pick a role or grants."""
    resp = await client.post("/auth/register", json=body)
    assert resp.status_code == 422, resp.text
    payload = resp.json()
    assert payload["code"] == "VALIDATION_ERROR"
    errors = payload["details"]["errors"] if isinstance(payload["details"], dict) else payload["details"]
    assert ["body", field] in [list(e["loc"][:2]) for e in errors], payload
    async with client.app.state.sessionmaker() as db:
        assert (await db.scalar(select(User).where(User.email == "ok@example.org"))) is None


@pytest.mark.parametrize("body", [[], "x", 42, None])
async def test_non_object_body_is_422(client: Any, body: Any) -> None:
    """A body that is not a JSON object is a 422, never a 500."""
    resp = await client.post("/auth/register", json=body)
    assert resp.status_code == 422, resp.text


async def test_duplicate_is_409_whatever_the_case(client: Any) -> None:
    """validate_unique: the same address again (any letter case) is 409 RESOURCE_ALREADY_EXISTS."""
    email = _email()
    first = await client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": "A"})
    assert first.status_code == 201
    again = await client.post(
        "/auth/register", json={"email": email.upper(), "password": PASSWORD, "name": "B"}
    )
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "RESOURCE_ALREADY_EXISTS"
    dup_admin = await client.post(
        "/auth/register", json={"email": "admin@example.com", "password": PASSWORD, "name": "X"}
    )
    assert dup_admin.status_code == 409


async def test_concurrent_duplicates_one_201_rest_409(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """N concurrent registrations of one address: exactly one 201, every other a 409, no 500;
    one row and one registration event are written (SQLite and PostgreSQL)."""
    app = create_app(Settings(database_url=database_url))
    email = _email()
    n = 8
    async with app_client(app) as client:
        responses = await asyncio.gather(*(
            client.post("/auth/register",
                        json={"email": email, "password": PASSWORD, "name": f"racer {i}"})
            for i in range(n)
        ))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] + [409] * (n - 1), [r.text for r in responses]
        assert all(r.json()["code"] == "RESOURCE_ALREADY_EXISTS" for r in responses if r.status_code == 409)
        async with app.state.sessionmaker() as db:
            rows = list(await db.scalars(select(User).where(User.email == email)))
            assert len(rows) == 1
            events = await db.scalar(text(
                "SELECT count(*) FROM crown_nexus_event_outbox WHERE name = 'user.registered' "
                "AND body LIKE :pat"
            ), {"pat": f"%{rows[0].id}%"})
        assert events == 1


async def test_phone_is_encrypted_at_rest_and_shown_to_its_owner_only(client: Any) -> None:
    """The phone number is stored as ciphertext (decrypt_data gives it back) and appears only in
    the owner's GET /users/me."""
    email, phone = _email(), "+12125551234"
    resp = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": "P", "phone": phone}
    )
    assert resp.status_code == 201, resp.text
    assert phone not in resp.text  # not even in the creation answer
    async with client.app.state.sessionmaker() as db:
        stored = (await db.scalars(select(User).where(User.email == email))).one()
    assert stored.phone_encrypted is not None and phone not in stored.phone_encrypted
    assert decrypt_data(stored.phone_encrypted) == phone
    owner = await bearer(client, {"email": email, "password": PASSWORD})
    assert _data(await client.get("/users/me", headers=owner))["phone"] == phone
    admin_me = _data(await client.get("/users/me", headers=await bearer(client)))
    assert admin_me["phone"] is None  # the admin's profile is the admin's


async def test_registration_event_reaches_the_audit_trail(client: Any) -> None:
    """The typed UserRegisteredEvent is delivered (outbox) and its handler writes USER_REGISTERED."""
    resp = await client.post(
        "/auth/register", json={"email": _email(), "password": PASSWORD, "name": "E"}
    )
    user_id = _data(resp)["id"]
    admin = await bearer(client)
    found: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while not found:
            page = _data(await client.get(
                "/audit", params={"action": "USER_REGISTERED", "resource_id": user_id}, headers=admin
            ))
            found = page["items"]
            await asyncio.sleep(0.05)
    record = found[0]
    assert record["user_id"] == user_id and record["resource_type"] == "User"
    assert record["details"]["event"] == "user.registered"


async def test_registration_insert_is_measured(client: Any) -> None:
    """@track_db_insert(entity="user") records each registration insert in /metrics."""
    def inserts(text_: str) -> float:
        total = 0.0
        for line in text_.splitlines():
            if line.startswith("db_queries_total{") and 'entity="user"' in line and 'operation="INSERT"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    before = inserts((await client.get("/metrics")).text)
    resp = await client.post("/auth/register", json={"email": _email(), "password": PASSWORD, "name": "M"})
    assert resp.status_code == 201
    assert inserts((await client.get("/metrics")).text) == before + 1


async def test_start_up_adds_the_phone_column_to_an_old_users_table(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A users table from before phone_encrypted gets the column at start-up (no 500 later)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(
            "CREATE TABLE users (id VARCHAR(36) PRIMARY KEY, email VARCHAR(320) NOT NULL UNIQUE, "
            "name VARCHAR(200) NOT NULL, hashed_password VARCHAR(255) NOT NULL, "
            "role VARCHAR(50) NOT NULL, permissions JSON NOT NULL, is_active BOOLEAN NOT NULL, "
            "created_at DATETIME NOT NULL)"
        ))
    await engine.dispose()
    async with app_client(create_app(Settings(database_url=url))) as client:
        resp = await client.post(
            "/auth/register", json={"email": _email(), "password": PASSWORD, "name": "Old",
                                    "phone": "+12125551234"}
        )
        assert resp.status_code == 201, resp.text


async def test_lost_race_is_409_from_the_unique_index(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the uniqueness check passed but another registration committed first, the unique
    index's IntegrityError is the same 409 (and the session stays usable)."""
    from crown_nexus.demo.routers import registration

    async def always_unique(*args: Any, **kwargs: Any) -> bool:
        return True

    monkeypatch.setattr(registration, "validate_unique", always_unique)
    email = _email()
    body = {"email": email, "password": PASSWORD, "name": "A"}
    assert (await client.post("/auth/register", json=body)).status_code == 201
    lost = await client.post("/auth/register", json=body)
    assert lost.status_code == 409, lost.text
    assert lost.json()["code"] == "RESOURCE_ALREADY_EXISTS"
    other = await client.post("/auth/register", json={**body, "email": _email()})
    assert other.status_code == 201
