"""glibc's malloc in a service process: a fixed mmap threshold (call it at start-up).

glibc serves a request of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB at start) with its own
``mmap`` and gives it back to the system when freed. Its *dynamic* threshold then raises the
threshold to the size of any such block freed (up to 32 MiB), so that from then on blocks of up
to that size come from the heap. In a service that is the wrong trade: CPython's ``sock.recv``
allocates the whole read size asyncio asks for (256 KiB per read of a PostgreSQL or Redis
socket) and shrinks it to the bytes received, so once one larger block was freed every read
carves 256 KiB out of the heap, and the long-lived objects allocated meanwhile land in those
carvings. The soak on PostgreSQL measured it: the memory in use stayed flat (~28 MiB) while the
free-but-kept heap grew from 7 to 21 MiB in three minutes (RSS +80-130 KiB/s); with the
threshold fixed at 128 KiB the free heap stayed at ~1.6 MiB and RSS flat (issue 15). The
reference service calls it in ``create_app``; a service built on this library calls it once
when its process starts (``from crown_nexus.integrations.malloc import pin_mmap_threshold``),
or sets ``MALLOC_MMAP_THRESHOLD_=131072`` in its environment, which glibc reads itself.

:func:`pin_mmap_threshold` sets the threshold explicitly, which also turns glibc's dynamic
adjustment off. It does nothing elsewhere than on glibc, and nothing when the operator set
``MALLOC_MMAP_THRESHOLD_`` (glibc has then read and pinned it already).
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["MMAP_THRESHOLD", "pin_mmap_threshold"]

#: glibc's ``M_MMAP_THRESHOLD`` parameter number (``malloc.h``)
_M_MMAP_THRESHOLD = -3
#: the threshold the service keeps: glibc's own starting value (blocks from 128 KiB are mapped)
MMAP_THRESHOLD = 128 * 1024


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):
        return False


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (idempotent).

    Returns whether it was set: ``False`` on a C library other than glibc, when ``mallopt``
    cannot be called, or when ``MALLOC_MMAP_THRESHOLD_`` is in the environment (the operator's
    choice stands).
    """
    # glibc's own variable, read by glibc at start-up (not a setting of ours): when the
    # operator set it, their threshold stands
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or not _is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))
