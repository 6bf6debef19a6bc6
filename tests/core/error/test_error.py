"""Error reporting: report_error, handle_exception, reporters, redaction, shortcuts, error_service."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.dependency_manager import get_service
from crown_nexus.core.error import (
    REDACTED,
    AuditService,
    ErrorContext,
    ErrorReporter,
    InMemoryReporter,
    LoggingErrorReporter,
    MemoryErrorReporter,
    business_logic_error,
    ensure_not_none,
    get_reporters,
    handle_exception,
    permission_denied,
    redact,
    register_reporter,
    report_error,
    resource_already_exists,
    resource_not_found,
    unregister_reporter,
    validation_error,
    wait_for_reports,
)
from crown_nexus.core.error.base import ErrorContext as BaseErrorContext
from crown_nexus.core.exceptions import (
    BusinessException,
    PermissionDeniedException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
    ValidationException,
)
from crown_nexus.logging import request_context
from crown_nexus.testing import capture_errors, capture_logs


@pytest.fixture
def memory():
    """An InMemoryReporter registered for the test."""
    with capture_errors() as reporter:
        yield reporter


class AsyncOnlyReporter:
    """A user reporter with only the async protocol method."""

    def __init__(self) -> None:
        self.seen: list[tuple[BaseException, ErrorContext]] = []

    async def report(self, exception, context):
        await asyncio.sleep(0)
        self.seen.append((exception, context))


class FailingReporter:
    """A reporter that always raises."""

    async def report(self, exception, context):
        raise RuntimeError("reporter down")


def test_error_context_is_the_base_module_class() -> None:
    """ErrorContext is importable from core.error.base (the guide's path) and is the same class."""
    assert ErrorContext is BaseErrorContext
    ctx = ErrorContext(
        function="process_payment", args=[], kwargs={"a": 1}, user_id=5, request_id=None
    )
    assert ctx.user_id == "5"
    assert ctx.to_dict()["function"] == "process_payment"


def test_default_reporter_is_logging() -> None:
    """The logging reporter is registered by default and satisfies the protocol."""
    reporters = get_reporters()
    assert any(isinstance(r, LoggingErrorReporter) for r in reporters)
    assert isinstance(InMemoryReporter(), ErrorReporter)
    assert MemoryErrorReporter is InMemoryReporter


async def test_report_error_reaches_every_reporter_despite_failures(memory) -> None:
    """A failing reporter never stops the others."""
    failing = register_reporter(FailingReporter())
    user = register_reporter(AsyncOnlyReporter())
    try:
        exc = ValueError("payment failed")
        ctx = ErrorContext(
            function="process_payment", kwargs={"payment_data": {"amount": 5}}, user_id="u1"
        )
        await report_error(exc, ctx)
    finally:
        unregister_reporter(failing)
        unregister_reporter(user)
    assert memory.recent()[-1].exception_type is ValueError
    assert memory.recent()[-1].message == "payment failed"
    assert memory.recent()[-1].context.user_id == "u1"
    assert user.seen and user.seen[0][0] is exc


async def test_report_error_accepts_dict_context_and_redacts(memory) -> None:
    """A dict context becomes an ErrorContext; secrets in it are redacted."""
    await report_error(
        RuntimeError("x"),
        {
            "event_data": {"password": "hunter2", "card": "4111 1111 1111 1111", "ok": 1},
            "user_id": 9,
            "kwargs": {"api_key": "abc", "Authorization": "Bearer t"},
        },
    )
    ctx = memory.recent()[-1].context
    assert ctx.user_id == "9"
    assert ctx.extra["event_data"]["password"] == REDACTED
    assert ctx.extra["event_data"]["card"] == REDACTED
    assert ctx.extra["event_data"]["ok"] == 1
    assert ctx.kwargs == {"api_key": REDACTED, "Authorization": REDACTED}


async def test_report_error_fills_request_id(memory) -> None:
    """The current request id joins the context when none is given."""
    with request_context(request_id="req-42"):
        await report_error(RuntimeError("x"))
    assert memory.recent()[-1].context.request_id == "req-42"


def update_user_profile(user_id, data, secret_token=None):
    """Guide §3's sync function that reports and re-raises."""
    try:
        raise KeyError("missing")
    except Exception as e:
        handle_exception(e, user_id=user_id)
        raise


def test_handle_exception_without_loop_finds_caller(memory) -> None:
    """handle_exception (no loop) reports synchronously with the caller's name, not its arguments."""
    user_reporter = register_reporter(AsyncOnlyReporter())
    try:
        with pytest.raises(KeyError):
            update_user_profile("u7", {"name": "n", "password": "p"}, secret_token="t")
    finally:
        unregister_reporter(user_reporter)
    entry = memory.recent()[-1]
    ctx = entry.context
    assert ctx.function == "update_user_profile"
    assert ctx.module == __name__
    assert ctx.user_id == "u7"
    assert ctx.kwargs == {}, "the caller's arguments are captured only on request"
    assert user_reporter.seen, "async-only reporters are reported to without a loop too"


def update_user_profile_captured(user_id, data, secret_token=None):
    """update_user_profile that opts in to capturing its arguments."""
    try:
        raise KeyError("missing")
    except Exception as e:
        handle_exception(e, capture_args=True, user_id=user_id)
        raise


def test_handle_exception_captures_arguments_on_request_redacted(memory) -> None:
    """With capture_args=True the caller's arguments join the context, secrets redacted."""
    with pytest.raises(KeyError):
        update_user_profile_captured("u7", {"name": "n", "password": "p"}, secret_token="t")
    ctx = memory.recent()[-1].context
    assert ctx.kwargs["user_id"] == "u7"
    assert ctx.kwargs["data"] == {"name": "n", "password": REDACTED}
    assert ctx.kwargs["secret_token"] == REDACTED


async def test_handle_exception_in_loop_schedules_report(memory) -> None:
    """Inside a running loop the report is scheduled; wait_for_reports flushes it."""

    class OrderService:
        def create(self, order_id):
            try:
                raise ValueError("bad order")
            except ValueError as e:
                handle_exception(e, order_id=order_id, request_id="r1")

    OrderService().create(3)
    await wait_for_reports()
    ctx = memory.recent()[-1].context
    assert ctx.function.endswith("OrderService.create")
    assert ctx.kwargs["order_id"] == 3
    assert ctx.request_id == "r1"
    assert "self" not in ctx.kwargs


def test_in_memory_ring_is_bounded() -> None:
    """InMemoryReporter keeps only the newest `capacity` errors."""
    ring = InMemoryReporter(capacity=3)
    for i in range(5):
        ring.report_sync(ValueError(str(i)), ErrorContext())
    assert [e.message for e in ring.recent()] == ["2", "3", "4"]
    assert [e.message for e in ring.recent(2)] == ["3", "4"]
    assert ring.recent(0) == []
    ring.clear()
    assert len(ring) == 0
    with pytest.raises(ValueError):
        InMemoryReporter(capacity=0)


def test_register_reporter_rejects_non_reporters() -> None:
    """An object without report() is refused with a TypeError."""
    with pytest.raises(TypeError):
        register_reporter(object())


def test_logging_reporter_levels() -> None:
    """Client errors log as warnings; server errors as errors with the exception."""
    reporter = LoggingErrorReporter()
    with capture_logs() as logs:
        reporter.report_sync(ValidationException(), ErrorContext(function="f"))
        reporter.report_sync(RuntimeError("boom"), ErrorContext(function="g", kwargs={"a": 1}))
    assert [e["level"] for e in logs] == ["warning", "error"]
    assert logs[0]["error_type"] == "ValidationException"
    assert logs[1]["error_context"]["function"] == "g"
    assert logs[1]["exception"]["type"] == "RuntimeError"


def test_redact_keys_and_cards() -> None:
    """Sensitive keys and Luhn-valid card numbers are redacted; harmless keys stay."""
    data = {
        "password": "p",
        "user_password": "p",
        "accessToken": "t",
        "client_secret": "s",
        "api_key": "k",
        "Cookie": "c",
        "company": "acme",
        "note": "paid with 4242-4242-4242-4242 yesterday",
        "order": "12345678901234",
        "nested": [{"refresh_token": "r"}, ("x",)],
    }
    out = redact(data)
    for key in ("password", "user_password", "accessToken", "client_secret", "api_key", "Cookie"):
        assert out[key] == REDACTED
    assert out["company"] == "acme"
    assert out["note"] == f"paid with {REDACTED} yesterday"
    assert out["order"] == "12345678901234"
    assert out["nested"][0]["refresh_token"] == REDACTED
    assert list(out["nested"][1]) == ["x"]
    assert data["password"] == "p", "the input is not modified"


def test_redact_tokens_inside_text_like_logs() -> None:
    """Bearer tokens and JWTs inside free text are redacted, as the logging redactor does."""
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    out = redact({"note": f"header was Bearer {jwt_like} at login"})
    assert jwt_like not in str(out)
    assert "header was" in out["note"]


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.text() | st.floats(allow_nan=False),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
        max_leaves=15,
    )
)
def test_redact_never_raises_and_hides_password_values(value) -> None:
    """redact accepts any nested data and every 'password' key comes out redacted."""
    out = redact({"password": value, "data": value})
    assert out["password"] == REDACTED


def test_shortcuts_build_the_right_exceptions() -> None:
    """The guide's shortcut functions build the matching exceptions."""
    assert ensure_not_none(0, resource_type="Product", resource_id=1) == 0
    with pytest.raises(ResourceNotFoundException) as info:
        ensure_not_none(None, resource_type="Product", resource_id="p1")
    assert info.value.details["resource_id"] == "p1"
    assert isinstance(resource_not_found("User", "1"), ResourceNotFoundException)
    exists = resource_already_exists(resource_type="User", identifier="a@b.c", field="email")
    assert isinstance(exists, ResourceAlreadyExistsException) and exists.field == "email"
    invalid = validation_error(field="email", message="Invalid email format")
    assert isinstance(invalid, ValidationException)
    assert invalid.errors == [
        {"loc": ["email"], "msg": "Invalid email format", "type": "value_error"}
    ]
    denied = permission_denied(action="edit", resource_type="doc", permission="doc:edit")
    assert isinstance(denied, PermissionDeniedException) and denied.permission == "doc:edit"
    biz = business_logic_error(message="Insufficient inventory", details={"available": 0})
    assert isinstance(biz, BusinessException) and biz.details == {"available": 0}


async def test_error_service_guide_usage(memory) -> None:
    """get_service('error_service') reports and builds exceptions as guide §3/§14 show."""
    error_service = get_service("error_service")
    assert error_service is get_service("error_service")
    context = ErrorContext(function="process_data", kwargs={"user_id": "u"}, user_id="u")
    await error_service.report_error(ValueError("x"), context)
    assert memory.recent()[-1].context.function == "process_data"
    await error_service.report_error(ValueError("y"), {"event_data": {"a": 1}})
    assert memory.recent()[-1].context.extra == {"event_data": {"a": 1}}
    exc = error_service.permission_denied(action="read", resource_type="doc", permission="doc:read")
    assert isinstance(exc, PermissionDeniedException)
    assert isinstance(
        error_service.resource_not_found(resource_type="Product", resource_id=1),
        ResourceNotFoundException,
    )
    biz = error_service.business_logic_error(
        message="Insufficient inventory", details={"requested": 3}
    )
    assert biz.status_code == 400


async def test_audit_service_log_action_is_async_and_redacts() -> None:
    """audit_service.log_action is awaited and keeps redacted details."""
    audit = get_service("audit_service")
    assert isinstance(audit, AuditService)
    entry = await audit.log_action(
        user_id=1,
        action="product_update",
        resource_id=2,
        details={"fields_updated": ["a"], "token": "t"},
    )
    assert entry["user_id"] == "1" and entry["details"]["token"] == REDACTED
    assert (await audit.recent(1))[-1] == entry


def test_audit_log_action_unawaited_from_sync_code_still_records() -> None:
    """Guide §4 calls log_action from a sync function without await: it is recorded, no warning."""
    import warnings

    audit = get_service("audit_service")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audit.log_action("u-sync", "login")
    [last] = asyncio.run(audit.recent(1))  # the durable trail, read back
    assert (last["user_id"], last["action"]) == ("u-sync", "login")


def test_error_service_handle_exception_names_the_real_caller(memory) -> None:
    """error_service.handle_exception reports the function that called it, not itself."""

    def checkout(cart_id):
        try:
            raise LookupError("cart")
        except LookupError as e:
            get_service("error_service").handle_exception(e, capture_args=True, user_id="u9")

    checkout("c1")
    ctx = memory.recent()[-1].context
    assert ctx.function.endswith("checkout")
    assert ctx.kwargs["cart_id"] == "c1" and ctx.user_id == "u9"
