"""crown_nexus.core.security.validation: sanitising, suspicious content, JSON, hosts, IPs, moderation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus.core.security.validation import (
    configure_moderation,
    detect_suspicious_content,
    find_suspicious_patterns,
    is_trusted_ip,
    is_valid_hostname,
    moderate_content,
    sanitize_input,
    validate_json_input,
)


def test_sanitize_removes_markup_and_scripts() -> None:
    """Tags and script bodies go; text stays, escaped."""
    assert sanitize_input("<b>hi</b><script>alert(1)</script>") == "hi"
    assert sanitize_input("a < b & c") == "a &lt; b &amp; c"
    assert sanitize_input('<a href="javascript:x" onclick="y">k</a>') == "k"


def test_sanitize_allow_list_and_containers() -> None:
    """Allowed tags survive (dangerous attributes do not); dicts and lists are cleaned recursively."""
    out = sanitize_input('<b onclick="x">bold</b><i>i</i>', allowed_tags={"b"})
    assert out == "<b>bold</b>i"
    assert sanitize_input({"a": ["<i>x</i>", 3], "b": None}) == {"a": ["x", 3], "b": None}


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("1' OR '1'='1", "sql_injection"),
        ("admin'--", "sql_injection"),
        ("1; DROP TABLE users", "sql_injection"),
        ("x UNION SELECT password FROM users", "sql_injection"),
        ("1' AND SLEEP(5)--", "sql_injection"),
        ("<script>alert(1)</script>", "xss"),
        ("<img src=x onerror=alert(1)>", "xss"),
        ("javascript:alert(1)", "xss"),
        ("<iframe src=//evil>", "xss"),
        ("../../etc/passwd", "path_traversal"),
        ("..%2f..%2fetc%2fpasswd", "path_traversal"),
        ("%252e%252e%252fsecret", "path_traversal"),
        ("..\\..\\windows\\win.ini", "path_traversal"),
        ("a\x00b", "null_byte"),
        ("$(whoami)", "command_injection"),
        ("x | cat /etc/hosts", "command_injection"),
    ],
)
def test_attacks_are_detected(text: str, category: str) -> None:
    """Typical SQLi, XSS, traversal, null-byte and command payloads are flagged with their class."""
    assert detect_suspicious_content(text)
    assert category in find_suspicious_patterns(text)


@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "Don't stop me now",
        "Rock and roll",
        "SELECT your plan",
        "price < 5 and > 3",
        "user@example.com",
        "I like dogs; cat people too",
        "version 1.2..3",
        "Tom & Jerry",
        "https://example.com/path?x=1&y=2",
        "O'Reilly and O'Brien",
        "",
    ],
)
def test_ordinary_text_is_not_flagged(text: str) -> None:
    """Everyday text, apostrophes and URLs are not suspicious."""
    assert not detect_suspicious_content(text)


@hsettings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_detection_never_raises(text: str) -> None:
    """Detection returns a bool for any text."""
    assert isinstance(detect_suspicious_content(text), bool)


def test_validate_json_input_limits() -> None:
    """Depth, size, non-JSON types, prototype keys and unparsable text are rejected."""
    assert validate_json_input({"a": [1, {"b": None}]})
    deep: object = 1
    for _ in range(25):
        deep = [deep]
    assert not validate_json_input(deep)
    assert validate_json_input(deep, max_depth=30)
    assert not validate_json_input({"x": "y" * 200}, max_size=100)
    assert not validate_json_input({"__proto__": {}})
    assert not validate_json_input({"x": object()})
    assert not validate_json_input({1: "non-string key"})
    assert validate_json_input('{"a": 1}')
    assert validate_json_input(b"[1, 2]")
    assert not validate_json_input("{broken")
    assert not validate_json_input("[" * 30 + "]" * 30)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("example.com", True),
        ("a-b.example.co.uk", True),
        ("localhost", True),
        ("example.com.", True),
        ("bücher.de", True),
        ("-bad.com", False),
        ("bad-.com", False),
        ("a..b", False),
        ("a" * 64 + ".com", False),
        ("x." * 127 + "com", False),
        ("under_score.com", False),
        ("1.2.3.4", False),
        ("", False),
        ("exa mple.com", False),
    ],
)
def test_is_valid_hostname(host: str, ok: bool) -> None:
    """RFC 1123 hostnames (and IDNs) are valid; bad labels, lengths and numeric TLDs are not."""
    assert is_valid_hostname(host) is ok


def test_is_trusted_ip_v4_v6_and_mapped() -> None:
    """CIDR lists match IPv4, IPv6 and IPv4-mapped IPv6; garbage IPs are untrusted."""
    trusted = ["10.0.0.0/8", "192.168.1.5", "2001:db8::/32"]
    assert is_trusted_ip("10.1.2.3", trusted)
    assert is_trusted_ip("192.168.1.5", trusted)
    assert not is_trusted_ip("192.168.1.6", trusted)
    assert is_trusted_ip("2001:db8::1", trusted)
    assert not is_trusted_ip("2001:db9::1", trusted)
    assert is_trusted_ip("::ffff:10.0.0.1", trusted)
    assert is_trusted_ip("fe80::1%eth0", ["fe80::/10"])
    for bad in ["", "not-an-ip", "999.1.1.1", None]:
        assert not is_trusted_ip(bad, trusted)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        is_trusted_ip("10.0.0.1", ["10.0.0.0/33"])
    assert not is_trusted_ip("10.0.0.1", [])


def test_moderation_word_list_and_types() -> None:
    """Blocked words (any case, leetspeak), length, repetition, unsafe html and bad URLs are refused."""
    assert moderate_content("A perfectly nice comment") == (True, None)
    ok, reason = moderate_content("what the FUCK")
    assert not ok and "blocked" in reason
    assert not moderate_content("sh1t happens")[0]
    assert moderate_content("Scunthorpe shitake-free")[0], "whole words only"
    assert not moderate_content("a" * 50)[0]
    assert not moderate_content("x" * 20_000)[0]
    assert not moderate_content("<script>x</script>", "html")[0]
    assert moderate_content("https://example.com/a", "url") == (True, None)
    assert not moderate_content("ftp://example.com", "url")[0]
    assert not moderate_content(42)[0]  # type: ignore[arg-type]


def test_moderation_is_configurable() -> None:
    """configure_moderation replaces or extends the word list."""
    try:
        configure_moderation(extra_words={"spamword"})
        assert not moderate_content("buy spamword now")[0]
        configure_moderation(blocked_words=[])
        assert moderate_content("what the fuck")[0]
    finally:
        configure_moderation(
            blocked_words=("fuck", "shit", "cunt", "motherfucker", "bitch", "asshole", "bastard")
        )
