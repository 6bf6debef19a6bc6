"""Sessions for crown-nexus: ``nox -l`` lists them with one line each.

``tests`` and ``bench`` build and install the real wheels (Rust via maturin, Cython via setup.py)
into the session's virtualenv, so what is tested is what a user installs.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_DEPS: list[str] = PYPROJECT["project"]["optional-dependencies"]["dev"]
PYTHON = "3.11"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session, *, native: bool = True, dev: bool = True) -> None:
    """Install crown-nexus (Cython build) and, when asked, the Rust wheel and the dev deps."""
    session.install("pip>=24", "maturin>=1.5,<2", "setuptools>=68", "wheel", "Cython>=3.0")
    if native:
        session.install("--no-build-isolation", "./native")
    session.install("--no-build-isolation", ".")
    if dev:
        session.install(*DEV_DEPS)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Build native + Cython, install with test deps, run pytest (fails if a build fell back)."""
    _install(session)
    env = {"CROWN_NEXUS_EXPECT_COMPILED": os.environ.get("CROWN_NEXUS_EXPECT_COMPILED", "1")}
    session.run(
        "python", "-c",
        "from crown_nexus import accel; print('implementations:', accel.implementations())",
        env=env,
    )
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs, env=env)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmarks: compiled, pure and peer libraries side by side per group."""
    _install(session)
    session.run(
        "pytest", "benches", "--benchmark-enable", "--benchmark-only",
        "--benchmark-group-by=group", "--benchmark-columns=min,median,mean,ops,rounds",
        "--benchmark-sort=mean", "-p", "no:cacheprovider", *session.posargs,
    )


@nox.session(python=PYTHON, default=False)
def serve(session: nox.Session) -> None:
    """Serve the reference service with granian on http://127.0.0.1:8000 (embedded defaults)."""
    _install(session, dev=False)
    session.run(
        "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "8000",
        *session.posargs, "crown_nexus.demo.app:app",
    )


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy over the package, tests and benchmarks."""
    session.install("ruff>=0.4", "mypy>=1.10")
    _install(session)
    session.run("ruff", "check", "python", "tests", "benches")
    session.run("mypy", "python/crown_nexus")


@nox.session(python=PYTHON, default=False)
def wheels(session: nox.Session) -> None:
    """Build the pure wheel, the Cython wheel and the native wheel into dist/."""
    session.install("pip>=24", "build", "maturin>=1.5,<2")
    dist = str(ROOT / "dist")
    session.run("python", "-m", "build", "--wheel", "--outdir", f"{dist}/pure",
                env={"CROWN_NEXUS_NO_EXTENSIONS": "1"})
    session.run("python", "-m", "build", "--wheel", "--outdir", f"{dist}/cython")
    session.run("maturin", "build", "--release", "--manifest-path", "native/Cargo.toml",
                "--out", f"{dist}/native")
    session.log(f"wheels written under {dist}/{{pure,cython,native}}")
