"""Cache key helpers (guide §9): stable keys for calls, models, lists and queries.

Digests come from the ``cache_keys`` hot path (:func:`crown_nexus.accel.get`): the compiled twin
when installed, the pure one otherwise -- both give the same key for the same input, in every
process and run (see :mod:`crown_nexus._pure.cache_keys` for the canonical encoding).

Key shapes (``:`` separated, so ``pattern="prefix:model:*"`` invalidation works):

- ``generate_cache_key("mod.fn", args, kwargs, prefix="cache")`` -> ``cache:mod.fn:<blake2b-256 hex>``
- ``generate_model_key("app", "user", 42)`` -> ``app:user:42`` (``app:user:42:profile`` with
  ``field="profile"``)
- ``generate_list_key(prefix="products", model_name="product", filters={...})`` ->
  ``products:product:list:<blake2b-256 hex of filters>`` (``products:product:list`` without filters)
- ``generate_query_key("app", "search", {...})`` -> ``app:search:<blake2b-256 hex of params>``
- ``content_hash(value)`` -> ``<blake2b-256 hex>`` (a strong ETag)

A value that cannot be hashed stably raises
:class:`~crown_nexus.core.cache.exceptions.CacheKeyException` (422, also a ``TypeError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from crown_nexus import accel
from crown_nexus.core.cache.exceptions import CacheKeyException

__all__ = [
    "content_hash",
    "generate_cache_key",
    "generate_list_key",
    "generate_model_key",
    "generate_query_key",
    "qualified_name",
]

_impl = accel.get("cache_keys")


def qualified_name(func: Callable[..., Any] | str) -> str:
    """Return ``"module.qualname"`` of a function (a str is returned unchanged)."""
    if isinstance(func, str):
        return func
    module = getattr(func, "__module__", None) or "<unknown>"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if not isinstance(qualname, str):
        raise CacheKeyException(
            f"cannot name {type(func).__qualname__} for a cache key; pass a str qualname"
        )
    return f"{module}.{qualname}"


def _key_error(exc: TypeError) -> CacheKeyException:
    return CacheKeyException(str(exc), original_exception=exc)


def _join(*parts: str | None) -> str:
    return ":".join(p for p in parts if p)


def generate_cache_key(
    qualname: Callable[..., Any] | str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    prefix: str | None = None,
) -> str:
    """Return the stable key of the call ``qualname(*args, **kwargs)``.

    ``[prefix:]qualname:<digest>``; the digest is the same in every process and run, independent
    of the order of ``kwargs``, and distinguishes ``1``, ``1.0``, ``True`` and ``"1"``. ``qualname``
    may be the function itself. Raises :class:`CacheKeyException` for a value that cannot be
    hashed stably.
    """
    name = qualified_name(qualname)
    try:
        digest = _impl.make_key(name, tuple(args), dict(kwargs or {}))
    except TypeError as exc:
        raise _key_error(exc) from exc
    return _join(prefix, name, digest)


def content_hash(value: Any) -> str:
    """Return the stable BLAKE2b-256 hex digest of ``value`` (a strong ETag, equal across processes).

    Raises :class:`CacheKeyException` for a value that cannot be hashed stably.
    """
    try:
        return str(_impl.hash_value(value))
    except TypeError as exc:
        raise _key_error(exc) from exc


def generate_model_key(
    prefix: str, model_name: str, model_id: Any, field: str | None = None
) -> str:
    """Return ``prefix:model_name:model_id`` (``...:field`` when ``field`` is given)."""
    return _join(prefix, model_name, str(model_id), field)


def generate_list_key(
    prefix: str, model_name: str, filters: Mapping[str, Any] | None = None
) -> str:
    """Return ``prefix:model_name:list``, plus ``:<digest of filters>`` when filters are given.

    The digest is independent of the order of ``filters``. Raises :class:`CacheKeyException` for a
    filter value that cannot be hashed stably.
    """
    base = _join(prefix, model_name, "list")
    if not filters:
        return base
    return f"{base}:{content_hash(dict(filters))}"


def generate_query_key(
    prefix: str, query_name: str, params: Mapping[str, Any] | None = None
) -> str:
    """Return ``prefix:query_name``, plus ``:<digest of params>`` when params are given."""
    base = _join(prefix, query_name)
    if not params:
        return base
    return f"{base}:{content_hash(dict(params))}"
