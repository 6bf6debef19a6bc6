"""The two routes every benchmark app serves: ``GET /hello`` and ``GET /items?page=1``.

``/hello`` answers ``{"message": "hello"}``; ``/items`` answers 20 pydantic items (about 2.9 KB
of JSON), so the ~1 KB compression threshold applies to it and not to ``/hello``.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

#: the Origin the load generator sends and the apps' CORS allows
ORIGIN = "http://bench.example"
PAGE_SIZE = 20


class Item(BaseModel):
    """One catalogue item."""

    id: int
    sku: str
    name: str
    description: str
    price: float
    in_stock: bool
    tags: list[str]


def _page(page: int) -> list[Item]:
    first = (page - 1) * PAGE_SIZE
    return [
        Item(
            id=i,
            sku=f"SKU-{i:06d}",
            name=f"Widget number {i}",
            description="Sturdy.",
            price=9.99 + i,
            in_stock=i % 3 != 0,
            tags=["tools", f"batch-{i % 7}"],
        )
        for i in range(first, first + PAGE_SIZE)
    ]


def add_routes(app: FastAPI) -> FastAPI:
    """Add ``/hello`` and ``/items`` to ``app``; return it."""

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "hello"}

    @app.get("/items")
    async def items(page: int = 1) -> list[Item]:
        return _page(page)

    return app
