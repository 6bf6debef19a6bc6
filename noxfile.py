"""Sessions for crown-nexus: ``nox -l`` lists them with one line each.

``tests``, ``bench`` and ``serve`` build and install the real wheels (Rust via maturin, Cython via
setup.py) into the session's virtualenv, so what is tested is what a user installs. Native
acceleration is optional: without ``cargo`` the Rust wheel is not built, without a C compiler the
Cython extensions are not (``CROWN_NEXUS_NO_EXTENSIONS=1``), and those hot paths use their pure
Python twins; the session says so once at start (:func:`build_plan`).

CI runs the suite twice in the same virtualenv, compiled then pure, without rebuilding::

    CROWN_NEXUS_EXPECT_COMPILED=1 nox -s tests
    CROWN_NEXUS_IMPL=pure CROWN_NEXUS_EXPECT_COMPILED=0 nox -R -s tests
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DEV_DEPS: list[str] = PYPROJECT["project"]["optional-dependencies"]["dev"]
PYTHON = "3.11"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


#: compilers setuptools may use to build the Cython extensions (and Rust uses to link)
C_COMPILERS: tuple[str, ...] = ("cc", "gcc", "clang")


@dataclass(frozen=True)
class BuildPlan:
    """Which compiled twins a session can build on this machine, and why not when it can't."""

    native: bool
    cython: bool
    reasons: tuple[str, ...]

    def describe(self) -> str:
        """One line for the session log: what is built and what falls back to pure Python."""
        built = [kind for kind, ok in (("native (Rust)", self.native), ("Cython", self.cython)) if ok]
        head = "building " + (" + ".join(built) if built else "no compiled twins (pure Python only)")
        return head + "".join(f"; {reason}" for reason in self.reasons)


def build_plan(
    which: Callable[[str], str | None] = shutil.which,
    environ: Mapping[str, str] | None = None,
) -> BuildPlan:
    """Decide what to compile from the tools on PATH.

    The Rust wheel needs ``cargo`` and a C linker; the Cython extensions need a C compiler
    (``$CC`` or one of :data:`C_COMPILERS`) and are also skipped when
    ``CROWN_NEXUS_NO_EXTENSIONS`` is set. A hot path whose twin is not built uses pure Python.
    """
    env = os.environ if environ is None else environ
    cc_candidates = [env["CC"].split()[0]] if env.get("CC", "").strip() else []
    has_cc = any(which(name) for name in [*cc_candidates, *C_COMPILERS])
    has_cargo = which("cargo") is not None
    no_ext = env.get("CROWN_NEXUS_NO_EXTENSIONS", "").strip() not in ("", "0")
    reasons: list[str] = []
    if not has_cargo:
        reasons.append("cargo not found: jwt, cache_keys, log_render use pure Python")
    elif not has_cc:
        reasons.append("no C linker for Rust: jwt, cache_keys, log_render use pure Python")
    if no_ext:
        reasons.append("CROWN_NEXUS_NO_EXTENSIONS is set: rate_window, permissions use pure Python")
    elif not has_cc:
        reasons.append("no C compiler: rate_window, permissions use pure Python")
    return BuildPlan(
        native=has_cargo and has_cc, cython=has_cc and not no_ext, reasons=tuple(reasons)
    )


def expect_compiled(plan: BuildPlan, environ: Mapping[str, str] | None = None) -> str:
    """The ``CROWN_NEXUS_EXPECT_COMPILED`` value for pytest.

    An explicit value wins (CI sets 1 for its compiled run, so a silent fallback fails a test);
    otherwise 1 only when every twin is built and ``CROWN_NEXUS_IMPL`` is not ``pure``.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("CROWN_NEXUS_EXPECT_COMPILED", "").strip()
    if explicit:
        return explicit
    pure = env.get("CROWN_NEXUS_IMPL", "").strip().lower() == "pure"
    return "1" if plan.native and plan.cython and not pure else "0"


def _install(session: nox.Session, *, native: bool = True, dev: bool = True) -> BuildPlan:
    """Install crown-nexus and, when asked and buildable here, the Rust wheel; then the dev deps.

    Returns the plan it followed (logged once). With ``nox -R`` nothing is installed again.
    """
    plan = build_plan()
    session.log(f"crown-nexus: {plan.describe()}")
    tools = ["pip>=24", "setuptools>=68", "wheel", "Cython>=3.0"]
    if native and plan.native:
        tools.append("maturin>=1.5,<2")
    session.install(*tools)
    if native and plan.native:
        session.install("--no-build-isolation", "./native")
    no_ext = {} if plan.cython else {"CROWN_NEXUS_NO_EXTENSIONS": "1"}
    session.install("--no-build-isolation", ".", env=no_ext)
    if dev:
        session.install(*DEV_DEPS)
    return plan


def _say_implementations(session: nox.Session, env: Mapping[str, str]) -> None:
    session.run(
        "python", "-c",
        "from crown_nexus import accel; print('crown-nexus implementations:', accel.implementations())",
        env=dict(env),
    )


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Build what this machine can (Rust, Cython), install with test deps, run pytest.

    ``CROWN_NEXUS_EXPECT_COMPILED=1`` (CI's compiled run) makes a test fail if a hot path fell
    back; ``CROWN_NEXUS_IMPL=pure`` runs the whole suite on the pure twins (reuse with ``-R``).
    """
    plan = _install(session)
    env = {"CROWN_NEXUS_EXPECT_COMPILED": expect_compiled(plan)}
    if os.environ.get("CROWN_NEXUS_IMPL", "").strip().lower() == "pure" and env[
        "CROWN_NEXUS_EXPECT_COMPILED"
    ] not in ("", "0"):
        session.error("CROWN_NEXUS_IMPL=pure contradicts CROWN_NEXUS_EXPECT_COMPILED=1")
    _say_implementations(session, env)
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
def bench_http(session: nox.Session) -> None:
    """HTTP benchmark (granian + wrk on loopback): bare FastAPI, full stack, hand-written peer.

    Writes benches/results/http.json and http.png; ``nox -s bench_http -- --smoke`` is the
    short CI run (both apps answer, ratios printed, nothing asserted about speed).
    """
    _install(session)
    session.run("python", "benches/bench_http.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def soak(session: nox.Session) -> None:
    """Soak the reference service: concurrent clients on every endpoint, Redis killed mid-run.

    granian + a private redis-server on loopback; fails on a 5xx beyond the fail policy, a
    return to Redis slower than 5 s, a lost write or RSS growth. ``nox -s soak -- --short`` is
    CI's run (about 40 s); writes benches/results/soak.json. CI runs the script with the tests
    session's interpreter instead (no second build).
    """
    _install(session)
    session.run("python", "benches/soak.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def serve(session: nox.Session) -> None:
    """Serve the reference service with granian on http://127.0.0.1:8000 (embedded defaults)."""
    _install(session, dev=False)
    _say_implementations(session, {})
    session.run(
        "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", "8000",
        *session.posargs, "crown_nexus.demo.app:app",
    )


@nox.session(python=PYTHON, default=False)
def lint(session: nox.Session) -> None:
    """ruff and mypy over the package, tests and benchmarks; import-linter's layer contracts."""
    session.install("ruff>=0.4", "mypy>=1.10", "import-linter>=2.1")
    _install(session, native=False)  # static checks: the Rust wheel is not needed, not rebuilt
    session.run("ruff", "check", "python", "tests", "benches")
    session.run("mypy", "python/crown_nexus")
    session.run("lint-imports", "--no-cache")


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
