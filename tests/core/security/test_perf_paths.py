"""The decode_token fast paths give the same answers as the general ones (both jwt impls).

Covered: the prepared single-key decode (and key-ring changes that switch it on and off), the
msgspec-built ``TokenData`` against a reference check of the claims, the in-memory blacklist's
synchronous lookup against its async API and a model, the fallback to the async lookup for
backends that cannot answer synchronously (Redis) or subclasses that override ``is_revoked``,
and the inline validation metrics.
"""

from __future__ import annotations

import asyncio
import time
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import AuthenticationException
from crown_nexus.core.security import (
    JwtKey,
    KeyRing,
    MemoryTokenBlacklist,
    SecurityService,
    TokenData,
    TokenManager,
    TokenType,
)
from crown_nexus.core.security.blacklist import create_blacklist
from crown_nexus.core.security.service import RevocationPending
from crown_nexus.settings import Settings
from tests.core.security.conftest import make_settings

_MAX_TS = 253402214400


def _sign(manager: TokenManager, claims: dict[str, Any]) -> str:
    key = manager.key_ring.signing_key
    assert key.signing_key is not None
    return manager.jwt.encode(claims, key.signing_key, key.algorithm, {"kid": key.kid})


def _claims(settings: Settings, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "u1",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "jti-1",
        "type": "access",
        "role": "user",
        "permissions": ["a:b"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "fam": "fam-1",
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP = object()


def _reason(manager: TokenManager, token: str) -> str:
    with pytest.raises(AuthenticationException) as info:
        manager.verify(token)
    return str(info.value.details["reason"])


@pytest.fixture
def manager(settings: Settings, jwt_impl: ModuleType) -> TokenManager:
    """A token manager on the test settings with the parametrized jwt implementation."""
    return TokenManager(settings, jwt_impl=jwt_impl)


# --- claims -> TokenData -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"jti": _DROP}, "missing_claim"),
        ({"type": _DROP}, "missing_claim"),
        ({"type": None}, "missing_claim"),
        ({"type": "session"}, "invalid_claim"),
        ({"type": ["access"]}, "invalid_claim"),
        ({"role": 7}, "invalid_claim"),
        ({"role": True}, "invalid_claim"),
        ({"permissions": "a:b"}, "invalid_claim"),
        ({"permissions": ["a:b", 3]}, "invalid_claim"),
        ({"user_data": ["x"]}, "invalid_claim"),
        ({"fam": 1}, "invalid_claim"),
        ({"exp": _MAX_TS + 1}, "invalid_claim"),
    ],
)
def test_malformed_claims_are_refused_with_a_reason(
    manager: TokenManager, settings: Settings, changes: dict[str, Any], reason: str
) -> None:
    """A signed token whose claims have the wrong shape is refused, saying which kind of wrong."""
    assert _reason(manager, _sign(manager, _claims(settings, **changes))) == reason


def test_optional_claims_default(manager: TokenManager, settings: Settings) -> None:
    """Absent or null permissions are an empty list; absent role/user_data/fam are None."""
    for permissions in (_DROP, None):
        claims = _claims(settings, permissions=permissions, role=_DROP, fam=_DROP, user_data=_DROP)
        data = manager.verify(_sign(manager, claims))
        assert data.permissions == [] and data.role is None and data.fam is None
        assert data.user_data is None and data.claims == claims


def test_token_data_fields(manager: TokenManager, settings: Settings) -> None:
    """Every attribute is the claim's value; the timestamps are aware UTC datetimes."""
    claims = _claims(settings, user_data={"name": "Ada", "n": [1, 2]}, extra="kept")
    data = manager.verify(_sign(manager, claims))
    assert (data.sub, data.jti, data.type, data.role) == ("u1", "jti-1", TokenType.ACCESS, "user")
    assert data.type is TokenType.ACCESS and data.user_id == "u1"
    assert data.permissions == ["a:b"] and data.user_data == {"name": "Ada", "n": [1, 2]}
    assert (data.iss, data.aud, data.fam) == (settings.jwt_issuer, settings.jwt_audience, "fam-1")
    assert data.exp.timestamp() == claims["exp"] and data.exp.tzinfo is not None
    assert data.iat is not None and data.iat.timestamp() == claims["iat"]
    assert data.nbf is not None and data.nbf.timestamp() == claims["nbf"]
    assert data.claims == claims and data.claims["extra"] == "kept"
    assert 590 < data.expires_in <= 600
    assert data.to_dict()["exp"] == data.exp.isoformat()
    assert "jti-1" in repr(data) and "Ada" not in repr(data)


def test_claims_field_name_cannot_be_injected(manager: TokenManager, settings: Settings) -> None:
    """A claim spelled like TokenData's internal claims field never replaces the raw claims."""
    claims = _claims(settings, __crown_nexus_claims__={"sub": "admin"})
    data = manager.verify(_sign(manager, claims))
    assert data.claims == claims


def _reference(claims: dict[str, Any]) -> tuple[Any, ...] | None:
    """The claim rules TokenData.from_claims promises, written out plainly (None: refused)."""
    if claims.get("jti") is None or claims.get("type") not in ("access", "refresh"):
        return None
    exp = claims["exp"]
    if not exp <= _MAX_TS:
        return None
    for name in ("role", "fam", "iss"):
        if claims.get(name) is not None and type(claims[name]) is not str:
            return None
    if claims.get("user_data") is not None and type(claims["user_data"]) is not dict:
        return None
    perms = claims.get("permissions")
    if perms is None:
        perms = []
    if type(perms) is not list or any(type(p) is not str for p in perms):
        return None
    return (claims["sub"], exp, claims["type"], claims["jti"], claims.get("role"), perms)


_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=5)
)
_maybe = st.one_of(_json_scalar, st.lists(st.text(max_size=4), max_size=3))


@hsettings(max_examples=150, deadline=None)
@given(
    type_=st.one_of(st.sampled_from(["access", "refresh"]), _json_scalar),
    role=_maybe,
    permissions=st.one_of(_maybe, st.lists(_json_scalar, max_size=3)),
    user_data=st.one_of(_json_scalar, st.dictionaries(st.text(max_size=3), _json_scalar)),
    fam=_maybe,
    exp=st.one_of(st.integers(0, 2**40), st.floats(0, 1e12)),
)
def test_from_claims_matches_the_reference(
    type_: Any, role: Any, permissions: Any, user_data: Any, fam: Any, exp: Any
) -> None:
    """For any claim values, TokenData.from_claims accepts exactly what the rules accept."""
    claims = {
        "sub": "s",
        "exp": exp,
        "iat": 1,
        "jti": "j",
        "type": type_,
        "role": role,
        "permissions": permissions,
        "user_data": user_data,
        "fam": fam,
    }
    expected = _reference(claims)
    try:
        data = TokenData.from_claims(claims)
    except ValueError:
        assert expected is None, claims
        return
    assert expected is not None, claims
    got = (data.sub, data.exp_ts, data.type.value, data.jti, data.role, data.permissions)
    assert got == expected


# --- the key ring's prepared single key ----------------------------------------------------


async def test_single_key_args_follow_the_ring(settings: Settings, jwt_impl: ModuleType) -> None:
    """The prepared single-key arguments switch with rotate/add/retire; the kid path takes over."""
    first = JwtKey.generate("HS256", kid="first")
    ring = KeyRing(first)
    manager = TokenManager(settings, key_ring=ring, jwt_impl=jwt_impl)
    assert ring.single_args == (first.verification_key, ("HS256",))
    old_token = manager.create_token("u")
    second = JwtKey.generate("HS256", kid="second")
    ring.rotate(second)
    assert ring.single is None and ring.single_args is None
    new_token = manager.create_token("u")
    assert (await manager.decode_token(old_token)).sub == "u"  # found by kid
    assert (await manager.decode_token(new_token)).sub == "u"
    ring.retire("first")
    assert ring.single_args == (second.verification_key, ("HS256",))
    assert (await manager.decode_token(new_token)).sub == "u"
    with pytest.raises(AuthenticationException) as info:
        await manager.decode_token(old_token)
    assert info.value.details["reason"] == "bad_signature"
    other = KeyRing(JwtKey.generate("HS256", kid="second"))  # same kid, another secret
    stranger = TokenManager(settings, key_ring=other, jwt_impl=jwt_impl)
    with pytest.raises(AuthenticationException):
        await stranger.decode_token(new_token)


def test_non_string_tokens_refused_on_both_paths(settings: Settings, jwt_impl: ModuleType) -> None:
    """Non-str tokens are 'malformed' whether the ring holds one key or several."""
    ring = KeyRing(JwtKey.generate("HS256", kid="a"), [JwtKey.generate("HS256", kid="b")])
    several = TokenManager(settings, key_ring=ring, jwt_impl=jwt_impl)
    single = TokenManager(settings, jwt_impl=jwt_impl)
    for manager in (single, several):
        for bad in (None, b"a.b.c", 12, ["x"]):
            assert _reason(manager, bad) == "malformed"  # type: ignore[arg-type]


def test_expected_type_as_plain_string(manager: TokenManager) -> None:
    """expected_type given as the string value behaves like the enum member."""
    refresh = manager.create_token("u", TokenType.REFRESH)
    assert manager.verify(refresh, "refresh").type is TokenType.REFRESH  # type: ignore[arg-type]
    with pytest.raises(AuthenticationException):
        manager.verify(refresh, "access")  # type: ignore[arg-type]


# --- the blacklist without awaiting --------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_ops = st.lists(
    st.tuples(
        st.sampled_from(["add", "family", "tick"]),
        st.sampled_from(["a", "b", "c"]),
        st.integers(1, 30),
    ),
    max_size=25,
)


@hsettings(max_examples=150, deadline=None)
@given(ops=_ops, sweep_every=st.integers(1, 4))
def test_memory_nowait_agrees_with_async_and_model(ops: list[Any], sweep_every: int) -> None:
    """After any sequence of revocations and clock steps, is_revoked_nowait == is_revoked == model."""
    clock = _Clock()
    bl = MemoryTokenBlacklist(clock=clock, sweep_every=sweep_every)
    jtis: dict[str, float] = {}
    fams: dict[str, float] = {}

    async def run() -> None:
        for op, name, n in ops:
            if op == "add":
                new = await bl.add(name, n)
                assert new == (jtis.get(name, 0.0) <= clock.now)
                if new:
                    jtis[name] = clock.now + n
            elif op == "family":
                await bl.revoke_family(name, n)
                fams[name] = max(fams.get(name, 0.0), clock.now + n)
            else:
                clock.now += n
            for jti in ("a", "b", "c", None):
                for fam in ("a", "b", "c", None):
                    model = (jti is not None and jtis.get(jti, 0.0) > clock.now) or (
                        fam is not None and fams.get(fam, 0.0) > clock.now
                    )
                    assert bl.is_revoked_nowait(jti, fam) is model
                    assert await bl.is_revoked(jti, fam) is model

    asyncio.run(run())


class _EverythingRevoked(MemoryTokenBlacklist):
    """A subclass that overrides only the async lookup."""

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        return True


async def test_subclass_overriding_is_revoked_is_awaited(
    settings: Settings, jwt_impl: ModuleType
) -> None:
    """A backend whose is_revoked is overridden (but not its nowait twin) is asked asynchronously."""
    manager = TokenManager(settings, blacklist=_EverythingRevoked(), jwt_impl=jwt_impl)
    assert manager.revoked_nowait is None
    service = SecurityService(settings, blacklist=_EverythingRevoked(), jwt_impl=jwt_impl)
    token = manager.create_token("u")
    for check in (manager.decode_token(token), service.decode_token(token)):
        with pytest.raises(AuthenticationException) as info:
            await check
        assert info.value.details["reason"] == "revoked"
    memory = TokenManager(settings, jwt_impl=jwt_impl)
    assert memory.revoked_nowait is not None
    memory.blacklist = _EverythingRevoked()  # reassigning re-decides
    assert memory.revoked_nowait is None


async def test_redis_blacklist_goes_through_the_async_step(
    redis_url: str, jwt_impl: ModuleType
) -> None:
    """With Redis, decode_token_nowait hands over a RevocationPending and decode_token finishes it."""
    settings = make_settings(jwt_issuer="i", jwt_audience="a")
    blacklist = create_blacklist(redis_url, prefix=f"perf-paths:{time.time_ns()}:")
    service = SecurityService(settings, blacklist=blacklist, jwt_impl=jwt_impl)
    try:
        token = service.create_token("u")
        pending = service.decode_token_nowait(token)
        assert isinstance(pending, RevocationPending) and pending.data.sub == "u"
        assert (await service.finish_revocation_check(pending)).sub == "u"
        assert (await service.decode_token(token)).sub == "u"
        assert isinstance(service.decode_token_nowait(token, check_revocation=False), TokenData)
        await service.revoke_token(token)
        with pytest.raises(AuthenticationException) as info:
            await service.decode_token(token)
        assert info.value.details["reason"] == "revoked"
    finally:
        await service.close()


def test_memory_decode_never_suspends(settings: Settings, jwt_impl: ModuleType) -> None:
    """With the memory blacklist decode_token completes on its first step, revoked ids or not."""
    service = SecurityService(settings, jwt_impl=jwt_impl)
    token = service.create_token("u")
    revoked = service.create_token("v")
    asyncio.run(service.revoke_token(revoked))
    coro = service.decode_token(token)
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    assert done.value.value.sub == "u"
    refused = service.decode_token(revoked)
    with pytest.raises(AuthenticationException):
        refused.send(None)


# --- metrics -------------------------------------------------------------------------------


class _Recorder:
    """Stands in for the metrics service: records what the telemetry reports."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.observed: list[tuple[str, float, dict[str, str]]] = []

    def increment_counter(self, name: str, amount: int = 1, labels: Any = None) -> None:
        key = (name, tuple(sorted((labels or {}).items())))
        self.counts[key] = self.counts.get(key, 0) + amount

    def observe_histogram(self, name: str, value: float, labels: Any = None) -> None:
        self.observed.append((name, value, dict(labels or {})))


async def test_validation_metrics_are_counted_and_sampled(
    settings: Settings, jwt_impl: ModuleType
) -> None:
    """Every validation is counted (by outcome and type); one in sample_every is timed."""
    service = SecurityService(settings, jwt_impl=jwt_impl)
    recorder = _Recorder()
    service.telemetry._service = recorder
    access = service.create_token("u")
    refresh = service.create_token("u", TokenType.REFRESH)
    for _ in range(64):
        await service.decode_token(access)
    for _ in range(3):
        await service.decode_token(refresh, expected_type=None)
    for _ in range(5):
        with pytest.raises(AuthenticationException):
            await service.decode_token(refresh)
    service.telemetry.flush()
    name = "token_validations_total"
    assert recorder.counts[(name, (("success", "true"), ("token_type", "access")))] == 64
    assert recorder.counts[(name, (("success", "true"), ("token_type", "refresh")))] == 3
    assert recorder.counts[(name, (("success", "false"), ("token_type", "access")))] == 5
    timings = [o for o in recorder.observed if o[0] == "token_validation_duration_seconds"]
    assert 2 <= len(timings) <= 72 // service.telemetry.sample_every + 1
    assert all(0 < value < 1 for _, value, _ in timings)
    assert {labels["success"] for _, _, labels in timings} <= {"true", "false"}


class _BothOverridden(MemoryTokenBlacklist):
    """A subclass that overrides both lookups consistently keeps its synchronous answer."""

    async def is_revoked(self, jti: str | None, family: str | None = None) -> bool:
        return jti == "gone"

    def is_revoked_nowait(self, jti: str | None, family: str | None = None) -> bool | None:
        return jti == "gone"


async def test_one_revocation_rule_for_both_entry_points(
    settings: Settings, jwt_impl: ModuleType
) -> None:
    """TokenManager and SecurityService decide revocation in one place (check_revocation_nowait)."""
    assert not _EverythingRevoked().answers_nowait and _BothOverridden().answers_nowait
    manager = TokenManager(settings, blacklist=_BothOverridden(), jwt_impl=jwt_impl)
    assert manager.revoked_nowait is not None
    data = manager.verify(manager.create_token("u"), None)
    assert manager.check_revocation_nowait(data) is True
    await manager.check_revocation(data)
    service = SecurityService(settings, blacklist=_EverythingRevoked(), jwt_impl=jwt_impl)
    pending = service.decode_token_nowait(service.create_token("u"))
    assert isinstance(pending, RevocationPending)
    with pytest.raises(AuthenticationException) as info:
        await service.finish_revocation_check(pending)
    assert info.value.details["reason"] == "revoked"
