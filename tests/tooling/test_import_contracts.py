"""The import-linter contracts in pyproject.toml hold, and they do catch an upward import (issue 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(package_root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's contracts over the crown_nexus found in package_root."""
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is missing: install the dev extra (import-linter)")
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=package_root, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_package_keeps_its_layers_and_has_no_cycles() -> None:
    """Both contracts (layers, acyclic siblings) are kept by the package as it is."""
    out = _lint_imports(ROOT / "python")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def test_a_function_level_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """An import from exceptions up into the error package, even inside a function, is refused."""
    copy = tmp_path / "crown_nexus"
    shutil.copytree(ROOT / "python" / "crown_nexus", copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    handlers = copy / "core" / "exceptions" / "_handlers.py"
    handlers.write_text(
        handlers.read_text()
        + "\n\ndef _dodge() -> object:\n    from crown_nexus.core.error import report_error\n\n    return report_error\n"
    )
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout
    assert "crown_nexus.core.exceptions._handlers -> crown_nexus.core.error" in out.stdout


def test_settings_layer_imports_nothing_above_it() -> None:
    """Importing crown_nexus.settings loads no core system; core.config is the same settings object."""
    code = (
        "import sys, crown_nexus.settings as s; "
        "assert not [m for m in sys.modules if m.startswith('crown_nexus.core')], sys.modules; "
        "from crown_nexus.core.config import settings; assert settings is s.get_settings()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
