"""The hand-written .pyi of the native module matches the built module (mypy.stubtest)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).resolve().parents[2] / "native" / "stubtest-allowlist.txt"


@pytest.mark.skipif(
    importlib.util.find_spec("crown_nexus_native") is None, reason="crown_nexus_native is not built"
)
def test_stub_matches_native_module(tmp_path: Path) -> None:
    """stubtest finds no difference between crown_nexus_native.pyi and the compiled module."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "crown_nexus_native", "--allowlist", str(ALLOWLIST)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
