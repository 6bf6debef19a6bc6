"""Passwords: Argon2id hashing, bcrypt compatibility, rehash detection, policy, off-loop service."""

from __future__ import annotations

import asyncio
import threading
import time

import bcrypt
import pytest
from argon2 import PasswordHasher

from crown_nexus.core.security import (
    SecurityService,
    get_password_hash,
    needs_rehash,
    validate_password_policy,
    verify_password,
)
from crown_nexus.core.security import passwords as pw
from tests.core.security.conftest import make_settings


def test_hash_is_argon2id_and_salted() -> None:
    """get_password_hash gives distinct Argon2id PHC strings that verify."""
    a, b = get_password_hash("S3cret!pass"), get_password_hash("S3cret!pass")
    assert a.startswith("$argon2id$") and a != b
    assert verify_password("S3cret!pass", a) and verify_password("S3cret!pass", b)
    assert not verify_password("S3cret!pasS", a)


@pytest.mark.parametrize("bad_hash", ["", "plain", "$argon2id$broken", "$2b$12$short", "$5$rounds"])
def test_malformed_hashes_do_not_verify(bad_hash: str) -> None:
    """A malformed or unknown hash gives False, never an exception."""
    assert verify_password("anything", bad_hash) is False


def test_non_string_inputs_are_false() -> None:
    """Non-string inputs give False; hashing a non-string is a ValueError."""
    assert verify_password(None, get_password_hash("x")) is False  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        get_password_hash(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        get_password_hash("x" * 5000)


def test_bcrypt_hashes_verify_and_need_rehash() -> None:
    """Legacy bcrypt hashes verify (also $2a$/$2y$ and >72-byte passwords) and report needs_rehash."""
    legacy = bcrypt.hashpw(b"old-password", bcrypt.gensalt(rounds=4)).decode()
    assert verify_password("old-password", legacy)
    assert not verify_password("wrong", legacy)
    assert needs_rehash(legacy) is True
    assert verify_password("old-password", "$2a$" + legacy[4:])
    long_pw = "p" * 100
    truncated = bcrypt.hashpw(long_pw.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    assert verify_password(long_pw, truncated)


def test_needs_rehash_for_outdated_argon2_parameters(cheap_argon2) -> None:
    """A hash made with other Argon2 parameters (or argon2i) needs a rehash; a current one does not."""
    current = get_password_hash("pw")
    assert needs_rehash(current) is False
    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1).hash("pw")
    assert needs_rehash(stronger) is True
    assert verify_password("pw", stronger)
    assert needs_rehash("not-a-hash") is True


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Sh0rt!", "at least 8"),
        ("x" * 129 + "A1!", "at most 128"),
        ("lowercase1!", "uppercase"),
        ("UPPERCASE1!", "lowercase"),
        ("NoDigits!!", "digit"),
        ("NoSpecial123", "special"),
        ("Password123!", "too common"),
        ("P@ssw0rd!", "too common"),
        ("Qwerty123!", "too common"),
    ],
)
async def test_policy_rejections(password: str, fragment: str) -> None:
    """Each policy rule rejects with a message naming it."""
    ok, message = await validate_password_policy(password)
    assert ok is False
    assert fragment in message
    assert password not in message


async def test_policy_personal_information() -> None:
    """A password containing the user id or the email's local part is rejected."""
    ok, msg = await validate_password_policy("Xk9!jsmith#2", user_id="jsmith")
    assert not ok and "user id" in msg
    ok, msg = await validate_password_policy("Zz7!alice.w&Q", email="alice.w@example.com")
    assert not ok and "email" in msg
    assert await validate_password_policy("Zz7!vq2#Lm", user_id="jsmith", email="a.b@x.io") == (
        True,
        "Password meets the policy",
    )


def test_common_password_list_is_shipped() -> None:
    """The shipped list is loaded from package data and has the classics."""
    common = pw._common_passwords()
    assert len(common) > 300
    assert {"123456", "password", "qwerty", "letmein"} <= common


async def test_service_verifies_off_the_event_loop() -> None:
    """SecurityService.verify_password runs the check in a worker thread, not on the loop."""
    service = SecurityService(make_settings())
    seen: list[str] = []
    original = pw.verify_password

    def spy(plain: str, hashed: str) -> bool:
        seen.append(threading.current_thread().name)
        return original(plain, hashed)

    pw.verify_password = spy  # type: ignore[assignment]
    try:
        hashed = await service.hash_password("Pw-1234567!")
        assert await service.verify_password("Pw-1234567!", hashed, user_id="u")
        assert not await service.verify_password("nope", hashed, user_id="u")
    finally:
        pw.verify_password = original  # type: ignore[assignment]
        await service.close()
    assert seen and all(name != threading.main_thread().name for name in seen)


async def test_hashing_concurrency_is_bounded_and_loop_stays_responsive() -> None:
    """At most max_concurrent_hashes checks run at once, and the loop keeps ticking meanwhile."""
    service = SecurityService(make_settings(), max_concurrent_hashes=2)
    lock = threading.Lock()
    running = 0
    peak = 0
    original = pw.verify_password

    def slow(plain: str, hashed: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return True

    pw.verify_password = slow  # type: ignore[assignment]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(*(service.verify_password("a", "b") for _ in range(6)))
    finally:
        tick_task.cancel()
        pw.verify_password = original  # type: ignore[assignment]
        await service.close()
    assert all(results)
    assert peak == 2
    assert ticks >= 10  # ~150 ms of hashing; the loop was never blocked


async def test_verify_and_rehash_upgrades_bcrypt() -> None:
    """A correct bcrypt password yields a fresh Argon2id hash to store."""
    service = SecurityService(make_settings())
    try:
        legacy = bcrypt.hashpw(b"Legacy-pw-1", bcrypt.gensalt(rounds=4)).decode()
        ok, new_hash = await service.verify_and_rehash("Legacy-pw-1", legacy)
        assert ok and new_hash is not None and new_hash.startswith("$argon2id$")
        assert verify_password("Legacy-pw-1", new_hash)
        ok, again = await service.verify_and_rehash("Legacy-pw-1", new_hash)
        assert ok and again is None
        assert await service.verify_and_rehash("wrong", legacy) == (False, None)
    finally:
        await service.close()
