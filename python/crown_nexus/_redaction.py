"""What counts as a secret: the one sensitive-key list and the string scrubbers.

Shared by log redaction (:mod:`crown_nexus.logging.processors`) and error reports
(:mod:`crown_nexus.core.error`), so both hide the same things. Standard library only; it
imports no other crown-nexus module (both layers import it, it imports neither).

Keys: a key is sensitive when it contains one of :data:`SENSITIVE_KEY_FRAGMENTS` anywhere
(ASCII case-insensitive, ``_``, ``-`` or nothing between the words of a fragment:
``new_password``, ``X-Api-Key``, ``apikey``), or one of :data:`SENSITIVE_KEY_WORDS` as a whole
part of it (``pwd``, ``user_pin``; not ``company`` or ``spin``).

Strings (:func:`scrub_text`) lose, each replaced by ``"[REDACTED]"``:

- the password of a URL (``scheme://user:password@host`` -> ``scheme://user:[REDACTED]@host``);
- the secret half of a crown-nexus API key (``ck_<id>.<secret>`` -> ``ck_<id>.[REDACTED]``);
- ``Bearer <token>`` (6+ token characters) and ``Basic <base64 user:password>`` credentials;
- JWTs (``eyJ...``) and Luhn-valid card numbers;
- the value of a ``key=value`` / ``key: value`` pair whose key is sensitive, quoted or not, as
  in query strings, form bodies, ``repr`` output and free text (``password=[REDACTED]&x=1``,
  ``"token": "[REDACTED]"``); an ``Authorization: Basic ...`` value loses its scheme too.

:func:`to_plain` turns pydantic models, dataclasses and exceptions into dicts, so their fields
are redacted by key before anything renders them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "NOT_CONVERTED",
    "REDACTED",
    "SENSITIVE_KEY_FRAGMENTS",
    "SENSITIVE_KEY_PATTERN",
    "SENSITIVE_KEY_WORDS",
    "TEXT_PATTERN",
    "is_sensitive_key",
    "key_pattern",
    "luhn_valid",
    "replace_match",
    "scrub_pairs",
    "scrub_reference",
    "scrub_text",
    "to_plain",
]

REDACTED: Final = "[REDACTED]"

#: Fragments that make a key sensitive wherever they occur in it (``-`` is read as ``_``; the
#: words of a fragment may be joined by ``_``, ``-`` or nothing).
SENSITIVE_KEY_FRAGMENTS: Final[frozenset[str]] = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "authorization",
        "authorisation",
        "api_key",
        "apikey",
        "cookie",
        "set_cookie",
        "csrf",
        "credential",
        "private_key",
        "card_number",
        "cardnumber",
        "card_no",
        "credit_card",
        "cvv",
    }
)

#: Short words that make a key sensitive only as a whole part of it (``pwd``, ``user_pin``,
#: ``pin.code``), so ``company``, ``span`` or ``spinner`` stay visible.
SENSITIVE_KEY_WORDS: Final[frozenset[str]] = frozenset(
    {"pwd", "pw", "pass", "pin", "pan", "card", "cvc"}
)


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _fragment_regex(fragment: str) -> str:
    parts = [re.escape(p) for p in _normalize(fragment).split("_") if p]
    return r"[_\-]?".join(parts)


def _alternation(items: Iterable[str]) -> str:
    # longest first: the regex engine takes the first alternative that matches
    return "|".join(sorted(set(items), key=lambda s: (-len(s), s)))


def _key_parts(fragments: Iterable[str], words: Iterable[str]) -> tuple[str, str]:
    frags = _alternation(r for r in (_fragment_regex(f) for f in fragments) if r)
    wds = _alternation(re.escape(w) for w in (_normalize(w) for w in words) if w)
    return frags, wds


def key_pattern(
    fragments: Iterable[str] = SENSITIVE_KEY_FRAGMENTS,
    words: Iterable[str] = SENSITIVE_KEY_WORDS,
) -> re.Pattern[str]:
    """Return the compiled test for a sensitive key (use ``.search(key)``) for these lists."""
    frags, wds = _key_parts(fragments, words)
    branches = []
    if frags:
        branches.append(f"(?:{frags})")
    if wds:
        branches.append(f"(?<![a-z0-9])(?:{wds})(?![a-z0-9])")
    return re.compile(f"(?ai:{'|'.join(branches)})" if branches else r"(?!)")


#: The sensitive-key test used by logs and error reports alike.
SENSITIVE_KEY_PATTERN: Final = key_pattern()


def is_sensitive_key(key: Any) -> bool:
    """Return True when values under ``key`` must never be shown (see the module docstring)."""
    return isinstance(key, str) and SENSITIVE_KEY_PATTERN.search(key) is not None


def luhn_valid(digits: str) -> bool:
    """Return True when ``digits`` (only 0-9) passes the Luhn checksum used by card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


#: Every string secret except ``key=value`` pairs, in one pattern (branches named by group;
#: see :func:`replace_match`). Each branch needs 13 characters or more, except ``url`` (``://``).
TEXT_PATTERN: Final = re.compile(
    # scheme://user:password@  (the password may hold an unescaped "@": the last one ends it)
    r"(?P<url>(?P<url_head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*:)[^\s/?#]+@)"
    # crown-nexus API keys: ck_<id>.<secret>
    r"|(?P<ck>(?P<ck_id>(?<![A-Za-z0-9])ck_[A-Za-z0-9_\-]{1,61})\.[A-Za-z0-9_\-]{16,})"
    # Authorization schemes
    r"|(?P<bearer>(?ai:\bbearer)[ \t]+[A-Za-z0-9\-._~+/]{6,}=*)"
    r"|(?P<basic>(?P<basic_head>(?ai:\bbasic)[ \t]+)"
    r"(?P<basic_token>(?:[A-Za-z0-9+/]{4}){2,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)"
    r"(?![A-Za-z0-9+/=:_\-.]))"
    # JWTs
    r"|(?P<jwt>\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]+)"
    # card-number-shaped digit runs (Luhn-checked)
    r"|(?P<card>(?<![\d])(?:\d[ \-]?){12,18}\d(?![\d]))"
)
_BRANCHES: Final = ("url", "ck", "bearer", "basic", "jwt", "card")


def _branch_sources() -> dict[str, str]:
    source = TEXT_PATTERN.pattern
    starts = [source.index(f"(?P<{name}>") for name in _BRANCHES]
    ends = [s - 1 for s in starts[1:]] + [len(source)]
    return {name: source[a:b] for name, a, b in zip(_BRANCHES, starts, ends, strict=True)}


_BRANCH_SOURCES: Final = _branch_sources()
#: bitmask of possible branches -> TEXT_PATTERN reduced to them (same matches: a branch left
#: out cannot match that text anywhere)
_SUBSETS: dict[int, re.Pattern[str]] = {(1 << len(_BRANCHES)) - 1: TEXT_PATTERN}


def _subset(mask: int) -> re.Pattern[str]:
    pattern = _SUBSETS.get(mask)
    if pattern is None:
        pattern = re.compile(
            "|".join(_BRANCH_SOURCES[n] for i, n in enumerate(_BRANCHES) if mask >> i & 1)
        )
        _SUBSETS[mask] = pattern
    return pattern


def _basic_credentials(token: str) -> bool:
    """True when ``token`` is base64 of ``user:password`` (what a Basic header carries)."""
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def replace_match(match: re.Match[str]) -> str:
    """The replacement of one :data:`TEXT_PATTERN` match (``re.sub`` callback)."""
    kind = match.lastgroup
    if kind == "url":
        return match.group("url_head") + REDACTED + "@"
    if kind == "ck":
        return match.group("ck_id") + "." + REDACTED
    if kind == "basic":
        token = match.group("basic_token")
        if _basic_credentials(token):
            return REDACTED
        # not a credential ("basic" in prose): the token alone may still hold a card number
        return match.group("basic_head") + TEXT_PATTERN.sub(replace_match, token)
    if kind == "card":
        text = match.group(0)
        digits = text.replace(" ", "").replace("-", "")
        if not (13 <= len(digits) <= 19 and luhn_valid(digits)):
            return text
    return REDACTED


# --------------------------------------------------------------------------- key=value pairs
#: a separator, an optional quote and its key, read in the REVERSED text: the pattern starts
#: with a separator (the regex engine skips to those fast) and the greedy key run is the whole key
_PAIR_REVERSED: Final = re.compile(r"[=:][ \t]*(?:[\"']\\?)?([A-Za-z0-9_.\-]+)")
#: the value after a separator: quoted (plain or backslash-escaped quotes, as in JSON inside a
#: string), opened by a quote that never closes, or bare up to a delimiter (an auth scheme word
#: and its space belong to it)
_PAIR_VALUE: Final = re.compile(
    r"[ \t]*(?P<value>"
    r"(?P<q>\"[^\"]*\"|'[^']*')"
    r"|(?P<e>\\\"(?:[^\"\\]|\\[^\"])*\\\"|\\'(?:[^'\\]|\\[^'])*\\')"
    r"|(?P<o>[\"'])(?:[^\s&;,\"'<>)}\\]|\\(?![\"']))+"
    r"|(?ai:(?:bearer|basic|digest|token)[ \t]+)?(?:[^\s&;,\"'<>)}\\]|\\(?![\"']))+"
    r")"
)
#: key text -> sensitive? (keys in text repeat: query parameter and header names)
_KEY_VERDICTS: dict[str, bool] = {}


def _text_key_is_sensitive(key: str) -> bool:
    verdict = _KEY_VERDICTS.get(key)
    if verdict is None:
        verdict = SENSITIVE_KEY_PATTERN.search(key) is not None
        if len(_KEY_VERDICTS) > 4096:
            _KEY_VERDICTS.clear()
        _KEY_VERDICTS[key] = verdict
    return verdict


def scrub_pairs(text: str) -> str:
    """Return ``text`` with the value of each ``key=value`` / ``key: value`` pair whose key is
    sensitive (:func:`is_sensitive_key`) replaced by ``"[REDACTED]"``, quotes kept.

    A key is a whole run of ``[A-Za-z0-9_.-]``, optionally closed by a quote (``\\"`` too); the
    value is a quoted string (plain or with backslash-escaped quotes, as JSON inside a string),
    or runs to whitespace or one of ``& ; , " ' < > ) }`` (``Basic``/``Bearer``/``Digest``/
    ``Token`` and a space before it belong to it; a quote that never closes is kept). Pairs are
    taken left to right; a separator inside a redacted value starts no pair of its own.
    """
    n = len(text)
    seps: list[int] | None = None
    for m in _PAIR_REVERSED.finditer(text[::-1]):
        a, b = m.span(1)
        if _text_key_is_sensitive(text[n - b : n - a]):
            if seps is None:
                seps = []
            seps.append(n - 1 - m.start())
    if seps is None:
        return text
    parts: list[str] = []
    done = 0
    value_at = _PAIR_VALUE.match
    for sep in reversed(seps):  # found right to left
        if sep < done:
            continue  # inside a value already redacted
        v = value_at(text, sep + 1)
        if v is None:
            continue
        if v.group("q") is not None:
            quote = v.group("q")[0]
            replacement = quote + REDACTED + quote
        elif v.group("e") is not None:
            quote = v.group("e")[:2]
            replacement = quote + REDACTED + quote
        elif v.group("o") is not None:
            replacement = v.group("o") + REDACTED
        else:
            replacement = REDACTED
        parts.append(text[done : v.start("value")])
        parts.append(replacement)
        done = v.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def scrub_reference(text: str) -> str:
    """What :func:`scrub_text` returns, computed without any precheck (the specification)."""
    return TEXT_PATTERN.sub(replace_match, scrub_pairs(text))


#: a necessary condition for the card branch (4 digits, separators allowed)
_DIGITS4: Final = re.compile(r"\d[ \-]?\d[ \-]?\d[ \-]?\d")


def scrub_text(text: str) -> str:
    """Return ``text`` with the secrets listed in the module docstring replaced by
    ``"[REDACTED]"``: equal to :func:`scrub_reference` (a hypothesis test checks it), but cheap
    substring checks first, and only the pattern branches that can match run.

    A text of 12 characters or fewer can only hold a secret with a ``:`` or ``=`` in it (a URL
    password or a ``key=value`` pair): every other branch needs 13 characters or more. Callers
    on the logging hot path rely on that to skip short values without calling this.
    """
    if "=" in text or ":" in text:
        text = scrub_pairs(text)
    elif len(text) < 13:
        return text
    low = text.lower()  # ASCII letters only matter: the patterns ignore case for ASCII alone
    mask = (
        ("://" in text)
        | ("ck_" in text) << 1
        | ("bearer" in low) << 2
        | ("basic" in low) << 3
        | ("eyJ" in text) << 4
        | (_DIGITS4.search(text) is not None) << 5
    )
    if mask:
        return _subset(mask).sub(replace_match, text)
    return text


#: what :func:`to_plain` returns for a value it leaves alone
NOT_CONVERTED: Final[Any] = object()


def _qualname(value: Any) -> str:
    return type(value).__qualname__


def to_plain(value: Any) -> Any:
    """Return a plain form of ``value`` whose secrets redaction can see, or
    :data:`NOT_CONVERTED`.

    A pydantic model (anything with a callable ``model_dump``) gives ``model_dump()``, a
    dataclass instance the dict of its fields, an exception ``{"type", "message"}`` (as the log
    renderer writes it). May raise whatever those calls raise.
    """
    if isinstance(value, BaseException):
        return {"type": _qualname(value), "message": str(value)}
    if isinstance(value, type):
        return NOT_CONVERTED
    dump = getattr(type(value), "model_dump", None)
    if dump is not None and callable(dump):
        return value.model_dump()
    if dataclasses.is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return NOT_CONVERTED
