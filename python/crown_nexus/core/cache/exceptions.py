"""Exceptions of the cache system (guide §9).

Every cache exception is an :class:`~crown_nexus.core.exceptions.AppException`, so the framework
renders it with the standard error body. The hierarchy:

- :class:`CacheException` (500, ``CACHE_ERROR``): a cache-system error the caller should see.
- :class:`CacheOperationException` (503, ``CACHE_OPERATION_ERROR``): one operation failed (the
  backend is unreachable and no fallback could serve it); callers usually fall back to the source.
- :class:`CacheConfigurationException` (500, ``CACHE_CONFIGURATION_ERROR``): bad cache settings or
  an unknown backend name.
- :class:`CacheSerializationException` (500, ``CACHE_SERIALIZATION_ERROR``): a value cannot be
  encoded for the cache (or cached bytes cannot be decoded); an operation failure and a ``TypeError``.
- :class:`CacheKeyException` (422, ``CACHE_KEY_ERROR``): a value cannot be hashed stably into a
  cache key; it is also a :class:`TypeError`, as Python raises for unhashable values.
"""

from __future__ import annotations

import enum
from typing import Any

from crown_nexus.core.exceptions import AppException

__all__ = [
    "CacheConfigurationException",
    "CacheErrorCode",
    "CacheException",
    "CacheKeyException",
    "CacheOperationException",
    "CacheSerializationException",
]


class CacheErrorCode(enum.StrEnum):
    """The ``code`` of each cache exception (rendered as its string value)."""

    CACHE_ERROR = "CACHE_ERROR"
    CACHE_OPERATION_ERROR = "CACHE_OPERATION_ERROR"
    CACHE_CONFIGURATION_ERROR = "CACHE_CONFIGURATION_ERROR"
    CACHE_KEY_ERROR = "CACHE_KEY_ERROR"
    CACHE_SERIALIZATION_ERROR = "CACHE_SERIALIZATION_ERROR"


class CacheException(AppException):
    """Base of every cache error.

    ``backend`` and ``operation`` (when given) appear in ``details``; ``unavailable`` is true when
    the backend could not be reached at all (refused, reset, stalled), which is what makes the
    Redis backend fall back to memory. The key is kept as ``.key`` but never put in ``details``.
    """

    status_code = 500
    default_code: Any = CacheErrorCode.CACHE_ERROR
    default_message = "Cache error"

    def __init__(
        self,
        message: str | None = None,
        code: Any = None,
        status_code: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
        *,
        backend: str | None = None,
        operation: str | None = None,
        key: str | None = None,
        original_exception: BaseException | None = None,
        unavailable: bool = False,
    ) -> None:
        info: Any = details
        if details is None or isinstance(details, dict):
            info = dict(details or {})
            if backend is not None:
                info["backend"] = backend
            if operation is not None:
                info["operation"] = operation
            info = info or None
        self.backend = backend
        self.operation = operation
        self.key = key
        self.original_exception = original_exception
        self.unavailable = unavailable
        super().__init__(
            message,
            code=code,
            status_code=status_code,
            details=info,
            headers=headers,
        )


class CacheOperationException(CacheException):
    """A cache operation failed and could not be served by a fallback backend."""

    default_message = "Cache operation failed"
    default_code = CacheErrorCode.CACHE_OPERATION_ERROR
    status_code = 503


class CacheConfigurationException(CacheException):
    """The cache is misconfigured (unknown backend, bad Redis URL, missing extra)."""

    default_message = "Cache configuration error"
    default_code = CacheErrorCode.CACHE_CONFIGURATION_ERROR
    status_code = 500


class CacheSerializationException(CacheOperationException, TypeError):
    """A value cannot be serialized for (or deserialized from) the cache."""

    default_message = "Value cannot be serialized for the cache"
    default_code = CacheErrorCode.CACHE_SERIALIZATION_ERROR
    status_code = 500


class CacheKeyException(CacheException, TypeError):
    """A value cannot be hashed stably into a cache key (e.g. an arbitrary object, a NaN)."""

    default_message = "Value cannot be used in a cache key"
    default_code = CacheErrorCode.CACHE_KEY_ERROR
    status_code = 422
