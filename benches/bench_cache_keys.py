"""Cache key hashing: native (Rust) vs pure (Python + hashlib) vs the orjson + sha256 one-liner.

Groups ``cache_keys-small`` (a few scalars) and ``cache_keys-nested`` (a nested filter set with
UUIDs, dates, a set and a Decimal). The peer is
``hashlib.sha256(orjson.dumps([args, kwargs], option=orjson.OPT_SORT_KEYS)).hexdigest()``; it is
recorded with whether it got the right answer (``extra_info["correct"]``): it cannot tell ``1``
from ``True``'s cousins in every case, and needs ``default=str`` for sets and Decimals (which
then hash by repr-like strings). Run:
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


def peer_is_correct(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Does the peer keep the properties we need (1 vs True vs 1.0, set order) on this input?"""
    if peer_key((1,), {}) == peer_key((True,), {}) or peer_key((1,), {}) == peer_key((1.0,), {}):
        return False
    reordered = {k: kwargs[k] for k in reversed(list(kwargs))}
    return peer_key(args, kwargs) == peer_key(args, reordered)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", [*KINDS, "orjson+sha256"])
def test_make_key(benchmark: Any, case: str, impl: str) -> None:
    """One key for (qualname, args, kwargs)."""
    benchmark.group = f"cache_keys-{case}"
    benchmark.extra_info["implementations"] = accel.implementations()
    benchmark.extra_info["impl"] = impl
    args, kwargs = CASES[case]
    if impl == "orjson+sha256":
        benchmark.extra_info["correct"] = peer_is_correct(args, kwargs)
        result = benchmark(peer_key, args, kwargs)
        assert len(result) == 64
        return
    make_key = IMPLS[impl].make_key
    expected = IMPLS["pure"].make_key(QUALNAME, args, kwargs)
    benchmark.extra_info["correct"] = make_key(QUALNAME, args, kwargs) == expected
    assert benchmark(make_key, QUALNAME, args, kwargs) == expected
