"""Cache key hashing: native (Rust) vs pure (Python + hashlib) vs the orjson + sha256 one-liner.

Groups ``cache_keys-small`` (a few scalars) and ``cache_keys-nested`` (a nested filter set with
UUIDs, dates, a set and a Decimal). The peer is
``hashlib.sha256(orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS)).hexdigest()``; it is
recorded with whether it keeps the properties a cache key needs (``extra_info["correct"]``): it
does not (a tuple and a list, NaN and None, ``Decimal("1.5")`` and ``"1.5"`` collide, and with
``default=str`` a set hashes by its hash-seed-dependent iteration order, so keys differ between
processes). Run:
``python -m pytest benches/bench_cache_keys.py --benchmark-enable --benchmark-group-by=group``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
from typing import Any

import orjson
import pytest

from crown_nexus import accel

IMPLS = accel.available("cache_keys")
KINDS = sorted(IMPLS)

SMALL: tuple[tuple[Any, ...], dict[str, Any]] = (
    ("product-123", 2),
    {"lang": "en", "include_stock": True, "limit": 50},
)
NESTED: tuple[tuple[Any, ...], dict[str, Any]] = (
    (uuid.UUID(int=42), {"page": 3, "per_page": 25}),
    {
        "filters": {
            "category_id": uuid.UUID(int=7),
            "price": {"min": decimal.Decimal("9.99"), "max": decimal.Decimal("199.00")},
            "tags": {"sale", "new", "eco"},
            "created_after": dt.date(2024, 1, 1),
            "brands": ["acme", "globex", "initech", "umbrella"],
            "rating": [4.5, None],
        },
        "sort": [("price", "asc"), ("created_at", "desc")],
        "user": {"id": 12345, "roles": ["customer", "beta"]},
    },
)
CASES = {"small": SMALL, "nested": NESTED}
QUALNAME = "shop.products.list_products"


def peer_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The issue's peer: orjson with sorted keys, then sha256."""
    data = orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def peer_is_correct() -> bool:
    """Does the peer tell apart values a cache key must tell apart?"""
    pairs = [((1, 2), [1, 2]), (float("nan"), None), (decimal.Decimal("1.5"), "1.5")]
    return all(peer_key((a,), {}) != peer_key((b,), {}) for a, b in pairs)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", [*KINDS, "orjson+sha256"])
def test_make_key(benchmark: Any, case: str, impl: str) -> None:
    """One key for (qualname, args, kwargs)."""
    benchmark.group = f"cache_keys-{case}"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl
    args, kwargs = CASES[case]
    if impl == "orjson+sha256":
        benchmark.extra_info["correct"] = peer_is_correct()
        result = benchmark(peer_key, args, kwargs)
        assert len(result) == 64
        return
    make_key = IMPLS[impl].make_key
    expected = IMPLS["pure"].make_key(QUALNAME, args, kwargs)
    benchmark.extra_info["correct"] = make_key(QUALNAME, args, kwargs) == expected
    assert benchmark(make_key, QUALNAME, args, kwargs) == expected
