"""The token blacklist's base class and its in-memory backend (no optional dependency).

:mod:`crown_nexus.core.security.blacklist` is the public module; this one exists so the Redis
backend (:mod:`crown_nexus.core.security._redis_blacklist`) can subclass the base without
importing the module that loads it.
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable

__all__ = ["MemoryTokenBlacklist", "TokenBlacklist"]


class TokenBlacklist(abc.ABC):
    """Where revoked token ids and token families are remembered until they expire.

    A subclass that overrides :meth:`is_revoked` without overriding :meth:`is_revoked_nowait`
    beside it gets the base's ``is_revoked_nowait`` (``None``: "ask me asynchronously"), so an
    inherited synchronous answer can never contradict the subclass's own lookup.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "is_revoked" in cls.__dict__ and "is_revoked_nowait" not in cls.__dict__:
            cls.is_revoked_nowait = TokenBlacklist.is_revoked_nowait  # type: ignore[method-assign]

    @abc.abstractmethod
    async def add(self, jti: str, ttl_seconds: float) -> bool:
        """Revoke ``jti`` for ``ttl_seconds``; return ``True`` if it was not revoked before."""

    @abc.abstractmethod
    async def revoke_family(self, family: str, ttl_seconds: float) -> None:
        """Revoke every token of ``family`` for ``ttl_seconds``."""

    @abc.abstractmethod
    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        """Return ``True`` when ``jti`` or its ``family`` is revoked."""

    async def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections (no-op for the memory backend)."""

    def is_revoked_nowait(self, jti: str | None, family: str | None = None) -> bool | None:
        """:meth:`is_revoked` answered without waiting, or ``None`` when only the async call can.

        Backends that hold their entries in process answer here, so token verification need
        not await; the default (network backends) is ``None``.
        """
        return None

    @property
    def answers_nowait(self) -> bool:
        """True when :meth:`is_revoked_nowait` may answer (it is not the base's ``None``)."""
        return type(self).is_revoked_nowait is not TokenBlacklist.is_revoked_nowait


def _ttl(ttl_seconds: float) -> int:
    return max(1, math.ceil(ttl_seconds))


class MemoryTokenBlacklist(TokenBlacklist):
    """In-process blacklist; each entry disappears when its time to live has passed.

    Revoked token ids and families live in two dicts (id -> deadline on ``clock``). A lookup is
    one dict probe per id, and the clock is read only when an id is found. Expired entries are
    swept lazily (on lookup, and in bulk every ``sweep_every`` writes), so memory stays bounded
    by the number of live revoked tokens.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sweep_every: int = 1024
    ) -> None:
        self._clock = clock
        self._jtis: dict[str, float] = {}
        self._families: dict[str, float] = {}
        self._writes = 0
        self._sweep_every = sweep_every

    @staticmethod
    def _live(entries: dict[str, float], key: str, now: float) -> bool:
        deadline = entries.get(key)
        if deadline is None:
            return False
        if deadline <= now:
            del entries[key]
            return False
        return True

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes % self._sweep_every == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        for entries in (self._jtis, self._families):
            for key in [k for k, d in entries.items() if d <= now]:
                del entries[key]

    def __len__(self) -> int:
        self._sweep(self._clock())
        return len(self._jtis) + len(self._families)

    def remember(self, kind: str, ident: str, ttl_seconds: float) -> None:
        """Hold ``ident`` (``kind`` ``"jti"`` or ``"fam"``) revoked for ``ttl_seconds`` more,
        keeping a later deadline already held (a replica learning of a revocation made
        elsewhere; unlike :meth:`add` the time is not rounded up to whole seconds)."""
        entries = self._jtis if kind == "jti" else self._families
        now = self._clock()
        deadline = now + max(0.0, ttl_seconds)
        if deadline > entries.get(ident, 0.0):
            entries[ident] = deadline
            self._wrote(now)

    def live_entries(self) -> list[tuple[str, str, float]]:
        """Every entry still revoked, as ``(kind, ident, seconds left)`` (kind ``jti``/``fam``)."""
        now = self._clock()
        self._sweep(now)
        return [("jti", k, d - now) for k, d in self._jtis.items()] + [
            ("fam", k, d - now) for k, d in self._families.items()
        ]

    async def add(self, jti: str, ttl_seconds: float) -> bool:
        now = self._clock()
        if self._live(self._jtis, jti, now):
            return False
        self._jtis[jti] = now + _ttl(ttl_seconds)
        self._wrote(now)
        return True

    async def revoke_family(self, family: str, ttl_seconds: float) -> None:
        now = self._clock()
        current = self._families.get(family, 0.0)
        self._families[family] = max(current, now + _ttl(ttl_seconds))
        self._wrote(now)

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        return self.is_revoked_nowait(jti, family)

    def is_revoked_nowait(self, jti: str | None, family: str | None = None) -> bool:
        """:meth:`is_revoked` as a plain call: a dict probe per id; the clock only on a hit."""
        if jti is not None:
            deadline = self._jtis.get(jti)
            if deadline is not None:
                if deadline > self._clock():
                    return True
                self._jtis.pop(jti, None)
        if family is not None:
            deadline = self._families.get(family)
            if deadline is not None:
                if deadline > self._clock():
                    return True
                self._families.pop(family, None)
        return False
