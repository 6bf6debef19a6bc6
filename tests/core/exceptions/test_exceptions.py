"""Guide §2 exceptions: constructors as the guide calls them, SPEC §3 statuses, codes, headers."""

from __future__ import annotations

import math
from datetime import datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import (
    AppException,
    AuthenticationException,
    BusinessException,
    ConfigurationException,
    DatabaseException,
    ErrorCode,
    InvalidStateException,
    NetworkException,
    OperationNotAllowedException,
    PermissionDeniedException,
    RateLimitExceededException,
    RateLimitException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    SecurityException,
    ServiceException,
    TimeoutException,
    ValidationException,
    render_exception,
)

GUIDE_CASES = [
    (
        lambda: ResourceNotFoundException(
            resource_type="User", resource_id="123", message="User not found"
        ),
        404,
        ErrorCode.RESOURCE_NOT_FOUND,
    ),
    (
        lambda: ResourceAlreadyExistsException(
            resource_type="User", identifier="user@example.com", field="email"
        ),
        409,
        ErrorCode.RESOURCE_ALREADY_EXISTS,
    ),
    (
        lambda: AuthenticationException(
            message="Invalid credentials", details={"reason": "expired_token"}
        ),
        401,
        ErrorCode.AUTHENTICATION_ERROR,
    ),
    (
        lambda: PermissionDeniedException(
            action="edit", resource_type="Document", permission="documents:write"
        ),
        403,
        ErrorCode.PERMISSION_DENIED,
    ),
    (
        lambda: BusinessException(
            message="Cannot complete order", details={"reason": "insufficient_inventory"}
        ),
        400,
        ErrorCode.BUSINESS_LOGIC_ERROR,
    ),
    (
        lambda: InvalidStateException(
            message="Cannot cancel approved order",
            current_state="approved",
            expected_state="pending",
        ),
        409,
        ErrorCode.INVALID_STATE,
    ),
    (
        lambda: OperationNotAllowedException(
            message="Cannot delete system user", operation="delete", reason="system_account"
        ),
        403,
        ErrorCode.OPERATION_NOT_ALLOWED,
    ),
    (
        lambda: ValidationException(
            message="Validation failed",
            errors=[{"loc": ["email"], "msg": "Invalid email format", "type": "value_error.email"}],
        ),
        422,
        ErrorCode.VALIDATION_ERROR,
    ),
    (
        lambda: DatabaseException(message="Failed to insert record", details={"table": "users"}),
        500,
        ErrorCode.DATABASE_ERROR,
    ),
    (
        lambda: ServiceException(message="Payment service unavailable", service_name="stripe"),
        502,
        ErrorCode.SERVICE_ERROR,
    ),
    (lambda: NetworkException(message="Upstream down"), 503, ErrorCode.NETWORK_ERROR),
    (lambda: ConfigurationException(message="Missing key"), 500, ErrorCode.CONFIGURATION_ERROR),
    (
        lambda: SecurityException(
            message="CSRF validation failed",
            code=ErrorCode.SECURITY_ERROR,
            details={"error": "Invalid or expired CSRF token"},
        ),
        403,
        ErrorCode.SECURITY_ERROR,
    ),
    (
        lambda: RateLimitException(message="Too many requests", headers={"Retry-After": "60"}),
        429,
        ErrorCode.RATE_LIMIT_EXCEEDED,
    ),
    (lambda: TimeoutException(), 504, ErrorCode.TIMEOUT),
]


@pytest.mark.parametrize(("factory", "status", "code"), GUIDE_CASES)
def test_guide_constructor_status_and_code(factory, status, code) -> None:
    """Each guide §2 call builds an AppException with the SPEC §3 status and code."""
    exc = factory()
    assert isinstance(exc, AppException)
    assert exc.status_code == status
    assert exc.code == code
    assert exc.code_value == code.value
    assert str(exc) == exc.message


@pytest.mark.parametrize(("factory", "status", "code"), GUIDE_CASES)
def test_response_body_shape(factory, status, code) -> None:
    """to_response_body has exactly the SPEC §3 keys with an ISO-8601 UTC timestamp."""
    body = factory().to_response_body(request_id="req-1")
    assert set(body) == {"success", "message", "code", "details", "request_id", "timestamp"}
    assert body["success"] is False
    assert body["code"] == code.value
    assert body["request_id"] == "req-1"
    ts = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert ts.utcoffset().total_seconds() == 0
    orjson.dumps(body)


def test_resource_messages_and_details() -> None:
    """Default messages name the resource; details carry the identifying fields."""
    nf = ResourceNotFoundException(resource_type="Product", resource_id=42)
    assert nf.message == "Product with id 42 not found"
    assert nf.details == {"resource_type": "Product", "resource_id": "42"}
    ex = ResourceAlreadyExistsException(resource_type="User", identifier="a@b.c", field="email")
    assert "email" in ex.message and "a@b.c" in ex.message
    assert ex.details == {"resource_type": "User", "field": "email", "identifier": "a@b.c"}
    assert ResourceAlreadyExistsException(resource_type="User", identifier=1).field == "id"


def test_authentication_always_sends_www_authenticate() -> None:
    """401 carries WWW-Authenticate: Bearer even when other headers are given."""
    assert AuthenticationException().headers == {"WWW-Authenticate": "Bearer"}
    exc = AuthenticationException(message="x", headers={"X-Extra": "1"})
    assert exc.headers["WWW-Authenticate"] == "Bearer"
    assert exc.headers["X-Extra"] == "1"


def test_permission_denied_variants() -> None:
    """PermissionDeniedException works with only a message and with action/resource/permission."""
    only = PermissionDeniedException(message="Cannot modify another user's settings")
    assert only.message == "Cannot modify another user's settings"
    assert only.details is None
    full = PermissionDeniedException(
        message="You don't have permission to create products",
        action="create",
        resource_type="product",
        permission="product:create",
    )
    assert full.details == {
        "action": "create",
        "resource_type": "product",
        "permission": "product:create",
    }
    assert full.permission == "product:create"
    generated = PermissionDeniedException(action="edit", resource_type="Document")
    assert "edit" in generated.message and "Document" in generated.message


def test_validation_exception_errors_are_details() -> None:
    """ValidationException keeps .errors (loc/msg/type) and uses them as details; positional message works."""
    exc = ValidationException(
        "Validation failed",
        errors=[
            {"loc": ["username"], "msg": "too short", "type": "value_error.length", "input": "ab"},
            {"loc": "email", "msg": "bad", "type": "value_error.email"},
        ],
    )
    assert exc.message == "Validation failed"
    assert exc.errors == [
        {"loc": ["username"], "msg": "too short", "type": "value_error.length"},
        {"loc": ["email"], "msg": "bad", "type": "value_error.email"},
    ]
    assert exc.details == exc.errors
    assert ValidationException().details == []


def test_business_subclasses() -> None:
    """InvalidState and OperationNotAllowed are BusinessExceptions with their own details."""
    st_exc = InvalidStateException(message="m", current_state="approved", expected_state="pending")
    assert isinstance(st_exc, BusinessException)
    assert st_exc.details == {"current_state": "approved", "expected_state": "pending"}
    op = OperationNotAllowedException(message="m", operation="delete", reason="system_account")
    assert op.details == {"operation": "delete", "reason": "system_account"}


def test_service_and_security_details() -> None:
    """ServiceException records the service name; SecurityException keeps given code and details."""
    assert ServiceException(message="down", service_name="stripe").details == {
        "service_name": "stripe"
    }
    sec = SecurityException(message="Invalid CSRF token")
    assert sec.code == ErrorCode.SECURITY_ERROR and sec.details is None


def test_custom_string_code() -> None:
    """A subsystem may use its own string code."""
    exc = AppException("boom", code="CACHE_MISS_STORM", status_code=503)
    assert exc.to_response_body()["code"] == "CACHE_MISS_STORM"
    assert exc.status_code == 503


def test_rate_limit_headers_in_details_and_retry_after() -> None:
    """Headers live in .headers and .details['headers']; Retry-After is always present."""
    exc = RateLimitException(message="Too many requests", headers={"Retry-After": "60"})
    assert exc.headers == {"Retry-After": "60"}
    assert exc.details == {"headers": {"Retry-After": "60"}}
    bare = RateLimitException()
    assert bare.headers["Retry-After"] == "60"
    from_reset = RateLimitExceededException(
        message="Email sending limit exceeded",
        details={"user_id": "u", "limit": 10, "window": "1 hour"},
        reset_seconds=2.2,
    )
    assert from_reset.headers["Retry-After"] == "3"
    assert from_reset.details["limit"] == 10
    assert from_reset.details["headers"]["Retry-After"] == "3"
    assert from_reset.retry_after == 3
    assert isinstance(from_reset, RateLimitException)
    zero = RateLimitException(reset_seconds=0)
    assert zero.headers["Retry-After"] == "1"


def test_rate_limit_guide_headers_kept() -> None:
    """The guide's X-RateLimit-* headers travel with Retry-After."""
    headers = {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "60",
        "Retry-After": "60",
    }
    exc = RateLimitExceededException(
        message="Custom rate limit exceeded",
        details={"path": "/x"},
        headers=headers,
        reset_seconds=60,
    )
    assert exc.headers == headers
    assert exc.details["headers"] == headers
    assert exc.details["path"] == "/x"


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**6), max_value=10**9),
    )
)
def test_retry_after_is_whole_seconds_at_least_one(reset) -> None:
    """Whatever reset_seconds is, Retry-After is a whole number of seconds >= 1."""
    exc = RateLimitException(reset_seconds=reset)
    value = int(exc.headers["Retry-After"])
    assert value >= 1
    if reset is not None and isinstance(reset, int | float) and math.isfinite(reset) and reset >= 1:
        assert value == math.ceil(reset)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    message=st.text(),
    details=st.one_of(st.none(), st.dictionaries(st.text(), json_values), st.lists(json_values)),
)
def test_render_never_fails_and_is_json(message, details) -> None:
    """Any message and details render to valid JSON with the SPEC §3 keys."""
    status, body, headers = render_exception(BusinessException(message=message, details=details))
    assert status == 400
    decoded = orjson.loads(body)
    assert decoded["message"] == message
    assert decoded["code"] == "BUSINESS_LOGIC_ERROR"
    assert decoded["details"] is None or isinstance(decoded["details"], dict | list)


def test_render_unexpected_hides_internals() -> None:
    """Unexpected exceptions: 500, never their text; the type only outside production."""
    exc = RuntimeError("password=hunter2 at db.internal")
    status, body, _ = render_exception(exc, production=True)
    decoded = orjson.loads(body)
    assert status == 500
    assert decoded["code"] == "INTERNAL_SERVER_ERROR"
    assert "hunter2" not in body.decode() and "RuntimeError" not in body.decode()
    _, dev_body, _ = render_exception(exc, production=False)
    assert "RuntimeError" in dev_body.decode() and "hunter2" not in dev_body.decode()


def test_foreign_enum_codes_render_as_values() -> None:
    """A subsystem's own (str, Enum) code renders as its value, not 'Class.MEMBER'."""
    import enum

    class LegacyCode(str, enum.Enum):  # noqa: UP042 - the point of the test
        THING_BROKE = "THING_BROKE"

    exc = AppException("x", code=LegacyCode.THING_BROKE)
    assert exc.code_value == "THING_BROKE"
    assert exc.to_response_body()["code"] == "THING_BROKE"


@settings(max_examples=150, deadline=None)
@given(
    status=st.integers(min_value=400, max_value=599),
    detail=st.one_of(st.none(), st.text(), json_values),
    headers=st.one_of(
        st.none(),
        st.dictionaries(
            st.from_regex(r"X-[A-Za-z]{1,8}", fullmatch=True),
            st.text(alphabet="abc123", max_size=8),
            max_size=3,
        ),
    ),
)
def test_http_exception_any_detail_renders(status, detail, headers) -> None:
    """Any HTTPException status, detail and headers render as a valid SPEC §3 body."""
    from starlette.exceptions import HTTPException

    out_status, body, out_headers = render_exception(
        HTTPException(status, detail=detail, headers=headers)
    )
    decoded = orjson.loads(body)
    assert out_status == status
    assert (
        decoded["success"] is False and isinstance(decoded["message"], str) and decoded["message"]
    )
    assert isinstance(decoded["code"], str)
    assert decoded["details"] is None or isinstance(decoded["details"], dict | list)
    assert out_headers == {**dict(headers or {}), "X-Error-Code": decoded["code"]}


def test_validation_exception_from_pydantic_drops_input() -> None:
    """from_errors turns a pydantic ValidationError into loc/msg/type items without the input."""
    from pydantic import BaseModel, ValidationError

    class Signup(BaseModel):
        email: str
        age: int

    try:
        Signup(email=None, age="secret-password")
    except ValidationError as err:
        exc = ValidationException.from_errors(err)
    assert exc.status_code == 422
    assert [e["loc"] for e in exc.errors] == [["email"], ["age"]]
    assert all(set(e) == {"loc", "msg", "type"} for e in exc.errors)
    assert "secret-password" not in str(exc.to_response_body())
    assert ValidationException.from_errors([{"loc": ["x"], "msg": "m", "type": "t"}]).errors[0][
        "loc"
    ] == ["x"]


def test_scalar_details_are_wrapped() -> None:
    """details that are neither dict nor list come out as {"detail": value}; tuples as lists."""
    _, body, _ = render_exception(AppException("x", details=42), production=False)  # type: ignore[arg-type]
    assert orjson.loads(body)["details"] == {"detail": 42}
    _, body, _ = render_exception(AppException("x", details=(1, 2)), production=False)  # type: ignore[arg-type]
    assert orjson.loads(body)["details"] == [1, 2]
