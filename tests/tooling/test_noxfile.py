"""The noxfile builds only what the machine can compile; the rest is pure (issue 12)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noxfile() -> ModuleType:
    """The project's noxfile, loaded as a module."""
    spec = importlib.util.spec_from_file_location("crown_nexus_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _which(*present: str):  # type: ignore[no-untyped-def]
    """A shutil.which stand-in for a machine that has exactly ``present`` on PATH."""
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_everything_is_built_with_cargo_and_cc(noxfile: ModuleType) -> None:
    """cargo + cc: both twins are built and nothing is reported as falling back."""
    plan = noxfile.build_plan(_which("cargo", "cc"), {})
    assert (plan.native, plan.cython, plan.reasons) == (True, True, ())
    assert noxfile.expect_compiled(plan, {}) == "1"


def test_no_rust_builds_cython_only_and_says_so(noxfile: ModuleType) -> None:
    """Without cargo the Rust wheel is skipped and the log names the pure hot paths."""
    plan = noxfile.build_plan(_which("gcc"), {})
    assert (plan.native, plan.cython) == (False, True)
    assert "cargo not found" in plan.describe() and "jwt" in plan.describe()
    assert noxfile.expect_compiled(plan, {}) == "0"


def test_no_compiler_at_all_is_pure(noxfile: ModuleType) -> None:
    """Without cargo or a C compiler nothing is compiled; pytest must not expect compiled twins."""
    plan = noxfile.build_plan(_which(), {})
    assert (plan.native, plan.cython) == (False, False)
    assert "pure Python only" in plan.describe()
    assert noxfile.expect_compiled(plan, {}) == "0"


def test_cargo_without_linker_is_not_enough(noxfile: ModuleType) -> None:
    """Rust links with the C toolchain: cargo alone does not build the native wheel."""
    plan = noxfile.build_plan(_which("cargo"), {})
    assert (plan.native, plan.cython) == (False, False)


def test_cc_env_and_no_extensions(noxfile: ModuleType) -> None:
    """$CC counts as a compiler; CROWN_NEXUS_NO_EXTENSIONS turns the Cython build off."""
    assert noxfile.build_plan(_which("cargo", "my-cc"), {"CC": "my-cc -O2"}).native
    plan = noxfile.build_plan(_which("cargo", "cc"), {"CROWN_NEXUS_NO_EXTENSIONS": "1"})
    assert (plan.native, plan.cython) == (True, False)
    assert noxfile.expect_compiled(plan, {}) == "0"


def test_expect_compiled_explicit_value_and_pure_mode(noxfile: ModuleType) -> None:
    """CI's explicit value wins; CROWN_NEXUS_IMPL=pure never expects compiled twins by default."""
    full = noxfile.build_plan(_which("cargo", "cc"), {})
    empty = noxfile.build_plan(_which(), {})
    assert noxfile.expect_compiled(empty, {"CROWN_NEXUS_EXPECT_COMPILED": "1"}) == "1"
    assert noxfile.expect_compiled(full, {"CROWN_NEXUS_IMPL": "pure"}) == "0"


def test_real_path_without_cargo(noxfile: ModuleType, tmp_path: Path) -> None:
    """With a PATH that holds no cargo (a real shutil.which lookup), the plan skips Rust."""
    code = (
        "import importlib.util, sys; "
        f"spec = importlib.util.spec_from_file_location('nf', {str(ROOT / 'noxfile.py')!r}); "
        "m = importlib.util.module_from_spec(spec); sys.modules['nf'] = m; "
        "spec.loader.exec_module(m); "
        "print(m.build_plan().describe())"
    )
    env = {"PATH": str(tmp_path), "CROWN_NEXUS_NO_EXTENSIONS": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pure Python only" in out.stdout and "cargo not found" in out.stdout
