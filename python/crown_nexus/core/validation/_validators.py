"""Basic validators (guide §5): each returns ``True``/``False`` and never raises for bad input.

Every function accepts *any* value: a value of the wrong type is simply invalid (``False``).
Only a mistake in the *arguments that configure* a validator (an impossible range, a pattern that
does not compile, a class that is not an ``Enum``) raises :class:`ConfigurationException`.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable, Sized
from datetime import date, datetime
from enum import Enum
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import email_validator
import phonenumbers

from crown_nexus.core.exceptions import ConfigurationException

__all__ = [
    "DEFAULT_PASSWORD_SPECIALS",
    "validate_credit_card",
    "validate_date",
    "validate_email",
    "validate_enum",
    "validate_ip_address",
    "validate_length",
    "validate_password_strength",
    "validate_phone",
    "validate_range",
    "validate_regex",
    "validate_required",
    "validate_url",
    "validate_uuid",
]

#: Characters that count as "special" for :func:`validate_password_strength`.
DEFAULT_PASSWORD_SPECIALS = "!@#$%^&*()-_=+[]{}|\\;:'\",.<>/?`~"

_MAX_INPUT = 4096  # longer strings are rejected before any parsing


def _short_str(value: Any, limit: int = _MAX_INPUT) -> str | None:
    """``value`` if it is a ``str`` of at most ``limit`` characters, else ``None``."""
    if isinstance(value, str) and len(value) <= limit:
        return value
    return None


def validate_email(value: Any, check_deliverability: bool = False) -> bool:
    """True when ``value`` is a syntactically valid e-mail address (email-validator, RFC 5322/6531).

    With ``check_deliverability=True`` the domain must also resolve (a DNS query).
    """
    text = _short_str(value, 320)
    if not text:
        return False
    try:
        email_validator.validate_email(text, check_deliverability=check_deliverability)
    except email_validator.EmailNotValidError:
        return False
    return True


def validate_phone(value: Any, region: str | None = None) -> bool:
    """True when ``value`` is a valid phone number (phonenumbers). Without ``region`` the number
    must be in international ``+<country>`` form; with ``region`` (e.g. ``"GB"``) national form works."""
    text = _short_str(value, 64)
    if not text:
        return False
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(parsed))


def validate_url(
    value: Any,
    allowed_schemes: Iterable[str] = ("http", "https"),
    require_tld: bool = False,
) -> bool:
    """True when ``value`` is an absolute URL with an allowed scheme and a host.

    The host must be a domain name (labels of letters, digits and hyphens; IDNA allowed),
    ``localhost`` or an IP address; ``require_tld=True`` also demands a dot in a domain name.
    Whitespace and control characters anywhere make the URL invalid.
    """
    text = _short_str(value, 2048)
    if not text or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        return False
    try:
        parts = urlsplit(text)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return False
    if parts.scheme.lower() not in {s.lower() for s in allowed_schemes} or not host:
        return False
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if host == "localhost":
        return not require_tld
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.rstrip(".").split(".")
    if require_tld and len(labels) < 2:
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return None


def validate_date(
    value: Any,
    min_date: date | None = None,
    max_date: date | None = None,
    format_str: str = "%Y-%m-%d",
) -> bool:
    """True when ``value`` is a date (a ``date``/``datetime``, or a string in ``format_str``)
    within ``[min_date, max_date]`` (both inclusive, each optional)."""
    parsed = _as_date(value)
    if parsed is None:
        text = _short_str(value, 256)
        if not text:
            return False
        try:
            parsed = datetime.strptime(text, format_str).date()
        except (ValueError, TypeError):
            return False
    low, high = _as_date(min_date), _as_date(max_date)
    if (min_date is not None and low is None) or (max_date is not None and high is None):
        raise ConfigurationException("validate_date: min_date and max_date must be dates")
    if low is not None and high is not None and low > high:
        raise ConfigurationException("validate_date: min_date is after max_date")
    if low is not None and parsed < low:
        return False
    return not (high is not None and parsed > high)


def validate_length(value: Any, min_length: int | None = None, max_length: int | None = None) -> bool:
    """True when ``len(value)`` lies in ``[min_length, max_length]`` (strings, lists, ...;
    a value without a length is invalid)."""
    if min_length is not None and max_length is not None and min_length > max_length:
        raise ConfigurationException("validate_length: min_length is greater than max_length")
    if not isinstance(value, Sized):
        return False
    n = len(value)
    if min_length is not None and n < min_length:
        return False
    return not (max_length is not None and n > max_length)


def validate_range(value: Any, min_value: Any = None, max_value: Any = None) -> bool:
    """True when ``value`` is a real number (not a bool, not NaN) in ``[min_value, max_value]``."""
    if min_value is not None and max_value is not None and min_value > max_value:
        raise ConfigurationException("validate_range: min_value is greater than max_value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        from decimal import Decimal
        from fractions import Fraction

        if not isinstance(value, Decimal | Fraction):
            return False
    try:
        if value != value:  # NaN
            return False
        if min_value is not None and value < min_value:
            return False
        return not (max_value is not None and value > max_value)
    except (TypeError, ArithmeticError):
        return False


@lru_cache(maxsize=256)
def _compiled(pattern: str, flags: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigurationException(f"validate_regex: invalid pattern: {exc}") from exc


def validate_regex(value: Any, pattern: str | re.Pattern[str], flags: int = 0) -> bool:
    """True when the whole string ``value`` matches ``pattern`` (``re.fullmatch``)."""
    text = _short_str(value)
    if text is None:
        return False
    regex = pattern if isinstance(pattern, re.Pattern) else _compiled(str(pattern), flags)
    return regex.fullmatch(text) is not None


def validate_required(value: Any) -> bool:
    """True when ``value`` is present: not ``None``, not a blank string, not an empty collection.
    ``0`` and ``False`` count as present."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Sized) and not isinstance(value, bytes | bytearray):
        return len(value) > 0
    if isinstance(value, bytes | bytearray):
        return len(value) > 0
    return True


def validate_uuid(value: Any, version: int | None = None) -> bool:
    """True when ``value`` is a UUID (or its canonical/hex/braced/urn string); with ``version``
    it must also be of that version."""
    if isinstance(value, uuid.UUID):
        parsed = value
    else:
        text = _short_str(value, 64)
        if not text:
            return False
        try:
            parsed = uuid.UUID(text)
        except ValueError:
            return False
    return version is None or parsed.version == version


def validate_credit_card(value: Any) -> bool:
    """True when ``value`` (digits, spaces and hyphens allowed) has 12-19 digits and passes Luhn."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        text = str(value)
    else:
        raw = _short_str(value, 64)
        if raw is None:
            return False
        text = raw.replace(" ", "").replace("-", "")
    if not (12 <= len(text) <= 19) or not text.isascii() or not text.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(text)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def validate_ip_address(value: Any, version: int | None = None) -> bool:
    """True when ``value`` is an IPv4 or IPv6 address (``version=4``/``6`` restricts it)."""
    if version not in (None, 4, 6):
        raise ConfigurationException("validate_ip_address: version must be 4, 6 or None")
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr: Any = value
    else:
        text = _short_str(value, 64)
        if not text:
            return False
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return False
    return version is None or addr.version == version


def validate_password_strength(
    password: Any,
    min_length: int = 8,
    require_lowercase: bool = True,
    require_uppercase: bool = True,
    require_digit: bool = True,
    require_special: bool = True,
    max_length: int = 1024,
    special_characters: str = DEFAULT_PASSWORD_SPECIALS,
) -> bool:
    """True when ``password`` is a string of ``min_length``..``max_length`` characters containing
    each required class (lowercase, uppercase, digit, special character)."""
    if not isinstance(password, str) or not (min_length <= len(password) <= max_length):
        return False
    if require_lowercase and not any(c.islower() for c in password):
        return False
    if require_uppercase and not any(c.isupper() for c in password):
        return False
    if require_digit and not any(c.isdigit() for c in password):
        return False
    return not (require_special and not any(c in special_characters for c in password))


def validate_enum(value: Any, enum_class: type[Enum]) -> bool:
    """True when ``value`` is a member of ``enum_class`` or one of its members' values."""
    if not (isinstance(enum_class, type) and issubclass(enum_class, Enum)):
        raise ConfigurationException("validate_enum: enum_class must be an Enum subclass")
    if isinstance(value, enum_class):
        return True
    try:
        enum_class(value)
    except (ValueError, TypeError, KeyError):
        return False
    except Exception:  # an Enum's own _missing_ hook may raise anything for foreign input
        return False
    return True
