"""The reference service's product catalogue (table on :class:`crown_nexus.demo.db.Base`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from crown_nexus.demo.db import Base

__all__ = ["SEED_PRODUCTS", "Product"]


class Product(Base):
    """A product; prices are integer cents (exact in every database)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(100), index=True)
    price_cents: Mapped[int] = mapped_column(Integer)

    def to_dict(self) -> dict[str, Any]:
        """The public view of the product."""
        return {
            "id": self.id,
            "name": self.name,
            "category": self.category,
            "price_cents": self.price_cents,
        }


#: Rows inserted at start-up when the table is empty.
SEED_PRODUCTS: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Hammer", "category": "tools", "price_cents": 1999},
    {"id": 2, "name": "Screwdriver", "category": "tools", "price_cents": 799},
    {"id": 3, "name": "Desk lamp", "category": "home", "price_cents": 3450},
    {"id": 4, "name": "Kettle", "category": "home", "price_cents": 2599},
)
