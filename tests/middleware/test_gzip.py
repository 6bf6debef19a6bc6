"""Whole-body gzip (``crown_nexus.middleware._gzip``): ISA-L and zlib agree on what they promise.

Every case runs on every available implementation; hypothesis shows they agree on random bodies
and levels, bad input included (the compressed bytes differ by design: each inflates to the body).
"""

from __future__ import annotations

import gzip
import os
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.middleware import _gzip
from crown_nexus.middleware._gzip import GZIP_BACKEND, GZIP_IMPLEMENTATIONS, isal_gzip, zlib_gzip

IMPLS = sorted(GZIP_IMPLEMENTATIONS)
JSON_PAGE = orjson.dumps(
    {
        "success": True,
        "data": [
            {
                "id": i,
                "sku": f"SKU-{i:06d}",
                "name": f"Widget number {i}",
                "price": 9.99 + i,
                "tags": ["tools", f"batch-{i % 7}"],
            }
            for i in range(20)
        ],
        "meta": {"request_id": "0b7c3a52-4f0e-4d71-9a43-6c1f2b8e5d10"},
    }
)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("level", range(10))
def test_one_gzip_member_that_inflates_to_the_body(impl: str, level: int) -> None:
    """Every level gives a single RFC 1952 member (magic, deflate, mtime 0) of the body."""
    out = GZIP_IMPLEMENTATIONS[impl](JSON_PAGE, level)
    assert out[:3] == b"\x1f\x8b\x08"
    assert out[4:8] == b"\x00\x00\x00\x00"  # mtime 0: equal bodies, equal bytes
    assert gzip.decompress(out) == JSON_PAGE
    assert GZIP_IMPLEMENTATIONS[impl](JSON_PAGE, level) == out
    if level:
        assert len(out) < len(JSON_PAGE) // 3


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("body", [b"", b"x", bytearray(b"abc" * 500), memoryview(b"q" * 2000)])
def test_empty_tiny_and_bytes_like_bodies(impl: str, body: bytes) -> None:
    """Empty and one-byte bodies, bytearray and memoryview are compressed like bytes."""
    assert gzip.decompress(GZIP_IMPLEMENTATIONS[impl](body, 3)) == bytes(body)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("level", [-1, 10, 3.0, True, "3", None])
def test_bad_level_is_a_value_error(impl: str, level: object) -> None:
    """A level that is not an int from 0 to 9 (bool included) is refused before any work."""
    with pytest.raises(ValueError, match="gzip level"):
        GZIP_IMPLEMENTATIONS[impl](JSON_PAGE, level)  # type: ignore[arg-type]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("body", ["text", 42, None, [b"a"]])
def test_body_that_is_not_bytes_like_is_a_type_error(impl: str, body: object) -> None:
    """A str, a number, None or a list is a TypeError, as for ``zlib.compress``."""
    with pytest.raises(TypeError):
        GZIP_IMPLEMENTATIONS[impl](body, 3)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=20_000) | st.text(max_size=5_000).map(str.encode),
    level=st.integers(min_value=-3, max_value=12),
)
def test_implementations_agree(body: bytes, level: int) -> None:
    """For any body and level every implementation inflates back to the body, or all refuse."""
    outcomes: dict[str, tuple[str, bytes | None]] = {}
    for name, fn in GZIP_IMPLEMENTATIONS.items():
        try:
            outcomes[name] = ("ok", gzip.decompress(fn(body, level)))
        except ValueError:
            outcomes[name] = ("ValueError", None)
    expected = ("ok", body) if 0 <= level <= 9 else ("ValueError", None)
    assert set(outcomes.values()) == {expected}


@pytest.mark.skipif("isal" not in GZIP_IMPLEMENTATIONS, reason="python-isal is not installed")
def test_isal_serves_the_fast_levels_and_zlib_the_rest() -> None:
    """Levels 1-3 are ISA-L's (other bytes than zlib's, no bigger than zlib's level 3 here);
    0 and 4-9 are exactly zlib's."""
    for level in (1, 2, 3):
        fast = isal_gzip(JSON_PAGE, level)
        assert fast != zlib_gzip(JSON_PAGE, level)
        assert len(fast) <= len(zlib_gzip(JSON_PAGE, 3))
    for level in (0, 4, 6, 9):
        assert isal_gzip(JSON_PAGE, level) == zlib.compress(JSON_PAGE, level, 31)


def test_the_chosen_backend_is_the_public_function() -> None:
    """``gzip_body`` is the implementation ``GZIP_BACKEND`` names."""
    assert _gzip.gzip_body is GZIP_IMPLEMENTATIONS[GZIP_BACKEND]


@pytest.mark.skipif(
    os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "") in ("", "0"),
    reason="CROWN_NEXUS_EXPECT_COMPILED is not set (only CI and `nox -s tests` require compiled builds)",
)
def test_ci_did_not_silently_fall_back_to_zlib() -> None:
    """Where the compiled builds are expected, the formatter gzips with ISA-L."""
    assert GZIP_BACKEND == "isal"
