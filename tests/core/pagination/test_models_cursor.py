"""Pagination parameters (typed 422 errors) and the encrypted cursor codec (fuzzed with hypothesis)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
from crown_nexus.core.pagination._cursor import fingerprint_digest

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


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_cursor_is_aes_gcm_under_an_hkdf_key() -> None:
    """A token is unpadded base64url of version 2, a 12-byte nonce and AES-256-GCM output under
    HKDF-SHA256(secret, info=pagination) — decryptable with cryptography's primitives alone."""
    token = CODEC.encode("fp", [1, "a"])
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    raw = _raw(token)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"crown-nexus/pagination-cursor/aes-256-gcm/v2").derive(b"test-secret")
    plain = AESGCM(key).decrypt(raw[1:13], raw[13:], b"\x02")
    assert raw[0] == 2 and len(plain) % 32 == 0
    assert orjson.loads(plain) == {"k": fingerprint_digest("fp"), "d": "n", "v": [["i", 1], ["s", "a"]]}
    with pytest.raises(InvalidTag):  # the raw secret is not the key
        AESGCM(hashlib.sha256(b"test-secret").digest()).decrypt(raw[1:13], raw[13:], b"\x02")


def test_cursor_hides_sort_values() -> None:
    """The sort values cannot be read from a cursor: its decoded bytes hold none of a string value."""
    secret = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$hashhashhash"
    number = 4242424242424242  # long enough that random ciphertext cannot hold its digits
    token = CODEC.encode("fp", [secret, number])
    raw = _raw(token)
    for needle in (secret.encode(), b"argon2id", b"hashhash", orjson.dumps(secret), str(number).encode()):
        assert needle not in raw
    assert secret not in token and "argon2" not in token
    assert CODEC.decode(token, "fp") == ("n", [secret, number])
    # two encodings of the same position differ (random nonce); lengths only show a 32-byte bucket
    assert CODEC.encode("fp", [secret, number]) != token
    assert len(CODEC.encode("fp", ["a"])) == len(CODEC.encode("fp", ["abcdef"]))


def test_foreign_key_and_foreign_query_are_refused() -> None:
    """Another key fails authentication; another fingerprint (query) is a mismatch; both typed 422."""
    token = CODEC.encode("fp", [1, "a"])
    with pytest.raises(InvalidCursorException) as other_key:
        CursorCodec("another-secret").decode(token)
    assert other_key.value.reason == "signature" and other_key.value.status_code == 422
    with pytest.raises(InvalidCursorException) as mismatch:
        CODEC.decode(token, "other-fp")
    assert mismatch.value.reason == "mismatch" and mismatch.value.code_value == "INVALID_CURSOR"


def test_old_hmac_format_and_non_canonical_base64_are_refused() -> None:
    """A v1 ``payload.mac`` cursor and a non-canonical spelling of a valid cursor's bytes are refused."""
    old = _token(b'{"k":"fp","d":"n","v":[["i",1]]}') + "." + _token(bytes(16))
    with pytest.raises(InvalidCursorException):
        CODEC.decode(old, "fp")
    token = next(t for n in range(0, 200, 8) if len(t := CODEC.encode("fp", ["x" * n])) % 4)
    # the token's last char carries 2 or 4 unused bits: set the lowest one
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    assert _raw(twin) == _raw(token) and twin != token
    with pytest.raises(InvalidCursorException):
        CODEC.decode(twin, "fp")
    with pytest.raises(InvalidCursorException):
        CODEC.decode(token + "==", "fp")


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


VALID = st.lists(st.one_of(st.integers(), st.text(max_size=10), st.datetimes()), max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_bit_flips_are_rejected(data: st.DataObject) -> None:
    """Flipping any set of bits anywhere in a valid cursor's bytes is always detected (typed 422)."""
    raw = bytearray(_raw(CODEC.encode("fp", data.draw(VALID))))
    for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)):
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidCursorException):
        CODEC.decode(_token(bytes(raw)), "fp")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_truncated_extended_or_edited_cursors_are_rejected(data: st.DataObject) -> None:
    """Cutting, extending, or changing characters of a valid cursor string never gets through."""
    token = CODEC.encode("fp", data.draw(VALID))
    raw = _raw(token)
    cut = data.draw(st.integers(0, len(raw) - 1))
    extra = data.draw(st.binary(min_size=1, max_size=20))
    i = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ").filter(
        lambda c: c != token[i]))
    for forged in (_token(raw[:cut]), _token(raw + extra), _token(extra + raw), token[:i] + char + token[i + 1:]):
        with pytest.raises(InvalidCursorException):
            CODEC.decode(forged, "fp")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=400))
def test_fuzz_random_bytes_only_raise_invalid_cursor(raw: bytes) -> None:
    """Random bytes in cursor form (also behind the right version byte) only raise InvalidCursorException."""
    for forged in (_token(raw), _token(b"\x02" + raw)):
        with pytest.raises(InvalidCursorException):
            CODEC.decode(forged or "A", "fp")


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
