"""Tokens: claims, verification rules, rotation, reuse detection and revocation (both jwt impls)."""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType

import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus import accel
from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security import (
    JwtKey,
    KeyRing,
    TokenManager,
    TokenPair,
    TokenType,
    create_token,
    create_token_pair,
    decode_token,
    get_jwks,
    refresh_tokens,
    revoke_token,
)
from crown_nexus.core.security.blacklist import TokenBlacklist
from tests.core.security.conftest import SECRET, make_settings


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict, dict]:
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        orjson.loads(base64.urlsafe_b64decode(pad(head))),
        orjson.loads(base64.urlsafe_b64decode(pad(body))),
    )


def _like(settings, **changes):
    """A copy of the test settings with ``changes`` (validated)."""
    values = {"jwt_issuer": settings.jwt_issuer, "jwt_audience": settings.jwt_audience}
    values.update(changes)
    return make_settings(**values)


@pytest.fixture
def manager(settings, jwt_impl: ModuleType) -> TokenManager:
    """A token manager on the test settings with the parametrized jwt implementation."""
    return TokenManager(settings, jwt_impl=jwt_impl)


async def _reason(coro) -> str:
    with pytest.raises(AuthenticationException) as info:
        await coro
    assert info.value.status_code == 401
    assert info.value.headers.get("WWW-Authenticate") == "Bearer"
    return info.value.details["reason"]


async def test_access_token_carries_the_spec_claims(manager: TokenManager) -> None:
    """An access token has sub/exp/iat/nbf/jti/type/role/permissions/user_data/iss/aud/fam and kid."""
    token = manager.create_token(
        "user-123",
        role="admin",
        permissions=["user:read", "user:write"],
        user_data={"name": "John"},
    )
    header, claims = _segments(token)
    assert header["kid"] == manager.key_ring.signing_key.kid
    assert header["alg"] == "HS256"
    for name in (
        "sub",
        "exp",
        "iat",
        "nbf",
        "jti",
        "type",
        "role",
        "permissions",
        "iss",
        "aud",
        "fam",
    ):
        assert name in claims
    data = await manager.decode_token(token)
    assert data.sub == "user-123"
    assert data.type is TokenType.ACCESS
    assert data.role == "admin"
    assert data.permissions == ["user:read", "user:write"]
    assert data.user_data == {"name": "John"}
    assert data.iss == "crown-nexus-tests"
    assert data.aud == "crown-nexus-api"
    assert data.exp.tzinfo is not None
    assert data.exp - data.iat == timedelta(minutes=30)
    assert data.nbf == data.iat


async def test_token_pair_shape_and_lifetimes(manager: TokenManager) -> None:
    """create_token_pair returns bearer access+refresh tokens of one family and expires_in."""
    pair = manager.create_token_pair("u1", role="user", permissions=["a:b"])
    assert isinstance(pair, TokenPair)
    assert pair.token_type == "bearer"
    assert pair.expires_in == 30 * 60
    access = await manager.decode_token(pair.access_token)
    refresh = await manager.decode_token(pair.refresh_token, expected_type=TokenType.REFRESH)
    assert access.fam == refresh.fam
    assert refresh.exp - refresh.iat == timedelta(days=7)
    assert pair.model_dump()["token_type"] == "bearer"


async def test_roles_and_permissions_enums_become_strings(manager: TokenManager) -> None:
    """Enum roles and permissions are stored as their string values."""
    import enum

    class Role(enum.StrEnum):
        ADMIN = "admin"

    class Perm(enum.StrEnum):
        READ = "user:read"

    data = await manager.decode_token(
        manager.create_token("u", role=Role.ADMIN, permissions=[Perm.READ])
    )
    assert data.role == "admin" and data.permissions == ["user:read"]


def test_reserved_claims_cannot_be_overridden(manager: TokenManager) -> None:
    """Passing exp/jti/type/... as extra claims is a ValueError."""
    with pytest.raises(ValueError):
        manager.create_token("u", exp=1)
    with pytest.raises(ValueError):
        manager.create_token("u", jti="x")


async def test_extra_claims_are_kept(manager: TokenManager) -> None:
    """Extra keyword claims appear in the token."""
    data = await manager.decode_token(manager.create_token("u", tenant="acme"))
    assert data.claims["tenant"] == "acme"


async def test_refresh_token_is_not_an_access_token(manager: TokenManager) -> None:
    """A refresh token presented as an access token is refused, and vice versa."""
    pair = manager.create_token_pair("u1")
    assert await _reason(manager.decode_token(pair.refresh_token)) == "wrong_token_type"
    assert await _reason(manager.refresh_tokens(pair.access_token)) == "wrong_token_type"


async def test_expired_and_leeway(settings, jwt_impl) -> None:
    """An expired token is refused; within the configured leeway it is accepted."""
    strict = TokenManager(settings, jwt_impl=jwt_impl)
    token = strict.create_token("u", expires_delta=timedelta(seconds=-5))
    assert await _reason(strict.decode_token(token)) == "expired"
    lenient = TokenManager(_like(settings, jwt_leeway_seconds=60.0), jwt_impl=jwt_impl)
    assert (await lenient.decode_token(token)).sub == "u"


async def test_not_yet_valid(manager: TokenManager, jwt_impl) -> None:
    """A token whose nbf lies in the future is refused."""
    now = int(time.time())
    key = manager.key_ring.signing_key
    claims = {
        "sub": "u",
        "exp": now + 600,
        "iat": now,
        "nbf": now + 300,
        "jti": "j",
        "type": "access",
        "iss": "crown-nexus-tests",
        "aud": "crown-nexus-api",
    }
    token = jwt_impl.encode(claims, key.signing_key, "HS256", {"kid": key.kid})
    assert await _reason(manager.decode_token(token)) == "not_yet_valid"


async def test_wrong_issuer_and_audience(settings, jwt_impl) -> None:
    """Tokens for another issuer or audience are refused."""
    ours = TokenManager(settings, jwt_impl=jwt_impl)
    other_iss = TokenManager(_like(settings, jwt_issuer="evil"), jwt_impl=jwt_impl)
    other_aud = TokenManager(_like(settings, jwt_audience="other"), jwt_impl=jwt_impl)
    assert await _reason(ours.decode_token(other_iss.create_token("u"))) == "wrong_issuer"
    assert await _reason(ours.decode_token(other_aud.create_token("u"))) == "wrong_audience"


async def test_alg_none_is_refused(manager: TokenManager) -> None:
    """An unsigned token (alg none) is refused."""
    now = int(time.time())
    token = ".".join(
        [
            _b64({"alg": "none", "typ": "JWT", "kid": manager.key_ring.signing_key.kid}),
            _b64({"sub": "u", "exp": now + 60, "iat": now, "jti": "j", "type": "access"}),
            "",
        ]
    )
    assert await _reason(manager.decode_token(token)) == "algorithm_not_allowed"


async def test_algorithm_confusion_is_refused(jwt_impl) -> None:
    """An HS256 token MACed with the EdDSA public key (as the secret) does not verify."""
    ring = KeyRing(JwtKey.generate("EdDSA", kid="ed1"))
    manager = TokenManager(make_settings(), key_ring=ring, jwt_impl=jwt_impl)
    now = int(time.time())
    claims = {"sub": "u", "exp": now + 60, "iat": now, "jti": "j", "type": "access"}
    pure = accel.available("jwt")["pure"]
    forged = pure._b64url_encode(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "ed1"}))
    body = pure._b64url_encode(orjson.dumps(claims))
    import hashlib
    import hmac

    mac = hmac.new(ring.signing_key.verification_key, f"{forged}.{body}".encode(), hashlib.sha256)
    token = f"{forged}.{body}.{pure._b64url_encode(mac.digest())}"
    assert await _reason(manager.decode_token(token)) == "algorithm_not_allowed"


async def test_tampered_malformed_and_oversized(manager: TokenManager) -> None:
    """A changed payload, garbage, bad base64 and an oversized token are all refused."""
    token = manager.create_token("u")
    head, body, sig = token.split(".")
    _, claims = _segments(token)
    claims["role"] = "admin"
    assert await _reason(manager.decode_token(f"{head}.{_b64(claims)}.{sig}")) == "bad_signature"
    assert await _reason(manager.decode_token("not-a-token")) == "malformed"
    assert await _reason(manager.decode_token("a.b$.c")) == "malformed"
    assert (
        await _reason(manager.decode_token(f"{head}.{_b64({'x': 1})[:-1]}!.{sig}")) == "malformed"
    )
    assert await _reason(manager.decode_token("a" * 10_000)) == "too_large"
    not_json = base64.urlsafe_b64encode(b"not json").rstrip(b"=").decode()
    assert await _reason(manager.decode_token(f"{not_json}.{body}.{sig}")) == "malformed"
    assert await _reason(manager.decode_token(f"{head}.{not_json}.{sig}")) in {
        "malformed",
        "bad_signature",
    }
    assert await _reason(manager.decode_token(None)) == "malformed"  # type: ignore[arg-type]


async def test_wrong_secret_is_refused(settings, jwt_impl) -> None:
    """A token signed with another secret (same kid scheme) fails the signature check."""
    other = TokenManager(
        _like(settings, secret_key="another-secret-key-entirely-000"), jwt_impl=jwt_impl
    )
    ours = TokenManager(settings, jwt_impl=jwt_impl)
    assert await _reason(ours.decode_token(other.create_token("u"))) == "bad_signature"


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "HS384", "HS512"])
async def test_other_algorithms_from_settings(algorithm: str, jwt_impl) -> None:
    """EdDSA/ES256 (keys derived from the secret) and HS384/512 sign and verify."""
    manager = TokenManager(make_settings(jwt_algorithm=algorithm), jwt_impl=jwt_impl)
    token = manager.create_token("u")
    assert _segments(token)[0]["alg"] == algorithm
    assert (await manager.decode_token(token)).sub == "u"
    again = TokenManager(make_settings(jwt_algorithm=algorithm), jwt_impl=jwt_impl)
    assert (await again.decode_token(token)).sub == "u", "derived keys are stable across restarts"


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
async def test_key_rotation_with_several_active_keys(algorithm: str, jwt_impl) -> None:
    """After rotation old tokens still verify; after retiring the old key they do not; unknown kid fails."""
    first = JwtKey.generate(algorithm, kid="k1")
    ring = KeyRing(first)
    manager = TokenManager(make_settings(), key_ring=ring, jwt_impl=jwt_impl)
    old = manager.create_token("u")
    ring.rotate(JwtKey.generate(algorithm, kid="k2"))
    new = manager.create_token("u")
    assert _segments(new)[0]["kid"] == "k2"
    assert (await manager.decode_token(old)).sub == "u"
    assert (await manager.decode_token(new)).sub == "u"
    jwks = manager.jwks()
    assert {k["kid"] for k in jwks["keys"]} == {"k1", "k2"}
    for jwk in jwks["keys"]:
        assert "d" not in jwk and jwk["alg"] == algorithm and jwk["use"] == "sig"
    ring.add(JwtKey.generate(algorithm, kid="k3"))
    ring.retire("k1")
    assert await _reason(manager.decode_token(old)) == "unknown_key"
    ring.retire("k3")  # a single key left: the signature check refuses the old token
    assert await _reason(manager.decode_token(old)) == "bad_signature"
    with pytest.raises(Exception):
        ring.retire("k2")


async def test_jwks_verifies_with_pyjwt(jwt_impl) -> None:
    """The published JWK verifies our EdDSA token in PyJWT (interoperability)."""
    import jwt as pyjwt

    ring = KeyRing(JwtKey.generate("EdDSA", kid="pub"))
    manager = TokenManager(make_settings(), key_ring=ring, jwt_impl=jwt_impl)
    token = manager.create_token("u")
    jwk = pyjwt.PyJWK(manager.jwks()["keys"][0])
    claims = pyjwt.decode(
        token, jwk.key, algorithms=["EdDSA"], issuer="crown-nexus", audience="crown-nexus"
    )
    assert claims["sub"] == "u"


async def test_iss_and_aud_default_to_the_app_name(jwt_impl) -> None:
    """SPEC §5: with no jwt_issuer/jwt_audience every token carries iss = aud = app_name, and
    every decode requires them (issue 13)."""
    manager = TokenManager(make_settings(app_name="shop-api"), jwt_impl=jwt_impl)
    pair = manager.create_token_pair("u", role="user")
    for token in (pair.access_token, pair.refresh_token, manager.create_token("u")):
        claims = manager.jwt.decode(
            token, SECRET, algorithms=["HS256"], issuer="shop-api", audience="shop-api"
        )
        assert (claims["iss"], claims["aud"]) == ("shop-api", "shop-api")
    data = await manager.decode_token(pair.access_token)
    assert (data.iss, data.aud) == ("shop-api", "shop-api")
    # a token of a differently named app (same secret) is refused, both ways
    other = TokenManager(make_settings(app_name="admin-api"), jwt_impl=jwt_impl)
    assert await _reason(manager.decode_token(other.create_token("u"))) == "wrong_issuer"
    assert await _reason(other.decode_token(manager.create_token("u"))) == "wrong_issuer"
    # one signed without iss/aud (the old default) is refused
    now = int(time.time())
    bare = manager.jwt.encode(
        {"sub": "u", "exp": now + 60, "iat": now, "nbf": now, "jti": "j", "type": "access"},
        SECRET,
        "HS256",
    )
    assert await _reason(manager.decode_token(bare)) == "missing_claim"
    # configured values still win over the default
    configured = TokenManager(
        make_settings(app_name="shop-api", jwt_issuer="idp", jwt_audience="shop"), jwt_impl=jwt_impl
    )
    data = await configured.decode_token(configured.create_token("u"))
    assert (data.iss, data.aud) == ("idp", "shop")
    assert await _reason(configured.decode_token(manager.create_token("u"))) == "wrong_issuer"


def test_hmac_keys_are_never_published(manager: TokenManager) -> None:
    """An HS256 key ring publishes an empty JWKS."""
    assert manager.jwks() == {"keys": []}


async def test_tokens_cross_verify_between_implementations(settings) -> None:
    """A token signed by one jwt implementation verifies through every other one."""
    impls = accel.available("jwt")
    for signer in impls.values():
        token = TokenManager(settings, jwt_impl=signer).create_token("u")
        for verifier in impls.values():
            assert (await TokenManager(settings, jwt_impl=verifier).decode_token(token)).sub == "u"


async def test_revoke_token(manager: TokenManager) -> None:
    """A revoked token is refused; revoking twice is fine; the other tokens still work."""
    pair = manager.create_token_pair("u")
    other = manager.create_token_pair("u")
    data = await manager.revoke_token(pair.access_token)
    assert data.sub == "u"
    assert await _reason(manager.decode_token(pair.access_token)) == "revoked"
    await manager.revoke_token(pair.access_token)
    assert (await manager.decode_token(other.access_token)).sub == "u"
    assert await _reason(manager.revoke_token("garbage")) == "malformed"


async def test_refresh_rotation_and_reuse_detection(manager: TokenManager) -> None:
    """Refresh rotates; reusing the old refresh token fails and revokes the whole family."""
    first = manager.create_token_pair("u", role="user", permissions=["p:q"], user_data={"n": 1})
    second = await manager.refresh_tokens(first.refresh_token)
    data = await manager.decode_token(second.access_token)
    assert (data.role, data.permissions, data.user_data) == ("user", ["p:q"], {"n": 1})
    third = await manager.refresh_tokens(second.refresh_token)
    assert await _reason(manager.refresh_tokens(first.refresh_token)) == "reuse_detected"
    for token in (first.access_token, second.access_token, third.access_token):
        assert await _reason(manager.decode_token(token)) == "revoked"
    assert await _reason(manager.refresh_tokens(third.refresh_token)) == "revoked"
    unrelated = manager.create_token_pair("u")
    assert (await manager.decode_token(unrelated.access_token)).sub == "u"


async def test_concurrent_refresh_only_one_wins(manager: TokenManager) -> None:
    """Two simultaneous uses of one refresh token: one succeeds, the other is reuse."""
    pair = manager.create_token_pair("u")
    results = await asyncio.gather(
        manager.refresh_tokens(pair.refresh_token),
        manager.refresh_tokens(pair.refresh_token),
        return_exceptions=True,
    )
    assert sum(isinstance(r, TokenPair) for r in results) == 1
    assert sum(isinstance(r, AuthenticationException) for r in results) == 1


class _BrokenBlacklist(TokenBlacklist):
    async def add(self, jti: str, ttl_seconds: float) -> bool:
        raise ConnectionError("down")

    async def revoke_family(self, family: str, ttl_seconds: float) -> None:
        raise ConnectionError("down")

    async def is_revoked(self, jti, family=None) -> bool:
        raise ConnectionError("down")


async def test_unreachable_blacklist_fails_closed(settings, jwt_impl) -> None:
    """When revocation cannot be checked, the token is refused (401, not 500)."""
    manager = TokenManager(settings, blacklist=_BrokenBlacklist(), jwt_impl=jwt_impl)
    pair = manager.create_token_pair("u")
    assert await _reason(manager.decode_token(pair.access_token)) == "revocation_check_failed"
    assert await _reason(manager.refresh_tokens(pair.refresh_token)) == "revocation_check_failed"


async def test_guide_module_level_api(configured) -> None:
    """The guide's module-level calls work as written against the shared service."""
    access_token = create_token(
        subject="user-123",
        token_type=TokenType.ACCESS,
        role="admin",
        permissions=["user:read", "user:write"],
    )
    token_pair: TokenPair = create_token_pair(
        user_id="user-123",
        role="admin",
        permissions=["user:read", "user:write"],
        user_data={"name": "John Doe", "email": "john@example.com"},
    )
    token_data = await decode_token(access_token)
    info = {
        "user_id": token_data.sub,
        "role": token_data.role,
        "permissions": token_data.permissions,
        "expires_at": token_data.exp.isoformat(),
    }
    assert info["user_id"] == "user-123" and info["expires_at"].endswith("+00:00")
    new_tokens = await refresh_tokens(token_pair.refresh_token)
    assert isinstance(new_tokens, TokenPair)
    await revoke_token(new_tokens.access_token)
    with pytest.raises(AuthenticationException):
        await decode_token(new_tokens.access_token)
    assert get_jwks() == {"keys": []}


ASCII_TOKENISH = st.text(
    alphabet=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="),
    max_size=300,
)


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.one_of(st.text(max_size=300), ASCII_TOKENISH, st.binary(max_size=64)))
def test_fuzz_decode_only_raises_authentication_exception(manager: TokenManager, junk) -> None:
    """decode_token on arbitrary input raises AuthenticationException and nothing else."""
    with pytest.raises(AuthenticationException):
        asyncio.run(manager.decode_token(junk))


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_tokens(manager: TokenManager, data) -> None:
    """A valid token with one character changed, cut or extended is refused with AuthenticationException."""
    token = manager.create_token("u")
    pos = data.draw(st.integers(0, len(token) - 1))
    op = data.draw(st.sampled_from(["replace", "cut", "insert"]))
    ch = data.draw(st.sampled_from("ABCabc012-_.=+/ \x00é"))
    if op == "replace":
        if token[pos] == ch:
            return
        mutated = token[:pos] + ch + token[pos + 1 :]
    elif op == "cut":
        mutated = token[:pos]
    else:
        mutated = token[:pos] + ch + token[pos:]
    try:
        result = asyncio.run(manager.decode_token(mutated))
    except AuthenticationException:
        return
    # a change to unused base64 bits of the last char can still decode to the same bytes: no
    assert result.sub == "u" and mutated != token
    raise AssertionError("a mutated token was accepted")


def test_exp_is_aware_utc(manager: TokenManager) -> None:
    """TokenData.exp is a timezone-aware UTC datetime close to now + lifetime."""
    data = asyncio.run(manager.decode_token(manager.create_token("u")))
    assert data.exp.tzinfo == UTC
    assert abs((data.exp - datetime.now(UTC)) - timedelta(minutes=30)) < timedelta(seconds=5)
    assert str(SECRET)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
async def test_private_keys_from_settings_rotate(algorithm: str, jwt_impl, tmp_path) -> None:
    """CROWN_NEXUS_JWT_PRIVATE_KEYS: the first key signs, the others still verify (files or PEM text)."""
    old, new = JwtKey.generate(algorithm), JwtKey.generate(algorithm)
    path = tmp_path / "old.pem"
    path.write_bytes(old.signing_key)
    before = TokenManager(
        make_settings(jwt_algorithm=algorithm, jwt_private_keys=[str(path)]), jwt_impl=jwt_impl
    )
    old_token = before.create_token("u")
    after = TokenManager(
        make_settings(
            jwt_algorithm=algorithm, jwt_private_keys=[new.signing_key.decode(), str(path)]
        ),
        jwt_impl=jwt_impl,
    )
    assert _segments(after.create_token("u"))[0]["kid"] == new.kid
    assert (await after.decode_token(old_token)).sub == "u"
    assert {k["kid"] for k in after.jwks()["keys"]} == {old.kid, new.kid}


def test_private_key_settings_errors(tmp_path) -> None:
    """Missing files, wrong key types and HMAC algorithms with private keys are configuration errors."""
    from crown_nexus.core.exceptions import ConfigurationException

    ed = JwtKey.generate("EdDSA")
    with pytest.raises(ConfigurationException):
        KeyRing.from_settings(
            make_settings(jwt_algorithm="EdDSA", jwt_private_keys=[str(tmp_path / "x")])
        )
    with pytest.raises(ConfigurationException):
        KeyRing.from_settings(
            make_settings(jwt_algorithm="ES256", jwt_private_keys=[ed.signing_key.decode()])
        )
    with pytest.raises(ConfigurationException):
        KeyRing.from_settings(
            make_settings(jwt_algorithm="HS256", jwt_private_keys=[ed.signing_key.decode()])
        )
    with pytest.raises(ConfigurationException):
        KeyRing.from_settings(make_settings(jwt_algorithm="none"))


@pytest.mark.skipif(len(accel.available("jwt")) < 2, reason="only one jwt implementation is built")
@hsettings(max_examples=150, deadline=None)
@given(data=st.data())
def test_implementations_agree_on_mutated_tokens(data) -> None:
    """For any mutation of a valid token, every jwt implementation gives the same outcome and reason."""
    settings = make_settings(jwt_issuer="i", jwt_audience="a")
    managers = [TokenManager(settings, jwt_impl=impl) for impl in accel.available("jwt").values()]
    token = managers[0].create_token("u", role="r")
    pos = data.draw(st.integers(0, len(token)))
    junk = data.draw(st.text(min_size=0, max_size=3))
    cut = data.draw(st.integers(0, 2))
    mutated = token[:pos] + junk + token[pos + cut :]
    outcomes = []
    for manager in managers:
        try:
            outcomes.append(("ok", asyncio.run(manager.decode_token(mutated)).sub))
        except AuthenticationException as exc:
            outcomes.append(("refused", exc.details["reason"]))
    assert all(o == outcomes[0] for o in outcomes), outcomes
