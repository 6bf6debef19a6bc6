"""API keys, CSRF tokens and authenticated encryption."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import SecurityException
from crown_nexus.core.security import (
    configure_security,
    decrypt_data,
    encrypt_data,
    generate_api_key,
    generate_csrf_token,
    generate_encryption_key,
    rotate_encrypted,
    validate_csrf_token,
    verify_api_key,
)
from crown_nexus.core.security.api_keys import parse_api_key
from tests.core.security.conftest import make_settings

# --- API keys --------------------------------------------------------------------------------


def test_api_key_shape_and_storage() -> None:
    """The key is "<key_id>.<secret>" and only the SHA-256 of the secret is kept."""
    data = generate_api_key("user-1", "ci", ["document:read"])
    key_id, secret = data.api_key.split(".")
    assert key_id == data.key_id
    assert data.hashed_secret == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in data.hashed_secret and secret not in repr(data)
    assert data.permissions == ["document:read"] and data.user_id == "user-1"
    assert verify_api_key(data.api_key, data.hashed_secret)


def test_api_key_rejections() -> None:
    """Wrong secret, other key, malformed keys and hashes verify False."""
    a = generate_api_key("u", "a")
    b = generate_api_key("u", "b")
    assert not verify_api_key(b.api_key, a.hashed_secret)
    assert not verify_api_key(a.api_key + "x", a.hashed_secret)
    for bad in ["", "nodot", ".", "a.", ".b", "a.b.c", a.key_id + ".short", "ü.ü" * 3]:
        assert not verify_api_key(bad, a.hashed_secret)
    assert not verify_api_key(a.api_key, "")
    assert not verify_api_key(a.api_key, None)  # type: ignore[arg-type]
    assert parse_api_key(a.api_key) == tuple(a.api_key.split("."))


@hsettings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_verify_api_key_never_raises(candidate: str) -> None:
    """verify_api_key on arbitrary strings returns a bool (False) and never raises."""
    assert verify_api_key(candidate, hashlib.sha256(b"x").hexdigest()) is False


# --- CSRF ------------------------------------------------------------------------------------


def test_csrf_bound_to_session_and_expiring() -> None:
    """A CSRF token validates for its session only, until it expires."""
    token = generate_csrf_token("session-1", now=1_000_000)
    assert validate_csrf_token(token, "session-1", now=1_000_010)
    assert not validate_csrf_token(token, "session-2", now=1_000_010)
    assert not validate_csrf_token(token, "session-1", now=1_000_000 + 7201)
    assert validate_csrf_token(token, "session-1", max_age=60, now=1_000_059)
    assert not validate_csrf_token(token, "session-1", max_age=60, now=1_000_061)


def test_csrf_tampering_and_other_secret() -> None:
    """A token signed with another secret or altered in any way is rejected."""
    token = generate_csrf_token("s", secret="secret-a")
    assert validate_csrf_token(token, "s", secret="secret-a")
    assert not validate_csrf_token(token, "s", secret="secret-b")
    payload, mac = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    assert not validate_csrf_token(f"{flipped}.{mac}", "s", secret="secret-a")
    for bad in ["", ".", "abc", "a.b", "!!!.???", token + "x" * 300]:
        assert not validate_csrf_token(bad, "s", secret="secret-a")
    assert not validate_csrf_token(None, "s")  # type: ignore[arg-type]


def test_csrf_uses_the_configured_secret() -> None:
    """Module-level CSRF follows configure_security's secret key."""
    try:
        configure_security(make_settings(secret_key="csrf-secret-one-0123456789abcdef"))
        token = generate_csrf_token("s")
        assert validate_csrf_token(token, "s")
        configure_security(make_settings(secret_key="csrf-secret-two-0123456789abcdef"))
        assert not validate_csrf_token(token, "s")
    finally:
        configure_security(None)


@hsettings(max_examples=150, deadline=None)
@given(st.text(max_size=120), st.text(max_size=20))
def test_fuzz_csrf_never_raises(token: str, session: str) -> None:
    """validate_csrf_token on arbitrary input returns False without raising."""
    assert validate_csrf_token(token, session, secret="k") is False


# --- encryption ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["text é", b"\x00\x01bytes", {"a": 1, "n": [1, 2], "s": "x"}, ""])
def test_encrypt_round_trip_keeps_the_type(value) -> None:
    """decrypt_data returns exactly what encrypt_data was given, with its type."""
    token = encrypt_data(value)
    assert isinstance(token, str)
    out = decrypt_data(token)
    assert out == value and type(out) is type(value)


def test_encrypt_rejects_other_types() -> None:
    """Values other than str/bytes/dict are a TypeError."""
    with pytest.raises(TypeError):
        encrypt_data(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        encrypt_data({"x": object()})


def test_tampered_or_foreign_tokens_fail_with_security_exception() -> None:
    """Any change, garbage, or another key: SecurityException("Decryption failed")."""
    token = encrypt_data("secret")
    bad = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    for candidate in [bad, "garbage", "", "ü"]:
        with pytest.raises(SecurityException) as info:
            decrypt_data(candidate)
        assert info.value.message == "Decryption failed"
    foreign = Fernet(Fernet.generate_key()).encrypt(b"sX").decode()
    with pytest.raises(SecurityException):
        decrypt_data(foreign)


def test_key_rotation() -> None:
    """New keys go first; old data still decrypts; rotate_encrypted moves it to the new key."""
    old_key, new_key = generate_encryption_key(), generate_encryption_key()
    old_token = encrypt_data({"v": 1}, keys=[old_key])
    assert decrypt_data(old_token, keys=[new_key, old_key]) == {"v": 1}
    rotated = rotate_encrypted(old_token, keys=[new_key, old_key])
    assert decrypt_data(rotated, keys=[new_key]) == {"v": 1}
    with pytest.raises(SecurityException):
        decrypt_data(old_token, keys=[new_key])
    passphrase_token = encrypt_data("x", keys=["not a fernet key, a passphrase"])
    assert decrypt_data(passphrase_token, keys=["not a fernet key, a passphrase"]) == "x"


def test_default_key_comes_from_the_secret_key() -> None:
    """Without configured keys the key derives from the secret key (another secret cannot read)."""
    try:
        configure_security(make_settings(secret_key="enc-secret-one-0123456789abcdef"))
        token = encrypt_data("hello")
        assert decrypt_data(token) == "hello"
        configure_security(make_settings(secret_key="enc-secret-two-0123456789abcdef"))
        with pytest.raises(SecurityException):
            decrypt_data(token)
        configure_security(
            make_settings(
                secret_key="enc-secret-one-0123456789abcdef",
                encryption_keys=[generate_encryption_key()],
            )
        )
        assert decrypt_data(token) == "hello", "the derived key stays available for decryption"
    finally:
        configure_security(None)
