"""Encryption keys: Fernet keys as is, passphrases stretched with scrypt, weak ones refused."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crown_nexus.core.exceptions import ConfigurationException, SecurityException
from crown_nexus.core.security import (
    configure_security,
    decrypt_data,
    encrypt_data,
    encryption,
    generate_encryption_key,
    rotate_encrypted,
)
from crown_nexus.core.security._config import get_security_settings
from crown_nexus.core.security._derive import derive_key
from crown_nexus.testing import capture_logs
from tests.core.security.conftest import make_settings

PASSPHRASE = "correct horse battery staple"


def _scrypt_fernet(passphrase: str, app_name: str = "crown-nexus") -> Fernet:
    """The key the documented derivation gives, computed independently of the module."""
    kdf = Scrypt(
        salt=b"crown-nexus/encryption-passphrase/v1:" + app_name.encode(),
        length=32,
        n=2**15,
        r=8,
        p=1,
    )
    return Fernet(base64.urlsafe_b64encode(kdf.derive(passphrase.encode())))


def _legacy_fernet(passphrase: str) -> Fernet:
    """The HKDF-derived key earlier releases used for passphrases."""
    return Fernet(base64.urlsafe_b64encode(derive_key(passphrase, "encryption:configured")))


@pytest.fixture(autouse=True)
def _default_app_name() -> None:
    """These tests rely on the default app name (the scrypt salt)."""
    assert get_security_settings().app_name == "crown-nexus"


def test_fernet_keys_are_used_as_they_are() -> None:
    """A Fernet key (even with stray whitespace) encrypts directly: plain Fernet can read it."""
    key = generate_encryption_key()
    for entry in (key, f"  {key}\n"):
        token = encrypt_data("x", keys=[entry])
        assert Fernet(key.encode()).decrypt(token.encode()) == b"sx"


@pytest.mark.parametrize("weak", ["", "hunter2", "password", "a" * 15, "=" * 15])
def test_short_passphrases_are_refused(weak: str) -> None:
    """Attack: a guessable passphrase is a ConfigurationException naming the setting, not a key."""
    for call in (
        lambda: encrypt_data("x", keys=[weak]),
        lambda: decrypt_data("token", keys=[generate_encryption_key(), weak]),
        lambda: rotate_encrypted("token", keys=[weak]),
    ):
        with pytest.raises(ConfigurationException) as info:
            call()
        assert "CROWN_NEXUS_ENCRYPTION_KEYS" in info.value.message
        assert info.value.config_key == "encryption_keys"
        assert info.value.status_code == 500
        if weak:
            assert weak not in info.value.message


def test_configure_security_refuses_weak_keys_and_keeps_the_old_settings() -> None:
    """configure_security fails fast on a weak entry and leaves the configuration unchanged."""
    before = get_security_settings()
    with pytest.raises(ConfigurationException, match="entry 1"):
        configure_security(make_settings(encryption_keys=[generate_encryption_key(), "short"]))
    assert get_security_settings() is before


def test_passphrases_are_stretched_with_scrypt() -> None:
    """A long passphrase encrypts under the scrypt key; the fast HKDF key cannot read it."""
    token = encrypt_data({"card": "4111"}, keys=[PASSPHRASE])
    assert _scrypt_fernet(PASSPHRASE).decrypt(token.encode()) == b'j{"card":"4111"}'
    with pytest.raises(InvalidToken):
        _legacy_fernet(PASSPHRASE).decrypt(token.encode())
    assert decrypt_data(token, keys=[PASSPHRASE]) == {"card": "4111"}


def test_scrypt_runs_once_per_passphrase() -> None:
    """The stretched key is computed once per process and passphrase, whatever the key list."""
    encryption._scrypt_key.cache_clear()
    encryption._keyring.cache_clear()
    passphrase = "another long passphrase, once"
    encrypt_data("a", keys=[passphrase])
    encrypt_data("b", keys=[generate_encryption_key(), passphrase])
    decrypt_data(encrypt_data("c", keys=[passphrase]), keys=[passphrase])
    info = encryption._scrypt_key.cache_info()
    assert info.misses == 1 and info.hits >= 1


def test_the_app_name_salts_passphrase_keys() -> None:
    """The same passphrase gives different keys in differently named apps."""
    try:
        configure_security(make_settings(app_name="shop-a", encryption_keys=[PASSPHRASE]))
        token = encrypt_data("x")
        assert _scrypt_fernet(PASSPHRASE, "shop-a").decrypt(token.encode()) == b"sx"
        configure_security(make_settings(app_name="shop-b", encryption_keys=[PASSPHRASE]))
        with pytest.raises(SecurityException):
            decrypt_data(token)
    finally:
        configure_security(None)


def test_legacy_hkdf_tokens_decrypt_with_a_warning_and_rotate() -> None:
    """Tokens of the old HKDF derivation still decrypt (logged); rotation moves them to scrypt."""
    old = _legacy_fernet(PASSPHRASE).encrypt(b"slegacy").decode()
    with capture_logs("warning") as logs:
        assert decrypt_data(old, keys=[PASSPHRASE]) == "legacy"
    assert any("legacy" in e["event"] for e in logs)
    with capture_logs("warning") as logs:
        assert decrypt_data(encrypt_data("new", keys=[PASSPHRASE]), keys=[PASSPHRASE]) == "new"
    assert not any("legacy" in e["event"] for e in logs)
    rotated = rotate_encrypted(old, keys=[PASSPHRASE])
    assert _scrypt_fernet(PASSPHRASE).decrypt(rotated.encode()) == b"slegacy"
    fresh = generate_encryption_key()
    moved = rotate_encrypted(old, keys=[fresh, PASSPHRASE])
    assert decrypt_data(moved, keys=[fresh]) == "legacy"
    # a legacy token only opens with its own passphrase
    with pytest.raises(SecurityException):
        decrypt_data(old, keys=["a different long passphrase"])
