"""Log in as one of the demo accounts (``DEMO_USERS``) and get the request headers."""

from __future__ import annotations

from typing import Any

ADMIN = {"email": "admin@example.com", "password": "Crown-Admin-2024!"}
USER = {"email": "user@example.com", "password": "Crown-User-2024!"}


async def bearer(client: Any, account: dict[str, str] | None = None) -> dict[str, str]:
    """``Authorization`` headers of a fresh login of ``account`` (the demo admin by default)."""
    resp = await client.post("/auth/login", json=account or ADMIN)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    data = body["data"] if "data" in body and "success" in body else body
    return {"Authorization": f"Bearer {data['access_token']}"}


async def register(client: Any, email: str, password: str = "Sturdy-Pass-2024!",
                   **extra: Any) -> dict[str, str]:
    """Register ``email`` (201 expected) and return its ``Authorization`` headers."""
    resp = await client.post(
        "/auth/register", json={"email": email, "password": password, "name": "Test", **extra}
    )
    assert resp.status_code == 201, resp.text
    return await bearer(client, {"email": email, "password": password})
