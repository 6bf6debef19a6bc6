"""Pydantic model validation and composite rule sets."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from crown_nexus.core.exceptions import ConfigurationException, ValidationException
from crown_nexus.core.validation import validate_composite, validate_data, validate_model
from crown_nexus.testing import capture_logs


class UserCreate(BaseModel):
    username: str = Field(..., min_length=3, max_length=50)
    password: str = Field(..., min_length=8)
    age: int = Field(..., ge=18)


def test_validate_data_returns_instance() -> None:
    """Valid data gives a model instance with coerced values."""
    user = validate_data({"username": "johndoe", "password": "Secret123", "age": "25"}, UserCreate)
    assert isinstance(user, UserCreate) and user.age == 25


def test_validate_data_raises_validation_exception_without_input() -> None:
    """Invalid data raises a 422 ValidationException listing loc/msg/type, never the rejected value."""
    with pytest.raises(ValidationException) as info:
        validate_data({"username": "jo", "password": "hunter2-secret-value-x"[:5], "age": 12}, UserCreate)
    exc = info.value
    assert exc.status_code == 422 and exc.code_value == "VALIDATION_ERROR"
    assert sorted(e["loc"][0] for e in exc.errors) == ["age", "password", "username"]
    assert all(set(e) == {"loc", "msg", "type"} for e in exc.errors)
    assert "hunte" not in repr(exc.details)


def test_validate_data_reads_objects_by_attribute() -> None:
    """Non-mapping objects are read by attribute (from_attributes)."""

    @dataclass
    class Row:
        username: str
        password: str
        age: int

    assert validate_data(Row("alice", "password1", 30), UserCreate).username == "alice"


def test_validate_data_logs_failure_types_only() -> None:
    """A failure is logged at debug with field locations and types, not values."""
    with capture_logs() as logs, pytest.raises(ValidationException):
        validate_data({"username": "x", "password": "topsecretvalue", "age": 30}, UserCreate)
    entries = [e for e in logs if e.get("event") == "Data failed model validation"]
    assert entries and "topsecretvalue" not in repr(entries)


def test_validate_data_needs_a_model_class() -> None:
    """Passing something that is not a pydantic model class is a configuration error."""
    with pytest.raises(ConfigurationException):
        validate_data({}, dict)  # type: ignore[type-var]


def test_validate_model_revalidates_instances() -> None:
    """validate_model re-checks an instance whose fields were assigned directly."""
    user = UserCreate(username="alice", password="password1", age=30)
    assert validate_model(user) == user
    user.age = 3
    with pytest.raises(ValidationException):
        validate_model(user)


RULES = {
    "username": {"required": True, "length": {"min_length": 3, "max_length": 50}},
    "email": {"required": True, "email": True},
    "password": {"required": True, "password": {"min_length": 8, "require_uppercase": True, "require_digit": True, "require_special": False}},
    "age": {"required": True, "range": {"min_value": 18}},
    "website": {"url": True},
}


def test_composite_valid() -> None:
    """Data meeting every rule is valid with no errors."""
    data = {"username": "johndoe", "email": "john@example.com", "password": "Secret123", "age": 25}
    assert validate_composite(data, RULES) == (True, [])


def test_composite_collects_every_error() -> None:
    """Every failing rule is one error with loc, msg and type; optional missing fields are skipped."""
    ok, errors = validate_composite({"username": "jo", "email": "nope", "password": "weak", "website": "ftp://x"}, RULES)
    assert ok is False
    assert [(e["loc"][0], e["type"]) for e in errors] == [
        ("username", "value_error.length"),
        ("email", "value_error.email"),
        ("password", "value_error.password"),
        ("age", "value_error.missing"),
        ("website", "value_error.url"),
    ]
    assert errors[0]["msg"] == "Length must be between 3 and 50"


@pytest.mark.parametrize(
    ("policy", "password", "ok"),
    [
        ({"min_length": 8, "require_uppercase": True, "require_digit": True}, "Secret123", True),
        ({"min_length": 8, "require_uppercase": True, "require_digit": True}, "secret123", False),
        ({"min_length": 8, "require_uppercase": True, "require_digit": True}, "SecretPwd", False),
        ({"min_length": 8, "require_uppercase": True, "require_digit": True}, "Sec1", False),
        ({"require_special": True}, "a!", True),
        ({"require_special": True}, "abcdefgh", False),
        ({"require_lowercase": True}, "A1b", True),
        ({"max_length": 4}, "abcde", False),
        (True, "Secret123", False),
        (True, "Secret123!", True),
    ],
)
def test_composite_password_checks_only_what_it_lists(policy: Any, password: str, ok: bool) -> None:
    """A password rule dict checks only the listed criteria; ``True`` is the full default policy."""
    rules = {"password": {"required": True, "password": policy}}
    assert validate_composite({"password": password}, rules)[0] is ok


def test_composite_more_rules() -> None:
    """regex, enum, custom, uuid, date and ip rules; blank required strings count as missing."""

    class Plan(Enum):
        FREE = "free"

    rules: dict[str, Any] = {
        "code": {"regex": r"[A-Z]{3}"},
        "plan": {"enum": Plan},
        "even": {"custom": (lambda v: v % 2 == 0, "Must be even")},
        "name": {"required": True},
        "ip": {"ip_address": {"version": 4}},
    }
    ok, errors = validate_composite({"code": "abc", "plan": "pro", "even": 3, "name": "  ", "ip": "::1"}, rules)
    assert not ok
    assert [e["msg"] for e in errors] == [
        "Value does not match the required pattern",
        "Value must be one of: free",
        "Must be even",
        "Field is required",
        "Invalid IP address",
    ]
    assert validate_composite({"code": "ABC", "plan": "free", "even": 4, "name": "x", "ip": "1.2.3.4"}, rules) == (True, [])


def test_composite_bad_input_and_bad_rules() -> None:
    """Non-mapping data is one error; an unknown rule is a configuration error."""
    assert validate_composite(["x"], RULES)[0] is False  # type: ignore[arg-type]
    with pytest.raises(ConfigurationException):
        validate_composite({"a": 1}, {"a": {"no_such_rule": True}})
    with pytest.raises(ConfigurationException):
        validate_composite({"a": "x"}, {"a": {"length": 5}})


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["username", "email", "password", "age", "website", "other"]),
                       st.one_of(st.none(), st.text(max_size=60), st.integers(), st.floats(), st.lists(st.integers(), max_size=3)),
                       max_size=6))
def test_composite_never_raises_for_any_data(data: dict[str, Any]) -> None:
    """Arbitrary field values give (bool, errors) with well-formed errors; validity means no errors."""
    ok, errors = validate_composite(data, RULES)
    assert ok is (not errors)
    assert all(set(e) == {"loc", "msg", "type"} and e["loc"][0] in RULES for e in errors)


def test_composite_blank_fields() -> None:
    """A blank optional field skips its rules; a blank required one is one 'missing' error only."""
    data = {"username": "", "email": "john@example.com", "password": "Secret123", "age": 25, "website": ""}
    assert validate_composite(data, RULES) == (
        False, [{"loc": ["username"], "msg": "Field is required", "type": "value_error.missing"}]
    )


def test_register_rule_extends_rule_sets() -> None:
    """A registered rule works in rule sets; built-in names cannot be replaced."""
    from crown_nexus.core.validation import RULES, register_rule

    register_rule("zip_code", lambda value, arg: (isinstance(value, str) and value.isdigit() and len(value) == 5,
                                                  "Invalid ZIP code", "value_error.zip"))
    try:
        assert validate_composite({"zip": "12345"}, {"zip": {"zip_code": True}}) == (True, [])
        assert validate_composite({"zip": "1234"}, {"zip": {"zip_code": True}})[1] == [
            {"loc": ["zip"], "msg": "Invalid ZIP code", "type": "value_error.zip"}
        ]
        with pytest.raises(ConfigurationException):
            register_rule("email", lambda value, arg: (True, "", ""))
        with pytest.raises(ConfigurationException):
            register_rule("required", lambda value, arg: (True, "", ""))
    finally:
        RULES.pop("zip_code", None)
