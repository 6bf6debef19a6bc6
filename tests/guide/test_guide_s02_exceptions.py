"""Guide §2 (Exception System): every example run as written, then rendered over HTTP via setup_app."""
# ruff: noqa: I001 - the guide's import blocks are copied verbatim, in the guide's order

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import APIRouter

from crown_nexus.core.exceptions import AppException, ErrorCode
from crown_nexus.testing import app_client
from tests.guide._support import assert_error_body, guide_app

# --- the guide's blocks, one function per `raise`, statements copied verbatim ----------------


def resource_not_found() -> None:
    """§2 'Resource Exceptions', first raise."""
    from crown_nexus.core.exceptions import ResourceNotFoundException

    # When a resource isn't found
    raise ResourceNotFoundException(
        resource_type="User",
        resource_id="123",
        message="User not found"  # Optional - default message generated if omitted
    )


def resource_not_found_default_message() -> None:
    """§2 'Resource Exceptions' with the optional message omitted (the comment's promise)."""
    from crown_nexus.core.exceptions import ResourceNotFoundException

    raise ResourceNotFoundException(
        resource_type="User",
        resource_id="123",
    )


def resource_already_exists() -> None:
    """§2 'Resource Exceptions', second raise."""
    from crown_nexus.core.exceptions import ResourceAlreadyExistsException

    # When a resource already exists
    raise ResourceAlreadyExistsException(
        resource_type="User",
        identifier="user@example.com",
        field="email"  # Default is "id"
    )


def resource_already_exists_default_field() -> None:
    """§2 'Resource Exceptions' second raise with ``field`` left to its default."""
    from crown_nexus.core.exceptions import ResourceAlreadyExistsException

    raise ResourceAlreadyExistsException(
        resource_type="User",
        identifier="42",
    )


def authentication_failure() -> None:
    """§2 'Authentication and Authorization Exceptions', first raise."""
    from crown_nexus.core.exceptions import AuthenticationException

    # Authentication failures
    raise AuthenticationException(
        message="Invalid credentials",
        details={"reason": "expired_token"}
    )


def permission_issue() -> None:
    """§2 'Authentication and Authorization Exceptions', second raise."""
    from crown_nexus.core.exceptions import PermissionDeniedException

    # Permission issues
    raise PermissionDeniedException(
        action="edit",
        resource_type="Document",
        permission="documents:write"
    )


def business_violation() -> None:
    """§2 'Business Logic Exceptions', first raise."""
    from crown_nexus.core.exceptions import BusinessException

    # General business rule violation
    raise BusinessException(
        message="Cannot complete order",
        details={"reason": "insufficient_inventory"}
    )


def invalid_state() -> None:
    """§2 'Business Logic Exceptions', second raise."""
    from crown_nexus.core.exceptions import InvalidStateException

    # Invalid state transitions
    raise InvalidStateException(
        message="Cannot cancel approved order",
        current_state="approved",
        expected_state="pending"
    )


def operation_not_allowed() -> None:
    """§2 'Business Logic Exceptions', third raise."""
    from crown_nexus.core.exceptions import OperationNotAllowedException

    # Disallowed operations
    raise OperationNotAllowedException(
        message="Cannot delete system user",
        operation="delete",
        reason="system_account"
    )


def single_validation_error() -> None:
    """§2 'Validation Exceptions', first raise."""
    from crown_nexus.core.exceptions import ValidationException

    # Single validation error
    raise ValidationException(
        message="Validation failed",
        errors=[
            {
                "loc": ["email"],
                "msg": "Invalid email format",
                "type": "value_error.email"
            }
        ]
    )


def multiple_validation_errors() -> None:
    """§2 'Validation Exceptions', second raise."""
    from crown_nexus.core.exceptions import ValidationException

    # Multiple validation errors
    raise ValidationException(
        message="Validation failed",
        errors=[
            {
                "loc": ["username"],
                "msg": "Username must be at least 3 characters",
                "type": "value_error.length"
            },
            {
                "loc": ["email"],
                "msg": "Invalid email format",
                "type": "value_error.email"
            }
        ]
    )


def database_error() -> None:
    """§2 'System Exceptions', first raise."""
    from crown_nexus.core.exceptions import (
        DatabaseException,
        NetworkException,  # noqa: F401 - imported as the guide does
        ServiceException,  # noqa: F401
        ConfigurationException,  # noqa: F401
        SecurityException,  # noqa: F401
        RateLimitException  # noqa: F401
    )

    # Database errors
    raise DatabaseException(
        message="Failed to insert record",
        details={"table": "users"}
    )


def service_error() -> None:
    """§2 'System Exceptions', second raise."""
    from crown_nexus.core.exceptions import ServiceException

    # External service errors
    raise ServiceException(
        message="Payment service unavailable",
        service_name="stripe"
    )


def rate_limited() -> None:
    """§2 'System Exceptions', third raise."""
    from crown_nexus.core.exceptions import RateLimitException

    # Rate limiting
    raise RateLimitException(
        message="Too many requests",
        headers={"Retry-After": "60"}
    )


# (example, HTTP status, code, message) — status and code from SPEC §3, message from the guide
CASES: list[tuple[Callable[[], None], int, str, str]] = [
    (resource_not_found, 404, "RESOURCE_NOT_FOUND", "User not found"),
    (resource_not_found_default_message, 404, "RESOURCE_NOT_FOUND", "User with id 123 not found"),
    (resource_already_exists, 409, "RESOURCE_ALREADY_EXISTS", "User with email user@example.com already exists"),
    (resource_already_exists_default_field, 409, "RESOURCE_ALREADY_EXISTS", "User with id 42 already exists"),
    (authentication_failure, 401, "AUTHENTICATION_ERROR", "Invalid credentials"),
    (permission_issue, 403, "PERMISSION_DENIED", "Permission denied: cannot edit Document"),
    (business_violation, 400, "BUSINESS_LOGIC_ERROR", "Cannot complete order"),
    (invalid_state, 409, "INVALID_STATE", "Cannot cancel approved order"),
    (operation_not_allowed, 403, "OPERATION_NOT_ALLOWED", "Cannot delete system user"),
    (single_validation_error, 422, "VALIDATION_ERROR", "Validation failed"),
    (multiple_validation_errors, 422, "VALIDATION_ERROR", "Validation failed"),
    (database_error, 500, "DATABASE_ERROR", "Failed to insert record"),
    (service_error, 502, "SERVICE_ERROR", "Payment service unavailable"),
    (rate_limited, 429, "RATE_LIMIT_EXCEEDED", "Too many requests"),
]
IDS = [case[0].__name__ for case in CASES]


@pytest.mark.parametrize(("example", "status", "code", "message"), CASES, ids=IDS)
def test_example_raises_typed_exception(
    example: Callable[[], None], status: int, code: str, message: str
) -> None:
    """Each §2 raise gives an AppException with SPEC §3's status, code and the guide's message."""
    with pytest.raises(AppException) as info:
        example()
    exc = info.value
    assert exc.status_code == status
    assert exc.code == code and ErrorCode(code) == exc.code
    assert exc.message == message
    assert str(exc) == message


def test_example_fields() -> None:
    """The keyword arguments of the §2 examples are kept on the exception and in its details."""
    with pytest.raises(AppException) as info:
        resource_not_found()
    assert info.value.resource_type == "User" and info.value.resource_id == "123"
    assert info.value.details == {"resource_type": "User", "resource_id": "123"}

    with pytest.raises(AppException) as info:
        resource_already_exists()
    assert info.value.field == "email" and info.value.identifier == "user@example.com"
    with pytest.raises(AppException) as info:
        resource_already_exists_default_field()
    assert info.value.field == "id"

    with pytest.raises(AppException) as info:
        authentication_failure()
    assert info.value.details == {"reason": "expired_token"}
    assert info.value.headers["WWW-Authenticate"] == "Bearer"

    with pytest.raises(AppException) as info:
        permission_issue()
    assert (info.value.action, info.value.resource_type, info.value.permission) == (
        "edit",
        "Document",
        "documents:write",
    )
    assert info.value.details == {
        "action": "edit",
        "resource_type": "Document",
        "permission": "documents:write",
    }

    with pytest.raises(AppException) as info:
        business_violation()
    assert info.value.details == {"reason": "insufficient_inventory"}

    with pytest.raises(AppException) as info:
        invalid_state()
    assert info.value.current_state == "approved" and info.value.expected_state == "pending"
    assert info.value.details == {"current_state": "approved", "expected_state": "pending"}

    with pytest.raises(AppException) as info:
        operation_not_allowed()
    assert info.value.operation == "delete" and info.value.reason == "system_account"

    with pytest.raises(AppException) as info:
        multiple_validation_errors()
    assert [e["loc"] for e in info.value.errors] == [["username"], ["email"]]
    assert info.value.details == info.value.errors

    with pytest.raises(AppException) as info:
        database_error()
    assert info.value.details == {"table": "users"}

    with pytest.raises(AppException) as info:
        service_error()
    assert info.value.service_name == "stripe"
    assert info.value.details == {"service_name": "stripe"}

    with pytest.raises(AppException) as info:
        rate_limited()
    assert info.value.headers["Retry-After"] == "60"
    assert info.value.details["headers"]["Retry-After"] == "60"
    assert info.value.retry_after == 60


def test_other_system_exceptions_importable_and_typed() -> None:
    """The §2 'System Exceptions' import list: Network/Configuration/Security map per SPEC §3."""
    from crown_nexus.core.exceptions import (
        ConfigurationException,
        NetworkException,
        SecurityException,
    )

    assert (NetworkException().status_code, NetworkException().code) == (503, "NETWORK_ERROR")
    assert (ConfigurationException().status_code, ConfigurationException().code) == (
        500,
        "CONFIGURATION_ERROR",
    )
    assert (SecurityException().status_code, SecurityException().code) == (403, "SECURITY_ERROR")


def _router() -> APIRouter:
    router = APIRouter()
    for example, *_ in CASES:

        def endpoint(example: Callable[[], None] = example) -> None:
            example()

        router.add_api_route(f"/raise/{example.__name__}", endpoint, methods=["GET"])
    return router


async def test_examples_render_spec_error_body_over_http() -> None:
    """Raised from an endpoint under setup_app, each §2 example gives its status and the SPEC §3 body."""
    app = guide_app(_router())
    async with app_client(app) as client:
        for example, status, code, message in CASES:
            response = await client.get(f"/raise/{example.__name__}")
            assert response.status_code == status, example.__name__
            body = response.json()
            # 5xx AppExceptions keep their own message: it is the application's, not an internal
            assert_error_body(body, code, message)
            assert body["request_id"] == response.headers["x-request-id"]
            if example is authentication_failure:
                assert response.headers["www-authenticate"] == "Bearer"
                assert body["details"] == {"reason": "expired_token"}
            if example is rate_limited:
                assert response.headers["retry-after"] == "60"
            if example is multiple_validation_errors:
                assert body["details"] == [
                    {"loc": ["username"], "msg": "Username must be at least 3 characters", "type": "value_error.length"},
                    {"loc": ["email"], "msg": "Invalid email format", "type": "value_error.email"},
                ]
            if example is service_error:
                assert body["details"] == {"service_name": "stripe"}


async def test_plain_exception_does_not_leak_in_production() -> None:
    """SPEC §3: any other exception is a 500 INTERNAL_SERVER_ERROR whose text never leaks in production."""
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("db password is hunter2")

    app = guide_app(router, ENVIRONMENT="production", secret_key="x" * 64)
    async with app_client(app) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert_error_body(body, "INTERNAL_SERVER_ERROR")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


# --- §14 constructions of the exception system ----------------------------------------------------


def unique_email_error() -> None:
    """§14 'Validation in Services': positional message plus an errors list."""
    from crown_nexus.core.exceptions import ValidationException

    raise ValidationException(
        "Validation failed",
        errors=[{
            "loc": ["email"],
            "msg": "Email already registered",
            "type": "unique_error"
        }]
    )


def report_limit_error() -> None:
    """§14 'Rate Limited Service Methods': RateLimitExceededException with details only."""
    from crown_nexus.core.exceptions import RateLimitExceededException

    user_id, limit, report_type = "u1", 5, "sales"
    raise RateLimitExceededException(
        message="Report generation limit exceeded",
        details={
            "user_id": user_id,
            "limit": limit,
            "window": "1 hour",
            "report_type": report_type
        }
    )


def test_section14_constructions() -> None:
    """The §14 forms build the same typed exceptions: errors readable as ``e.errors``, Retry-After present."""
    with pytest.raises(AppException) as info:
        unique_email_error()
    assert info.value.status_code == 422 and info.value.message == "Validation failed"
    assert info.value.errors == [
        {"loc": ["email"], "msg": "Email already registered", "type": "unique_error"}
    ]
    with pytest.raises(AppException) as info:
        report_limit_error()
    exc = info.value
    assert exc.status_code == 429 and exc.code == "RATE_LIMIT_EXCEEDED"
    assert int(exc.headers["Retry-After"]) >= 1
    assert exc.details["limit"] == 5 and exc.details["headers"] == exc.headers


async def test_section14_constructions_over_http() -> None:
    """Raised from endpoints they render 422 / 429 (with Retry-After) in the SPEC §3 body."""
    router = APIRouter()
    router.add_api_route("/unique", unique_email_error, methods=["POST"])
    router.add_api_route("/report", report_limit_error, methods=["POST"])
    app = guide_app(router)
    async with app_client(app) as client:
        unique = await client.post("/unique")
        limited = await client.post("/report")
    assert unique.status_code == 422
    assert_error_body(unique.json(), "VALIDATION_ERROR", "Validation failed")
    assert unique.json()["details"][0]["type"] == "unique_error"
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert_error_body(limited.json(), "RATE_LIMIT_EXCEEDED", "Report generation limit exceeded")
    assert limited.json()["details"]["window"] == "1 hour"
