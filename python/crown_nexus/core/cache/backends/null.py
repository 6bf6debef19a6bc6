"""A backend that stores nothing: every read misses, every write is accepted and dropped.

Use it to switch caching off without touching code (``CACHE_DEFAULT_BACKEND="null"``). ``incr``
still returns a correct-looking count for one call (``amount``) because nothing is kept; locks
are always granted, so cached functions simply run every time.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from crown_nexus.core.cache.backends.base import CacheBackend, check_ttl
from crown_nexus.core.cache.exceptions import CacheOperationException

__all__ = ["NullCacheBackend"]


class NullCacheBackend(CacheBackend):
    """Caches nothing; validates arguments like the real backends so misuse still surfaces."""

    name: ClassVar[str] = "null"
    active_name: ClassVar[str] = "null"  # type: ignore[misc]

    async def get(self, key: str, default: Any = None) -> Any:
        """Always a miss: return ``default``."""
        return default

    def get_nowait(self, key: str, default: Any = None) -> Any:
        """Always a miss: return ``default``."""
        return default

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """Accept and drop the value (``ttl`` is still validated)."""
        check_ttl(ttl)

    async def delete(self, key: str) -> bool:
        """Nothing is stored, so nothing is removed."""
        return False

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Nothing is stored: 0."""
        return 0

    async def exists(self, key: str) -> bool:
        """Nothing is stored: ``False``."""
        return False

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Every key misses: ``{}``."""
        return {}

    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Accept and drop the values."""
        check_ttl(ttl)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Return ``amount`` (a counter that starts at 0 every time)."""
        if type(amount) is not int:
            raise CacheOperationException(
                "incr amount must be an integer", backend=self.name, operation="incr"
            )
        check_ttl(ttl)
        return amount

    async def invalidate_pattern(self, pattern: str) -> int:
        """Nothing is stored: 0."""
        return 0

    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Nothing is stored: 0."""
        return 0

    async def get_set_members(self, set_key: str) -> list[str]:
        """No sets are kept: ``[]``."""
        return []

    async def clear(self) -> None:
        """Nothing to clear."""
        return None

    async def acquire_lock(self, name: str, ttl: float) -> str | None:
        """Always granted (nothing is shared, so nothing to protect)."""
        return secrets.token_hex(8)

    async def release_lock(self, name: str, token: str) -> bool:
        """Always released."""
        return True
