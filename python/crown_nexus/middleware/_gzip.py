"""Whole-body gzip for the response formatter: ISA-L when installed, else zlib.

The formatter gzips each wrapped JSON body in one call. Intel's ISA-L (``python-isal``, a
dependency) does that in about half of zlib's CPU on a 3 KB JSON page (the call timed inside
requests, cache cold: 14.0 / 26.2 µs min / median against 27.3 / 48.3 µs; ``benches/bench_gzip.py``
times it in a loop) and compresses it at least as well as zlib's level 3 (515 against 521
bytes). Its levels are not zlib's: for the fast levels 1-3 ISA-L's level 1 is used;
level 0 (stored) and the stronger levels 4-9 a caller asks for explicitly stay with zlib. Both
produce a single gzip member (RFC 1952, mtime 0) that any gzip reader inflates to the same
bytes; the compressed bytes differ between the two.

``CROWN_NEXUS_IMPL=pure`` selects zlib, like the compiled hot paths' pure twins, so the pure
test run exercises it; :data:`GZIP_IMPLEMENTATIONS` holds every available one for the tests.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import ModuleType
from typing import Final

from crown_nexus.accel import requested_mode

_isal_zlib: ModuleType | None
try:  # an optional speed-up: zlib answers the same when the wheel is missing
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - isal is a dependency; exercised by hand
    _isal_zlib = None

__all__ = ["GZIP_BACKEND", "GZIP_IMPLEMENTATIONS", "gzip_body", "isal_gzip", "zlib_gzip"]

_zlib_compress = zlib.compress


def _check_level(level: int) -> None:
    if type(level) is not int or not 0 <= level <= 9:
        raise ValueError(f"gzip level must be an int from 0 to 9, got {level!r}")


def zlib_gzip(body: bytes, level: int) -> bytes:
    """``body`` as one gzip member, deflated by zlib at ``level`` (0-9)."""
    _check_level(level)
    return _zlib_compress(body, level, 31)


def isal_gzip(body: bytes, level: int) -> bytes:
    """``body`` as one gzip member: ISA-L's level 1 for levels 1-3, zlib for 0 and 4-9."""
    _check_level(level)
    if 1 <= level <= 3 and _isal_zlib is not None:
        return _isal_zlib.compress(body, 1, 31)  # type: ignore[no-any-return]
    return _zlib_compress(body, level, 31)


#: implementation name -> function, every one this interpreter can run
GZIP_IMPLEMENTATIONS: Final[dict[str, Callable[[bytes, int], bytes]]] = {"zlib": zlib_gzip}
if _isal_zlib is not None:
    GZIP_IMPLEMENTATIONS["isal"] = isal_gzip

#: the implementation :func:`gzip_body` uses
GZIP_BACKEND: Final[str] = (
    "isal" if _isal_zlib is not None and requested_mode() != "pure" else "zlib"
)
#: ``gzip_body(body, level)``: ``body`` (bytes-like) as one gzip member at zlib-style ``level``
#: 0-9 (``ValueError`` otherwise; ``TypeError`` for a body that is not bytes-like), by
#: :data:`GZIP_BACKEND`
gzip_body: Callable[[bytes, int], bytes] = GZIP_IMPLEMENTATIONS[GZIP_BACKEND]
