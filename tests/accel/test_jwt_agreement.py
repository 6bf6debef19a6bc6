"""Property tests: the native jwt twin agrees with the pure one, bad input included."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crown_nexus import accel
from tests.accel.test_jwt import EC_PRIV, EC_PUB, ED_PRIV, ED_PUB, NOW, SECRET

IMPLS = accel.available("jwt")
PURE = IMPLS["pure"]
pytestmark = pytest.mark.skipif("native" not in IMPLS, reason="native jwt twin not built")
NATIVE: ModuleType | None = IMPLS.get("native")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(impl: ModuleType, call: Callable[[ModuleType], Any]) -> tuple[str, str]:
    """('ok', repr(result)) | ('invalid', reason) | ('exception', type name)."""
    try:
        return ("ok", repr(call(impl)))
    except PURE.InvalidTokenError as exc:
        return ("invalid", exc.reason)
    except Exception as exc:  # noqa: BLE001 - the type is what we compare
        return ("exception", type(exc).__name__)


def agree(call: Callable[[ModuleType], Any]) -> tuple[str, str]:
    """Run ``call`` on both twins, assert the same outcome, return it."""
    assert NATIVE is not None
    pure, native = outcome(PURE, call), outcome(NATIVE, call)
    assert pure == native
    return pure


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_hs256(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    sig = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


# ------------------------------------------------------------------ strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
numberish = (
    st.integers(min_value=NOW - 100, max_value=NOW + 100)
    | st.floats(min_value=NOW - 100, max_value=NOW + 100)
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.sampled_from([True, False, None, "1700000000", [NOW], 1e300, -1e300, 2**63, -(2**63)])
)
claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.sampled_from(["u1", 1, None, ["u1"]]),
        "exp": numberish,
        "nbf": numberish,
        "iat": numberish,
        "iss": st.sampled_from(["crown", "other", 5, None]),
        "aud": st.sampled_from(["api", "web", ["web", "api"], [], ["x"], [1], 3, None, {"a": 1}]),
        "jti": st.sampled_from(["j1", 7, None]),
        "extra": json_values,
    },
)
options = st.fixed_dictionaries(
    {
        "algorithms": st.sampled_from(
            [["HS256"], ["HS256", "EdDSA"], ["EdDSA"], [], ("HS256", "none")]
        ),
        "now": st.floats(min_value=NOW - 200, max_value=NOW + 200)
        | st.integers(NOW - 200, NOW + 200),
        "leeway": st.sampled_from([0, 0.0, 1.5, 30, 100, -5.0]),
        "issuer": st.sampled_from([None, "crown", "other"]),
        "audience": st.sampled_from([None, "api", ["web"], ("x", "api"), []]),
        "require": st.sampled_from(
            [(), (), (), ["exp"], ("exp", "iat", "sub"), ["jti", "aud"], None]
        ),
    }
)
token_alphabet = st.sampled_from(list("ABCDEFabcdefxyz0189-_.=+/ \x00é😀e3J9I"))


def valid_token(alg: str) -> str:
    key = {"HS256": SECRET, "EdDSA": ED_PRIV, "ES256": EC_PRIV}[alg]
    body = {"sub": "u1", "iat": NOW, "exp": NOW + 60, "aud": "api", "iss": "crown"}
    return PURE.encode(body, key, alg, {"kid": "k1"})


#: claim names with rules (kept out of free-form claim sets)
REGISTERED = frozenset({"exp", "nbf", "iat", "iss", "aud", "sub", "jti"})
VALID = {alg: valid_token(alg) for alg in ("HS256", "EdDSA", "ES256")}
VERIFY_KEYS = {"HS256": SECRET, "EdDSA": ED_PUB, "ES256": EC_PUB}


# ------------------------------------------------------------------ decode fuzzing


@FUZZ
@given(token=st.text(max_size=200) | st.text(token_alphabet, max_size=120))
def test_arbitrary_strings_agree_and_only_invalid_token_escapes(token: str) -> None:
    """Any string: both twins refuse it with the same reason (never another exception)."""
    kind, _ = agree(lambda impl: impl.decode(token, SECRET, algorithms=["HS256"], now=NOW))
    assert kind == "invalid"
    agree(lambda impl: impl.get_unverified_header(token))


@FUZZ
@given(
    alg=st.sampled_from(sorted(VALID)),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10_000), token_alphabet
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_tokens_agree(alg: str, edits: list[tuple[str, int, str]]) -> None:
    """Valid tokens with random edits give the same outcome on both twins, only InvalidTokenError."""
    token = VALID[alg]
    for op, pos, char in edits:
        pos %= len(token) + 1
        if op == "replace" and pos < len(token):
            token = token[:pos] + char + token[pos + 1 :]
        elif op == "insert":
            token = token[:pos] + char + token[pos:]
        elif pos < len(token):
            token = token[:pos] + token[pos + 1 :]
    kind, _ = agree(
        lambda impl: impl.decode(
            token, VERIFY_KEYS[alg], algorithms=[alg], now=NOW, audience="api", issuer="crown"
        )
    )
    assert kind in ("ok", "invalid")


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "x"]),
        st.sampled_from(["HS256", "none", "EdDSA", "HS512", "RS256", 1, None, ["HS256"], "k"]),
    ),
    body=claim_sets,
)
def test_signed_headers_agree(header: dict[str, Any], body: dict[str, Any]) -> None:
    """Correctly signed tokens with arbitrary headers get the same outcome on both twins."""
    token = sign_hs256(orjson.dumps(header), orjson.dumps(body))
    kind, _ = agree(
        lambda impl: impl.decode(token, SECRET, algorithms=["HS256", "EdDSA"], now=NOW, require=())
    )
    assert kind in ("ok", "invalid")


@FUZZ
@given(body=claim_sets, opts=options)
def test_claim_rules_agree(body: dict[str, Any], opts: dict[str, Any]) -> None:
    """Every claim combination and option set: same claims or same reason on both twins."""
    token = sign_hs256(b'{"alg":"HS256","typ":"JWT"}', orjson.dumps(body))
    kind, _ = agree(lambda impl: impl.decode(token, SECRET, **opts))
    assert kind in ("ok", "invalid")


@FUZZ
@given(
    stamp=st.integers(2**53 - 8, 2**53 + 8)
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False),
    now=st.floats(2**53 - 16, 2**53 + 16)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300),
    leeway=st.floats(-10.0, 10.0) | st.integers(-10, 10),
    name=st.sampled_from(["exp", "nbf", "iat"]),
)
def test_time_comparisons_agree(stamp: float, now: float, leeway: float, name: str) -> None:
    """exp/nbf/iat against now +- leeway: the same verdict on both twins, at float edges too."""
    token = sign_hs256(b'{"alg":"HS256"}', orjson.dumps({name: stamp}))
    agree(
        lambda impl: impl.decode(
            token, SECRET, algorithms=["HS256"], require=(), now=now, leeway=leeway
        )
    )


@FUZZ
@given(
    value=json_values,
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.sampled_from(list('{}[]":,.-+eE0123456789 \\u"tfn\x00\x1f\xff')),
            st.booleans(),
        ),
        max_size=3,
    ),
)
def test_signed_json_payloads_agree(value: Any, edits: list[tuple[int, str, bool]]) -> None:
    """Signed payloads of arbitrary (and randomly broken) JSON parse the same on both twins."""
    text = orjson.dumps({"v": value}).decode()
    for pos, char, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + char + text[pos + (0 if insert else 1) :]
    token = sign_hs256(b'{"alg":"HS256"}', text.encode("utf-8", "surrogatepass"))
    kind, _ = agree(
        lambda impl: impl.decode(token, SECRET, algorithms=["HS256"], require=(), max_length=10**6)
    )
    assert kind in ("ok", "invalid")


@FUZZ
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "x"]),
        st.sampled_from(["HS256", "k1", None, 1, [1, {"a": "HS256"}], {"alg": "EdDSA"}, 1.5]),
    ),
    edits=st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.sampled_from(list('{}[]":,.-+eE0123456789 \\u"tfnHS\x00\x1f\xff')),
            st.booleans(),
        ),
        max_size=3,
    ),
)
def test_signed_broken_headers_agree(
    header: dict[str, Any], edits: list[tuple[int, str, bool]]
) -> None:
    """Signed tokens whose header JSON is arbitrary or randomly broken: same outcome on both."""
    text = orjson.dumps(header).decode()
    for pos, char, insert in edits:
        pos %= len(text) + 1
        text = text[:pos] + char + text[pos + (0 if insert else 1) :]
    token = sign_hs256(text.encode("utf-8", "surrogatepass"), orjson.dumps({"sub": "u"}))
    kind, _ = agree(lambda impl: impl.decode(token, SECRET, algorithms=["HS256"], require=()))
    assert kind in ("ok", "invalid")
    agree(lambda impl: impl.get_unverified_header(token))


@FUZZ
@given(
    payload=st.binary(max_size=60)
    | st.sampled_from(
        [
            b'{"a":-0}',
            b'{"a":1e309}',
            b'{"a":-1e-400}',
            b'{"a":123456789012345678901234567890}',
            b'{"a":-9223372036854775809}',
            b'{"a":"\\ud83d"}',
            b'{"a":"\\udc00\\ud83d"}',
            b'{"a":"\\ud83d\\u0041"}',
            b'{"a":"\\uD83D\\uDE00"}',
            b'{"a":tru}',
            b'{"a":[1,]}',
            b'{"a" 1}',
            b'{"a":1}}',
            b' \n{"a":1}\t',
            b'{"a":"\x7f\xc3\xa9"}',
            b'{"a":"\xed\xa0\x80"}',
        ]
    )
)
def test_raw_payload_bytes_agree(payload: bytes) -> None:
    """Arbitrary signed payload bytes (JSON edge cases included) give the same outcome."""
    token = sign_hs256(b'{"alg":"HS256"}', payload)
    kind, _ = agree(lambda impl: impl.decode(token, SECRET, algorithms=["HS256"], require=()))
    assert kind in ("ok", "invalid")


# ------------------------------------------------------------------ encode agreement


@FUZZ
@given(
    body=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in REGISTERED), json_values, max_size=6
    ),
    alg=st.sampled_from(["HS256", "HS384", "EdDSA", "ES256"]),
    kid=st.none() | st.text(max_size=8),
)
def test_encode_agrees_and_cross_verifies(body: dict[str, Any], alg: str, kid: str | None) -> None:
    """Tokens from either twin decode in the other to the same claims."""
    assert NATIVE is not None
    key = {"HS256": SECRET, "HS384": SECRET, "EdDSA": ED_PRIV, "ES256": EC_PRIV}[alg]
    pub = {"HS256": SECRET, "HS384": SECRET, "EdDSA": ED_PUB, "ES256": EC_PUB}[alg]
    headers = None if kid is None else {"kid": kid}
    expected = repr(orjson.loads(orjson.dumps(body)))
    for signer, verifier in ((PURE, NATIVE), (NATIVE, PURE)):
        token = signer.encode(body, key, alg, headers)
        got = verifier.decode(token, pub, algorithms=[alg], require=())
        assert repr(got) == expected
        assert verifier.get_unverified_header(token) == {
            "alg": alg,
            "typ": "JWT",
            **(headers or {}),
        }


@FUZZ
@given(
    body=st.dictionaries(
        st.text(max_size=4) | st.integers() | st.none(),
        json_values
        | st.integers()
        | st.tuples(st.integers(0, 3))
        | st.sampled_from([object(), b"bytes", {1, 2}, float("nan"), float("inf"), "\ud800"]),
        max_size=4,
    ),
    alg=st.sampled_from(["HS256", "EdDSA", "none", "RS512"]),
)
def test_encode_errors_agree(body: dict[Any, Any], alg: str) -> None:
    """Unserializable claims or bad algorithms raise the same exception type on both twins."""
    key = {"HS256": SECRET, "EdDSA": ED_PRIV}.get(alg, SECRET)

    def roundtrip(impl: ModuleType) -> Any:
        token = impl.encode(body, key, alg)
        return PURE.decode(
            token, {"HS256": SECRET, "EdDSA": ED_PUB}[alg], algorithms=[alg], require=()
        )

    agree(roundtrip)


# ------------------------------------------------------------------ key formats


def _key_variants(pem: bytes) -> dict[str, bytes]:
    return {
        "plain": pem,
        "crlf": pem.replace(b"\n", b"\r\n"),
        "no-final-newline": pem.rstrip(b"\n"),
        "leading-text": b"my key\n" + pem,
        "trailing-text": pem + b"junk\n",
        "lowercase": pem.lower(),
        "blank-lines": pem.replace(b"\n", b"\n\n"),
        "unwrapped": pem.replace(b"\n", b"", 2),
        "truncated": pem[: len(pem) // 2],
    }


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_key_formats_agree(alg: str) -> None:
    """PEM variants (line endings, surrounding text, damage) are accepted or refused alike."""
    priv = {"EdDSA": ED_PRIV, "ES256": EC_PRIV}[alg]
    token = PURE.encode({"sub": "u"}, priv, alg)
    for name, key in _key_variants(VERIFY_KEYS[alg]).items():
        kind, _ = agree(lambda impl, key=key: impl.decode(token, key, algorithms=[alg], require=()))
        assert kind in ("ok", "invalid"), name
    for name, key in _key_variants(priv).items():
        kind, _ = agree(
            lambda impl, key=key: PURE.decode(
                impl.encode({"sub": "u"}, key, alg), VERIFY_KEYS[alg], algorithms=[alg], require=()
            )
        )
        assert kind in ("ok", "exception"), name
