"""The basic validators: valid and invalid inputs, configuration errors, never raising for bad input."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum, IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import ConfigurationException
from crown_nexus.core.validation import (
    validate_credit_card,
    validate_date,
    validate_email,
    validate_enum,
    validate_ip_address,
    validate_length,
    validate_password_strength,
    validate_phone,
    validate_range,
    validate_regex,
    validate_required,
    validate_url,
    validate_uuid,
)


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


@pytest.mark.parametrize("value", ["user@example.com", "first.last+tag@sub.example.org", "ü@exämple.de"])
def test_valid_emails(value: str) -> None:
    """Well-formed addresses (including internationalised ones) are valid."""
    assert validate_email(value) is True


@pytest.mark.parametrize("value", ["", "plain", "a@", "@b.com", "a@b", "a b@c.com", "a@@b.com", None, 42, "x" * 400 + "@a.com"])
def test_invalid_emails(value: Any) -> None:
    """Malformed addresses and non-strings are invalid."""
    assert validate_email(value) is False


def test_phone_numbers() -> None:
    """International numbers validate; national form needs a region; junk is invalid."""
    assert validate_phone("+12125551234") is True
    assert validate_phone("+442079460958") is True
    assert validate_phone("020 7946 0958") is False
    assert validate_phone("020 7946 0958", region="GB") is True
    assert validate_phone("+1212555") is False
    assert validate_phone("hello") is False
    assert validate_phone(12125551234) is False


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("https://example.com", True),
        ("http://example.com:8080/a?b=c#d", True),
        ("https://127.0.0.1/x", True),
        ("http://[::1]:80/", True),
        ("http://localhost:8000", True),
        ("https://bücher.de/", True),
        ("ftp://example.com", False),
        ("javascript:alert(1)", False),
        ("https://", False),
        ("https://exa mple.com", False),
        ("https://example.com:99999", False),
        ("https://-bad-.com", False),
        ("https://example.123", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_urls(value: Any, ok: bool) -> None:
    """Absolute http(s) URLs with a proper host are valid; other schemes and junk are not."""
    assert validate_url(value) is ok


def test_url_options() -> None:
    """allowed_schemes and require_tld change what is accepted."""
    assert validate_url("ftp://example.com", allowed_schemes=("ftp",)) is True
    assert validate_url("http://localhost", require_tld=True) is False
    assert validate_url("http://intranet", require_tld=True) is False
    assert validate_url("http://intranet") is True


def test_dates_with_ranges() -> None:
    """Dates parse with format_str and respect inclusive bounds."""
    bounds = {"min_date": date(2023, 1, 1), "max_date": date(2023, 12, 31)}
    assert validate_date("2023-05-15", **bounds) is True
    assert validate_date("2023-01-01", **bounds) is True
    assert validate_date("2024-01-01", **bounds) is False
    assert validate_date("2022-12-31", **bounds) is False
    assert validate_date("15/05/2023", format_str="%d/%m/%Y") is True
    assert validate_date("2023-02-30") is False
    assert validate_date(date(2023, 3, 1), **bounds) is True
    assert validate_date(datetime(2025, 3, 1, 12), **bounds) is False
    assert validate_date(None) is False
    with pytest.raises(ConfigurationException):
        validate_date("2023-05-15", min_date=date(2024, 1, 1), max_date=date(2023, 1, 1))


def test_length_and_range() -> None:
    """Length bounds apply to sized values; range bounds to real numbers (no bools, no NaN)."""
    assert validate_length("abc", min_length=3, max_length=3) is True
    assert validate_length([1, 2], min_length=3) is False
    assert validate_length(5, min_length=0) is False
    assert validate_range(18, min_value=18) is True
    assert validate_range(17.9, min_value=18) is False
    assert validate_range(True, min_value=0) is False
    assert validate_range(float("nan")) is False
    assert validate_range("20", min_value=18) is False
    with pytest.raises(ConfigurationException):
        validate_length("x", min_length=5, max_length=1)
    with pytest.raises(ConfigurationException):
        validate_range(1, min_value=5, max_value=1)


def test_regex_and_required() -> None:
    """Regex must match the whole string; required rejects None, blanks and empty containers."""
    assert validate_regex("abc123", r"[a-z]+\d+") is True
    assert validate_regex("abc123x", r"[a-z]+\d+") is False
    assert validate_regex(123, r"\d+") is False
    with pytest.raises(ConfigurationException):
        validate_regex("x", "(")
    assert [validate_required(v) for v in (None, "", "  ", [], {}, b"")] == [False] * 6
    assert [validate_required(v) for v in (0, False, "a", [0], b"x")] == [True] * 5


def test_uuid_credit_card_ip() -> None:
    """UUIDs (with version), Luhn-valid card numbers and IP addresses (with version)."""
    u4 = uuid.uuid4()
    assert validate_uuid(str(u4)) and validate_uuid(u4, version=4)
    assert validate_uuid(str(uuid.uuid1()), version=4) is False
    assert validate_uuid("not-a-uuid") is False
    assert validate_credit_card("4111 1111 1111 1111") is True
    assert validate_credit_card("4111-1111-1111-1112") is False
    assert validate_credit_card("4111") is False
    assert validate_credit_card("٤١١١١١١١١١١١١١١١") is False  # non-ASCII digits
    assert validate_ip_address("192.168.0.1") and validate_ip_address("::1", version=6)
    assert validate_ip_address("192.168.0.1", version=6) is False
    assert validate_ip_address("256.1.1.1") is False
    with pytest.raises(ConfigurationException):
        validate_ip_address("1.1.1.1", version=5)


def test_password_strength() -> None:
    """Each required character class and the length bounds are enforced."""
    opts = dict(min_length=10, require_lowercase=True, require_uppercase=True, require_digit=True, require_special=True)
    assert validate_password_strength("SecureP@ss123", **opts) is True
    assert validate_password_strength("SecureP@ss", **opts) is False  # no digit
    assert validate_password_strength("securep@ss123", **opts) is False  # no upper
    assert validate_password_strength("SECUREP@SS123", **opts) is False  # no lower
    assert validate_password_strength("SecurePass123", **opts) is False  # no special
    assert validate_password_strength("Sh@rt1", **opts) is False
    assert validate_password_strength("Secret123", min_length=8, require_special=False) is True
    assert validate_password_strength(None) is False


def test_enum() -> None:
    """Members and member values are valid; other values are not; a non-Enum class is a config error."""
    assert validate_enum("red", Color) and validate_enum(Color.BLUE, Color)
    assert validate_enum("green", Color) is False
    assert validate_enum(2, Level) and not validate_enum(3, Level)
    assert validate_enum([], Color) is False
    with pytest.raises(ConfigurationException):
        validate_enum("red", dict)  # type: ignore[arg-type]


VALIDATORS = [
    validate_email, validate_phone, validate_url, validate_date, validate_length, validate_range,
    validate_required, validate_uuid, validate_credit_card, validate_ip_address,
    validate_password_strength, lambda v: validate_regex(v, r"\w+"), lambda v: validate_enum(v, Color),
]

anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300),
    st.binary(max_size=50), st.lists(st.integers(), max_size=5), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.dates(), st.datetimes(),
)


@settings(max_examples=150, deadline=None)
@given(value=anything)
def test_validators_never_raise_for_any_input(value: Any) -> None:
    """Every validator answers a bool for arbitrary input and never raises."""
    for validator in VALIDATORS:
        assert validator(value) in (True, False)
