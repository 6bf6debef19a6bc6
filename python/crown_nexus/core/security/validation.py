"""Input validation and sanitisation helpers (guide §12, "Input Validation and Sanitization").

- :func:`sanitize_input` cleans HTML with nh3 (an allow-list sanitiser, Rust ammonia).
- :func:`detect_suspicious_content` / :func:`find_suspicious_patterns` flag SQL injection,
  XSS, path traversal, command injection and null bytes (heuristics, also after URL-decoding
  and NFKC normalisation); :func:`find_url_attacks` reports only the unambiguous ones in a
  request target. Every pattern runs in linear time.
- :func:`validate_json_input` bounds nesting depth and size of JSON data.
- :func:`is_valid_hostname` (RFC 1123) and :func:`is_trusted_ip` (CIDR lists, IPv4 and IPv6).
- :func:`moderate_content` checks text against a configurable word list
  (:func:`configure_moderation`).
"""

from __future__ import annotations

import html
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

import nh3
import orjson

__all__ = [
    "FORBIDDEN_TAGS",
    "ContentModerator",
    "configure_moderation",
    "detect_suspicious_content",
    "find_suspicious_patterns",
    "find_url_attacks",
    "is_trusted_ip",
    "is_valid_hostname",
    "moderate_content",
    "sanitize_input",
    "url_is_plain",
    "validate_json_input",
]

# --- sanitisation ----------------------------------------------------------------------------

#: Tags never kept, whatever the caller allows: their content is code. (nh3 removes them with
#: their content; allowing them as well makes it panic.)
FORBIDDEN_TAGS: frozenset[str] = frozenset({"script", "style"})


def _sanitize_error(field_name: str, msg: str) -> Any:
    from crown_nexus.core.exceptions import ValidationException

    return ValidationException(
        message="Invalid HTML sanitiser options",
        errors=[{"loc": [field_name], "msg": msg, "type": "value_error"}],
    )


def _allow_lists(
    allowed_tags: Iterable[str] | None, allowed_attributes: dict[str, set[str]] | None
) -> tuple[set[str], dict[str, set[str]]]:
    """The tag and attribute allow-lists nh3 gets: names lower-cased, ``script``/``style``
    tags and ``on*`` event-handler attributes removed, attributes only for kept tags (or ``*``)."""
    if isinstance(allowed_tags, str):
        allowed_tags = (allowed_tags,)
    tags: set[str] = set()
    for tag in allowed_tags or ():
        if not isinstance(tag, str):
            raise _sanitize_error("allowed_tags", f"tag names must be strings, got {tag!r}")
        tag = tag.strip().lower()
        if tag and tag not in FORBIDDEN_TAGS:
            tags.add(tag)
    attrs: dict[str, set[str]] = {}
    for tag, names in (allowed_attributes or {}).items():
        if not isinstance(tag, str):
            raise _sanitize_error("allowed_attributes", f"tag names must be strings, got {tag!r}")
        tag = tag.strip().lower()
        if tag != "*" and tag not in tags:
            continue
        if isinstance(names, str):
            names = {names}
        kept: set[str] = set()
        for name in names:
            if not isinstance(name, str):
                raise _sanitize_error(
                    "allowed_attributes", f"attribute names must be strings, got {name!r}"
                )
            name = name.strip().lower()
            if name and not name.startswith("on"):  # onclick, onerror...: event handlers
                kept.add(name)
        if kept:
            attrs[tag] = kept
    return tags, attrs


def _clean_html(text: str, tags: set[str], attrs: dict[str, set[str]]) -> str:
    try:
        return nh3.clean(text, tags=tags, attributes=attrs, strip_comments=True)
    except (ValueError, TypeError) as exc:  # an allow-list nh3 refuses (e.g. ``rel`` on ``a``)
        raise _sanitize_error("allowed_attributes", str(exc)) from None
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise _sanitize_error(
            "allowed_tags", f"the HTML sanitiser refused the options: {exc}"
        ) from None


def _sanitize(value: Any, tags: set[str], attrs: dict[str, set[str]]) -> Any:
    if isinstance(value, str):
        return _clean_html(value, tags, attrs)
    if isinstance(value, dict):
        return {k: _sanitize(v, tags, attrs) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_sanitize(v, tags, attrs) for v in value)
    return value


def sanitize_input(
    value: Any,
    *,
    allowed_tags: Iterable[str] | None = None,
    allowed_attributes: dict[str, set[str]] | None = None,
) -> Any:
    """Return ``value`` with dangerous HTML removed (nh3 allow-list).

    By default every tag is removed and the text kept (HTML special characters escaped);
    pass ``allowed_tags`` (e.g. ``{"b", "i", "a"}``) to keep harmless markup and
    ``allowed_attributes`` (tag -> attribute names, ``"*"`` for every kept tag) to keep some
    attributes. Whatever the caller passes, ``script`` and ``style`` elements are removed with
    their content and ``on*`` event-handler attributes are never kept; link URLs keep only safe
    schemes (nh3's default, so no ``javascript:``). Strings inside dicts and lists are cleaned
    recursively; other values are returned unchanged.

    Raises :class:`~crown_nexus.core.exceptions.ValidationException` for options nh3 cannot
    use (a non-string name, ``rel`` on ``a``...) instead of crashing.
    """
    tags, attrs = _allow_lists(allowed_tags, allowed_attributes)
    return _sanitize(value, tags, attrs)


# --- suspicious content ----------------------------------------------------------------------
#
# Every pattern here runs in time linear in its input: no unbounded run is followed by a run that
# can match the same characters (possessive ``*+``/``++`` or bounded ``{0,n}`` repetitions,
# atomic groups), so one hostile URL or body cannot stall a worker.
# tests/core/security/test_validation_linear.py runs each of them on adversarial inputs.

#: what may separate SQL keywords: whitespace, comments (MySQL ``/*!50000 ... */`` included)
_SQL_GAP = r"(?:\s|/\*!\d{0,6}+|/\*[^*]{0,64}+\*/|\*/|--[^\n]{0,64}+\n|\#[^\n]{0,64}+\n)++"

#: ``UNION [ALL|DISTINCT] SELECT`` with any gap between the keywords
_UNION_SELECT = re.compile(
    rf"(?i)\bunion(?P<gap>{_SQL_GAP})(?:(?:all|distinct)(?P<gap2>{_SQL_GAP}))?select\b"
)
#: a select list as injected queries write it: NULL, *, a number, a quote, @@var, 0x.., f(
#: (matched at the start of the 128 characters after ``SELECT``)
_SQL_SELECT_LIST = re.compile(
    r"(?i)\A(?:\s|/\*!\d{0,6}+|/\*[^*]{0,64}+\*/)*+"
    r"(?:null\b|[*\d@'\"`(]|[a-z_][\w$]{0,30}+\()"
)
#: ``... FROM`` within 100 characters after ``SELECT`` (a fuzzy sign: prose can say "union
#: select ... from")
_SQL_FROM = re.compile(r"(?i)\A[^;]{0,100}?\bfrom\b")
_SQL_OPERAND_END = re.compile(r"['\"`)\d][\s(]*+$")
_SQL_COMMENT_MARKS = ("/*", "*/", "--", "#")


def _union_select(text: str, *, fuzzy: bool) -> bool:
    """True when ``text`` has ``UNION SELECT`` with SQL structure around it.

    Structure: a comment between the keywords, an operand end (quote, digit, bracket) just
    before ``UNION``, or an injection-style select list; with ``fuzzy`` also ``FROM`` within
    100 characters after ``SELECT``. "European Union select committee" has none of them.
    """
    for m in _UNION_SELECT.finditer(text):
        gaps = (m.group("gap") or "") + (m.group("gap2") or "")
        if any(mark in gaps for mark in _SQL_COMMENT_MARKS):
            return True
        if _SQL_OPERAND_END.search(text, max(0, m.start() - 32), m.start()):
            return True
        after = text[m.end() : m.end() + 128]
        if _SQL_SELECT_LIST.match(after):
            return True
        if fuzzy and _SQL_FROM.match(after):
            return True
    return False


#: a quote-breaking tautology: ``' OR '1'='1``, ``' OR 1=1``, ``" or ""="``
_SQL_TAUTOLOGY = re.compile(
    r"""(?ix)
    ['"`] \s*+ \)?+ \s*+ (?:\bor\b|\|\|) \s*+ \(?+ \s*+
    (?: '(?P<s>[^']{0,32}+)' \s*+ = \s*+ '(?P=s)
      | "(?P<d>[^"]{0,32}+)" \s*+ = \s*+ "(?P=d)
      | (?P<n>\d{1,12}+) \s*+ = \s*+ (?P=n)(?!\d)
    )
    """
)
#: a stacked ``; DROP TABLE`` / ``; TRUNCATE TABLE``
_SQL_STACKED_DROP = re.compile(r"(?i);\s*+(?:drop|truncate)\s++(?:table|database|schema)\b")

#: the fuzzy SQL signs (report-only in the middleware by default)
_SQL_FUZZY = re.compile(
    r"""(?ix)
    (?:['")]|\b) \s*+ (?:or|and) \s++ (?:'[^']{0,64}+'|"[^"]{0,64}+"|\d{1,20}+)
        \s*+ (?:=|like\b) \s*+ ['"\d]
    | ;\s*+(?:drop|truncate|alter)\s++(?:table|database|schema)\b
    | ;\s*+(?:delete\s++from|insert\s++into|update\s++[\w.`"]{1,64}+\s++set|exec(?:ute)?\s|shutdown\b)
    | \b(?:drop|truncate)\s++(?:table|database)\b
    | '\s*+(?:--|\#|/\*)
    | \bexec(?:ute)?\s++(?:xp|sp)_\w
    | \b(?:sleep|benchmark|pg_sleep)\s*+\(\s*+\d{1,12}+\s*+[),]
    | \bwaitfor\s++delay\b
    | \binformation_schema\b
    """
)
#: ``SELECT ... FROM ... WHERE ... '`` (a query fragment with a quote or comment after WHERE)
_SQL_SELECT_WHERE = re.compile(
    r"(?i)\bselect\b(?>[^;]{0,100}?\bfrom\b)(?>[^;]{0,100}?\bwhere\b)[^;]{0,60}?(?:'|--)"
)


def _spelled(word: str) -> str:
    """``word`` with any ASCII control characters or spaces allowed between its letters."""
    return r"[\x00-\x20]*+".join(re.escape(ch) for ch in word)


_JS_SCHEME = rf"(?:{_spelled('javascript')}|{_spelled('vbscript')})[\x00-\x20]*+:"
#: code after ``javascript:``: a call (no space before ``(``), assignment, brackets, backtick, escape
_JS_CODE = re.compile(r"[=\[\\<`]|[\w$)\]]\(")
#: a value that starts (after leading controls/spaces) with a script URL; ``body`` follows it
_SCRIPT_URL = re.compile(rf"(?i)\A[\x00-\x20]*+{_JS_SCHEME}(?P<body>[\s\S]{{0,512}})")
#: a value that starts with an HTML/SVG data URL
_DATA_HTML_URL = re.compile(
    rf"(?i)\A[\x00-\x20]*+{_spelled('data')}[\x00-\x20]*+:[\x00-\x20]*+"
    r"(?:text/html|image/svg[+ ]xml|application/xhtml[+ ]xml)"
)
#: tags that run script: <script>, </script>, <iframe>, <object>, <embed>, any tag with on*=
_XSS_TAG = re.compile(
    r"""(?ix)
    <\s*+/?\s*+script\b
    | <(?:i?frame|object|embed)\b
    | <[a-z][a-z0-9:-]{0,32}+[\s/][^<>]{0,512}?(?<=[\s/"'])on[a-z]{3,32}+\s*+=
    """
)
#: the fuzzy XSS signs
_JS_SCHEME_ANYWHERE = re.compile(rf"(?i)\b{_JS_SCHEME}")
_XSS_FUZZY = re.compile(
    r"""(?ix)
    \bdata\s*+:\s*+text/html
    | <(?:applet|meta|base|form|svg|math|link|style)\b
    | \bsrcdoc\s*+=
    | :\s*+expression\s*+\(
    """
)

_TRAVERSAL = re.compile(r"(?:^|[\\/])\.\.(?:[\\/]|$)")
_TRAVERSAL_FUZZY = re.compile(
    r"""(?ix)
    /etc/(?:passwd|shadow|hosts)\b
    | \b[a-z]:\\windows\\
    | \bboot\.ini\b
    """
)
_COMMAND_INJECTION = re.compile(
    r"""(?ix)
    (?:;|&&|\|\||\|)\s*+(?:cat|ls|rm|wget|curl|nc|bash|sh|chmod|whoami|id|uname)
        (?:\s++-{1,2}\w|\s++/|\s*+$|\s*+[;&|])
    | \$\(\s*+(?:cat|ls|rm|wget|curl|nc|bash|sh|whoami|id|uname)\b
    | `\s*+(?:whoami|id|uname)\b[^`]{0,32}+`
    """
)


def _normal(text: str) -> str:
    """``text`` NFKC-normalised (fullwidth letters and U+FF1C/U+FF1E become ``<script>``)."""
    return text if text.isascii() else unicodedata.normalize("NFKC", text)


def _decoded_forms(content: str, *, plus: bool = True) -> list[str]:
    """``content``, its URL-decoded form and that decoded again (double encoding is a classic
    evasion), each NFKC-normalised; without duplicates."""
    unquote_fn = unquote_plus if plus else unquote
    forms = [_normal(content)]
    current = content
    for _ in range(2):
        decoded = unquote_fn(current)
        if decoded == current:
            break
        normal = _normal(decoded)
        if normal not in forms:
            forms.append(normal)
        current = decoded
    return forms


def _has_sql_injection(form: str, *, fuzzy: bool) -> bool:
    if _SQL_TAUTOLOGY.search(form) or _SQL_STACKED_DROP.search(form):
        return True
    if _union_select(form, fuzzy=fuzzy):
        return True
    if not fuzzy:
        return False
    return _SQL_FUZZY.search(form) is not None or _SQL_SELECT_WHERE.search(form) is not None


def _script_scheme_anywhere(text: str) -> bool:
    """True when ``javascript:``/``vbscript:`` appears with code (:data:`_JS_CODE`) within
    256 characters after it (each character is looked at once: linear time)."""
    scanned = 0
    for m in _JS_SCHEME_ANYWHERE.finditer(text):
        start = max(m.end(), scanned - 1)  # -1: a call needs the character before its "("
        scanned = m.end() + 256
        if _JS_CODE.search(text, start, scanned):
            return True
    return False


def _has_xss(form: str) -> bool:
    return bool(_XSS_TAG.search(form) or _XSS_FUZZY.search(form) or _script_scheme_anywhere(form))


#: the content heuristics, by attack class (see :func:`find_suspicious_patterns`)
_CHECKS: dict[str, Callable[[str], bool]] = {
    "sql_injection": lambda form: _has_sql_injection(form, fuzzy=True),
    "xss": _has_xss,
    "path_traversal": lambda form: bool(_TRAVERSAL.search(form) or _TRAVERSAL_FUZZY.search(form)),
    "command_injection": lambda form: _COMMAND_INJECTION.search(form) is not None,
    "null_byte": lambda form: "\x00" in form,
}


def find_suspicious_patterns(content: str) -> list[str]:
    """Return the names of the attack classes ``content`` looks like (empty list: none).

    Names: ``sql_injection``, ``xss``, ``path_traversal``, ``command_injection``,
    ``null_byte``. The text and its URL-decoded forms (twice) are checked, NFKC-normalised.
    These are heuristics (fuzzy signs such as ``' --``, ``; DROP TABLE``, ``<svg``, ``cat
    /etc/passwd``); :func:`find_url_attacks` keeps to the unambiguous ones. Time is linear in
    the length of ``content``.
    """
    if not isinstance(content, str):
        content = str(content)
    forms = _decoded_forms(content)
    return [name for name, check in _CHECKS.items() if any(check(form) for form in forms)]


def detect_suspicious_content(content: str) -> bool:
    """Return ``True`` when ``content`` contains SQLi, XSS, path traversal or similar patterns
    (:func:`find_suspicious_patterns` finds any); each class found counts once in
    ``suspicious_content_detections_total`` (label ``category``)."""
    found = find_suspicious_patterns(content)
    if found:
        from crown_nexus.core.security._telemetry import record_suspicious_content

        record_suspicious_content(found)
    return bool(found)


def _script_url(value: str) -> bool:
    """True when ``value`` starts with a ``javascript:``/``vbscript:`` URL whose body looks like
    code, or with an HTML/SVG ``data:`` URL (also after decoding HTML character references)."""
    candidates = [value]
    if "&" in value:
        unescaped = _normal(html.unescape(value))
        if unescaped != value:
            candidates.append(unescaped)
    for text in candidates:
        m = _SCRIPT_URL.match(text)
        if m is not None and _JS_CODE.search(m.group("body")):
            return True
        if _DATA_HTML_URL.match(text):
            return True
    return False


def find_url_attacks(path: str, query: str = "") -> list[str]:
    """Return the attack classes a request target carries *unambiguously* (empty list: none).

    Only structures ordinary input does not produce are reported, so a caller may refuse the
    request outright (:class:`~crown_nexus.middleware.SecureRequestMiddleware` does):

    - ``xss``: a ``<script``/``</script``/``<iframe``/``<object``/``<embed`` tag, a tag with an
      ``on*=`` event handler, or a query value or path segment that *starts* with a
      ``javascript:``/``vbscript:`` URL whose body looks like code (a call, an assignment,
      brackets, a backtick, an escape) or with a ``data:text/html`` (or SVG) URL. ASCII control
      characters and spaces inside or before the scheme are ignored (``java\\tscript:``), and
      HTML character references are decoded; "javascript: the good parts" is not an attack;
    - ``sql_injection``: a quote-breaking tautology (``' OR '1'='1``, ``' OR 1=1``),
      ``UNION [ALL] SELECT`` with SQL structure (a comment between the keywords, a quote,
      digit or bracket before ``UNION``, or a select list starting with ``NULL``, ``*``, a
      number, a quote or a function call), or a stacked ``; DROP TABLE``;
      "European Union select committee" is not an attack;
    - ``path_traversal``: a ``..`` path segment (``../``, ``..\\``) in the path or a value;
    - ``null_byte``: a NUL character.

    ``path`` and ``query`` are as sent (percent-encoded). The path is checked decoded once and
    twice, each query name and value decoded once, twice and three times (double encoding),
    all NFKC-normalised (``script`` in fullwidth U+FF1C/U+FF1E brackets is ``<script>``).
    Time is linear in the input.
    """
    texts: dict[str, None] = {}  # every decoded form of the path and of each name and value
    starts: dict[str, None] = {}  # what a browser could take as a URL: values, path segments
    for form in _decoded_forms(path, plus=False):
        texts[form] = None
        starts.update(dict.fromkeys(form.replace("\\", "/").split("/")))
    if query:
        parts = dict.fromkeys(p for pair in parse_qsl(query, keep_blank_values=True) for p in pair)
        for part in parts:
            if part:
                forms = dict.fromkeys(_decoded_forms(part))
                texts.update(forms)
                starts.update(forms)
    found: set[str] = set()
    for text in texts:
        if "xss" not in found and _XSS_TAG.search(text):
            found.add("xss")
        if "sql_injection" not in found and _has_sql_injection(text, fuzzy=False):
            found.add("sql_injection")
        if "path_traversal" not in found and _TRAVERSAL.search(text):
            found.add("path_traversal")
        if "\x00" in text:
            found.add("null_byte")
    if "xss" not in found and any(_script_url(s) for s in starts if s):
        found.add("xss")
    return [name for name in _CHECKS if name in found]


#: a request path / query string of these bytes only decodes to itself (no ``%``, no ``+``), is
#: ASCII (NFKC leaves it alone), and lacks every character the patterns above need besides
#: letters and digits: ``<`` ``:`` quotes, ``;`` ``|`` ``$`` ``(`` backtick, whitespace, ``*``
#: ``#``, NUL
_PLAIN_PATH = re.compile(rb"[A-Za-z0-9/_.~,-]*+")
_PLAIN_QUERY = re.compile(rb"[A-Za-z0-9/_.~,=&-]*+")
#: what the patterns can still match in such text: ``..`` segments, ``--`` (a fuzzy
#: ``SELECT ... FROM ... WHERE ... --``), ``&&`` (command chaining), ``information_schema``,
#: ``/etc/passwd``-style and ``boot.ini`` paths, ``srcdoc=``
_PLAIN_SUSPECTS = re.compile(rb"(?i)\.\.|--|&&|information_schema|/etc/|boot\.ini|srcdoc")


def url_is_plain(raw_path: bytes, query: bytes = b"") -> bool:
    """True when neither :func:`find_url_attacks` nor :func:`find_suspicious_patterns` can
    report anything for this request target (``raw_path`` and ``query`` as sent).

    A cheap, conservative screen for the common URL (``/items/42?page=2&sort=name``): letters,
    digits and ``/ _ . ~ , -`` (plus ``= &`` in the query), and none of the few sequences the
    patterns could still find in such text. ``False`` means "run the checks", not "suspicious".
    """
    return (
        _PLAIN_PATH.fullmatch(raw_path) is not None
        and (not query or _PLAIN_QUERY.fullmatch(query) is not None)
        and _PLAIN_SUSPECTS.search(raw_path) is None
        and (not query or _PLAIN_SUSPECTS.search(query) is None)
    )


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
