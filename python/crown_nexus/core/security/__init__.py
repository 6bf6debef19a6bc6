"""The security system (guide §12, SPEC §5): tokens, keys, revocation, passwords, API keys,
CSRF, encryption, input validation, security headers and the ``"security_service"``.

Synchronous (SPEC §10): :func:`create_token`, :func:`create_token_pair`,
:func:`get_password_hash`, :func:`verify_password`, :func:`generate_api_key`,
:func:`verify_api_key`, :func:`generate_csrf_token`, :func:`validate_csrf_token`,
:func:`encrypt_data`, :func:`decrypt_data`. Asynchronous: :func:`decode_token`,
:func:`refresh_tokens`, :func:`revoke_token`, :func:`validate_password_policy`.

The module-level token functions use the shared service (:func:`get_security_service`), which
:func:`configure_security` points at an app's settings. FastAPI dependencies live in
:mod:`crown_nexus.core.security.dependencies`; input helpers in
:mod:`crown_nexus.core.security.validation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from crown_nexus.core.dependency_manager import register_service
from crown_nexus.core.security.api_keys import ApiKeyData, generate_api_key, verify_api_key
from crown_nexus.core.security.blacklist import (
    MemoryTokenBlacklist,
    TokenBlacklist,
    create_blacklist,
)
from crown_nexus.core.security.csrf import generate_csrf_token, validate_csrf_token
from crown_nexus.core.security.encryption import (
    decrypt_data,
    encrypt_data,
    generate_encryption_key,
    rotate_encrypted,
)
from crown_nexus.core.security.headers import get_security_headers
from crown_nexus.core.security.keys import JwtKey, KeyRing
from crown_nexus.core.security.passwords import (
    PasswordPolicy,
    get_password_hash,
    needs_rehash,
    validate_password_policy,
    verify_password,
)
from crown_nexus.core.security.service import (
    RevocationPending,
    SecurityService,
    build_security_service,
    configure_security,
    get_security_service,
)
from crown_nexus.core.security.tokens import TokenData, TokenManager, TokenPair, TokenType

__all__ = [
    "ApiKeyData",
    "JwtKey",
    "KeyRing",
    "MemoryTokenBlacklist",
    "PasswordPolicy",
    "SecurityService",
    "TokenBlacklist",
    "TokenData",
    "TokenManager",
    "TokenPair",
    "TokenType",
    "configure_security",
    "create_blacklist",
    "create_token",
    "create_token_pair",
    "decode_token",
    "decrypt_data",
    "encrypt_data",
    "generate_api_key",
    "generate_csrf_token",
    "generate_encryption_key",
    "get_jwks",
    "get_password_hash",
    "get_security_headers",
    "get_security_service",
    "needs_rehash",
    "refresh_tokens",
    "revoke_token",
    "rotate_encrypted",
    "validate_csrf_token",
    "validate_password_policy",
    "verify_api_key",
    "verify_password",
]

register_service(build_security_service, name="security_service")  # one per app container


def create_token(
    subject: str,
    token_type: TokenType = TokenType.ACCESS,
    *,
    expires_delta: timedelta | None = None,
    role: Any = None,
    permissions: Iterable[Any] | None = None,
    user_data: Mapping[str, Any] | None = None,
    **claims: Any,
) -> str:
    """Create and sign one token for ``subject`` (claims per SPEC §5, ``kid`` header).

    ``expires_delta`` defaults to the configured lifetime of ``token_type``; extra ``claims``
    are added (registered claims cannot be overridden: ``ValueError``).
    """
    return get_security_service().create_token(
        subject,
        token_type,
        expires_delta=expires_delta,
        role=role,
        permissions=permissions,
        user_data=user_data,
        **claims,
    )


def create_token_pair(
    user_id: str,
    role: Any = None,
    permissions: Iterable[Any] | None = None,
    user_data: Mapping[str, Any] | None = None,
) -> TokenPair:
    """Create an access + refresh token pair (a new token family) for ``user_id``."""
    return get_security_service().create_token_pair_sync(
        user_id, role=role, permissions=permissions, user_data=user_data
    )


async def decode_token(
    token: str,
    *,
    expected_type: TokenType | None = TokenType.ACCESS,
    check_revocation: bool = True,
) -> TokenData:
    """Verify ``token`` and return its :class:`TokenData`; refusals raise ``AuthenticationException``.

    Refused: ``alg: none`` or unconfigured algorithms, unknown ``kid``, bad signature, malformed
    or oversized tokens, expired / not-yet-valid, wrong ``iss``/``aud``, revoked ``jti`` or
    family, and a token whose ``type`` is not ``expected_type`` (``None`` accepts any).
    """
    service = get_security_service()
    # the service's steps inline (one coroutine, not two: this is every request's hot path)
    result = service.decode_token_nowait(token, expected_type, check_revocation)
    if type(result) is RevocationPending:
        return await service.finish_revocation_check(result)
    return result  # type: ignore[return-value]


async def refresh_tokens(refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; the old one is revoked; reuse revokes the family."""
    return await get_security_service().refresh_tokens(refresh_token)


async def revoke_token(
    token: str, *, reason: str = "logout", revoke_family: bool = False
) -> TokenData:
    """Revoke ``token`` until it would have expired (``revoke_family``: every token of its login)."""
    return await get_security_service().revoke_token(
        token, reason=reason, revoke_family=revoke_family
    )


def get_jwks() -> dict[str, list[dict[str, Any]]]:
    """The public JWT keys of the shared service as a JWK Set."""
    return get_security_service().jwks()
