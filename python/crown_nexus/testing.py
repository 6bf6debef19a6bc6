"""Test helpers that ship with crown-nexus (STYLE habit 10).

``app_client(app)`` runs an app's lifespan (start-up and shutdown) around an ``httpx.AsyncClient``
that talks to it in process, so HTTP-level tests see the app exactly as a server would serve it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["app_client"]


@asynccontextmanager
async def app_client(app: Any, base_url: str = "http://testserver", **kwargs: Any) -> AsyncIterator[Any]:
    """Start ``app`` (its lifespan), yield an ``httpx.AsyncClient`` bound to it, then shut it down.

    ``httpx`` is a test dependency; it is imported here, not at package import.
    """
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url, **kwargs) as client:
            yield client
