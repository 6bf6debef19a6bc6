"""Type stubs of ``crown_nexus_native``, the compiled (Rust/PyO3) hot paths of crown-nexus.

The extension module has one submodule per hot path (``cache_keys``, ``log_render``, ``jwt``),
each with the functions of its pure twin ``crown_nexus._pure.<name>`` and the same behaviour;
``crown_nexus.accel`` is the only importer. The submodules are typed below as module classes.
Checked against the installed wheel (maturin installs this file as the package's ``__init__.pyi``)
with ``python -m mypy.stubtest crown_nexus_native --allowlist <allowlist>``, the allowlist holding
``crown_nexus_native.crown_nexus_native`` (maturin's inner extension module, re-exported by
``__init__``).
"""

from collections.abc import Callable, Mapping, Sequence
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
        """Stable BLAKE2b-256 hex digest of the call; raises UnhashableValueError (a TypeError)."""

    @staticmethod
    def hash_value(value: Any) -> str:
        """Stable BLAKE2b-256 hex digest of one value; raises UnhashableValueError (a TypeError)."""

cache_keys: _CacheKeys

# -- log_render ---------------------------------------------------------------------------------

class _LogRender(ModuleType):
    """One event dict -> one JSON line, byte-identical to ``crown_nexus._pure.log_render``."""

    IMPLEMENTATION: Final[str]

    @staticmethod
    def render(event_dict: dict[str, Any]) -> bytes:
        """Compact JSON object + ``b"\\n"``; never raises for odd values."""

    class LineRenderer:
        """The JSON log chain's last step, ``(logger, method_name, event_dict) -> bytes``: the
        bytes of the general path (``EventPreparer`` + ``render``) without its dict."""

        redactor: Any
        def __init__(
            self,
            redactor: Any,
            *,
            general: Callable[[Any, Any, Any], bytes],
            now: Callable[[], Any],
            clock: dict[str, Any],
            stamp: Callable[[int], Any],
            context_fields: Callable[[], Any],
            context_hooks: dict[str, Any],
            extra_get: Callable[[], Any],
            request_id: Callable[[], Any],
            user_id: Callable[[], Any],
            skip_files: Any,
            event_cache: dict[Any, Any],
            scrub_event: Callable[[Any], Any],
            level_names: dict[Any, Any],
        ) -> None: ...
        def __call__(self, logger: Any, method_name: Any, event_dict: Any) -> bytes: ...

log_render: _LogRender

# -- jwt ----------------------------------------------------------------------------------------

class _Jwt(ModuleType):
    """JWS compact tokens: ``crown_nexus._pure.jwt`` defines the rules and their check order.

    HS256/384/512, EdDSA and ES256 run in Rust; RS256, keys in PEM forms this crate cannot read,
    uncommon argument types and claim values other than JSON types go to the pure module.
    """

    IMPLEMENTATION: Final[str]
    SUPPORTED_ALGORITHMS: Final[frozenset[str]]
    REASONS: Final[dict[str, str]]
    DEFAULT_REQUIRE: Final[tuple[str, ...]]
    DEFAULT_MAX_LENGTH: Final[int]
    MAX_JSON_DEPTH: Final[int]
    InvalidTokenError: type[Exception]
    """The pure module's class itself (``reason: str``)."""

    @staticmethod
    def decode(
        token: str,
        key: bytes | str,
        *,
        algorithms: Sequence[str],
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        leeway: float | None = None,
        now: float | None = None,
        require: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> dict[str, Any]:
        """Verified claims; InvalidTokenError(reason) if refused."""

    @staticmethod
    def encode(
        claims: Mapping[str, Any],
        key: bytes | str,
        algorithm: str,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Compact JWS; ValueError for a bad algorithm/key, TypeError for unserializable claims."""

    @staticmethod
    def get_unverified_header(token: str, max_length: int | None = None) -> dict[str, Any]:
        """The JOSE header, signature NOT checked; InvalidTokenError too_large/malformed."""

    @staticmethod
    def public_jwk(key: bytes | str, algorithm: str, kid: str) -> dict[str, Any]:
        """Public JWK (+ kid, alg, use) of a PEM key; ValueError for HMAC algorithms."""

jwt: _Jwt
