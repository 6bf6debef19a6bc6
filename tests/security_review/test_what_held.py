"""Security review, "what held and must keep holding": the defences the review could not break.

Each is kept as a regression test over HTTP against the reference service (the JWT corpus lives
in ``tests/accel/test_jwt_agreement.py``, trusted proxies in ``tests/core/rate_limiting``,
CSRF binding and expiry in ``tests/core/security``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

import crown_nexus
from crown_nexus.core.security import SecurityService, configure_security
from crown_nexus.core.security.passwords import set_password_hasher
from crown_nexus.demo.app import create_app
from crown_nexus.settings import Settings
from crown_nexus.testing import app_client

USER = {"email": "user@example.com", "password": "Crown-User-2024!"}


@pytest.fixture(autouse=True)
def cheap_argon2():  # type: ignore[no-untyped-def]
    """Tiny Argon2 costs for speed; the shared security service is reset afterwards."""
    previous = set_password_hasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    try:
        yield
    finally:
        set_password_hasher(previous)
        configure_security(None)


def _app(tmp_path: Any) -> Any:
    return create_app(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/held.db",
            secret_key="what-held-secret-0123456789-abcdefghij",
        )
    )


async def test_concurrent_refreshes_one_winner(tmp_path: Any) -> None:
    """Five concurrent refreshes of one token: one pair issued, the rest refused, the login revoked."""
    async with app_client(_app(tmp_path)) as client:
        pair = (await client.post("/auth/login", json=USER)).json()["data"]
        responses = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}) for _ in range(5))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) == 1 and codes.count(401) == 4, codes
        assert not [c for c in codes if c >= 500]


async def test_unknown_account_costs_a_password_check(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Login for an unknown email still verifies a (dummy) Argon2id hash: timing reveals nothing."""
    checked: list[str] = []
    original = SecurityService.verify_password

    async def spy(self: SecurityService, plain: str, hashed: str, user_id: str | None = None) -> bool:
        checked.append(hashed.split("$")[1] if hashed.startswith("$") else hashed[:8])
        return await original(self, plain, hashed, user_id)

    monkeypatch.setattr(SecurityService, "verify_password", spy)
    async with app_client(_app(tmp_path)) as client:
        resp = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "x" * 12})
    assert resp.status_code == 401
    assert checked == ["argon2id"]


async def test_huge_declared_body_refused_before_the_app(tmp_path: Any) -> None:
    """A 100 MB declared body is 413 at once, without reading it."""
    async with app_client(_app(tmp_path)) as client:

        async def never_sent():  # type: ignore[no-untyped-def]
            raise AssertionError("the body must not be read")
            yield b""  # pragma: no cover

        resp = await client.post(
            "/auth/login",
            content=never_sent(),
            headers={"Content-Length": str(100 * 1024 * 1024), "Content-Type": "application/json"},
        )
    assert resp.status_code == 413
    assert resp.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_no_pickle_in_the_package() -> None:
    """No module of the package imports pickle (untrusted data is never unpickled)."""
    root = Path(crown_nexus.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if re.search(r"^\s*(import pickle|from pickle import|import cPickle)", path.read_text(), re.M)
    ]
    assert offenders == []
