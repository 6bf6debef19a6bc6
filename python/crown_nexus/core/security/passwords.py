"""Password hashing (Argon2id), verification (Argon2 and legacy bcrypt) and the password policy.

- :func:`get_password_hash` hashes with Argon2id (argon2-cffi) using the current parameters.
- :func:`verify_password` checks a plain password against an Argon2 hash or a bcrypt hash from an
  older system (``$2a$``/``$2b$``/``$2y$``); it returns ``False`` — never raises — for a wrong
  password or a malformed hash.
- :func:`needs_rehash` is ``True`` for bcrypt hashes and Argon2 hashes made with outdated
  parameters: re-hash with :func:`get_password_hash` after the next successful login.
- :func:`validate_password_policy` (async) returns ``(is_valid, message)``.

These functions are synchronous and CPU-heavy (~0.1-0.2 s); async code should call them through
:class:`crown_nexus.core.security.SecurityService`, which runs them in a worker thread behind a
semaphore so a burst of logins cannot stall the event loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import bcrypt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "PasswordPolicy",
    "check_password_policy",
    "get_password_hash",
    "get_password_hasher",
    "is_common_password",
    "needs_rehash",
    "set_password_hasher",
    "validate_password_policy",
    "verify_password",
]

_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
#: bcrypt only ever looked at the first 72 bytes; legacy hashes were made that way.
_BCRYPT_MAX_BYTES = 72
#: refuse to hash/verify absurdly long inputs (a cheap denial-of-service guard).
MAX_PASSWORD_LENGTH = 4096

_hasher: PasswordHasher = PasswordHasher()  # argon2-cffi defaults: Argon2id, RFC 9106 low-memory


def get_password_hasher() -> PasswordHasher:
    """Return the Argon2id hasher in use (its parameters decide :func:`needs_rehash`)."""
    return _hasher


def set_password_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Use ``hasher`` (e.g. other cost parameters) from now on; return the previous one."""
    global _hasher
    previous, _hasher = _hasher, hasher
    return previous


def get_password_hash(password: str) -> str:
    """Hash ``password`` with Argon2id; the result embeds salt and parameters (PHC string).

    Raises :class:`ValueError` for a non-string or a password longer than 4096 characters.
    """
    if not isinstance(password, str):
        raise ValueError("password must be a string")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password longer than {MAX_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def _is_bcrypt(hashed: str) -> bool:
    return hashed.startswith(_BCRYPT_PREFIXES)


def verify_password(plain_password: str, hashed_password: str) -> bool:
    """Return ``True`` when ``plain_password`` matches ``hashed_password`` (Argon2 or bcrypt).

    A wrong password, an empty or malformed hash, or non-string input gives ``False``.
    """
    if not isinstance(plain_password, str) or not isinstance(hashed_password, str):
        return False
    if not hashed_password or len(plain_password) > MAX_PASSWORD_LENGTH:
        return False
    if _is_bcrypt(hashed_password):
        try:
            return bcrypt.checkpw(
                plain_password.encode("utf-8")[:_BCRYPT_MAX_BYTES], hashed_password.encode("ascii")
            )
        except (ValueError, UnicodeEncodeError):
            return False
    if not hashed_password.startswith("$argon2"):
        return False
    try:
        return _hasher.verify(hashed_password, plain_password)
    except (VerifyMismatchError, VerificationError, InvalidHashError, ValueError):
        return False


def needs_rehash(hashed_password: str) -> bool:
    """Return ``True`` when ``hashed_password`` should be replaced by a fresh Argon2id hash.

    True for bcrypt (legacy) hashes, Argon2 hashes with other parameters or variant than the
    current hasher, and anything unrecognised.
    """
    if not isinstance(hashed_password, str) or not hashed_password.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(hashed_password)
    except (InvalidHashError, ValueError):
        return True


# --- policy ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    text = resources.files(__package__).joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


_TRAILING_NOISE = re.compile(r"[\d\W_]+$")
_LEET = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t"}
)


def is_common_password(password: str) -> bool:
    """Return ``True`` when ``password`` is on the shipped common-password list.

    Trivial variants count too: any case, trailing digits/symbols (``Password123!``) and simple
    letter substitutions (``P@ssw0rd``).
    """
    common = _common_passwords()
    lowered = password.lower()
    candidates = {lowered, _TRAILING_NOISE.sub("", lowered), lowered.translate(_LEET)}
    candidates.add(_TRAILING_NOISE.sub("", lowered.translate(_LEET)))
    return any(c and c in common for c in candidates)


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must satisfy; the defaults follow common (NIST-leaning) practice."""

    min_length: int = 8
    max_length: int = 128
    require_uppercase: bool = True
    require_lowercase: bool = True
    require_digit: bool = True
    require_special: bool = True
    reject_common: bool = True
    reject_personal: bool = True


DEFAULT_POLICY = PasswordPolicy()


def check_password_policy(
    password: str,
    user_id: str | None = None,
    email: str | None = None,
    policy: PasswordPolicy = DEFAULT_POLICY,
) -> tuple[bool, str]:
    """Synchronous core of :func:`validate_password_policy`; same result."""
    if not isinstance(password, str):
        return False, "Password must be a string"
    if len(password) < policy.min_length:
        return False, f"Password must be at least {policy.min_length} characters long"
    if len(password) > policy.max_length:
        return False, f"Password must be at most {policy.max_length} characters long"
    if policy.require_uppercase and not any(c.isupper() for c in password):
        return False, "Password must contain at least one uppercase letter"
    if policy.require_lowercase and not any(c.islower() for c in password):
        return False, "Password must contain at least one lowercase letter"
    if policy.require_digit and not any(c.isdigit() for c in password):
        return False, "Password must contain at least one digit"
    if policy.require_special and all(c.isalnum() for c in password):
        return False, "Password must contain at least one special character"
    if policy.reject_common and is_common_password(password):
        return False, "Password is too common"
    if policy.reject_personal:
        lowered = password.lower()
        if user_id and len(str(user_id)) >= 3 and str(user_id).lower() in lowered:
            return False, "Password must not contain your user id"
        if email:
            local = email.split("@", 1)[0].lower()
            if len(local) >= 3 and local in lowered:
                return False, "Password must not contain your email address"
    return True, "Password meets the policy"


async def validate_password_policy(
    password: str,
    user_id: str | None = None,
    email: str | None = None,
    policy: PasswordPolicy = DEFAULT_POLICY,
) -> tuple[bool, str]:
    """Check ``password`` against ``policy``; return ``(is_valid, message)``.

    Checks, in order: length, upper/lower case letters, a digit, a special character, the
    common-password list (with trivial variants), and that it contains neither ``user_id`` nor
    the local part of ``email``. ``message`` names the first rule broken (never the password).
    """
    return check_password_policy(password, user_id, email, policy)
