"""Choose, once at import, which implementation each hot path uses.

This is the only module that imports compiled code (STYLE habit 1). Every hot path has a pure
reference module ``crown_nexus._pure.<name>`` and a compiled twin:

========== ======================================== ==========
hot path   compiled twin                            kind
========== ======================================== ==========
jwt        ``crown_nexus_native.jwt``               native
cache_keys ``crown_nexus_native.cache_keys``        native
log_render ``crown_nexus_native.log_render``        native
rate_window ``crown_nexus._cython.rate_window``     cython
permissions ``crown_nexus._cython.permissions``     cython
========== ======================================== ==========

``CROWN_NEXUS_IMPL=pure`` forces every hot path to pure Python; ``auto`` (default) takes the
compiled twin when it imports. A compiled module that is present but fails to import falls back
with one ``RuntimeWarning`` (never an error). So does a ``crown_nexus_native`` whose version is
not ``crown_nexus.__version__``: the Rust code calls back into ``crown_nexus._pure`` by name, so
a native wheel from another release may disagree with this package. Both twins stay importable
through :func:`available` so tests and benchmarks can run each.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import warnings
from types import ModuleType
from typing import Final

from crown_nexus import __version__

__all__ = [
    "HOT_PATHS",
    "available",
    "get",
    "implementations",
    "requested_mode",
]

#: hot path -> (kind of compiled twin, how to import it)
HOT_PATHS: Final[dict[str, str]] = {
    "jwt": "native",
    "cache_keys": "native",
    "log_render": "native",
    "rate_window": "cython",
    "permissions": "cython",
}

_NATIVE_MODULE: Final = "crown_nexus_native"
_NATIVE_DISTRIBUTION: Final = "crown-nexus-native"


def requested_mode() -> str:
    """Return the mode asked for by ``CROWN_NEXUS_IMPL``: ``"pure"`` or ``"auto"``.

    Any other value is treated as ``auto`` with a warning, so a typo never breaks start-up.
    """
    # Read here, not through Settings (whose ``impl`` field documents the same variable): hot
    # paths pick their implementation when their module is imported, before settings exist,
    # and accel sits below the settings layer, so it cannot import them.
    raw = os.environ.get("CROWN_NEXUS_IMPL", "auto").strip().lower() or "auto"
    if raw not in ("pure", "auto"):
        warnings.warn(
            f"CROWN_NEXUS_IMPL={raw!r} is not 'pure' or 'auto'; using 'auto'",
            RuntimeWarning,
            stacklevel=2,
        )
        return "auto"
    return raw


def _load_native_root() -> ModuleType | None:
    if importlib.util.find_spec(_NATIVE_MODULE) is None:
        return None
    try:
        root = importlib.import_module(_NATIVE_MODULE)
    except Exception as exc:  # present but broken: one warning, never an error
        warnings.warn(
            f"{_NATIVE_MODULE} is installed but failed to import ({exc!r}); "
            "using the pure Python implementations",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    native_version = native_version_of(root)
    if native_version != __version__:
        warnings.warn(
            f"{_NATIVE_MODULE} {native_version or 'of unknown version'} does not match "
            f"crown_nexus {__version__}; using the pure Python implementations of "
            + ", ".join(name for name, kind in HOT_PATHS.items() if kind == "native"),
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return root


def native_version_of(root: ModuleType) -> str | None:
    """The version ``crown_nexus_native`` reports: its ``__version__``, else its distribution's."""
    reported = getattr(root, "__version__", None)
    if isinstance(reported, str) and reported:
        return reported
    try:
        return importlib.metadata.version(_NATIVE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _load_compiled(name: str, kind: str, native_root: ModuleType | None) -> ModuleType | None:
    if kind == "native":
        if native_root is None:
            return None
        sub = getattr(native_root, name, None)
        return sub if isinstance(sub, ModuleType) else None
    modname = f"crown_nexus._cython.{name}"
    try:
        spec = importlib.util.find_spec(modname)
    except ImportError:
        spec = None
    if spec is None or spec.origin is None or spec.origin.endswith((".py", ".pyx")):
        return None
    try:
        return importlib.import_module(modname)
    except Exception as exc:
        warnings.warn(
            f"{modname} is built but failed to import ({exc!r}); using pure Python",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _decide() -> tuple[dict[str, dict[str, ModuleType]], dict[str, str]]:
    mode = requested_mode()
    native_root = _load_native_root()
    twins: dict[str, dict[str, ModuleType]] = {}
    chosen: dict[str, str] = {}
    for name, kind in HOT_PATHS.items():
        found: dict[str, ModuleType] = {}
        compiled = _load_compiled(name, kind, native_root)
        if compiled is not None:
            found[kind] = compiled
        try:
            found["pure"] = importlib.import_module(f"crown_nexus._pure.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"crown_nexus._pure.{name}":
                raise
        twins[name] = found
        if mode == "auto" and kind in found:
            chosen[name] = kind
        elif "pure" in found:
            chosen[name] = "pure"
    return twins, chosen


_TWINS, _CHOSEN = _decide()


def implementations() -> dict[str, str]:
    """Return which implementation each hot path uses, e.g. ``{"jwt": "native", ...}``.

    Values are ``"native"``, ``"cython"`` or ``"pure"``.
    """
    return dict(_CHOSEN)


def available(name: str) -> dict[str, ModuleType]:
    """Return every importable implementation of hot path ``name``, keyed by kind.

    Always contains ``"pure"``; contains ``"native"`` or ``"cython"`` when that twin imported.
    Used by tests (one case, every implementation) and benchmarks.
    """
    if name not in HOT_PATHS:
        raise KeyError(f"unknown hot path {name!r}; known: {sorted(HOT_PATHS)}")
    if "pure" not in _TWINS[name]:
        raise ImportError(f"crown_nexus._pure.{name} is missing")
    return dict(_TWINS[name])


def get(name: str) -> ModuleType:
    """Return the implementation module chosen for hot path ``name``."""
    impls = available(name)
    return impls[_CHOSEN[name]]
