"""Pagination parameters (typed 422 errors) and the signed cursor codec (fuzzed with hypothesis)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import ConfigurationException, ValidationException
from crown_nexus.core.pagination import (
    MAX_PAGE_SIZE,
    CursorCodec,
    CursorPaginationParams,
    InvalidCursorException,
    InvalidPaginationParamsException,
    InvalidSortFieldException,
    OffsetPaginationParams,
    OffsetPaginationResult,
    PaginationException,
    SortDirection,
    SortField,
    decode_cursor,
    encode_cursor,
)

CODEC = CursorCodec("test-secret")


def test_defaults_and_offset() -> None:
    """Defaults are page 1, 20 per page, no sort; offset follows page and size."""
    params = OffsetPaginationParams()
    assert (params.page, params.page_size, params.sort, params.offset) == (1, 20, [], 0)
    assert OffsetPaginationParams(page=3, page_size=25).offset == 50
    assert CursorPaginationParams().limit == 20
    assert SortField(field="name").direction is SortDirection.ASC


@pytest.mark.parametrize(
    "kwargs",
    [{"page": 0}, {"page": -1}, {"page_size": 0}, {"page_size": MAX_PAGE_SIZE + 1}, {"page": "two"},
     {"page": 10**12}, {"sort": [{"field": ""}]}, {"sort": "name"}, {"unknown": 1}],
)
def test_bad_offset_params_raise_typed_422(kwargs: dict[str, Any]) -> None:
    """Out-of-range or wrongly typed values raise InvalidPaginationParamsException (422), not pydantic's error."""
    with pytest.raises(InvalidPaginationParamsException) as info:
        OffsetPaginationParams(**kwargs)
    exc = info.value
    assert isinstance(exc, PaginationException) and isinstance(exc, ValidationException)
    assert exc.status_code == 422 and exc.code_value == "INVALID_PAGINATION_PARAMS"
    assert exc.details["errors"] and all(set(e) == {"loc", "msg", "type"} for e in exc.details["errors"])


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 101}, {"cursor": "x" * 5000}, {"cursor": 5}])
def test_bad_cursor_params_raise_typed_422(kwargs: dict[str, Any]) -> None:
    """Cursor params out of range raise InvalidPaginationParamsException."""
    with pytest.raises(InvalidPaginationParamsException):
        CursorPaginationParams(**kwargs)


def test_sort_direction_from_strings() -> None:
    """Directions accept their string values; others are typed errors."""
    assert SortField(field="a", direction="desc").direction is SortDirection.DESC
    with pytest.raises(InvalidPaginationParamsException):
        SortField(field="a", direction="sideways")


def test_exception_codes_and_details() -> None:
    """Each pagination exception has its own code, status 422 and a details dict with errors."""
    sort = InvalidSortFieldException("secret", ["id", "name"])
    assert (sort.code_value, sort.status_code, sort.details["field"], sort.details["allowed"]) == (
        "INVALID_SORT_FIELD", 422, "secret", ["id", "name"])
    cursor = InvalidCursorException()
    assert cursor.code_value == "INVALID_CURSOR" and cursor.details["field"] == "cursor"
    assert cursor.details["errors"][0]["loc"] == ["cursor"]
    assert PaginationException().code_value == "PAGINATION_ERROR"


def test_result_metadata() -> None:
    """pages, has_next and has_prev follow from total, page and page size."""
    r = OffsetPaginationResult.build([1, 2], page=2, page_size=2, total=5)
    assert (r.pages, r.has_next, r.has_prev) == (3, True, True)
    empty = OffsetPaginationResult.build([], page=1, page_size=10, total=0)
    assert (empty.pages, empty.has_next, empty.has_prev) == (0, False, False)


VALUES = [1, -5, 2**70, 1.25, "naïve ☃", None, True, datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
          date(2024, 5, 1), time(8, 15), Decimal("12.3400"), uuid.UUID(int=7)]


def test_cursor_round_trips_typed_values() -> None:
    """Every supported value type decodes to the same value and type."""
    token = CODEC.encode("fp", VALUES, "p")
    assert CODEC.decode(token, "fp") == ("p", VALUES)
    assert [type(v) for v in CODEC.decode(token)[1]] == [type(v) for v in VALUES]


def test_cursor_is_base64url_and_signed() -> None:
    """The token is two unpadded base64url parts; another key or fingerprint is refused."""
    token = CODEC.encode("fp", [1, "a"])
    payload, mac = token.split(".")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert len(base64.urlsafe_b64decode(mac + "==")) == 16
    with pytest.raises(InvalidCursorException) as other_key:
        CursorCodec("another-secret").decode(token)
    assert other_key.value.reason == "signature"
    with pytest.raises(InvalidCursorException) as mismatch:
        CODEC.decode(token, "other-fp")
    assert mismatch.value.reason == "mismatch"


def test_module_functions_use_settings_secret() -> None:
    """encode_cursor/decode_cursor default to the loaded settings' secret key."""
    token = encode_cursor("fp", [3])
    assert decode_cursor(token, "fp") == ("n", [3])
    with pytest.raises(InvalidCursorException):
        decode_cursor(token, "fp", secret_key="not-the-settings-key")


def test_unencodable_value_is_configuration_error() -> None:
    """A sort value of an unsupported type is a server configuration error, not a client one."""
    with pytest.raises(ConfigurationException):
        CODEC.encode("fp", [object()])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                 st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=3)))
def test_fuzz_decoder_only_raises_invalid_cursor(cursor: Any) -> None:
    """Arbitrary input never decodes and only InvalidCursorException escapes."""
    with pytest.raises(InvalidCursorException):
        CODEC.decode(cursor)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_tampered_cursor_is_rejected(data: st.DataObject) -> None:
    """Flipping any byte of a valid cursor's payload or MAC is always detected."""
    token = CODEC.encode("fp", data.draw(st.lists(st.one_of(st.integers(), st.text(max_size=10)), max_size=4)))
    payload, mac = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw_mac = bytearray(base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4)))
    target = raw if data.draw(st.booleans()) else raw_mac
    i = data.draw(st.integers(0, len(target) - 1))
    target[i] ^= data.draw(st.integers(1, 255))
    forged = (base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." +
              base64.urlsafe_b64encode(bytes(raw_mac)).rstrip(b"=").decode())
    with pytest.raises(InvalidCursorException):
        CODEC.decode(forged)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.none(),
                          st.booleans(), st.datetimes(), st.dates(), st.uuids()), max_size=6),
       st.sampled_from(["n", "p"]))
def test_fuzz_round_trip(values: list[Any], direction: str) -> None:
    """Any supported values round-trip exactly."""
    assert CODEC.decode(CODEC.encode("k", values, direction), "k") == (direction, values)


def test_non_ascii_fingerprint_is_a_mismatch_not_a_crash() -> None:
    """Comparing against any fingerprint string is constant-time on bytes and only ever a mismatch."""
    token = CODEC.encode("fp", [1])
    with pytest.raises(InvalidCursorException) as info:
        CODEC.decode(token, "fingerprint-ü")
    assert info.value.reason == "mismatch"
