"""Input validation and sanitisation helpers (guide §12, "Input Validation and Sanitization").

- :func:`sanitize_input` cleans HTML with nh3 (an allow-list sanitiser, Rust ammonia).
- :func:`detect_suspicious_content` / :func:`find_suspicious_patterns` flag SQL injection,
  XSS, path traversal, command injection and null bytes (also after URL-decoding).
- :func:`validate_json_input` bounds nesting depth and size of JSON data.
- :func:`is_valid_hostname` (RFC 1123) and :func:`is_trusted_ip` (CIDR lists, IPv4 and IPv6).
- :func:`moderate_content` checks text against a configurable word list
  (:func:`configure_moderation`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import nh3
import orjson

__all__ = [
    "ContentModerator",
    "configure_moderation",
    "detect_suspicious_content",
    "find_suspicious_patterns",
    "is_trusted_ip",
    "is_valid_hostname",
    "moderate_content",
    "sanitize_input",
    "validate_json_input",
]

# --- sanitisation ----------------------------------------------------------------------------


def sanitize_input(
    value: Any,
    *,
    allowed_tags: Iterable[str] | None = None,
    allowed_attributes: dict[str, set[str]] | None = None,
) -> Any:
    """Return ``value`` with dangerous HTML removed (nh3 allow-list).

    By default every tag is removed and the text kept (HTML special characters escaped);
    pass ``allowed_tags`` (e.g. ``{"b", "i", "a"}``) to keep harmless markup. Strings inside
    dicts and lists are cleaned recursively; other values are returned unchanged.
    """
    if isinstance(value, str):
        tags = set(allowed_tags) if allowed_tags is not None else set()
        attrs = allowed_attributes if allowed_attributes is not None else {}
        attrs = {t: set(a) for t, a in attrs.items() if t in tags}
        return nh3.clean(value, tags=tags, attributes=attrs, strip_comments=True)
    if isinstance(value, dict):
        return {
            k: sanitize_input(v, allowed_tags=allowed_tags, allowed_attributes=allowed_attributes)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(
            sanitize_input(v, allowed_tags=allowed_tags, allowed_attributes=allowed_attributes)
            for v in value
        )
    return value


# --- suspicious content ----------------------------------------------------------------------

_PATTERNS: dict[str, re.Pattern[str]] = {
    "sql_injection": re.compile(
        r"""(?ix)
        (?:'|"|\)|\b)\s*(?:or|and)\s+(?:'[^']*'|"[^"]*"|\d+)\s*(?:=|like)\s*(?:'[^']*'?|"[^"]*"?|\d+)
        | \bunion\b(?:\s+all)?\s+select\b
        | ;\s*(?:drop|delete|truncate|alter|insert|update|create|exec|shutdown)\b
        | \b(?:drop|truncate)\s+(?:table|database)\b
        | '\s*(?:--|\#|/\*)
        | \bexec(?:ute)?\s+(?:xp_|sp_)\w+
        | \b(?:sleep|benchmark|pg_sleep)\s*\(\s*\d
        | \bwaitfor\s+delay\b
        | \binformation_schema\b
        | \bselect\b[^;]{0,100}\bfrom\b[^;]{0,100}\bwhere\b[^;]{0,60}(?:'|--)
        """
    ),
    "xss": re.compile(
        r"""(?ix)
        <\s*script\b | <\s*/\s*script\s*>
        | \bjavascript\s*: | \bvbscript\s*: | \bdata\s*:\s*text/html
        | <[^>]*\bon[a-z]+\s*=
        | <\s*(?:iframe|object|embed|applet|meta|base|form|svg|math|link|style)\b
        | \bsrcdoc\s*=
        | expression\s*\(
        """
    ),
    "path_traversal": re.compile(
        r"""(?ix)
        (?:^|[\\/])\.\.(?:[\\/]|$)
        | /etc/(?:passwd|shadow|hosts)\b
        | \b[a-z]:\\windows\\
        | \bboot\.ini\b
        """
    ),
    "command_injection": re.compile(
        r"""(?ix)
        (?:;|&&|\|\||\|)\s*(?:cat|ls|rm|wget|curl|nc|bash|sh|chmod|whoami|id|uname)
            (?:\s+-{1,2}\w|\s+/|\s*$|\s*[;&|])
        | \$\(\s*(?:cat|ls|rm|wget|curl|nc|bash|sh|whoami|id|uname)\b
        """
    ),
    "null_byte": re.compile(r"\x00"),
}


def _decoded_forms(content: str) -> list[str]:
    forms = [content]
    current = content
    for _ in range(2):  # double-encoding is a classic evasion
        decoded = unquote_plus(current)
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    return forms


def find_suspicious_patterns(content: str) -> list[str]:
    """Return the names of the attack classes ``content`` looks like (empty list: none).

    Names: ``sql_injection``, ``xss``, ``path_traversal``, ``command_injection``,
    ``null_byte``. The raw text and its URL-decoded forms (twice) are checked.
    """
    if not isinstance(content, str):
        content = str(content)
    found: list[str] = []
    forms = _decoded_forms(content)
    for name, pattern in _PATTERNS.items():
        if any(pattern.search(form) for form in forms):
            found.append(name)
    return found


def detect_suspicious_content(content: str) -> bool:
    """Return ``True`` when ``content`` contains SQLi, XSS, path traversal or similar patterns;
    each class found counts once in ``suspicious_content_detections_total`` (label ``category``)."""
    found = find_suspicious_patterns(content)
    if found:
        from crown_nexus.core.security._telemetry import record_suspicious_content

        record_suspicious_content(found)
    return bool(found)


# --- JSON ------------------------------------------------------------------------------------

_FORBIDDEN_KEYS = frozenset({"__proto__", "constructor", "prototype"})


def _depth_ok(value: Any, max_depth: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return False
            for k, v in item.items():
                if not isinstance(k, str) or k in _FORBIDDEN_KEYS:
                    return False
                stack.append((v, depth + 1))
        elif isinstance(item, list | tuple):
            if depth > max_depth:
                return False
            stack.extend((v, depth + 1) for v in item)
        elif not (item is None or isinstance(item, str | int | float | bool)):
            return False
    return True


def validate_json_input(data: Any, max_depth: int = 20, max_size: int = 1_000_000) -> bool:
    """Return ``True`` when ``data`` is acceptable JSON: within ``max_depth`` levels of nesting
    and ``max_size`` bytes serialised, with only JSON types and no prototype-pollution keys
    (``__proto__``, ``constructor``, ``prototype``).

    ``data`` may be parsed JSON (dict/list/scalars) or a JSON document as ``str``/``bytes``;
    an unparsable document gives ``False``.
    """
    if isinstance(data, str | bytes | bytearray):
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if len(raw) > max_size:
            return False
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
    if not _depth_ok(data, max_depth):
        return False
    try:
        size = len(orjson.dumps(data))
    except (TypeError, orjson.JSONEncodeError):
        return False
    return size <= max_size


# --- hosts and addresses ---------------------------------------------------------------------

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def is_valid_hostname(hostname: str) -> bool:
    """Return ``True`` for a syntactically valid DNS hostname (RFC 1123; IDNs via IDNA).

    At most 253 characters, labels of 1-63 letters/digits/hyphens not starting or ending with a
    hyphen, an optional trailing dot; an all-numeric top-level label is refused.
    """
    if not isinstance(hostname, str) or not hostname:
        return False
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    if hostname.endswith("."):
        hostname = hostname[:-1]
    if not hostname or len(hostname) > 253:
        return False
    labels = hostname.split(".")
    if labels[-1].isdigit():
        return False
    return all(_LABEL.match(label) for label in labels)


@lru_cache(maxsize=64)
def _networks(
    trusted: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for entry in trusted:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {entry!r}") from None
    return tuple(nets)


def is_trusted_ip(ip: str, trusted: Iterable[str] | None = None) -> bool:
    """Return ``True`` when ``ip`` lies in one of the ``trusted`` addresses/CIDR networks.

    ``trusted`` defaults to ``settings.trusted_proxies``. IPv4 and IPv6 both work; an
    IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) matches IPv4 networks. An invalid ``ip``
    gives ``False``; an invalid entry in ``trusted`` raises :class:`ValueError` (it is
    configuration, not input).
    """
    if trusted is None:
        from crown_nexus.core.security._config import get_security_settings

        trusted = get_security_settings().trusted_proxies
    networks = _networks(tuple(trusted))
    if not isinstance(ip, str):
        return False
    try:
        addr = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


# --- moderation ------------------------------------------------------------------------------

_DEFAULT_BLOCKED = ("fuck", "shit", "cunt", "motherfucker", "bitch", "asshole", "bastard")
_LEET = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s"}
)


@dataclass
class ContentModerator:
    """Word-list moderation: blocked words (whole words, any case, simple leetspeak),
    a length limit, and a shouting/repetition guard for spam.
    """

    blocked_words: set[str] = field(default_factory=lambda: set(_DEFAULT_BLOCKED))
    max_length: int = 10_000
    max_repeated_chars: int = 20

    def __post_init__(self) -> None:
        self._compile()

    def _compile(self) -> None:
        words = sorted({w.lower() for w in self.blocked_words if w}, key=len, reverse=True)
        self._pattern = (
            re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b") if words else None
        )
        self._repeat = re.compile(r"(.)\1{" + str(max(self.max_repeated_chars, 1)) + ",}", re.S)

    def moderate(self, content: str, content_type: str = "text") -> tuple[bool, str | None]:
        """Return ``(True, None)`` when ``content`` is acceptable, else ``(False, reason)``."""
        if not isinstance(content, str):
            return False, "Content must be text"
        if len(content) > self.max_length:
            return False, f"Content is longer than {self.max_length} characters"
        if self._repeat.search(content):
            return False, "Content contains excessive repeated characters"
        if content_type == "url":
            parts = urlsplit(content.strip())
            if parts.scheme not in ("http", "https") or not is_valid_hostname(parts.hostname or ""):
                return False, "Only http(s) links to valid hosts are allowed"
        if content_type == "html" and find_suspicious_patterns(content):
            return False, "Content contains unsafe markup"
        if self._pattern is not None:
            lowered = content.lower()
            if self._pattern.search(lowered) or self._pattern.search(lowered.translate(_LEET)):
                return False, "Content contains blocked language"
        return True, None


_moderator = ContentModerator()


def configure_moderation(
    blocked_words: Iterable[str] | None = None,
    *,
    extra_words: Iterable[str] = (),
    max_length: int | None = None,
    max_repeated_chars: int | None = None,
) -> ContentModerator:
    """Replace the moderation settings used by :func:`moderate_content`; return the moderator.

    ``blocked_words`` replaces the default list (``None`` keeps it); ``extra_words`` adds to it.
    """
    global _moderator
    words = set(blocked_words) if blocked_words is not None else set(_moderator.blocked_words)
    words.update(extra_words)
    _moderator = ContentModerator(
        blocked_words=words,
        max_length=max_length if max_length is not None else _moderator.max_length,
        max_repeated_chars=(
            max_repeated_chars if max_repeated_chars is not None else _moderator.max_repeated_chars
        ),
    )
    return _moderator


def moderate_content(content: str, content_type: str = "text") -> tuple[bool, str | None]:
    """Return ``(is_allowed, reason)`` for user ``content`` of ``content_type``.

    ``content_type`` is ``"text"`` (word list, length, repetition), ``"html"`` (also unsafe
    markup) or ``"url"`` (also http(s) scheme and a valid host). ``reason`` is ``None`` when
    allowed.
    """
    return _moderator.moderate(content, content_type)
