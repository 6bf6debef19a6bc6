"""``SecurityService``: the guide's security facade, with metrics, events and off-loop hashing.

``get_security_service(db=None)`` returns the process-wide service (registered as
``"security_service"``); :func:`configure_security` (re)configures it in place for an app's
settings, so every holder of the service sees the new configuration.

Password hashing and verification (Argon2id/bcrypt, ~0.1-0.2 s of CPU) run in a dedicated
thread pool of ``max_concurrent_hashes`` workers behind a semaphore of the same size: the event
loop never blocks, and a burst of logins waits its turn instead of occupying every thread.
"""

from __future__ import annotations

import asyncio
import os
import time
import weakref
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import ModuleType
from typing import Any

from crown_nexus.core.dependency_manager import get_registry
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security import api_keys as _api_keys
from crown_nexus.core.security import csrf as _csrf
from crown_nexus.core.security import encryption as _encryption
from crown_nexus.core.security import passwords as _passwords
from crown_nexus.core.security import validation as _validation
from crown_nexus.core.security._config import get_security_settings, set_security_settings
from crown_nexus.core.security._telemetry import SecurityTelemetry
from crown_nexus.core.security.blacklist import TokenBlacklist, create_blacklist
from crown_nexus.core.security.headers import get_security_headers
from crown_nexus.core.security.keys import KeyRing
from crown_nexus.core.security.tokens import (
    TokenData,
    TokenManager,
    TokenPair,
    TokenType,
    UserLoader,
)
from crown_nexus.core.tracing import Span, end_span, start_span, tracing_enabled
from crown_nexus.logging import get_logger
from crown_nexus.settings import Settings

__all__ = [
    "RevocationPending",
    "SecurityService",
    "build_security_service",
    "configure_security",
    "get_security_service",
]

logger = get_logger("crown_nexus.core.security")

_perf_counter = time.perf_counter
_monotonic = time.monotonic


def _failure_key(expected_type: TokenType | str | None) -> tuple[str, tuple[str, str]]:
    return ("token_validations_total", ("false", str(expected_type or "any")))


def _hash_span(name: str) -> Span | None:
    """A span for one password hash or verification (tracer ``crown_nexus.security``; it
    includes the wait for a hashing thread)."""
    return start_span(name, tracer="crown_nexus.security") if tracing_enabled() else None


class RevocationPending:
    """A verified token whose revocation check must await the blacklist (see
    :meth:`SecurityService.decode_token_nowait`)."""

    __slots__ = ("data", "expected_type", "start")

    def __init__(self, data: TokenData, expected_type: TokenType | None, start: float) -> None:
        self.data = data
        self.expected_type = expected_type
        self.start = start


#: the ``token_validations_total`` label key of a successful validation, per token type
_VALID_KEYS = {t: ("token_validations_total", ("true", t.value)) for t in TokenType}


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class SecurityService:
    """Tokens, passwords, API keys, CSRF, encryption, validation and headers for one app.

    Build it with :func:`get_security_service` / :func:`configure_security` rather than
    directly, unless a test wants its own. ``db`` is accepted (the guide passes it) and kept as
    :attr:`db`; nothing here needs it.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: Any = None,
        key_ring: KeyRing | None = None,
        blacklist: TokenBlacklist | None = None,
        jwt_impl: ModuleType | None = None,
        max_concurrent_hashes: int | None = None,
        user_loader: UserLoader | None = None,
    ) -> None:
        self.db = db
        self.user_loader: UserLoader | None = None
        self._warned_no_loader = False
        self.telemetry = SecurityTelemetry()
        self._max_workers = max_concurrent_hashes or _default_workers()
        self._executor: ThreadPoolExecutor | None = None
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()
        self.configure(
            settings,
            key_ring=key_ring,
            blacklist=blacklist,
            jwt_impl=jwt_impl,
            user_loader=user_loader,
        )

    # --- configuration ---------------------------------------------------------------------

    def configure(
        self,
        settings: Settings | None = None,
        *,
        key_ring: KeyRing | None = None,
        blacklist: TokenBlacklist | None = None,
        jwt_impl: ModuleType | None = None,
        user_loader: UserLoader | None = None,
    ) -> SecurityService:
        """(Re)build the token manager for ``settings``; a Redis blacklist when Redis is set.

        The user loader is replaced too (``None``: refresh copies claims, see
        :meth:`set_user_loader`), so a reconfigured service keeps nothing of the previous app.
        """
        self.settings = settings or get_security_settings()
        self.user_loader = user_loader
        if blacklist is None:
            blacklist = create_blacklist(
                self.settings.redis_url, timeout=self.settings.redis_timeout_ms / 1000
            )
        previous: TokenManager | None = getattr(self, "tokens", None)
        self.tokens = TokenManager(
            self.settings, key_ring=key_ring, blacklist=blacklist, jwt_impl=jwt_impl
        )
        if previous is not None and previous.blacklist is not blacklist:
            self._close_soon(previous)
        return self

    def _close_soon(self, previous: TokenManager) -> None:
        """Close a replaced blacklist backend on the running loop (nothing to do without one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(previous.close())
        self.telemetry._tasks.add(task)
        task.add_done_callback(self.telemetry._tasks.discard)

    @property
    def key_ring(self) -> KeyRing:
        """The JWT key ring (rotate keys through it)."""
        return self.tokens.key_ring

    @property
    def blacklist(self) -> TokenBlacklist:
        """The token revocation backend."""
        return self.tokens.blacklist

    async def initialize(self) -> None:
        """Start-up hook (the registry calls it): nothing to open eagerly."""
        return None

    async def close(self) -> None:
        """Close the blacklist backend and the hashing threads (the registry calls it at shutdown)."""
        self.telemetry.flush()
        await self.tokens.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    shutdown = close

    async def _off_loop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the hashing pool, at most ``max_concurrent_hashes`` at once.

        A semaphore (one per event loop) admits callers before they reach the pool, so waiting
        logins queue as cheap coroutines; the pool's worker count is the same bound.
        """
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self._max_workers)
        async with semaphore:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._max_workers, thread_name_prefix="crown-nexus-hash"
                )
            return await loop.run_in_executor(self._executor, fn, *args)

    # --- passwords -------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        """Argon2id-hash ``password`` in the hashing pool (a ``password.hash`` span when tracing)."""
        sp = _hash_span("password.hash")
        try:
            result: str = await self._off_loop(_passwords.get_password_hash, password)
        except BaseException as exc:
            end_span(sp, exc)
            raise
        end_span(sp)
        return result

    async def verify_password(
        self, plain_password: str, hashed_password: str, user_id: str | None = None
    ) -> bool:
        """Check a password in the hashing pool; record metrics; publish a failure event."""
        start = time.perf_counter()
        sp = _hash_span("password.verify")
        try:
            ok: bool = await self._off_loop(
                _passwords.verify_password, plain_password, hashed_password
            )
        except BaseException as exc:
            end_span(sp, exc)
            raise
        end_span(sp, attributes={"crown_nexus.password.valid": ok} if sp is not None else None)
        label = "true" if ok else "false"
        self.telemetry.observe(
            "password_verification_duration_seconds", time.perf_counter() - start, label
        )
        self.telemetry.inc("password_verifications_total", label)
        if not ok:
            await self.telemetry.publish(
                "security.password_verification_failed",
                {"user_id": user_id, "reason": "invalid_password"},
            )
        return ok

    async def verify_and_rehash(
        self, plain_password: str, hashed_password: str, user_id: str | None = None
    ) -> tuple[bool, str | None]:
        """Verify; when valid and the hash is outdated (bcrypt, old parameters) also return a new hash."""
        ok = await self.verify_password(plain_password, hashed_password, user_id=user_id)
        if ok and _passwords.needs_rehash(hashed_password):
            return True, await self.hash_password(plain_password)
        return ok, None

    def needs_rehash(self, hashed_password: str) -> bool:
        """See :func:`crown_nexus.core.security.needs_rehash`."""
        return _passwords.needs_rehash(hashed_password)

    async def validate_password_policy(
        self, password: str, user_id: str | None = None, email: str | None = None
    ) -> tuple[bool, str]:
        """See :func:`crown_nexus.core.security.validate_password_policy`."""
        return await _passwords.validate_password_policy(password, user_id, email)

    # --- tokens ----------------------------------------------------------------------------

    def create_token(
        self,
        subject: str,
        token_type: TokenType = TokenType.ACCESS,
        *,
        expires_delta: timedelta | None = None,
        role: Any = None,
        permissions: Iterable[Any] | None = None,
        user_data: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """Create one token (see :meth:`TokenManager.create_token`) and record metrics."""
        telemetry = self.telemetry
        sampled = telemetry.should_sample()
        start = time.perf_counter() if sampled else 0.0
        token = self.tokens.create_token(
            subject,
            token_type,
            expires_delta=expires_delta,
            role=role,
            permissions=permissions,
            user_data=user_data,
            **claims,
        )
        kind = TokenType(token_type).value
        if sampled:
            telemetry.observe("token_creation_duration_seconds", time.perf_counter() - start, kind)
        telemetry.count("tokens_created_total", kind)
        telemetry.publish_soon(
            "security.token_created", {"user_id": str(subject), "token_type": kind}
        )
        return token

    def _create_pair(
        self,
        user_id: str,
        role: Any,
        permissions: Iterable[Any] | None,
        user_data: Mapping[str, Any] | None,
        family: str | None = None,
    ) -> TokenPair:
        telemetry = self.telemetry
        sampled = telemetry.should_sample()
        start = time.perf_counter() if sampled else 0.0
        pair = self.tokens.create_token_pair(
            str(user_id), role=role, permissions=permissions, user_data=user_data, family=family
        )
        if sampled:
            telemetry.observe(
                "token_creation_duration_seconds", time.perf_counter() - start, "pair"
            )
        telemetry.count("tokens_created_total", "access")
        telemetry.count("tokens_created_total", "refresh")
        return pair

    def create_token_pair_sync(
        self,
        user_id: str,
        role: Any = None,
        permissions: Iterable[Any] | None = None,
        user_data: Mapping[str, Any] | None = None,
    ) -> TokenPair:
        """Synchronous :meth:`create_token_pair` (the module-level function uses it)."""
        pair = self._create_pair(user_id, role, permissions, user_data)
        self.telemetry.publish_soon(
            "security.token_created", {"user_id": str(user_id), "token_type": "pair"}
        )
        return pair

    async def create_token_pair(
        self,
        user_id: str,
        role: Any = None,
        permissions: Iterable[Any] | None = None,
        user_data: Mapping[str, Any] | None = None,
    ) -> TokenPair:
        """Create an access + refresh pair of a new family; publish ``security.token_created``."""
        pair = self._create_pair(user_id, role, permissions, user_data)
        await self.telemetry.publish(
            "security.token_created", {"user_id": str(user_id), "token_type": "pair"}
        )
        return pair

    async def decode_token(
        self,
        token: str,
        *,
        expected_type: TokenType | None = TokenType.ACCESS,
        check_revocation: bool = True,
    ) -> TokenData:
        """Verify a token (see :meth:`TokenManager.decode_token`) and record metrics.

        The hot path of every authenticated request: with the in-memory blacklist nothing here
        awaits, and the metrics cost a dict update (:meth:`SecurityTelemetry.validation`).
        """
        result = self.decode_token_nowait(token, expected_type, check_revocation)
        if type(result) is RevocationPending:
            return await self.finish_revocation_check(result)
        return result  # type: ignore[return-value]

    def decode_token_nowait(
        self,
        token: str,
        expected_type: TokenType | None = TokenType.ACCESS,
        check_revocation: bool = True,
    ) -> TokenData | RevocationPending:
        """:meth:`decode_token` up to the point where it would have to await.

        Returns the verified :class:`TokenData`, or a :class:`RevocationPending` when the
        blacklist can only be asked asynchronously (Redis): pass it to
        :meth:`finish_revocation_check`. Refusals raise ``AuthenticationException``.
        """
        telemetry = self.telemetry
        start = _perf_counter() if telemetry.time_next else 0.0
        tokens = self.tokens
        try:
            data = tokens.verify(token, expected_type)
            if check_revocation and not tokens.check_revocation_nowait(data):
                return RevocationPending(data, expected_type, start)
        except AuthenticationException:
            telemetry.validation(_failure_key(expected_type), start)
            raise
        # success, counted inline (SecurityTelemetry.ok_counts): a dict update and a clock read
        ok_counts = telemetry.ok_counts
        token_type = data.type
        count = ok_counts.get(token_type, 0) + 1
        ok_counts[token_type] = count
        if start or not count % telemetry.sample_every:
            telemetry.sample_validation(start, "true")
        if _monotonic() >= telemetry.next_flush:
            telemetry.flush()
        return data

    async def finish_revocation_check(self, pending: RevocationPending) -> TokenData:
        """Ask the blacklist about a verified token :meth:`decode_token_nowait` handed over."""
        data = pending.data
        try:
            await self.tokens.check_revocation(data)
        except AuthenticationException:
            self.telemetry.validation(_failure_key(pending.expected_type), pending.start)
            raise
        self.telemetry.validation(_VALID_KEYS[data.type], pending.start)
        return data

    def set_user_loader(self, loader: UserLoader | None) -> None:
        """Reload users through ``loader`` when refreshing tokens (see :data:`UserLoader`).

        Refresh then refuses unknown and inactive users and issues the account's current role
        and permissions. Without a loader, refresh copies the old token's claims (and says so
        once in the log).
        """
        self.user_loader = loader

    async def refresh_tokens(self, refresh_token: str) -> TokenPair:
        """Rotate a refresh token (see :meth:`TokenManager.refresh_tokens`).

        With a user loader (:meth:`set_user_loader`) the user is reloaded: an unknown or
        inactive user is refused (401) and the claims are rebuilt from the account.

        A reuse publishes ``security.token_revoked`` (``reason: refresh_token_reuse``) for the
        token's user before the ``AuthenticationException`` propagates.
        """

        async def on_reuse(data: TokenData) -> None:
            await self.telemetry.publish(
                "security.token_revoked",
                {
                    "user_id": data.sub,
                    "jti": data.jti,
                    "token_type": data.type.value,
                    "reason": "refresh_token_reuse",
                    "family": True,
                },
            )

        loader = self.user_loader
        if loader is None and not self._warned_no_loader:
            self._warned_no_loader = True
            logger.warning(
                "refresh_tokens has no user loader: refreshed tokens copy the old token's role "
                "and permissions; call set_user_loader() so refresh reloads the user"
            )
        pair = await self.tokens.refresh_tokens(
            refresh_token, on_reuse=on_reuse, user_loader=loader
        )
        self.telemetry.count("tokens_created_total", "access")
        self.telemetry.count("tokens_created_total", "refresh")
        return pair

    async def revoke_token(
        self, token: str, *, reason: str = "logout", revoke_family: bool = False
    ) -> TokenData:
        """Revoke a token (optionally its family); publish ``security.token_revoked``."""
        data = await self.tokens.revoke_token(token, revoke_family=revoke_family)
        await self.telemetry.publish(
            "security.token_revoked",
            {
                "user_id": data.sub,
                "jti": data.jti,
                "token_type": data.type.value,
                "reason": reason,
                "family": revoke_family,
            },
        )
        return data

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWT keys as a JWK Set (``GET /.well-known/jwks.json``)."""
        return self.tokens.jwks()

    # --- API keys --------------------------------------------------------------------------

    def generate_api_key(
        self, user_id: str, name: str, permissions: Iterable[str] = ()
    ) -> _api_keys.ApiKeyData:
        """Create an API key (see :func:`generate_api_key`, which counts it and publishes
        ``security.api_key_created``)."""
        return _api_keys.generate_api_key(user_id, name, permissions)

    def verify_api_key(self, api_key: str, hashed_secret: str) -> bool:
        """Constant-time API key check (see :func:`verify_api_key`, which times it)."""
        return _api_keys.verify_api_key(api_key, hashed_secret)

    # --- CSRF, encryption, headers, validation ---------------------------------------------

    def generate_csrf_token(self, session_id: str) -> str:
        """A CSRF token bound to ``session_id`` (see :func:`generate_csrf_token`)."""
        return _csrf.generate_csrf_token(
            session_id, secret=self.settings.secret_key.get_secret_value()
        )

    def validate_csrf_token(self, token: str, session_id: str) -> bool:
        """Check a CSRF token (see :func:`validate_csrf_token`); counts the outcome."""
        ok = _csrf.validate_csrf_token(
            token, session_id, secret=self.settings.secret_key.get_secret_value()
        )
        self.telemetry.inc("csrf_validations_total", "true" if ok else "false")
        return ok

    def encrypt_data(self, data: str | bytes | dict[str, Any]) -> str:
        """See :func:`crown_nexus.core.security.encrypt_data`."""
        return _encryption.encrypt_data(data)

    def decrypt_data(self, token: str) -> Any:
        """See :func:`crown_nexus.core.security.decrypt_data`."""
        return _encryption.decrypt_data(token)

    def get_security_headers(self, **options: Any) -> dict[str, str]:
        """See :func:`crown_nexus.core.security.get_security_headers`."""
        return get_security_headers(**options)

    def sanitize_input(self, value: Any, **options: Any) -> Any:
        """See :func:`crown_nexus.core.security.validation.sanitize_input`."""
        return _validation.sanitize_input(value, **options)

    def detect_suspicious_content(self, content: str) -> bool:
        """See :func:`~crown_nexus.core.security.validation.detect_suspicious_content` (which
        counts each attack class found)."""
        return _validation.detect_suspicious_content(content)

    def validate_json_input(
        self, data: Any, max_depth: int = 20, max_size: int = 1_000_000
    ) -> bool:
        """See :func:`crown_nexus.core.security.validation.validate_json_input`."""
        return _validation.validate_json_input(data, max_depth=max_depth, max_size=max_size)

    def moderate_content(self, content: str, content_type: str = "text") -> tuple[bool, str | None]:
        """See :func:`crown_nexus.core.security.validation.moderate_content`."""
        return _validation.moderate_content(content, content_type)


def build_security_service() -> SecurityService:
    """Factory of ``"security_service"``: one per app container, from that app's settings."""
    return SecurityService()


def get_security_service(db: Any = None) -> SecurityService:
    """The current app's :class:`SecurityService` (built from its settings on first use; the
    default container's outside an app). Test overrides are returned by ``get_service`` only.

    ``db`` is accepted as the guide passes it; the same shared service is returned.
    """
    service: SecurityService = get_registry().singleton("security_service")
    return service


def configure_security(
    settings: Settings | None = None,
    *,
    key_ring: KeyRing | None = None,
    blacklist: TokenBlacklist | None = None,
    jwt_impl: ModuleType | None = None,
    user_loader: UserLoader | None = None,
) -> SecurityService:
    """Point the current app's security system (the default container's outside an app) at
    ``settings`` and return its service; ``setup_app`` does not need it (each app's service is
    built from its own settings).

    ``user_loader`` lets refresh reload users (see :meth:`SecurityService.set_user_loader`).

    The module-level functions (``create_token``, ``decode_token``, CSRF, encryption...) and
    every holder of the shared service use the new configuration from now on.
    Raises ``ConfigurationException`` (nothing changed) for unusable ``encryption_keys``.
    """
    if settings is not None:
        _encryption.check_encryption_keys(settings.encryption_keys)
    set_security_settings(settings)
    service = get_security_service()
    service.configure(
        settings, key_ring=key_ring, blacklist=blacklist, jwt_impl=jwt_impl, user_loader=user_loader
    )
    return service
