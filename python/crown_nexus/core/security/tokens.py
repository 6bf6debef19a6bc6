"""Access and refresh tokens (SPEC §5): creation, verification, rotation and revocation.

Tokens are JWTs signed through the ``jwt`` hot path (``accel.get("jwt")``: Rust when built,
PyJWT otherwise) with the :class:`~crown_nexus.core.security.keys.KeyRing`'s signing key and a
``kid`` header. Claims: ``sub``, ``exp``, ``iat``, ``nbf``, ``jti``, ``type`` (``access`` /
``refresh``), ``role``, ``permissions``, optional ``user_data``, ``iss``, ``aud`` and ``fam`` —
the token family, shared by every token descended from one login. ``iss`` is
``settings.jwt_issuer`` and ``aud`` ``settings.jwt_audience``; each defaults to the app's name
(``settings.app_name``), so every token carries both and every decode requires both to match
(a token of a differently named app, or one without ``iss``/``aud``, is refused).

:meth:`TokenManager.decode_token` refuses, always with
:class:`~crown_nexus.core.exceptions.AuthenticationException` (``details.reason`` says why):
``alg: none`` and algorithms the key ring does not hold, unknown ``kid``, bad signatures,
malformed or oversized tokens, expired / not-yet-valid tokens (``settings.jwt_leeway_seconds``),
wrong ``iss``/``aud``, revoked ``jti`` or family, and a token of the wrong ``type``.

:meth:`TokenManager.refresh_tokens` rotates: the presented refresh token is revoked (atomically)
and a new pair of the same family issued. Presenting an already used refresh token again is
reuse — a sign it was stolen — so the whole family (every access and refresh token since the
login) is revoked and the call fails. With a user loader (:data:`UserLoader`), refresh reloads the
account: an unknown or inactive user is refused (and the family revoked), and the new pair carries
the account's current role and permissions, never the old token's.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Annotated, Any

import msgspec

from crown_nexus import accel
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security.blacklist import MemoryTokenBlacklist, TokenBlacklist
from crown_nexus.core.security.keys import KeyRing
from crown_nexus.settings import Settings

__all__ = [
    "TokenData",
    "TokenManager",
    "TokenPair",
    "TokenType",
    "UserLoader",
]

#: ``async (user_id) -> user | None``: the account as stored now (SPEC §4: ``id``, ``role``,
#: ``permissions``, ``is_active``; an object or a dict), used by refresh to rebuild the claims
UserLoader = Callable[[str], Awaitable[Any]]

_RESERVED = frozenset({"sub", "exp", "iat", "nbf", "jti", "type"})
#: claims every token must carry besides exp, iat and sub (which the hot path's decode requires
#: by default): TokenData.from_claims refuses a token without them ("missing_claim")
_REQUIRED_HERE = ("jti", "type")
#: the fixed, client-safe message per refusal reason (never the token, key or parsed values)
_MESSAGES = {
    "expired": "Token has expired",
    "revoked": "Token has been revoked",
    "reuse_detected": "Refresh token reuse detected; the session has been revoked",
    "wrong_token_type": "Wrong token type",
    "user_inactive": "The account is unknown or inactive",
}
_DEFAULT_MESSAGE = "Invalid authentication token"
_MAX_TOKEN_LENGTH = 8192


class TokenType(enum.StrEnum):
    """The ``type`` claim: an access token authorises requests, a refresh token renews them."""

    ACCESS = "access"
    REFRESH = "refresh"


@dataclass(slots=True)
class TokenPair:
    """An access token, a refresh token, the scheme and the access token's lifetime in seconds."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = 0

    def model_dump(self) -> dict[str, Any]:
        """The pair as a plain dict (what an endpoint returns)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }


_MIN_TS, _MAX_TS = -62135510400, 253402214400  # inside datetime's range (0001-01-02 .. 9999-12-30)


def _ts(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


_Timestamp = Annotated[int, msgspec.Meta(le=_MAX_TS)] | Annotated[float, msgspec.Meta(le=_MAX_TS)]
_OptionalNumber = int | float | None
#: the name the raw-claims field has in a claims mapping; always overwritten by from_claims
_CLAIMS_FIELD = "__crown_nexus_claims__"


class TokenData(msgspec.Struct):
    """A verified token's claims. ``exp``/``iat``/``nbf`` are timezone-aware UTC datetimes.

    Attributes: ``sub``, ``exp``, ``iat``, ``nbf``, ``jti``, ``type`` (:class:`TokenType`),
    ``role``, ``permissions`` (a list, empty when the token has none), ``user_data``, ``iss``,
    ``aud``, ``fam`` and ``claims`` (all of them, raw). The raw timestamps are kept as
    ``exp_ts``/``iat_ts``/``nbf_ts``; the datetimes are built on access (verification is a hot
    path). Positional construction follows the field order ``sub, exp, type, jti, iat, nbf,
    role, permissions, user_data, iss, aud, fam, claims``.
    """

    sub: str
    exp_ts: _Timestamp | datetime = msgspec.field(name="exp")
    type: TokenType
    jti: str
    iat_ts: _OptionalNumber | datetime = msgspec.field(default=None, name="iat")
    nbf_ts: _OptionalNumber | datetime = msgspec.field(default=None, name="nbf")
    role: str | None = None
    permissions: list[str] = []
    user_data: dict[str, Any] | None = None
    iss: str | None = None
    aud: str | list[str] | None = None
    fam: str | None = None
    claims: dict[str, Any] = msgspec.field(default_factory=dict, name=_CLAIMS_FIELD)

    @property
    def exp(self) -> datetime:
        """Expiry as an aware UTC datetime."""
        value = self.exp_ts
        return value if isinstance(value, datetime) else _ts(value)  # type: ignore[return-value]

    @property
    def iat(self) -> datetime | None:
        """Issue time as an aware UTC datetime (``None`` if absent)."""
        value = self.iat_ts
        return value if value is None or isinstance(value, datetime) else _ts(value)

    @property
    def nbf(self) -> datetime | None:
        """Not-before time as an aware UTC datetime (``None`` if absent)."""
        value = self.nbf_ts
        return value if value is None or isinstance(value, datetime) else _ts(value)

    @property
    def user_id(self) -> str:
        """The subject (``sub``): the user id."""
        return self.sub

    @property
    def expires_in(self) -> float:
        """Seconds until the token expires (negative once expired)."""
        return self.exp.timestamp() - time.time()

    def to_dict(self) -> dict[str, Any]:
        """The token data as a plain dict (datetimes as ISO strings)."""

        def iso(d: datetime | None) -> str | None:
            return None if d is None else d.isoformat()

        return {
            "sub": self.sub,
            "exp": iso(self.exp),
            "iat": iso(self.iat),
            "nbf": iso(self.nbf),
            "jti": self.jti,
            "type": self.type.value,
            "role": self.role,
            "permissions": list(self.permissions),
            "user_data": self.user_data,
            "iss": self.iss,
            "aud": self.aud,
            "fam": self.fam,
        }

    def __repr__(self) -> str:
        return f"TokenData(sub={self.sub!r}, type={self.type.value!r}, jti={self.jti!r})"

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> TokenData:
        """Build from verified claims; raises ``ValueError`` when a claim has the wrong shape.

        The hot path has already checked that ``exp``/``iat``/``nbf`` are numbers (``exp`` in
        the future, ``iat``/``nbf`` not) and ``sub``/``jti`` strings; msgspec checks the rest in
        one compiled pass: ``jti`` and ``type`` present, ``exp`` within datetime's range,
        ``type`` a :class:`TokenType`, ``role``/``fam``/``iss`` strings, ``user_data`` an object,
        ``permissions`` a list of strings and ``aud`` a string or list of strings (all optional).
        """
        try:
            data = _convert(claims, cls)
        except msgspec.ValidationError:
            if claims.get("permissions", ()) is not None:
                raise
            # "permissions": null means none (as an absent claim does)
            data = _convert({k: v for k, v in claims.items() if k != "permissions"}, cls)
        data.claims = claims
        return data


_convert = msgspec.convert


def _claims_reason(claims: Any) -> str:
    """Why verified claims were refused: a required claim absent / null, or one malformed."""
    if type(claims) is dict and any(claims.get(name) is None for name in _REQUIRED_HERE):
        return "missing_claim"
    return "invalid_claim"


def _auth_error(reason: str) -> AuthenticationException:
    """The one place a refusal becomes an exception: a fixed message and the reason code."""
    return AuthenticationException(
        message=_MESSAGES.get(reason, _DEFAULT_MESSAGE), details={"reason": reason}
    )


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for mappings, else ``getattr(obj, name)``; ``default`` when absent/None."""
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return default if value is None else value


def _role_value(role: Any) -> str | None:
    if role is None:
        return None
    value = getattr(role, "value", role)
    return str(value)


def _permission_values(permissions: Iterable[Any] | None) -> list[str]:
    if permissions is None:
        return []
    if isinstance(permissions, str):
        return [permissions]
    return [str(getattr(p, "value", p)) for p in permissions]


class TokenManager:
    """Creates, verifies, rotates and revokes tokens for one configuration.

    ``settings`` gives lifetimes, ``iss``/``aud`` (default: ``settings.app_name``), leeway and the
    default key ring;
    ``key_ring`` and ``blacklist`` may be passed explicitly (tests, key rotation, Redis);
    ``jwt_impl`` is the hot-path module (default ``accel.get("jwt")``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        key_ring: KeyRing | None = None,
        blacklist: TokenBlacklist | None = None,
        jwt_impl: ModuleType | None = None,
    ) -> None:
        self.settings = settings
        self.key_ring = key_ring or KeyRing.from_settings(settings)
        self.revoked_nowait: Callable[[str | None, str | None], bool | None] | None = None
        # `is None`, not `or`: an empty MemoryTokenBlacklist is falsy (it has a length)
        self.blacklist = blacklist if blacklist is not None else MemoryTokenBlacklist()
        self.jwt: ModuleType = jwt_impl or accel.get("jwt")
        self.access_lifetime = timedelta(minutes=settings.access_token_expire_minutes)
        self.refresh_lifetime = timedelta(days=settings.refresh_token_expire_days)
        # SPEC §5: every token carries iss and aud; unset, both are the app's name
        self.issuer: str = settings.jwt_issuer or settings.app_name
        self.audience: str = settings.jwt_audience or settings.app_name
        self.leeway = float(settings.jwt_leeway_seconds)
        options: dict[str, Any] = {"issuer": self.issuer, "audience": self.audience}
        if self.leeway:
            options["leeway"] = self.leeway
        self._decode_options = options  # max_length: the hot path's default, 8192
        self._leeway_arg: float | None = self.leeway or None

    @property
    def blacklist(self) -> TokenBlacklist:
        """The revocation backend (assigning one also sets :attr:`revoked_nowait`)."""
        return self._blacklist

    @blacklist.setter
    def blacklist(self, blacklist: TokenBlacklist) -> None:
        self._blacklist = blacklist
        #: the backend's synchronous ``is_revoked_nowait`` when it has one (see
        #: ``TokenBlacklist``: a subclass overriding only ``is_revoked`` has none), else None
        self.revoked_nowait = blacklist.is_revoked_nowait if blacklist.answers_nowait else None

    # --- creation --------------------------------------------------------------------------

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
        """Sign and return one token for ``subject``.

        ``expires_delta`` defaults to the configured lifetime of ``token_type``. Extra
        ``claims`` are added as given (``fam`` sets the family; a new one otherwise); the
        registered claims ``sub``, ``exp``, ``iat``, ``nbf``, ``jti`` and ``type`` cannot be
        overridden (``ValueError``).
        """
        clash = _RESERVED.intersection(claims)
        if clash:
            raise ValueError(f"reserved claims cannot be set: {sorted(clash)}")
        token_type = TokenType(token_type)
        if expires_delta is None:
            expires_delta = (
                self.access_lifetime if token_type is TokenType.ACCESS else self.refresh_lifetime
            )
        now = int(time.time())
        jti = uuid.uuid4().hex
        payload: dict[str, Any] = {
            "sub": str(subject),
            "exp": now + int(expires_delta.total_seconds()),
            "iat": now,
            "nbf": now,
            "jti": jti,
            "type": token_type.value,
            "role": _role_value(role),
            "permissions": _permission_values(permissions),
        }
        if user_data is not None:
            payload["user_data"] = dict(user_data)
        payload["iss"] = self.issuer
        payload["aud"] = self.audience
        payload["fam"] = jti
        payload.update(claims)
        key = self.key_ring.signing_key
        assert key.signing_key is not None  # KeyRing only accepts signing keys
        return self.jwt.encode(payload, key.signing_key, key.algorithm, {"kid": key.kid})

    def create_token_pair(
        self,
        user_id: str,
        role: Any = None,
        permissions: Iterable[Any] | None = None,
        user_data: Mapping[str, Any] | None = None,
        *,
        family: str | None = None,
    ) -> TokenPair:
        """Return a new access + refresh token pair of one family (a new family by default)."""
        fam = family or uuid.uuid4().hex
        perms = _permission_values(permissions)
        access = self.create_token(
            user_id, TokenType.ACCESS, role=role, permissions=perms, user_data=user_data, fam=fam
        )
        refresh = self.create_token(
            user_id, TokenType.REFRESH, role=role, permissions=perms, user_data=user_data, fam=fam
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="bearer",
            expires_in=int(self.access_lifetime.total_seconds()),
        )

    # --- verification ----------------------------------------------------------------------

    def verify(self, token: str, expected_type: TokenType | None = TokenType.ACCESS) -> TokenData:
        """Check signature, claims and type (not revocation); ``AuthenticationException`` if refused.

        This is the one place token errors are mapped: the hot path's ``InvalidTokenError`` and
        anything else raised while parsing become ``AuthenticationException``. With a single key
        in the ring its prepared ``(key, algorithms)`` go straight to the hot path's ``decode``
        (the signature still pins the algorithm and key); with several, the ``kid`` header
        chooses the key.
        """
        jwt = self.jwt
        claims: Any = None
        try:
            single = self.key_ring.single_args
            if single is not None and type(token) is str:
                claims = jwt.decode(
                    token,
                    single[0],
                    algorithms=single[1],
                    issuer=self.issuer,
                    audience=self.audience,
                    leeway=self._leeway_arg,
                )
            else:
                claims = self._decode_by_kid(token)
            try:  # TokenData.from_claims, inline
                data = _convert(claims, TokenData)
                data.claims = claims
            except msgspec.ValidationError:
                data = TokenData.from_claims(claims)  # the tolerated variant, or the error
        except AuthenticationException:
            raise
        except jwt.InvalidTokenError as exc:
            raise _auth_error(getattr(exc, "reason", "invalid")) from None
        except Exception:
            raise _auth_error(_claims_reason(claims)) from None
        if (
            expected_type is not None
            and data.type is not expected_type
            and data.type != expected_type
        ):
            raise _auth_error("wrong_token_type")
        return data

    def _decode_by_kid(self, token: Any) -> dict[str, Any]:
        """Decode with the key the token's ``kid`` header names (several keys in the ring)."""
        if type(token) is not str:
            raise _auth_error("malformed")
        jwt = self.jwt
        header = jwt.get_unverified_header(token, _MAX_TOKEN_LENGTH)
        key = self.key_ring.get(header.get("kid"))
        if key is None:
            raise _auth_error("unknown_key")
        claims: dict[str, Any] = jwt.decode(
            token, key.verification_key, algorithms=key.algorithms, **self._decode_options
        )
        return claims

    async def decode_token(
        self,
        token: str,
        *,
        expected_type: TokenType | None = TokenType.ACCESS,
        check_revocation: bool = True,
    ) -> TokenData:
        """Verify ``token`` and return its :class:`TokenData` (see the module docstring).

        ``expected_type=None`` accepts either type. A blacklist backend that raises is refused
        too (``reason: revocation_check_failed``): a token that cannot be checked is not trusted.
        The Redis backend does not raise when Redis is down: it answers from its local replica
        (tokens revoked before the outage stay refused, SPEC §8).
        """
        data = self.verify(token, expected_type)
        if check_revocation:
            await self.check_revocation(data)
        return data

    def check_revocation_nowait(self, data: TokenData) -> bool:
        """The revocation check, as far as it goes without awaiting: ``True`` when ``data`` is
        checked and not revoked, ``False`` when only :meth:`check_revocation` can answer (a
        network backend). Raises ``AuthenticationException`` (``revoked`` /
        ``revocation_check_failed``) when refused. The one place a token's revocation is decided
        (``SecurityService`` and ``decode_token`` go through it)."""
        nowait = self.revoked_nowait
        if nowait is None:
            return False
        try:
            revoked = nowait(data.jti, data.fam)
        except Exception:
            raise _auth_error("revocation_check_failed") from None
        if revoked is None:
            return False
        if revoked:
            raise _auth_error("revoked")
        return True

    async def check_revocation(self, data: TokenData) -> None:
        """Refuse ``data`` when its ``jti`` or family is revoked, or when that cannot be checked
        (a backend that raises is refused too: a token that cannot be checked is not trusted).

        An in-process backend answers without awaiting (:meth:`check_revocation_nowait`).
        """
        if self.check_revocation_nowait(data):
            return
        try:
            revoked = await self._blacklist.is_revoked(data.jti, data.fam)
        except Exception:
            raise _auth_error("revocation_check_failed") from None
        if revoked:
            raise _auth_error("revoked")

    # --- rotation and revocation -----------------------------------------------------------

    def _remaining(self, data: TokenData) -> float:
        return max(1.0, data.exp.timestamp() - time.time() + self.leeway)

    def _family_ttl(self) -> float:
        return self.refresh_lifetime.total_seconds() + self.leeway + 60

    async def refresh_tokens(
        self,
        refresh_token: str,
        on_reuse: Callable[[TokenData], Awaitable[None]] | None = None,
        user_loader: UserLoader | None = None,
    ) -> TokenPair:
        """Exchange a refresh token for a new pair; revoke it; detect reuse (see module docstring).

        ``on_reuse(data)`` is awaited after a reuse has revoked the family (before the
        ``AuthenticationException`` is raised), e.g. to publish an audit event. With
        ``user_loader`` the account is reloaded: unknown or inactive → ``AuthenticationException``
        (``reason: user_inactive``) and the family revoked; otherwise the new claims are the
        account's current role and permissions.
        """
        data = await self.decode_token(
            refresh_token, expected_type=TokenType.REFRESH, check_revocation=False
        )
        family = data.fam or data.jti
        try:
            if await self.blacklist.is_revoked(None, family):
                raise _auth_error("revoked")
            first_use = await self.blacklist.add(data.jti, self._remaining(data))
            if not first_use:
                await self.blacklist.revoke_family(family, self._family_ttl())
                reused = True
            else:
                reused = False
        except AuthenticationException:
            raise
        except Exception:
            raise _auth_error("revocation_check_failed") from None
        if reused:
            if on_reuse is not None:
                await on_reuse(data)
            raise _auth_error("reuse_detected")
        role: Any = data.role
        permissions: Iterable[Any] = data.permissions
        if user_loader is not None:
            user = await user_loader(data.sub)
            if user is None or not _field(user, "is_active", True):
                await self.blacklist.revoke_family(family, self._family_ttl())
                raise _auth_error("user_inactive")
            role = _field(user, "role")
            permissions = _field(user, "permissions") or ()
        return self.create_token_pair(
            data.sub,
            role=role,
            permissions=permissions,
            user_data=data.user_data,
            family=family,
        )

    async def revoke_token(self, token: str, *, revoke_family: bool = False) -> TokenData:
        """Revoke ``token`` (any type) until it would expire; with ``revoke_family`` its whole family.

        Revoking an already revoked token is allowed (idempotent); an invalid or expired token
        raises ``AuthenticationException``. Returns the revoked token's data.
        """
        data = await self.decode_token(token, expected_type=None, check_revocation=False)
        await self.blacklist.add(data.jti, self._remaining(data))
        if revoke_family:
            await self.blacklist.revoke_family(data.fam or data.jti, self._family_ttl())
        return data

    async def revoke_family(self, family: str) -> None:
        """Revoke every token of ``family`` (e.g. "log out everywhere" for one login)."""
        await self.blacklist.revoke_family(family, self._family_ttl())

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The key ring's public keys as a JWK Set."""
        return self.key_ring.jwks(self.jwt)

    async def close(self) -> None:
        """Close the blacklist backend."""
        await self.blacklist.close()
