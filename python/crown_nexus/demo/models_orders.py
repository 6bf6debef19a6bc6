"""Tables of the event-driven order workflow (on :class:`crown_nexus.demo.db.Base`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crown_nexus.demo.db import Base

__all__ = ["InventoryReservation", "Order", "OrderEvent"]


class Order(Base):
    """An order; ``status`` moves pending → inventory_reserved → completed | payment_failed."""

    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    total_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class OrderEvent(Base):
    """One workflow event an order went through (its history); one row per event and step."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("event_id", "step", name="uq_order_events_event_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(50))
    at: Mapped[float] = mapped_column(Float)


class InventoryReservation(Base):
    """Stock reserved for an order (``status`` reserved | released)."""

    __tablename__ = "inventory_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(32), index=True)
    product_id: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
