"""crown_nexus.core.cache.keys: the public key helpers of guide §9."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest

from crown_nexus import accel
from crown_nexus.core.cache.exceptions import CacheKeyException
from crown_nexus.core.cache.keys import (
    content_hash,
    generate_cache_key,
    generate_list_key,
    generate_model_key,
    generate_query_key,
    qualified_name,
)

HEX64 = "[0-9a-f]{64}"


def get_product(product_id: str, *, lang: str = "en") -> str:
    """A function whose calls get keys."""
    return f"{product_id}:{lang}"


def test_guide_imports_work() -> None:
    """The guide's import lines resolve, also through the package's lazy re-exports."""
    import crown_nexus.core.cache as cache_pkg
    from crown_nexus.core.cache.keys import generate_list_key as from_module
    from crown_nexus.core.cache.keys import generate_model_key as model_from_module

    assert cache_pkg.generate_list_key is from_module
    assert cache_pkg.generate_model_key is model_from_module
    assert set(cache_pkg.keys.__all__) >= {
        "content_hash",
        "generate_cache_key",
        "generate_list_key",
        "generate_model_key",
    }


def test_generate_cache_key_shape_and_prefix() -> None:
    """Keys read [prefix:]qualname:<64 hex>, so pattern invalidation per function works."""
    plain = generate_cache_key("shop.get_product", ("p1",), {"lang": "de"})
    assert re.fullmatch(rf"shop\.get_product:{HEX64}", plain)
    prefixed = generate_cache_key("shop.get_product", ("p1",), {"lang": "de"}, prefix="cache")
    assert prefixed == f"cache:{plain}"


def test_generate_cache_key_accepts_the_function_itself() -> None:
    """Passing the function uses its module-qualified name."""
    name = qualified_name(get_product)
    assert name == f"{__name__}.get_product"
    assert generate_cache_key(get_product, ("p1",)) == generate_cache_key(name, ("p1",))


def test_generate_cache_key_defaults_and_sequences() -> None:
    """args default to (), kwargs to {}; a list of args keys like the tuple."""
    assert generate_cache_key("f") == generate_cache_key("f", (), {})
    assert generate_cache_key("f", [1, 2]) == generate_cache_key("f", (1, 2))


def test_generate_cache_key_is_order_independent_and_type_sensitive() -> None:
    """kwargs order does not matter; 1, 1.0, True and "1" do."""
    assert generate_cache_key("f", (), {"a": 1, "b": 2}) == generate_cache_key(
        "f", (), {"b": 2, "a": 1}
    )
    keys = {generate_cache_key("f", (v,)) for v in (1, 1.0, True, "1")}
    assert len(keys) == 4


def test_the_key_uses_the_chosen_implementation() -> None:
    """The digest is the accel-chosen twin's make_key (and equals the pure one)."""
    args, kwargs = (uuid.UUID(int=3), dt.date(2024, 1, 1)), {"tags": {"a", "b"}}
    expected = accel.get("cache_keys").make_key("f", args, kwargs)
    assert generate_cache_key("f", args, kwargs) == f"f:{expected}"
    assert accel.available("cache_keys")["pure"].make_key("f", args, kwargs) == expected


def test_unhashable_values_raise_cache_key_exception() -> None:
    """An object without a stable encoding raises CacheKeyException (422, also a TypeError)."""

    class Session:
        """Not hashable stably."""

    with pytest.raises(CacheKeyException) as info:
        generate_cache_key("f", (Session(),))
    exc = info.value
    assert isinstance(exc, TypeError)
    assert exc.status_code == 422
    assert "Session" in str(exc)
    assert "0x" not in str(exc)
    with pytest.raises(CacheKeyException):
        content_hash({"session": Session()})
    with pytest.raises(CacheKeyException):
        generate_list_key("p", "m", {"s": Session()})


def test_an_unnameable_callable_raises_cache_key_exception() -> None:
    """A callable without a qualified name cannot name a key."""

    class Callable:
        """An instance is callable but has no __qualname__."""

        def __call__(self) -> None:
            return None

    with pytest.raises(CacheKeyException, match="pass a str qualname"):
        generate_cache_key(Callable())


def test_generate_model_key() -> None:
    """prefix:model_name:model_id, with an optional field."""
    assert generate_model_key("app", "user", 42) == "app:user:42"
    assert generate_model_key("app", "user", uuid.UUID(int=1)) == f"app:user:{uuid.UUID(int=1)}"
    assert generate_model_key("app", "user", 42, "profile") == "app:user:42:profile"


def test_generate_list_key_as_the_guide_calls_it() -> None:
    """Keyword call from guide §9; filters in any order give the same key; none gives a bare key."""
    key = generate_list_key(prefix="products", model_name="product", filters={"category_id": "c1"})
    assert re.fullmatch(rf"products:product:list:{HEX64}", key)
    assert generate_list_key("products", "product") == "products:product:list"
    assert generate_list_key("products", "product", {}) == "products:product:list"
    both = {"category_id": "c1", "in_stock": True}
    assert generate_list_key("p", "m", both) == generate_list_key(
        "p", "m", {"in_stock": True, "category_id": "c1"}
    )
    assert generate_list_key("p", "m", {"category_id": "c1"}) != generate_list_key(
        "p", "m", {"category_id": "c2"}
    )


def test_generate_query_key() -> None:
    """prefix:query_name[:<digest of params>]."""
    assert generate_query_key("app", "search") == "app:search"
    key = generate_query_key("app", "search", {"q": "shoes", "page": 2})
    assert re.fullmatch(rf"app:search:{HEX64}", key)
    assert key == generate_query_key("app", "search", {"page": 2, "q": "shoes"})


def test_content_hash_is_a_stable_strong_etag() -> None:
    """Equal content gives the same digest; any change gives another one."""
    doc = {"id": uuid.UUID(int=9), "title": "Report", "tags": ["a", "b"], "score": 1.5}
    same = {"score": 1.5, "tags": ["a", "b"], "title": "Report", "id": uuid.UUID(int=9)}
    assert re.fullmatch(HEX64, content_hash(doc))
    assert content_hash(doc) == content_hash(same)
    assert content_hash(doc) != content_hash({**doc, "title": "Report 2"})
    assert content_hash(doc) == accel.available("cache_keys")["pure"].hash_value(doc)
