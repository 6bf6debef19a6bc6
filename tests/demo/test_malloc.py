"""The reference service fixes glibc's mmap threshold: a large block freed must not make later
256 KiB reads (CPython's ``sock.recv`` buffer for asyncio) come from the heap, which fragmented
the worker's heap in the PostgreSQL soak (issue 15: free-but-kept heap 7 -> 21 MiB in 3 min)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crown_nexus.integrations.malloc import MMAP_THRESHOLD

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
    reason="glibc's malloc only",
)

#: in a fresh interpreter: serve-like import of the demo (``crown_nexus.demo.app:app``), then free
#: an 8 MiB block (glibc's dynamic threshold would rise to 8 MiB) and count the mapped blocks a
#: 256 KiB allocation adds (1: mapped, the threshold held; 0: carved from the heap)
_PROBE = textwrap.dedent(
    """
    import ctypes, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "demo":
        import crown_nexus.demo.app  # noqa: F401  (what granian imports in each worker)

    def mapped(size):
        before = libc.mallinfo2().hblks
        block = bytearray(size)
        added = libc.mallinfo2().hblks - before
        del block
        return added

    big = bytearray(8 << 20)
    del big
    print(mapped(256 << 10))
    """
)


def _probe(tmp_path: Path, mode: str, **env: str) -> int:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    environ.update(env)
    environ["CROWN_NEXUS_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environ,
        timeout=120,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_glibc_alone_moves_the_threshold(tmp_path: Path) -> None:
    """Without the service, a freed 8 MiB block sends the next 256 KiB block to the heap."""
    assert _probe(tmp_path, "bare") == 0


def test_the_served_demo_keeps_large_blocks_mapped(tmp_path: Path) -> None:
    """After importing the demo app, a 256 KiB block is still mapped after an 8 MiB one was freed."""
    assert MMAP_THRESHOLD <= 256 << 10
    assert _probe(tmp_path, "demo") == 1


def test_the_operators_setting_stands(tmp_path: Path) -> None:
    """``MALLOC_MMAP_THRESHOLD_`` set by the operator is not overridden (here: 16 MiB)."""
    assert _probe(tmp_path, "demo", MALLOC_MMAP_THRESHOLD_=str(16 << 20)) == 0


def test_pin_reports_what_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pin_mmap_threshold`` says False when the environment names a threshold, True on glibc."""
    from crown_nexus.integrations.malloc import pin_mmap_threshold

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert pin_mmap_threshold() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert pin_mmap_threshold() is True
