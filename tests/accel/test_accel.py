"""The accel layer: one decision per hot path, an env switch, and a warning for broken builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from crown_nexus import accel

PROBE = "import json, warnings; warnings.simplefilter('always'); from crown_nexus import accel; print(json.dumps(accel.implementations()))"


def _run(code: str, env: dict[str, str], extra_path: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **env}
    if extra_path:
        full_env["PYTHONPATH"] = extra_path + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=60)


def test_every_hot_path_is_reported() -> None:
    """implementations() names every hot path with a known kind."""
    impls = accel.implementations()
    assert set(impls) == set(accel.HOT_PATHS)
    for name, kind in impls.items():
        assert kind in ("pure", accel.HOT_PATHS[name])


def test_available_always_has_pure_and_matches_choice() -> None:
    """available() holds the pure twin and the chosen one; get() returns the chosen module."""
    for name in accel.HOT_PATHS:
        impls = accel.available(name)
        assert "pure" in impls
        assert accel.get(name) is impls[accel.implementations()[name]]


def test_unknown_hot_path_is_a_key_error() -> None:
    """Asking for a hot path that does not exist is a KeyError naming the known ones."""
    with pytest.raises(KeyError, match="known"):
        accel.available("nope")


def test_impl_pure_forces_pure_everywhere() -> None:
    """CROWN_NEXUS_IMPL=pure turns every hot path to pure at import."""
    out = _run(PROBE, {"CROWN_NEXUS_IMPL": "pure"})
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout).values()) == {"pure"}


def test_bad_impl_value_warns_and_uses_auto() -> None:
    """An unknown CROWN_NEXUS_IMPL value warns and behaves like auto, never an error."""
    out = _run(PROBE, {"CROWN_NEXUS_IMPL": "turbo"})
    auto = _run(PROBE, {"CROWN_NEXUS_IMPL": "auto"})  # this process may itself run with pure
    assert out.returncode == 0, out.stderr
    assert auto.returncode == 0, auto.stderr
    assert "CROWN_NEXUS_IMPL" in out.stderr
    assert json.loads(out.stdout) == json.loads(auto.stdout)


def test_broken_native_module_falls_back_with_one_warning(tmp_path: Path) -> None:
    """A crown_nexus_native that fails to import gives one RuntimeWarning and pure fallbacks."""
    pkg = tmp_path / "crown_nexus_native"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('simulated broken build')\n")
    out = _run(PROBE, {"CROWN_NEXUS_IMPL": "auto"}, extra_path=str(tmp_path))
    assert out.returncode == 0, out.stderr
    impls = json.loads(out.stdout)
    for name, kind in accel.HOT_PATHS.items():
        if kind == "native":
            assert impls[name] == "pure"
    assert out.stderr.count("simulated broken build") == 1


def test_import_crown_nexus_imports_no_optional_dependency() -> None:
    """`import crown_nexus` (and accel) pulls in neither redis, celery, asyncpg nor compiled code."""
    code = textwrap.dedent(
        """
        import sys, json
        import crown_nexus
        print(json.dumps([m for m in ("redis", "celery", "asyncpg", "crown_nexus_native") if m in sys.modules]))
        """
    )
    out = _run(code, {})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.skipif(
    os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "") in ("", "0"),
    reason="CROWN_NEXUS_EXPECT_COMPILED is not set (only CI and `nox -s tests` require compiled builds)",
)
def test_ci_did_not_silently_fall_back_to_pure() -> None:
    """Where the compiled builds are expected, every hot path uses its compiled twin."""
    assert accel.requested_mode() == "auto"
    assert accel.implementations() == accel.HOT_PATHS


def test_native_version_mismatch_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crown_nexus_native of another release is not used: one RuntimeWarning names both versions."""
    native = pytest.importorskip("crown_nexus_native", reason="the Rust wheel is not installed")
    import crown_nexus

    monkeypatch.setattr(native, "__version__", "9.9.9")
    monkeypatch.setenv("CROWN_NEXUS_IMPL", "auto")
    with pytest.warns(RuntimeWarning) as record:
        twins, chosen = accel._decide()
    mismatch = [str(w.message) for w in record if "does not match" in str(w.message)]
    assert len(mismatch) == 1
    assert "9.9.9" in mismatch[0] and crown_nexus.__version__ in mismatch[0]
    for name, kind in accel.HOT_PATHS.items():
        if kind == "native":
            assert chosen[name] == "pure" and "native" not in twins[name]


def test_native_version_match_keeps_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed native wheel reports crown_nexus's own version, so auto takes it."""
    native = pytest.importorskip("crown_nexus_native", reason="the Rust wheel is not installed")
    import crown_nexus

    assert accel.native_version_of(native) == crown_nexus.__version__
    monkeypatch.setenv("CROWN_NEXUS_IMPL", "auto")
    _, chosen = accel._decide()
    assert all(chosen[name] == "native" for name, kind in accel.HOT_PATHS.items() if kind == "native")


def test_native_version_from_distribution_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    """A native module without __version__ is checked against its distribution's version."""
    fake = ModuleType("crown_nexus_native")
    monkeypatch.setattr(accel.importlib.metadata, "version", lambda dist: "0.0.1")
    assert accel.native_version_of(fake) == "0.0.1"
