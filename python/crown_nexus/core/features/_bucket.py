"""Percentage-rollout buckets: deterministic, sticky, the same in every process and run.

``bucket(flag, target_id)`` is ``int.from_bytes(d[:8], "big") % 10_000`` where ``d`` is the
stable digest of the tuple ``(flag, target_id)`` from the ``cache_keys`` hot path
(``hash_value``: BLAKE2b-256 over the canonical encoding documented in
``crown_nexus._pure.cache_keys``). Nothing depends on ``hash()`` or ``PYTHONHASHSEED``, so a user
keeps its bucket across processes and restarts. The compiled (``crown_nexus_native``) and pure
twins give byte-identical digests, hence identical buckets.

An id is inside a rollout of ``p`` percent when ``bucket < round(p * 100)``: raising ``p`` only
adds ids, and over many ids the share inside is ``p`` (buckets are uniform).
"""

from __future__ import annotations

from collections.abc import Callable

from crown_nexus import accel

__all__ = ["BUCKETS", "bucket", "bucketer", "threshold"]

#: buckets per flag: a rollout has a resolution of 0.01 %
BUCKETS = 10_000


def bucketer(kind: str | None = None) -> Callable[[str, str], int]:
    """A ``bucket(flag, target_id) -> 0..9999`` function over the ``cache_keys`` implementation
    ``kind`` (``"native"`` or ``"pure"``; default: the one ``crown_nexus.accel`` chose).

    Raises ``KeyError`` for a kind that is not available.
    """
    module = accel.get("cache_keys") if kind is None else accel.available("cache_keys")[kind]
    hash_value = module.hash_value

    def bucket(flag: str, target_id: str) -> int:
        return int(hash_value((flag, target_id))[:16], 16) % BUCKETS

    bucket.__qualname__ = f"bucket[{kind or accel.implementations()['cache_keys']}]"
    return bucket


_default = bucketer()


def bucket(flag: str, target_id: str) -> int:
    """The rollout bucket (0-9999) of ``target_id`` for ``flag`` (the chosen implementation)."""
    return _default(flag, target_id)


def threshold(percentage: float) -> int:
    """How many buckets a rollout of ``percentage`` (0-100) covers."""
    return max(0, min(BUCKETS, round(percentage * 100)))
