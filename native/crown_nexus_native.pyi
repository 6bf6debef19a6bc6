"""Type stubs of ``crown_nexus_native``, the compiled (Rust/PyO3) hot paths of crown-nexus.

The extension module has one submodule per hot path (``cache_keys``, ``log_render``, ``jwt``),
each with the functions of its pure twin ``crown_nexus._pure.<name>`` and the same behaviour;
``crown_nexus.accel`` is the only importer. The submodules are typed below as module classes.
Checked against the installed wheel (maturin installs this file as the package's ``__init__.pyi``)
with ``python -m mypy.stubtest crown_nexus_native --allowlist <allowlist>``, the allowlist holding
``crown_nexus_native.crown_nexus_native`` (maturin's inner extension module, re-exported by
``__init__``).
"""

from types import ModuleType
from typing import Any, Final

__all__ = ["BUILD_PROFILE", "__version__", "cache_keys", "jwt", "log_render"]

__version__: Final[str]
BUILD_PROFILE: Final[str]

# -- cache_keys ---------------------------------------------------------------------------------

class _CacheKeys(ModuleType):
    """Stable cache keys: ``crown_nexus._pure.cache_keys`` defines the encoding."""

    IMPLEMENTATION: Final[str]

    @staticmethod
    def make_key(qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Stable sha256 hex digest of the call; raises UnhashableValueError (a TypeError)."""

    @staticmethod
    def hash_value(value: Any) -> str:
        """Stable sha256 hex digest of one value; raises UnhashableValueError (a TypeError)."""

cache_keys: _CacheKeys

# -- log_render ---------------------------------------------------------------------------------

class _LogRender(ModuleType):
    """One event dict -> one JSON line, byte-identical to ``crown_nexus._pure.log_render``."""

    IMPLEMENTATION: Final[str]

    @staticmethod
    def render(event_dict: dict[str, Any]) -> bytes:
        """Compact JSON object + ``b"\\n"``; never raises for odd values."""

log_render: _LogRender

# -- jwt (engineer native-jwt fills this section) -----------------------------------------------

jwt: ModuleType
