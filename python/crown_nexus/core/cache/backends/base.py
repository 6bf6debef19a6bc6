"""The abstract cache backend every store implements (memory, Redis, null).

Semantics shared by every backend (one test suite runs against all of them):

- keys are ``str``; ``ttl`` is in seconds (``int`` or ``float``); ``None`` or ``0`` means the
  entry does not expire; a negative ``ttl`` is a ``ValueError``;
- ``get`` returns ``default`` on a miss, so a cached ``None`` is distinguishable from a miss;
- ``tags`` group entries: the tag ``t`` is the set ``cache:tag:t`` (:data:`TAG_PREFIX`), which
  ``get_set_members`` lists and ``delete`` removes; a tag set lives as long as its longest entry;
- patterns are Redis glob patterns (``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\x``), matched
  the same way by every backend (:func:`glob_to_regex`);
- ``incr`` is atomic; it creates the counter at 0 and sets ``ttl`` only when it creates it; it
  raises :class:`~crown_nexus.core.cache.exceptions.CacheOperationException` when the value is not
  an integer;
- ``acquire_lock``/``release_lock`` give a short mutual-exclusion lease (used against stampedes).
"""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Final

__all__ = ["TAG_PREFIX", "CacheBackend", "check_ttl", "glob_to_regex"]

#: Prefix of the set that lists the keys of one tag: ``cache:tag:<tag>``.
TAG_PREFIX: Final = "cache:tag:"


def check_ttl(ttl: float | None) -> float | None:
    """Normalise ``ttl``: ``None``/``0`` -> ``None`` (no expiry); negative -> ``ValueError``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if ttl < 0 or ttl != ttl:
        raise ValueError(f"ttl must be >= 0 seconds, got {ttl!r}")
    return float(ttl) if ttl else None


@functools.lru_cache(maxsize=256)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Redis glob ``pattern`` (as ``SCAN MATCH`` reads it) into an anchored regex."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            parts: list[str] = []
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < n:
                    parts.append(re.escape(pattern[j + 1]))
                    j += 2
                elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    lo, hi = sorted((pattern[j], pattern[j + 2]))
                    parts.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 3
                else:
                    parts.append(re.escape(pattern[j]))
                    j += 1
            if not parts:
                # an empty class matches nothing in Redis ("[]" / "[^]")
                out.append("(?!)" if not negate else ".")
            else:
                out.append(f"[{'^' if negate else ''}{''.join(parts)}]")
            i = j  # at "]" (or the end, an unterminated class ends the pattern)
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class CacheBackend(abc.ABC):
    """A cache store: the operations ``CacheService`` routes to (all async)."""

    #: the name the service looks the backend up by (``"memory"``, ``"redis"``, ``"null"``)
    name: ClassVar[str] = "base"

    @abc.abstractmethod
    async def get(self, key: str, default: Any = None) -> Any:
        """Return the value stored at ``key``, or ``default`` when missing or expired."""

    @abc.abstractmethod
    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: Iterable[str] | None = None
    ) -> None:
        """Store ``value`` at ``key`` for ``ttl`` seconds, adding ``key`` to each tag's set."""

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key`` (an entry or a tag set); return whether something was removed."""

    @abc.abstractmethod
    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove every key in ``keys``; return how many existed."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live entry."""

    @abc.abstractmethod
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys that hold live entries (misses are left out)."""

    @abc.abstractmethod
    async def set_many(
        self,
        mapping: Mapping[str, Any],
        ttl: float | None = None,
        tags: Iterable[str] | None = None,
    ) -> None:
        """Store every item of ``mapping`` with the same ``ttl`` and ``tags``."""

    @abc.abstractmethod
    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer at ``key`` (created at 0); return the result."""

    @abc.abstractmethod
    async def invalidate_pattern(self, pattern: str) -> int:
        """Remove every entry whose key matches the glob ``pattern``; return how many."""

    @abc.abstractmethod
    async def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Remove every entry tagged with any of ``tags`` and the tag sets; return how many entries."""

    @abc.abstractmethod
    async def get_set_members(self, set_key: str) -> list[str]:
        """Return the members of the set ``set_key`` (for tags: ``cache:tag:<tag>``)."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Remove every entry this backend holds."""

    @abc.abstractmethod
    async def acquire_lock(self, name: str, ttl: float) -> str | None:
        """Take the lease ``name`` for ``ttl`` seconds; return its token, or ``None`` if held."""

    @abc.abstractmethod
    async def release_lock(self, name: str, token: str) -> bool:
        """Release the lease ``name`` if ``token`` still owns it; return whether it did."""

    @property
    def active_name(self) -> str:
        """The name of the store serving operations now (differs only for fallback wrappers)."""
        return self.name

    async def ping(self) -> bool:
        """Whether the backend answers (always true for in-process backends)."""
        return True

    async def initialize(self) -> None:
        """Prepare the backend (connect, warm the pool); called by ``CacheService.initialize``."""
        return None

    async def close(self) -> None:
        """Release the backend's resources; called by ``CacheService.shutdown``."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"
