"""Build crown-nexus, compiling the Cython hot paths when it can.

Like falcon's setup.py: the Cython extensions are optional. Set ``CROWN_NEXUS_NO_EXTENSIONS=1``,
or lack Cython or a C compiler, and a pure-Python wheel is built instead of failing. The build
prints which kind it made.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CYTHON_DIR = HERE / "python" / "crown_nexus" / "_cython"


def _say(msg: str) -> None:
    print(f"crown-nexus build: {msg}", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """Build each extension if possible; a failure leaves the pure fallback in place."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # compiler missing altogether
            _say(f"compiled extensions skipped ({exc}); building a PURE wheel")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
            _say(f"built Cython extension {ext.name}")
        except Exception as exc:
            _say(f"could not build {ext.name} ({exc}); it falls back to pure Python")


def _extensions() -> list[Extension]:
    if os.environ.get("CROWN_NEXUS_NO_EXTENSIONS", "").strip() not in ("", "0"):
        _say("CROWN_NEXUS_NO_EXTENSIONS is set; building a PURE wheel")
        return []
    sources = sorted(CYTHON_DIR.glob("*.pyx"))
    if not sources:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _say("Cython is not installed; building a PURE wheel")
        return []
    exts = [
        Extension(
            f"crown_nexus._cython.{src.stem}",
            [str(src.relative_to(HERE))],
            extra_compile_args=["-O3"] if sys.platform != "win32" else [],
        )
        for src in sources
    ]
    _say("building a CYTHON wheel: " + ", ".join(e.name for e in exts))
    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        quiet=True,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
