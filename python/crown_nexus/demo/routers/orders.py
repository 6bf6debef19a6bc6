"""Orders driven by events (guide §14 "Event-Based Workflow"), built only from the public API.

``POST /orders`` (authenticated, ``order:create``) stores an order of the caller (its owner is
the authenticated user; a body naming another is refused) and its ``order.created`` event in one
transaction (the transactional outbox), answers 202 with ``status: pending``; the app's
:class:`~crown_nexus.core.events.OutboxRelay` delivers the event after commit and the workflow
runs through the event service. The relay runs the handlers itself (:func:`run_handlers`, a few
at once) and waits for them, so a step that fails (a busy SQLite refusing a writer) is delivered
again with backoff instead of leaving its order half-way:

order.created → (reserve inventory) → inventory.reserved → (charge the fake gateway) →
payment.succeeded → (finalize) → order.completed, or payment.failed → (mark failed) →
inventory.release_requested → (release stock).

Every step updates the order and publishes the next event in the same transaction, and records
the event in the order's history, so ``GET /orders/{id}`` shows the status changing; only its
owner (or a holder of ``order:admin``) sees an order, anyone else gets the same 404 as for an
order that does not exist. Steps are
idempotent (an event redelivered is recognised by its id). The payment gateway is fake but
deterministic: totals above :data:`PAYMENT_LIMIT_CENTS` are declined.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crown_nexus.container import use_container
from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.events import (
    EventBackendType,
    EventService,
    OutboxRelay,
    Subscription,
    create_outbox_tables,
)
from crown_nexus.core.events.exceptions import EventHandlerException
from crown_nexus.core.exceptions import ResourceNotFoundException, ValidationException
from crown_nexus.core.permissions import Permission, PermissionChecker, require_permission
from crown_nexus.core.security.dependencies import get_current_user_with_permissions
from crown_nexus.demo.db import get_db
from crown_nexus.demo.models_orders import InventoryReservation, Order, OrderEvent
from crown_nexus.demo.routers.products import MAX_INT64, product_prices
from crown_nexus.logging import get_logger
from crown_nexus.middleware.secure_request import RequestTooLargeException

__all__ = [
    "MAX_ORDER_BODY_BYTES",
    "PAYMENT_LIMIT_CENTS",
    "RELAY_CONCURRENCY",
    "OrderWorkflow",
    "install",
    "router",
    "run_handlers",
]

logger = get_logger("crown_nexus.demo.orders")

router = APIRouter(prefix="/orders", tags=["demo: orders (events)"])

#: the fake gateway declines totals above this (cents)
PAYMENT_LIMIT_CENTS = 100_000
#: the largest ``POST /orders`` body read (bytes): 50 items fit many times over; a larger body
#: is refused (413) before it is parsed, not after the whole list was built (SPEC §3)
MAX_ORDER_BODY_BYTES = 32 * 1024


class OrderItem(BaseModel):
    """One line of an order."""

    product_id: int = Field(ge=1, le=MAX_INT64)
    quantity: int = Field(ge=1, le=1000)


class OrderCreate(BaseModel):
    """Body of ``POST /orders``: the items only; the order belongs to the authenticated caller,
    and any other field (a ``user_id`` naming someone else) is refused with 422."""

    model_config = ConfigDict(extra="forbid")

    items: list[OrderItem] = Field(min_length=1, max_length=50)


class PaymentResult(BaseModel):
    """What the fake gateway answers."""

    success: bool
    payment_id: str | None = None
    error: str | None = None
    error_message: str | None = None


async def process_payment(amount_cents: int, order_id: str) -> PaymentResult:
    """The fake gateway: deterministic ids; totals over the limit are declined."""
    if amount_cents > PAYMENT_LIMIT_CENTS:
        return PaymentResult(
            success=False, error="card_declined", error_message="amount over the card limit"
        )
    digest = hashlib.sha256(f"payment:{order_id}".encode()).hexdigest()[:16]
    return PaymentResult(success=True, payment_id=f"pay_{digest}")


def _order_view(order: Order, history: list[OrderEvent]) -> dict[str, Any]:
    return {
        "id": order.id,
        "user_id": order.user_id,
        "items": order.items,
        "total_cents": order.total_cents,
        "status": order.status,
        "payment_id": order.payment_id,
        "failure_reason": order.failure_reason,
        "events": [
            {"name": h.name, "step": h.step, "event_id": h.event_id, "at": h.at} for h in history
        ],
    }


Step = Callable[[AsyncSession, Order, dict[str, Any]], Awaitable[None]]


class OrderWorkflow:
    """The workflow's handlers, bound to one app's database and subscribed while it runs."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], events: EventService) -> None:
        self.sessions = sessions
        self.events = events
        self._subs: list[Subscription] = []

    def subscribe(self) -> None:
        """Subscribe every step to its event."""
        steps: dict[str, tuple[str, Step]] = {
            "order.created": ("reserve_inventory", self.reserve_inventory),
            "inventory.reserved": ("process_payment", self.process_payment),
            "payment.succeeded": ("finalize_order", self.finalize_order),
            "payment.failed": ("handle_payment_failure", self.handle_payment_failure),
            "inventory.release_requested": ("release_inventory", self.release_inventory),
            "order.completed": ("order_completed", self.order_completed),
        }
        for event_name, (step, func) in steps.items():
            self._subs.append(
                self.events.subscribe(event_name, self._step(step, func), name=f"orders:{step}")
            )

    def unsubscribe(self) -> None:
        """Remove the handlers."""
        for sub in self._subs:
            self.events.unsubscribe(sub.event_name, sub)
        self._subs.clear()

    def _step(self, step: str, func: Step) -> Callable[[dict[str, Any]], Awaitable[None]]:
        async def handler(event: dict[str, Any]) -> None:
            order_id = str(event["data"]["order_id"])
            async with self.sessions() as session:
                order = await session.get(Order, order_id)
                if order is None:
                    return  # an order of another app's database
                seen = await session.scalar(
                    select(OrderEvent.id).where(
                        OrderEvent.event_id == event["id"], OrderEvent.step == step
                    )
                )
                if seen is not None:
                    return  # redelivered: this step already ran
                session.add(
                    OrderEvent(order_id=order_id, event_id=event["id"], name=event["name"],
                               step=step, at=time.time())
                )
                await func(session, order, event)
                await session.commit()

        handler.__qualname__ = f"OrderWorkflow.{step}"
        return handler

    async def reserve_inventory(self, db: AsyncSession, order: Order, event: dict[str, Any]) -> None:
        """Reserve stock for every item, then publish ``inventory.reserved``."""
        for item in order.items:
            db.add(InventoryReservation(order_id=order.id, product_id=item["product_id"],
                                        quantity=item["quantity"], status="reserved"))
        order.status = "inventory_reserved"
        await self.events.publish(
            "inventory.reserved",
            {"order_id": order.id, "user_id": order.user_id, "items": order.items,
             "total_amount": order.total_cents},
            session=db,
        )

    async def process_payment(self, db: AsyncSession, order: Order, event: dict[str, Any]) -> None:
        """Charge the fake gateway; publish ``payment.succeeded`` or ``payment.failed``."""
        result = await process_payment(int(event["data"]["total_amount"]), order.id)
        if result.success:
            await self.events.publish(
                "payment.succeeded",
                {"order_id": order.id, "payment_id": result.payment_id,
                 "amount": event["data"]["total_amount"]},
                session=db,
            )
        else:
            await self.events.publish(
                "payment.failed",
                {"order_id": order.id, "error": result.error, "reason": result.error_message},
                session=db,
            )

    async def finalize_order(self, db: AsyncSession, order: Order, event: dict[str, Any]) -> None:
        """Mark the order completed; publish ``order.completed``."""
        order.status = "completed"
        order.payment_id = event["data"]["payment_id"]
        await self.events.publish(
            "order.completed",
            {"order_id": order.id, "user_id": order.user_id,
             "total_amount": event["data"]["amount"], "status": "completed"},
            session=db,
        )

    async def handle_payment_failure(
        self, db: AsyncSession, order: Order, event: dict[str, Any]
    ) -> None:
        """Mark the order failed; publish ``inventory.release_requested``."""
        order.status = "payment_failed"
        order.failure_reason = event["data"]["reason"]
        await self.events.publish(
            "inventory.release_requested",
            {"order_id": order.id, "reason": "payment_failed"},
            session=db,
        )

    async def release_inventory(self, db: AsyncSession, order: Order, event: dict[str, Any]) -> None:
        """Release the order's reservations."""
        rows = await db.scalars(
            select(InventoryReservation).where(InventoryReservation.order_id == order.id)
        )
        for row in rows:
            row.status = "released"

    async def order_completed(self, db: AsyncSession, order: Order, event: dict[str, Any]) -> None:
        """Nothing to change: the step only records the event in the order's history."""
        logger.info("Order completed", order_id=order.id)


def _events(request: Request) -> EventService:
    service: EventService = request.app.state.order_events
    return service


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it (declared or streamed) exceeds ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeException(details={"max_body_size": limit})
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeException(details={"max_body_size": limit})
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_order(raw: bytes) -> OrderCreate:
    """``raw`` JSON as an :class:`OrderCreate`; a 422 (FastAPI's body errors) when invalid."""
    try:
        return OrderCreate.model_validate_json(raw)
    except PydanticValidationError as exc:
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


async def order_body(request: Request) -> OrderCreate:
    """Dependency: the ``POST /orders`` body, read with a cap of :data:`MAX_ORDER_BODY_BYTES`
    (413 beyond it, before any parsing), then parsed and validated (422)."""
    return _parse_order(await _read_capped(request, MAX_ORDER_BODY_BYTES))


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references inlined (an OpenAPI operation cannot hold them)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


_ORDER_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_refs(OrderCreate.model_json_schema())}
        },
    }
}


@router.post("", status_code=202, openapi_extra=_ORDER_BODY_DOC)
@require_permission(Permission.ORDER_CREATE)
async def place_order(
    request: Request,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
    body: OrderCreate = Depends(order_body),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """Create an order of the caller and its ``order.created`` event together (202: the
    workflow follows). 401 without credentials, 403 without ``order:create``.

    Credentials are checked before the body is read. The body is read with a small cap
    (:data:`MAX_ORDER_BODY_BYTES`, 413 beyond it) before it is parsed, so a huge list of items
    costs neither the memory nor the CPU of parsing it. Prices come from the cached
    :class:`~crown_nexus.demo.routers.products.ProductPrices`.
    """
    owner = str(current_user["id"])
    ids = sorted({item.product_id for item in body.items})
    prices = await product_prices(request).prices(ids)
    missing = [i for i in ids if i not in prices]
    if missing:
        raise ValidationException(
            "Unknown products in order",
            errors=[{"loc": ["body", "items"], "msg": f"unknown product ids {missing}",
                     "type": "value_error.unknown_product"}],
        )
    items = [item.model_dump() for item in body.items]
    total = sum(prices[i["product_id"]] * i["quantity"] for i in items)
    if total > MAX_INT64:  # the column is a 64-bit integer: a 422, never the driver's overflow
        raise ValidationException(
            "Order total too large",
            errors=[{"loc": ["body", "items"], "msg": "the order total exceeds the largest amount",
                     "type": "value_error.total_too_large"}],
        )
    order = Order(id=os.urandom(16).hex(), user_id=owner, items=items, total_cents=total,
                  status="pending", created_at=time.time())
    db.add(order)
    event_id = await _events(request).publish(
        "order.created",
        {"order_id": order.id, "user_id": owner, "items": items, "total_amount": total},
        session=db,
    )
    db.add(OrderEvent(order_id=order.id, event_id=event_id, name="order.created",
                      step="place_order", at=time.time()))
    await db.commit()
    return {"id": order.id, "status": order.status, "total_cents": total}


@router.get("/{order_id}")
@require_permission(Permission.ORDER_READ)
async def get_order(
    order_id: str,
    current_user: dict[str, Any] = Depends(get_current_user_with_permissions),
    db: AsyncSession = Depends(get_db),
) -> dict[str, Any]:
    """The order, its current status and the events it went through (oldest first).

    Only the order's owner, or a holder of ``order:admin``, sees it; for anyone else the answer
    is the 404 of an order that does not exist (whether an id exists is not revealed).
    """
    order = await db.get(Order, order_id)
    if order is None or (
        order.user_id != str(current_user["id"])
        and not PermissionChecker.has_permission(current_user, Permission.ORDER_ADMIN)
    ):
        raise ResourceNotFoundException(
            message="Order not found", resource_type="Order", resource_id=order_id
        )
    history = list(
        await db.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == order_id, OrderEvent.step != "place_order")
            .order_by(OrderEvent.at, OrderEvent.id)
        )
    )
    return _order_view(order, history)


#: workflow steps the relay runs at once (each a short write transaction)
RELAY_CONCURRENCY = 8


def run_handlers(events: EventService) -> Callable[[dict[str, Any], bytes], Awaitable[None]]:
    """The relay's delivery: run the event's handlers here and wait for them; raise when one
    failed, so the relay delivers the event again later (with backoff; a dead letter after its
    attempts) instead of the step being lost. The steps are idempotent (the event id is
    recorded with the step), so the handlers that succeeded skip a redelivery. When the event
    service runs on another backend (Celery), the event is handed to it as the default relay
    does, and its workers run the steps (one trace from the request into the worker)."""

    async def deliver(event: dict[str, Any], encoded: bytes) -> None:
        if events.backend_type not in (None, EventBackendType.MEMORY):
            # another backend (Celery): its workers run the steps; the relay hands it over
            await events.deliver(event, encoded)
            return
        failed = await events.dispatch(event)
        if failed:
            raise EventHandlerException(
                f"workflow step failed: {', '.join(failed)}",
                event_name=event.get("name"),
                handler=failed[0],
            )

    return deliver


def _with_orders(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state:
            events: EventService = app.state.order_events
            await create_outbox_tables(app.state.engine)
            workflow = OrderWorkflow(app.state.sessionmaker, events)
            workflow.subscribe()
            relay = OutboxRelay(
                app.state.engine,
                events,
                deliver=run_handlers(events),
                poll_interval=0.5,
                concurrency=RELAY_CONCURRENCY,
                max_attempts=8,
                retry_backoff=0.2,
                retry_backoff_max=5.0,
            )
            relay.start()
            app.state.order_relay = relay
            try:
                yield state
            finally:
                await relay.stop()
                await events.wait_for_pending(5)
                workflow.unsubscribe()

    return lifespan


def install(app: Any) -> Any:
    """Give ``app`` the order routes, the workflow handlers and an outbox relay (its lifespan)."""
    with use_container(app.state.container):  # THIS app's event bus, not the default one
        app.state.order_events = get_service("event_service")
    app.include_router(router)
    app.router.lifespan_context = _with_orders(app.router.lifespan_context)
    return app
