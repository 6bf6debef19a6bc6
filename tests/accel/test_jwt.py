"""The jwt hot path: every case runs against every implementation (pure, native when built)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import jwt as pyjwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from crown_nexus import accel
from tests.conftest import implementations_of

NOW = 1_700_000_000
SECRET = b"k" * 64


def _pems(private: Any) -> tuple[bytes, bytes]:
    priv = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return priv, pub


ED_PRIV, ED_PUB = _pems(ed25519.Ed25519PrivateKey.generate())
EC_PRIV, EC_PUB = _pems(ec.generate_private_key(ec.SECP256R1()))
EC384_PRIV, EC384_PUB = _pems(ec.generate_private_key(ec.SECP384R1()))
RSA_PRIV, RSA_PUB = _pems(rsa.generate_private_key(65537, 2048))

#: algorithm -> (signing key, verifying key)
KEYS: dict[str, tuple[bytes, bytes]] = {
    "HS256": (SECRET, SECRET),
    "HS384": (SECRET, SECRET),
    "HS512": (SECRET, SECRET),
    "EdDSA": (ED_PRIV, ED_PUB),
    "ES256": (EC_PRIV, EC_PUB),
    "RS256": (RSA_PRIV, RSA_PUB),
}
COMPILED_ALGS = ("HS256", "HS384", "HS512", "EdDSA", "ES256")
#: a valid header segment: {"alg":"HS256"}
H = "eyJhbGciOiJIUzI1NiJ9"


@pytest.fixture(params=implementations_of("jwt"))
def impl(request: pytest.FixtureRequest) -> ModuleType:
    """Each available implementation of the jwt hot path."""
    return accel.available("jwt")[request.param]


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "user-1", "iat": NOW, "exp": NOW + 600}
    base.update(extra)
    return base


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_token(
    header: bytes | dict[str, Any], payload: bytes | dict[str, Any], key: bytes = SECRET
) -> str:
    """A token with exactly these header/payload bytes, HS256-signed with ``key``."""
    h = header if isinstance(header, bytes) else orjson.dumps(header)
    p = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    signing_input = f"{b64(h)}.{b64(p)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def reason_of(impl: ModuleType, token: Any, key: bytes | str = SECRET, **kwargs: Any) -> str:
    kwargs.setdefault("algorithms", ["HS256"])
    kwargs.setdefault("now", NOW)
    with pytest.raises(impl.InvalidTokenError) as info:
        impl.decode(token, key, **kwargs)
    return info.value.reason


# ------------------------------------------------------------------------- surface


def test_surface_is_the_contract(impl: ModuleType) -> None:
    """Both twins expose the same names and share the pure InvalidTokenError class."""
    pure = accel.available("jwt")["pure"]
    for name in ("decode", "encode", "get_unverified_header", "public_jwk"):
        assert callable(getattr(impl, name))
    assert impl.InvalidTokenError is pure.InvalidTokenError
    assert issubclass(impl.InvalidTokenError, Exception)
    assert impl.SUPPORTED_ALGORITHMS == frozenset(KEYS)
    assert "none" not in impl.SUPPORTED_ALGORITHMS
    for constant in ("REASONS", "DEFAULT_REQUIRE", "DEFAULT_MAX_LENGTH", "MAX_JSON_DEPTH"):
        assert getattr(impl, constant) == getattr(pure, constant)
    assert impl.IMPLEMENTATION in ("pure", "native")


def test_invalid_token_error_has_fixed_messages_and_pickles(impl: ModuleType) -> None:
    """The error carries reason, a generic message, and survives pickling (worker processes)."""
    err = impl.InvalidTokenError("expired")
    assert err.reason == "expired" and str(err) == "Token has expired"
    again = pickle.loads(pickle.dumps(err))
    assert again.reason == "expired"
    with pytest.raises(ValueError):
        impl.InvalidTokenError("nonsense")


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_round_trip_every_algorithm(impl: ModuleType, alg: str) -> None:
    """encode then decode gives the claims back; the header has alg, typ and extra headers."""
    priv, pub = KEYS[alg]
    body = claims(role="admin", permissions=["user:read"], nested={"a": [1, 2.5, None, True]})
    token = impl.encode(body, priv, alg, {"kid": "key-1"})
    assert impl.decode(token, pub, algorithms=[alg], now=NOW) == body
    assert impl.get_unverified_header(token) == {"alg": alg, "typ": "JWT", "kid": "key-1"}


def test_str_keys_are_utf8_secrets(impl: ModuleType) -> None:
    """A str HMAC secret and a str PEM key work like their UTF-8 bytes."""
    token = impl.encode(claims(), "sécret", "HS256")
    assert impl.decode(token, "sécret".encode(), algorithms=["HS256"], now=NOW) == claims()
    token = impl.encode(claims(), ED_PRIV.decode(), "EdDSA")
    assert impl.decode(token, ED_PUB.decode(), algorithms=["EdDSA"], now=NOW) == claims()


def test_headers_cannot_override_alg(impl: ModuleType) -> None:
    """An 'alg' in extra headers is ignored; 'typ' may be replaced."""
    token = impl.encode(claims(), SECRET, "HS256", {"alg": "none", "typ": "at+jwt", "kid": "k"})
    assert impl.get_unverified_header(token) == {"alg": "HS256", "typ": "at+jwt", "kid": "k"}
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW)["sub"] == "user-1"


def test_datetime_claims_become_timestamps(impl: ModuleType) -> None:
    """exp/iat/nbf given as datetimes are encoded as integer UTC timestamps (like PyJWT)."""
    issued = datetime.fromtimestamp(NOW, UTC)
    token = impl.encode(
        {"sub": "u", "iat": issued, "nbf": issued, "exp": issued + timedelta(minutes=5)},
        SECRET,
        "HS256",
    )
    got = impl.decode(token, SECRET, algorithms=["HS256"], now=NOW)
    assert got == {"sub": "u", "iat": NOW, "nbf": NOW, "exp": NOW + 300}


@pytest.mark.parametrize("alg", COMPILED_ALGS)
def test_tokens_cross_verify_between_twins_and_pyjwt(alg: str) -> None:
    """A token from either twin verifies in the other twin and in PyJWT, and PyJWT's in ours."""
    priv, pub = KEYS[alg]
    impls = accel.available("jwt")
    body = claims(aud="api", iss="crown", role="ü")
    for signer in impls.values():
        token = signer.encode(body, priv, alg, {"kid": "k1"})
        for verifier in impls.values():
            got = verifier.decode(
                token, pub, algorithms=[alg], audience="api", issuer="crown", now=NOW
            )
            assert got == body
        assert (
            pyjwt.decode(
                token,
                pub,
                algorithms=[alg],
                audience="api",
                issuer="crown",
                options={"verify_exp": False, "verify_iat": False},
            )
            == body
        )
    peer = pyjwt.encode(body, priv, algorithm=alg, headers={"kid": "k1"})
    for verifier in impls.values():
        assert (
            verifier.decode(peer, pub, algorithms=[alg], audience="api", now=NOW, issuer="crown")
            == body
        )


def test_hs256_and_eddsa_tokens_are_identical_across_twins() -> None:
    """Deterministic algorithms give byte-identical tokens from both twins (no floats)."""
    impls = list(accel.available("jwt").values())
    body = claims(role="admin", text='quote " back \\ nl \n ctl \x01 é 😀', n=-(2**63), u=2**64 - 1)
    for alg in ("HS256", "HS512", "EdDSA"):
        tokens = {impl.encode(body, KEYS[alg][0], alg, {"kid": "k"}) for impl in impls}
        assert len(tokens) == 1


def test_rfc7515_appendix_a1_example_verifies(impl: ModuleType) -> None:
    """The RFC 7515 A.1 HS256 example (CRLF whitespace in its JSON) verifies."""
    token = (
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )
    key = base64.urlsafe_b64decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow=="
    )
    got = impl.decode(
        token, key, algorithms=["HS256"], issuer="joe", now=1300819370, require=["exp"]
    )
    assert got == {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}
    assert reason_of(impl, token, key, now=1300819380, require=["exp"]) == "expired"


# ------------------------------------------------------------------------- algorithms


def test_alg_none_is_never_accepted(impl: ModuleType) -> None:
    """alg 'none' (with or without a signature) is refused even if listed."""
    unsigned = b64(b'{"alg":"none","typ":"JWT"}') + "." + b64(orjson.dumps(claims())) + "."
    assert reason_of(impl, unsigned, algorithms=["none", "HS256"]) == "algorithm_not_allowed"
    for alg in ("none", "None", "NONE"):
        token = hs256_token({"alg": alg}, claims())
        assert reason_of(impl, token, algorithms=[alg]) == "algorithm_not_allowed"
    with pytest.raises(ValueError):
        impl.encode(claims(), SECRET, "none")


def test_alg_not_in_allow_list(impl: ModuleType) -> None:
    """A valid token whose alg is not in algorithms (or unknown) is refused."""
    token = impl.encode(claims(), SECRET, "HS512")
    assert reason_of(impl, token, algorithms=["HS256"]) == "algorithm_not_allowed"
    assert reason_of(impl, token, algorithms=[]) == "algorithm_not_allowed"
    weird = hs256_token({"alg": "HS1024"}, claims())
    assert reason_of(impl, weird, algorithms=["HS1024"]) == "algorithm_not_allowed"


@pytest.mark.parametrize("public", [ED_PUB, EC_PUB, RSA_PUB, b"ssh-ed25519 AAAAC3Nza user@host"])
def test_algorithm_confusion_is_refused(impl: ModuleType, public: bytes) -> None:
    """An HS256 token 'signed' with a public key as the secret never verifies (any key form)."""
    forged = hs256_token({"alg": "HS256", "typ": "JWT"}, claims(), key=public)
    assert reason_of(impl, forged, public, algorithms=["HS256", "EdDSA", "ES256", "RS256"]) == (
        "algorithm_not_allowed"
    )
    assert reason_of(impl, forged, public.decode(), algorithms=["HS256"]) == "algorithm_not_allowed"
    with pytest.raises(ValueError):
        impl.encode(claims(), public, "HS256")


def test_key_of_the_wrong_type_is_refused(impl: ModuleType) -> None:
    """EdDSA with a P-256 key, ES256 with a P-384 key, an empty secret: algorithm_not_allowed."""
    ed_token = impl.encode(claims(), ED_PRIV, "EdDSA")
    assert reason_of(impl, ed_token, EC_PUB, algorithms=["EdDSA"]) == "algorithm_not_allowed"
    assert reason_of(impl, ed_token, b"not a pem", algorithms=["EdDSA"]) == "algorithm_not_allowed"
    assert reason_of(impl, ed_token, ED_PRIV, algorithms=["EdDSA"]) == "algorithm_not_allowed"
    es_token = impl.encode(claims(), EC_PRIV, "ES256")
    assert reason_of(impl, es_token, EC384_PUB, algorithms=["ES256"]) == "algorithm_not_allowed"
    hs_token = impl.encode(claims(), SECRET, "HS256")
    assert reason_of(impl, hs_token, b"", algorithms=["HS256"]) == "algorithm_not_allowed"
    with pytest.raises(ValueError):
        impl.encode(claims(), EC384_PRIV, "ES256")
    with pytest.raises(ValueError):
        impl.encode(claims(), EC_PRIV, "EdDSA")
    with pytest.raises(ValueError):
        impl.encode(claims(), b"", "HS256")


# ------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_tampered_tokens_fail_the_signature(impl: ModuleType, alg: str) -> None:
    """Changed claims, a foreign signature or a cut signature: bad_signature."""
    priv, pub = KEYS[alg]
    token = impl.encode(claims(), priv, alg)
    header, payload, sig = token.split(".")
    evil = b64(orjson.dumps(claims(sub="admin")))
    assert reason_of(impl, f"{header}.{evil}.{sig}", pub, algorithms=[alg]) == "bad_signature"
    assert reason_of(impl, f"{header}.{payload}.", pub, algorithms=[alg]) == "bad_signature"
    assert (
        reason_of(impl, f"{header}.{payload}.{sig[:40]}", pub, algorithms=[alg]) == "bad_signature"
    )


def test_wrong_secret_fails_the_signature(impl: ModuleType) -> None:
    """An HS256 token checked with another secret is bad_signature."""
    token = impl.encode(claims(), SECRET, "HS256")
    assert reason_of(impl, token, b"other-secret") == "bad_signature"


# ------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "....",
        H + ".e30",
        H + ".e30..",
        "!!!.e30.",
        H + ".e30=.",  # padding: not unpadded base64url
        H + "=.e30.",
        H + ".e31.",  # non-canonical trailing bits
        H + ".e30.a",  # length % 4 == 1
        H + ".e30.ab+/",  # standard (not url-safe) alphabet
        H + ".e30.AAAA AAAA",
        H + ".\u00e930.",
        "e30.e30.",  # header without alg
        b64(b"not json") + ".e30.",
        b64(b"[]") + ".e30.",
        b64(b"{}") + ".e30.",  # no alg
        b64(b'{"alg":1}') + ".e30.",
        b64(b'{"alg":"HS256","kid":7}') + ".e30.",
        b64(b'{"alg":"HS256"} x') + ".e30.",
        b64(b'{"alg":"HS256","a":NaN}') + ".e30.",
        b64(b'\xef\xbb\xbf{"alg":"HS256"}') + ".e30.",
        b64(b'{"alg":"HS256","x":"\\ud800"}') + ".e30.",
        b64(b'{"alg":"HS256","x":"\xff"}') + ".e30.",
        b64(b'{"alg":"HS256","x":1e999}') + ".e30.",
    ],
)
def test_malformed_tokens(impl: ModuleType, token: str) -> None:
    """Bad segment counts, base64url, JSON or header shape are all 'malformed'."""
    assert reason_of(impl, token) == "malformed"
    with pytest.raises(impl.InvalidTokenError) as info:
        impl.get_unverified_header(token)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("token", [None, 42, b"e30.e30.", ["a"]])
def test_non_str_token_is_malformed(impl: ModuleType, token: Any) -> None:
    """A token that is not a str is refused as malformed, never a TypeError."""
    assert reason_of(impl, token) == "malformed"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[1]", b'"s"', b"", b'{"a":1,}', b'{"a":01}', b'{"a":.5}'],
)
def test_signed_claims_that_are_not_an_object(impl: ModuleType, payload: bytes) -> None:
    """A correctly signed token whose claims are not a JSON object is malformed."""
    token = hs256_token({"alg": "HS256"}, payload)
    assert reason_of(impl, token, require=()) == "malformed"


def test_json_nesting_limit(impl: ModuleType) -> None:
    """Claims nested more than MAX_JSON_DEPTH containers deep are malformed; at the limit they pass."""
    depth = impl.MAX_JSON_DEPTH
    ok = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    deep = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
    assert impl.decode(hs256_token({"alg": "HS256"}, ok), SECRET, algorithms=["HS256"], require=())
    assert reason_of(impl, hs256_token({"alg": "HS256"}, deep), require=()) == "malformed"
    very_deep = b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert (
        reason_of(impl, hs256_token({"alg": "HS256"}, very_deep), require=(), max_length=10**6)
        == "malformed"
    )


def test_json_number_and_string_rules(impl: ModuleType) -> None:
    """Big integers become floats, -0 is 0, escapes and surrogate pairs decode, duplicates: last wins."""
    payload = (
        b'{"big":18446744073709551616,"max":18446744073709551615,"min":-9223372036854775808,'
        b'"neg0":-0,"fneg0":-0.0,"e":1E+2,"tiny":1e-400,"s":"\\u00e9\\ud83d\\ude00\\/\\n\\u0000",'
        b'"dup":1,"dup":2, "ws" :\t[ ]\r\n}'
    )
    got = impl.decode(
        hs256_token({"alg": "HS256"}, payload), SECRET, algorithms=["HS256"], require=()
    )
    assert repr(got) == repr(
        {
            "big": 1.8446744073709552e19,
            "max": 18446744073709551615,
            "min": -9223372036854775808,
            "neg0": 0,
            "fneg0": -0.0,
            "e": 100.0,
            "tiny": 0.0,
            "s": "é😀/\n\x00",
            "dup": 2,
            "ws": [],
        }
    )


def test_too_large(impl: ModuleType) -> None:
    """A token longer than max_length code points is refused before any parsing."""
    token = impl.encode(claims(pad="x" * 9000), SECRET, "HS256")
    assert reason_of(impl, token) == "too_large"
    assert reason_of(impl, "x" * 9000) == "too_large"
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, max_length=20000)["pad"]
    assert reason_of(impl, token[:100], max_length=99) == "too_large"
    with pytest.raises(impl.InvalidTokenError) as info:
        impl.get_unverified_header(token)
    assert info.value.reason == "too_large"


# ------------------------------------------------------------------------- claims


def test_expiry_with_leeway(impl: ModuleType) -> None:
    """exp <= now - leeway is expired; leeway lets a just-expired token through."""
    token = impl.encode(claims(exp=NOW, iat=NOW - 100), SECRET, "HS256")
    assert reason_of(impl, token, now=NOW) == "expired"
    assert reason_of(impl, token, now=NOW + 5, leeway=4.5) == "expired"
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW + 5, leeway=10)
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW - 0.001)
    float_exp = impl.encode(claims(exp=NOW + 0.5), SECRET, "HS256")
    assert impl.decode(float_exp, SECRET, algorithms=["HS256"], now=NOW + 0.25)
    assert reason_of(impl, float_exp, now=NOW + 0.5) == "expired"


def test_integer_claims_compare_exactly_with_float_time(impl: ModuleType) -> None:
    """An integer exp is compared with the float bound exactly, never rounded to a float."""
    edge = 2**53
    token = impl.encode({"exp": edge + 1}, SECRET, "HS256")
    assert impl.decode(token, SECRET, algorithms=["HS256"], require=(), now=float(edge))
    token = impl.encode({"exp": edge}, SECRET, "HS256")
    assert reason_of(impl, token, require=(), now=float(edge)) == "expired"
    big = impl.encode({"exp": 2**64 - 1, "nbf": -(2**63)}, SECRET, "HS256")
    assert impl.decode(big, SECRET, algorithms=["HS256"], require=(), now=1.8e19)
    assert reason_of(impl, big, require=(), now=1e300) == "expired"
    assert reason_of(impl, big, require=(), now=-1e300) == "not_yet_valid"


def test_not_yet_valid_with_leeway(impl: ModuleType) -> None:
    """nbf > now + leeway is not_yet_valid; within the leeway it passes."""
    token = impl.encode(claims(nbf=NOW + 30), SECRET, "HS256")
    assert reason_of(impl, token) == "not_yet_valid"
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, leeway=30)
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW + 30)


def test_issued_in_the_future(impl: ModuleType) -> None:
    """iat > now + leeway is issued_in_future."""
    token = impl.encode(claims(iat=NOW + 60), SECRET, "HS256")
    assert reason_of(impl, token) == "issued_in_future"
    assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, leeway=60)


def test_check_order_exp_before_nbf_before_iat(impl: ModuleType) -> None:
    """When several claims fail, the first in the documented order gives the reason."""
    token = impl.encode(claims(exp=NOW - 1, nbf=NOW + 9, iat=NOW + 9, iss="x"), SECRET, "HS256")
    assert reason_of(impl, token, issuer="y") == "expired"
    token = impl.encode(claims(nbf=NOW + 9, iat=NOW + 9, iss="x"), SECRET, "HS256")
    assert reason_of(impl, token, issuer="y") == "not_yet_valid"
    token = impl.encode({"iat": NOW + 9, "exp": "soon"}, SECRET, "HS256")
    assert reason_of(impl, token) == "missing_claim"
    assert reason_of(impl, token, require=()) == "invalid_claim"


def test_issuer(impl: ModuleType) -> None:
    """Wrong iss is wrong_issuer; a missing iss when one is expected is missing_claim."""
    token = impl.encode(claims(iss="crown"), SECRET, "HS256")
    assert (
        impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, issuer="crown")["iss"] == "crown"
    )
    assert reason_of(impl, token, issuer="other") == "wrong_issuer"
    assert (
        reason_of(impl, impl.encode(claims(), SECRET, "HS256"), issuer="crown") == "missing_claim"
    )
    assert reason_of(impl, impl.encode(claims(iss=["crown"]), SECRET, "HS256"), issuer="crown") == (
        "wrong_issuer"
    )


def test_audience(impl: ModuleType) -> None:
    """aud may be a string or list; it must meet the expected audience(s)."""
    single = impl.encode(claims(aud="api"), SECRET, "HS256")
    many = impl.encode(claims(aud=["web", "api"]), SECRET, "HS256")
    for token in (single, many):
        assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, audience="api")
        assert impl.decode(token, SECRET, algorithms=["HS256"], now=NOW, audience=["x", "api"])
        assert reason_of(impl, token, audience="admin") == "wrong_audience"
        assert reason_of(impl, token) == "wrong_audience"  # aud present, none expected
    assert (
        reason_of(impl, impl.encode(claims(), SECRET, "HS256"), audience="api") == "missing_claim"
    )
    assert reason_of(impl, impl.encode(claims(aud=[]), SECRET, "HS256"), audience="api") == (
        "wrong_audience"
    )
    for bad in (5, ["api", 5], {"a": 1}, None):
        token = impl.encode(claims(aud=bad), SECRET, "HS256")
        assert reason_of(impl, token, audience="api") == "invalid_claim"


def test_required_claims(impl: ModuleType) -> None:
    """exp, iat, sub are required by default; null counts as missing; require=() requires none."""
    for name in ("exp", "iat", "sub"):
        body = claims()
        del body[name]
        assert reason_of(impl, impl.encode(body, SECRET, "HS256")) == "missing_claim"
        body[name] = None
        assert reason_of(impl, impl.encode(body, SECRET, "HS256")) == "missing_claim"
    token = impl.encode({"hello": "world"}, SECRET, "HS256")
    assert impl.decode(token, SECRET, algorithms=["HS256"], require=()) == {"hello": "world"}
    assert reason_of(impl, token, require=["jti"]) == "missing_claim"
    assert reason_of(impl, token, require=None) == "missing_claim"  # None: the default


@pytest.mark.parametrize(
    "extra",
    [
        {"exp": "1"},
        {"exp": True},
        {"nbf": "x"},
        {"iat": [1]},
        {"sub": 5},
        {"jti": 5},
        {"exp": None},
    ],
)
def test_invalid_claim_types(impl: ModuleType, extra: dict[str, Any]) -> None:
    """Registered claims of the wrong JSON type are invalid_claim."""
    token = impl.encode({**claims(), **extra}, SECRET, "HS256")
    assert reason_of(impl, token, require=()) == "invalid_claim"


def test_now_defaults_to_the_clock(impl: ModuleType) -> None:
    """Without now, the current time is used."""
    current = int(time.time())
    token = impl.encode(claims(iat=current, exp=current + 60), SECRET, "HS256")
    assert impl.decode(token, SECRET, algorithms=["HS256"])["exp"] == current + 60
    old = impl.encode(claims(iat=current - 100, exp=current - 50), SECRET, "HS256")
    with pytest.raises(impl.InvalidTokenError):
        impl.decode(old, SECRET, algorithms=["HS256"])


# ------------------------------------------------------------------------- programmer errors


def test_argument_errors_are_type_and_value_errors(impl: ModuleType) -> None:
    """Wrong argument types raise TypeError/ValueError before the token is looked at."""
    token = impl.encode(claims(), SECRET, "HS256")
    with pytest.raises(TypeError):
        impl.decode(token, SECRET, algorithms="HS256")
    with pytest.raises(TypeError):
        impl.decode(token, SECRET, algorithms=[b"HS256"])
    with pytest.raises(TypeError):
        impl.decode(token, 42, algorithms=["HS256"])
    with pytest.raises(TypeError):
        impl.decode(token, SECRET, algorithms=["HS256"], leeway=True)
    with pytest.raises(TypeError):
        impl.decode(token, SECRET, algorithms=["HS256"], issuer=5)
    with pytest.raises(TypeError):
        impl.decode(token, SECRET, algorithms=["HS256"], max_length=1.5)
    with pytest.raises(ValueError):
        impl.decode(token, SECRET, algorithms=["HS256"], now=float("nan"))
    with pytest.raises(TypeError):
        impl.encode(claims(x=object()), SECRET, "HS256")
    with pytest.raises(TypeError):
        impl.encode({1: "non-str key"}, SECRET, "HS256")
    with pytest.raises(TypeError):
        impl.encode(claims(big=2**70), SECRET, "HS256")
    with pytest.raises(TypeError):
        impl.encode(["not", "a", "dict"], SECRET, "HS256")
    with pytest.raises(ValueError):
        impl.encode(claims(), SECRET, "HS1024")


def test_other_sequences_are_accepted(impl: ModuleType) -> None:
    """algorithms/require/audience may be tuples, lists or sets."""
    token = impl.encode(claims(aud="api"), SECRET, "HS256")
    assert impl.decode(
        token, SECRET, algorithms={"HS256"}, require=frozenset({"sub"}), audience=("api",), now=NOW
    )


# ------------------------------------------------------------------------- JWK


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_public_jwk_matches_pyjwt_and_has_no_private_parts(impl: ModuleType, alg: str) -> None:
    """public_jwk of a private or public PEM is PyJWT's public JWK plus kid/alg/use."""
    priv, pub = KEYS[alg]
    from_priv = impl.public_jwk(priv, alg, "k1")
    assert from_priv == impl.public_jwk(pub, alg, "k1")
    assert from_priv["kid"] == "k1" and from_priv["alg"] == alg and from_priv["use"] == "sig"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(from_priv)
    loaded = pyjwt.PyJWK(from_priv)
    token = impl.encode(claims(), priv, alg)
    assert pyjwt.decode(token, loaded.key, algorithms=[alg], options={"verify_exp": False})


def test_public_jwk_refuses_hmac(impl: ModuleType) -> None:
    """A shared secret has no public JWK: ValueError, and the secret is never echoed."""
    with pytest.raises(ValueError) as info:
        impl.public_jwk(SECRET, "HS256", "k1")
    assert SECRET.decode() not in str(info.value)


# ------------------------------------------------------------------------- hygiene


def test_error_messages_never_echo_token_or_key(impl: ModuleType) -> None:
    """Every refusal carries only its fixed generic message (no token text, no key)."""
    secret_claim = "very-secret-claim-value"
    cases = [
        (impl.encode(claims(data=secret_claim), SECRET, "HS256"), b"wrong-key-material"),
        (impl.encode(claims(data=secret_claim, exp=NOW - 5), SECRET, "HS256"), SECRET),
        ("x" * 9000, SECRET),
        (H + ".e30." + secret_claim, SECRET),
    ]
    for token, key in cases:
        with pytest.raises(impl.InvalidTokenError) as info:
            impl.decode(token, key, algorithms=["HS256"], now=NOW)
        message = str(info.value)
        assert message == impl.REASONS[info.value.reason]
        assert secret_claim not in message and key.decode() not in message


def test_concurrent_decodes_in_threads(impl: ModuleType) -> None:
    """Decoding from several threads at once (the GIL is released around curve math) is correct."""
    from concurrent.futures import ThreadPoolExecutor

    tokens = {alg: impl.encode(claims(alg=alg), KEYS[alg][0], alg) for alg in COMPILED_ALGS}

    def work(i: int) -> bool:
        alg = COMPILED_ALGS[i % len(COMPILED_ALGS)]
        got = impl.decode(tokens[alg], KEYS[alg][1], algorithms=[alg], now=NOW)
        return got == claims(alg=alg)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, range(60)))
