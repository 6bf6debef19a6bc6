"""Guide §3 (Error Handling System) and its §14 usages, run as written with the user's objects supplied."""
# ruff: noqa: I001, E402, F811, F841 - the guide's blocks are copied verbatim (their imports and order)

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter, Depends, Request

from crown_nexus.core.error import (
    ErrorContext as _ErrorContext,
    register_reporter,
    unregister_reporter,
    wait_for_reports,
)
from crown_nexus.core.exceptions import (
    BusinessException,
    PermissionDeniedException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ValidationException,
)
from crown_nexus.logging import get_current_request_id, request_context
from crown_nexus.testing import app_client, capture_errors
from tests.guide._support import assert_error_body, data_of, guide_app, registered

# --- the user's own objects the examples refer to ---------------------------------------------


@dataclass
class PaymentResult:
    """What the user's payment gateway returns."""

    success: bool
    error_message: str | None = None
    payment_id: str | None = None


class PaymentGateway:
    """The user's payment gateway: declines amounts over 100."""

    async def process(self, payment_data: dict[str, Any]) -> PaymentResult:
        if payment_data["amount"] > 100:
            return PaymentResult(False, error_message="card declined")
        return PaymentResult(True, payment_id="pay-1")


class UserStore:
    """The user's synchronous user service / repository."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {"u1": {"id": "u1", "email": "taken@example.com"}}

    def update(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        user = self.users[user_id]  # KeyError for an unknown user: an unexpected error
        user.update(data)
        return user

    def find_by_email(self, email: str) -> dict[str, Any] | None:
        return next((u for u in self.users.values() if u["email"] == email), None)


class ProductRepository:
    """The user's product repository."""

    def __init__(self) -> None:
        self.products = {"p1": {"id": "p1", "name": "Widget"}}

    def get_by_id(self, product_id: str) -> dict[str, Any] | None:
        return self.products.get(product_id)


@dataclass
class Resource:
    """The user's resource object with a ``type``."""

    type: str


payment_gateway = PaymentGateway()
user_service = UserStore()
user_repository = user_service
product_repository = ProductRepository()


def valid_email_format(email: str) -> bool:
    """The user's email check."""
    return "@" in email and "." in email.rsplit("@", 1)[-1]


GRANTS = {("u1", "invoice", "read")}


def user_has_permission(user_id: str, resource: Resource, action: str) -> bool:
    """The user's own permission lookup."""
    return (user_id, resource.type, action) in GRANTS


# --- §3 'Error Reporting', verbatim -------------------------------------------------------------

from crown_nexus.core.error import report_error, handle_exception
from crown_nexus.core.error.base import ErrorContext

# Manual error reporting with context
async def process_payment(payment_data, user_id):
    try:
        # Payment processing logic
        result = await payment_gateway.process(payment_data)
        if not result.success:
            raise Exception(f"Payment failed: {result.error_message}")
    except Exception as e:
        # Create context with relevant information
        context = ErrorContext(
            function="process_payment",
            args=[],
            kwargs={"payment_data": payment_data},
            user_id=user_id,
            request_id=get_current_request_id()
        )
        # Report to all registered reporters
        await report_error(e, context)
        # Re-raise to be handled upstream
        raise

# Simplified error handling
def update_user_profile(user_id, data):
    try:
        # Update logic
        result = user_service.update(user_id, data)
        return result
    except Exception as e:
        # Automatically extracts context from current function
        handle_exception(e, user_id=user_id)
        raise

# --- §3 'Utility Functions', verbatim -----------------------------------------------------------

from crown_nexus.core.error import (
    ensure_not_none,
    resource_not_found,
    resource_already_exists,
    validation_error,
    permission_denied,
    business_logic_error
)

# Check for null values with automatic exception
def get_product(product_id):
    product = ensure_not_none(
        product_repository.get_by_id(product_id),
        resource_type="Product",
        resource_id=product_id
    )
    return product

# Create specific exceptions
def validate_user_creation(data):
    existing_user = user_repository.find_by_email(data["email"])
    if existing_user:
        raise resource_already_exists(
            resource_type="User",
            identifier=data["email"],
            field="email"
        )

    if not valid_email_format(data["email"]):
        raise validation_error(
            field="email",
            message="Invalid email format"
        )

# --- §3 'Error Service', verbatim ---------------------------------------------------------------

from crown_nexus.core.dependency_manager import get_service

# Get the error service through dependency injection
error_service = get_service("error_service")

# Report an error
async def handle_process_failure(error, context_data):
    context = ErrorContext(
        function="process_data",
        kwargs=context_data,
        user_id=context_data.get("user_id")
    )
    await error_service.report_error(error, context)

# Create specific exceptions through the service
def check_authorization(user_id, resource, action):
    if not user_has_permission(user_id, resource, action):
        raise error_service.permission_denied(
            action=action,
            resource_type=resource.type,
            permission=f"{resource.type}:{action}"
        )


# --- tests ----------------------------------------------------------------------------------------


async def test_process_payment_reports_with_context_and_reraises() -> None:
    """'Manual error reporting': the failure reaches every reporter with the guide's context, then re-raises."""
    assert ErrorContext is _ErrorContext
    with capture_errors() as reporter, request_context(request_id="req-42"):
        assert await process_payment({"amount": 10}, "u1") is None  # success: nothing reported
        assert reporter.recent() == []
        with pytest.raises(Exception, match="Payment failed: card declined"):
            await process_payment({"amount": 500, "card": "4242"}, "u1")
    [entry] = reporter.recent()
    assert entry.message == "Payment failed: card declined"
    ctx = entry.context
    assert ctx.function == "process_payment"
    assert ctx.args == [] and ctx.kwargs["payment_data"]["amount"] == 500
    assert ctx.user_id == "u1" and ctx.request_id == "req-42"


async def test_report_error_reaches_a_user_reporter() -> None:
    """SPEC §10: a reporter is any object with ``async report(exception, context)``, added with register_reporter."""

    class Collector:
        def __init__(self) -> None:
            self.seen: list[tuple[BaseException, ErrorContext]] = []

        async def report(self, exception: BaseException, context: ErrorContext) -> None:
            self.seen.append((exception, context))

    collector = Collector()
    register_reporter(collector)
    try:
        with pytest.raises(Exception, match="Payment failed"):
            await process_payment({"amount": 101}, 7)
    finally:
        unregister_reporter(collector)
    [(exc, ctx)] = collector.seen
    assert "Payment failed" in str(exc) and ctx.user_id == "7" and ctx.request_id is None


def test_update_user_profile_handles_and_reraises() -> None:
    """'Simplified error handling': context is extracted from the calling function; the error re-raises."""
    with capture_errors() as reporter:
        assert update_user_profile("u1", {"name": "Ann"})["name"] == "Ann"
        with pytest.raises(KeyError):
            update_user_profile("nobody", {"name": "Bob", "password": "s3cret"})
    [entry] = reporter.recent()
    assert issubclass(entry.exception_type, KeyError)
    ctx = entry.context
    assert ctx.function == "update_user_profile"
    assert ctx.module == __name__
    assert ctx.user_id == "nobody"
    # the function's own arguments (a password here) are not captured unless asked for
    assert ctx.kwargs == {}
    assert "s3cret" not in repr(ctx.to_dict())  # secrets never reach a reporter


async def test_update_user_profile_inside_event_loop() -> None:
    """handle_exception called under a running loop still delivers the report (flushed by wait_for_reports)."""
    with capture_errors() as reporter:
        with pytest.raises(KeyError):
            update_user_profile("ghost", {})
        await wait_for_reports()
    [entry] = reporter.recent()
    assert entry.context.function == "update_user_profile" and entry.context.user_id == "ghost"


def test_get_product_ensure_not_none() -> None:
    """'Check for null values with automatic exception': a value passes through, None raises 404."""
    assert get_product("p1") == {"id": "p1", "name": "Widget"}
    with pytest.raises(ResourceNotFoundException) as info:
        get_product("nope")
    assert info.value.status_code == 404
    assert info.value.resource_type == "Product" and info.value.resource_id == "nope"
    assert info.value.message == "Product with id nope not found"


def test_validate_user_creation() -> None:
    """'Create specific exceptions': existing email -> 409 on field email; bad format -> 422 at loc email."""
    assert validate_user_creation({"email": "new@example.com"}) is None
    with pytest.raises(ResourceAlreadyExistsException) as exists:
        validate_user_creation({"email": "taken@example.com"})
    assert exists.value.status_code == 409 and exists.value.field == "email"
    assert exists.value.identifier == "taken@example.com"
    with pytest.raises(ValidationException) as invalid:
        validate_user_creation({"email": "not-an-email"})
    assert invalid.value.status_code == 422
    assert invalid.value.errors == [
        {"loc": ["email"], "msg": "Invalid email format", "type": "value_error"}
    ]


def test_other_shortcuts() -> None:
    """The imported shortcuts resource_not_found / permission_denied / business_logic_error build the typed exceptions."""
    assert isinstance(resource_not_found("Order", "9"), ResourceNotFoundException)
    assert resource_not_found("Order", "9").status_code == 404
    denied = permission_denied(action="delete", resource_type="Order", permission="order:delete")
    assert isinstance(denied, PermissionDeniedException) and denied.status_code == 403
    assert denied.permission == "order:delete"
    err = business_logic_error("Out of stock", details={"sku": "A"})
    assert isinstance(err, BusinessException) and err.status_code == 400
    assert err.details == {"sku": "A"}


async def test_error_service_report_error() -> None:
    """'Error Service': get_service("error_service").report_error sends the context to the reporters."""
    with capture_errors() as reporter:
        await handle_process_failure(ValueError("bad row"), {"user_id": "u9", "row": 3})
    [entry] = reporter.recent()
    assert issubclass(entry.exception_type, ValueError)
    assert entry.context.function == "process_data"
    assert entry.context.user_id == "u9" and entry.context.kwargs == {"user_id": "u9", "row": 3}


def test_error_service_permission_denied() -> None:
    """'Create specific exceptions through the service': denied -> 403 with action, type and permission."""
    assert check_authorization("u1", Resource("invoice"), "read") is None
    with pytest.raises(PermissionDeniedException) as info:
        check_authorization("u1", Resource("invoice"), "delete")
    exc = info.value
    assert exc.status_code == 403 and exc.code == "PERMISSION_DENIED"
    assert (exc.action, exc.resource_type, exc.permission) == ("delete", "invoice", "invoice:delete")


# --- §14 usages of the error system --------------------------------------------------------------


class FakeDB:
    """The user's database session (a marker object)."""


async def get_db() -> Any:
    """The user's ``get_db`` dependency."""
    yield FakeDB()


class UserServiceForEndpoint:
    """The user's user service registered as "user_service" (takes ``db``)."""

    def __init__(self, db: Any = None) -> None:
        self.db = db

    async def get_user(self, user_id: str) -> dict[str, Any]:
        if user_id == "explode":
            raise RuntimeError("connection string postgres://admin:pw@db")
        if user_id != "u1":
            raise ResourceNotFoundException(resource_type="User", resource_id=user_id)
        assert isinstance(self.db, FakeDB)
        return {"id": "u1", "name": "Ann"}


def _standard_router() -> APIRouter:
    router = APIRouter()

    # §14 'Standard API Endpoint Error Handling', verbatim
    @router.get("/users/{user_id}")
    async def get_user(
            user_id: str,
            db: AsyncSession = Depends(get_db)
    ):
        try:
            user_service = get_service("user_service", db=db)
            user = await user_service.get_user(user_id)
            return user
        except ResourceNotFoundException as e:
            # App exceptions are automatically converted to proper responses
            # by the exception handlers, so just re-raise
            raise
        except Exception as e:
            # For unexpected errors, report and re-raise
            handle_exception(e, user_id=user_id)
            raise

    return router


AsyncSession = FakeDB  # the user's session type used in annotations


async def test_standard_endpoint_error_handling_over_http() -> None:
    """§14 'Standard API Endpoint Error Handling': 200, 404 as the SPEC §3 body, unexpected -> reported 500."""
    app = guide_app(_standard_router(), ENVIRONMENT="production", secret_key="k" * 64)
    with registered("user_service", UserServiceForEndpoint), capture_errors() as reporter:
        async with app_client(app) as client:
            ok = await client.get("/users/u1")
            missing = await client.get("/users/u2")
            boom = await client.get("/users/explode")
            await wait_for_reports()
    assert ok.status_code == 200 and data_of(ok.json()) == {"id": "u1", "name": "Ann"}
    assert missing.status_code == 404
    assert_error_body(missing.json(), "RESOURCE_NOT_FOUND", "User with id u2 not found")
    assert boom.status_code == 500
    assert_error_body(boom.json(), "INTERNAL_SERVER_ERROR")
    assert "postgres" not in boom.text
    reports = [r for r in reporter.recent() if issubclass(r.exception_type, RuntimeError)]
    assert len(reports) == 1  # handle_exception reported it; the 500 handler does not report twice
    assert reports[0].context.user_id == "explode"
    assert reports[0].context.request_id == boom.json()["request_id"]


@dataclass
class Product:
    """The user's product row."""

    id: str
    stock: int


class ProductRepo:
    """The user's async product repository."""

    def __init__(self, products: dict[str, Product]) -> None:
        self.products = products

    async def get_by_id(self, product_id: str) -> Product | None:
        return self.products.get(product_id)


@dataclass
class Order:
    """The user's order."""

    id: str


new_order = Order("o1")  # what the guide's elided "Process order..." step produces


def test_order_service_uses_error_service() -> None:
    """§14 'Service Layer Error Handling and Logging': 404 for an unknown product, 400 with details for low stock."""
    from crown_nexus.logging import get_logger

    # §14, verbatim
    class OrderService:
        def __init__(self, db):
            self.db = db
            self.error_service = get_service("error_service")
            self.logger = get_logger("app.domains.orders.service")

        async def create_order(self, order_data, user_id):
            self.logger.info("Creating order", user_id=user_id, items_count=len(order_data["items"]))

            # Validate inventory availability
            for item in order_data["items"]:
                product = await self.product_repository.get_by_id(item["product_id"])
                if not product:
                    self.logger.warning("Product not found", product_id=item["product_id"])
                    raise self.error_service.resource_not_found(
                        resource_type="Product",
                        resource_id=item["product_id"]
                    )

                if product.stock < item["quantity"]:
                    self.logger.warning(
                        "Insufficient inventory",
                        product_id=product.id,
                        requested=item["quantity"],
                        available=product.stock
                    )
                    raise self.error_service.business_logic_error(
                        message="Insufficient inventory",
                        details={
                            "product_id": product.id,
                            "requested": item["quantity"],
                            "available": product.stock
                        }
                    )

            # Process order...
            self.logger.info("Order created successfully", order_id=new_order.id)
            return new_order

    import asyncio

    service = OrderService(FakeDB())
    service.product_repository = ProductRepo({"p1": Product("p1", stock=2)})
    # the guide elides "Process order..." (the user's code that makes new_order)
    assert asyncio.run(service.create_order({"items": [{"product_id": "p1", "quantity": 2}]}, "u1")) is new_order
    with pytest.raises(ResourceNotFoundException) as missing:
        asyncio.run(service.create_order({"items": [{"product_id": "p9", "quantity": 1}]}, "u1"))
    assert missing.value.status_code == 404 and missing.value.resource_id == "p9"
    with pytest.raises(BusinessException) as short:
        asyncio.run(service.create_order({"items": [{"product_id": "p1", "quantity": 5}]}, "u1"))
    assert short.value.status_code == 400 and short.value.message == "Insufficient inventory"
    assert short.value.details == {"product_id": "p1", "requested": 5, "available": 2}


async def test_list_products_error_handling_over_http() -> None:
    """§14 'API Endpoint Error Handling with Rate Limiting': 429 and 404 pass through as SPEC §3 bodies."""
    from crown_nexus.core import pagination
    from crown_nexus.core.exceptions import RateLimitExceededException

    OffsetPaginationParams = pagination.OffsetPaginationParams
    SortField = pagination.SortField
    SortDirection = pagination.SortDirection

    router = APIRouter()

    # §14, verbatim
    @router.get("/products")
    async def list_products(
            request: Request,
            page: int = 1,
            page_size: int = 20,
            db: AsyncSession = Depends(get_db)
    ):
        try:
            # Get product service
            product_service = get_service("product_service", db=db)

            # Apply pagination
            pagination_params = OffsetPaginationParams(
                page=page,
                page_size=page_size,
                sort=[SortField(field="created_at", direction=SortDirection.DESC)]
            )

            result = await product_service.list_products(pagination_params)
            return result
        except RateLimitExceededException as e:
            # This exception is already properly formatted by the exception handlers
            raise
        except ResourceNotFoundException as e:
            # App exceptions are automatically converted to proper responses
            raise
        except Exception as e:
            # For unexpected errors, report and re-raise
            handle_exception(e, request_id=getattr(request.state, "request_id", None))
            raise

    class ProductService:
        def __init__(self, db: Any = None) -> None:
            self.db = db

        async def list_products(self, params: Any) -> dict[str, Any]:
            if params.page == 9:
                raise RateLimitExceededException(message="Slow down", reset_seconds=3)
            if params.page == 8:
                raise ResourceNotFoundException(resource_type="Page", resource_id=8)
            if params.page == 7:
                raise RuntimeError("secret internals")
            return {"items": [], "page": params.page}

    app = guide_app(router)
    with registered("product_service", ProductService), capture_errors() as reporter:
        async with app_client(app) as client:
            ok = await client.get("/products", params={"page": 2})
            limited = await client.get("/products", params={"page": 9})
            missing = await client.get("/products", params={"page": 8})
            boom = await client.get("/products", params={"page": 7})
            await wait_for_reports()
    assert ok.status_code == 200 and data_of(ok.json())["page"] == 2
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert_error_body(limited.json(), "RATE_LIMIT_EXCEEDED", "Slow down")
    assert missing.status_code == 404
    assert_error_body(missing.json(), "RESOURCE_NOT_FOUND")
    assert boom.status_code == 500 and "secret internals" not in boom.text
    assert [r.exception_type for r in reporter.recent()] == [RuntimeError]
