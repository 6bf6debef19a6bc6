"""Security regressions in crown_nexus.core.security.validation: sanitiser allow-lists, the
unambiguous URL filter and the labelled URL corpus (false positives and misses)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crown_nexus.core.exceptions import ValidationException
from crown_nexus.core.security.validation import (
    FORBIDDEN_TAGS,
    find_suspicious_patterns,
    find_url_attacks,
    sanitize_input,
)

from ._corpus import load_corpus

BENIGN, ATTACKS = load_corpus()

# --- sanitize_input ---------------------------------------------------------------------------


def test_event_handler_attributes_are_never_kept() -> None:
    """on* attributes go even when the caller allows them, per tag or for every tag."""
    html = '<b onclick="steal()" ONMOUSEOVER="x()" title="t">bold</b>'
    out = sanitize_input(
        html, allowed_tags={"b"}, allowed_attributes={"b": {"onclick", "OnMouseOver", "title"}}
    )
    assert out == '<b title="t">bold</b>'
    out = sanitize_input(html, allowed_tags={"b"}, allowed_attributes={"*": {"onclick"}})
    assert out == '<b title="t">bold</b>'  # nh3 keeps its harmless generic title/lang


@pytest.mark.parametrize("tag", sorted(FORBIDDEN_TAGS) + ["SCRIPT", " style "])
def test_script_and_style_tags_never_kept_and_never_panic(tag: str) -> None:
    """Allowing script/style no longer panics nh3: the element and its content are removed."""
    html = "<b>x</b><script>alert(1)</script><style>body{}</style>"
    assert sanitize_input(html, allowed_tags={"b", tag}) == "<b>x</b>"


def test_bad_sanitiser_options_raise_validation_exception() -> None:
    """Options nh3 refuses (rel on a, non-string names) give a typed 422 error, not a crash."""
    with pytest.raises(ValidationException) as info:
        sanitize_input(
            "<a href='/x' rel='me'>k</a>", allowed_tags={"a"}, allowed_attributes={"a": {"rel"}}
        )
    assert info.value.status_code == 422
    assert info.value.errors[0]["loc"] == ["allowed_attributes"]
    with pytest.raises(ValidationException):
        sanitize_input("x", allowed_tags={"b", 3})  # type: ignore[arg-type]
    with pytest.raises(ValidationException):
        sanitize_input("x", allowed_tags={"b"}, allowed_attributes={"b": {None}})  # type: ignore[arg-type]


def test_allowed_markup_still_works() -> None:
    """Harmless allowed tags and attributes survive; a single tag name as a string works."""
    assert sanitize_input("<i>i</i><b>b</b>", allowed_tags="b") == "i<b>b</b>"
    out = sanitize_input(
        '<a href="https://x.example/" title="t" onclick="x">k</a>',
        allowed_tags={"a"},
        allowed_attributes={"a": {"href", "title", "onclick"}},
    )
    assert 'href="https://x.example/"' in out and 'title="t"' in out and "onclick" not in out
    js = sanitize_input(
        '<a href="javascript:alert(1)">k</a>',
        allowed_tags={"a"},
        allowed_attributes={"a": {"href"}},
    )
    assert "javascript" not in js


@hsettings(max_examples=100, deadline=None)
@given(
    st.sets(st.sampled_from(["b", "i", "a", "p", "script", "style", "div", "img", "svg"])),
    st.sets(
        st.sampled_from(["href", "src", "title", "onclick", "onerror", "onload", "style", "rel"])
    ),
)
def test_fuzz_allow_lists_never_crash_or_keep_handlers(tags: set[str], attrs: set[str]) -> None:
    """Any allow-list gives a string without handlers or script, or a ValidationException."""
    html = '<div onclick="a()"><img src=x onerror="b()"><script>c()</script><style>d</style><a href="/" rel="x" onload="e()">t</a></div>'
    try:
        out = sanitize_input(html, allowed_tags=tags, allowed_attributes={t: attrs for t in tags})
    except ValidationException:
        return
    lowered = out.lower()
    assert "onclick" not in lowered and "onerror" not in lowered and "onload" not in lowered
    assert "<script" not in lowered and "<style" not in lowered and "c()" not in lowered


# --- find_url_attacks: the reported misses and false positives ---------------------------------


@pytest.mark.parametrize(
    ("value", "category"),
    [
        ("1 UNION/**/SELECT password FROM users", "sql_injection"),
        ("java\tscript:alert(1)", "xss"),
        ("\uff1cscript\uff1ealert(1)", "xss"),
    ],
)
def test_former_misses_are_caught(value: str, category: str) -> None:
    """Comment-separated UNION SELECT, a tab inside the scheme and fullwidth brackets are caught."""
    assert category in find_url_attacks("/search", "q=" + quote(value))
    assert category in find_suspicious_patterns(value)


@pytest.mark.parametrize("value", ["javascript: the good parts", "European Union select committee"])
def test_former_false_positives_pass(value: str) -> None:
    """Book titles and committee names are not attacks, for either filter."""
    assert find_url_attacks("/search", "q=" + quote(value)) == []
    assert find_suspicious_patterns(value) == []


def test_scheme_counts_only_at_the_start_of_a_value() -> None:
    """javascript: inside a sentence is not a URL a browser would follow."""
    assert find_url_attacks("/s", "q=" + quote("see javascript:alert(1)")) == []
    assert find_url_attacks("/s", "next=" + quote("javascript:alert(1)")) == ["xss"]
    assert find_url_attacks("/go/javascript:alert(1)") == ["xss"]


# --- the labelled corpus --------------------------------------------------------------------


def _findings(target) -> tuple[list[str], list[str]]:
    from urllib.parse import unquote

    url = unquote(target.path) + ("?" + target.query if target.query else "")
    return find_url_attacks(target.path, target.query), find_suspicious_patterns(url)


def test_corpus_has_every_language_and_class() -> None:
    """The corpus covers several languages and every attack class and tier."""
    import json

    from ._corpus import CORPUS_FILE

    data = json.loads(CORPUS_FILE.read_text(encoding="utf-8"))
    assert {"en", "fr", "de", "ja", "zh", "ar", "ru"} <= {e["lang"] for e in data["benign"]}
    assert {a.label for a in ATTACKS} == {
        "xss",
        "sql_injection",
        "path_traversal",
        "command_injection",
        "null_byte",
    }
    assert {a.tier for a in ATTACKS} == {"strict", "heuristic"}


def test_corpus_false_positives_and_misses() -> None:
    """Zero false positives on benign input (either filter); zero misses on the strict attacks
    (refused by default) and on every attack in enforce mode (strict or heuristic)."""
    false_positives = [(str(t), _findings(t)) for t in BENIGN if any(_findings(t))]
    strict_misses = [
        str(t) for t in ATTACKS if t.tier == "strict" and t.label not in _findings(t)[0]
    ]
    enforce_misses = [str(t) for t in ATTACKS if t.label not in (_findings(t)[0] + _findings(t)[1])]
    mislabelled = [str(t) for t in ATTACKS if t.tier == "heuristic" and _findings(t)[0]]
    report = (
        f"false positives: {false_positives}\nstrict misses: {strict_misses}\n"
        f"enforce-mode misses: {enforce_misses}\nheuristic entries the strict filter blocks: {mislabelled}"
    )
    assert not false_positives, report
    assert not strict_misses, report
    assert not enforce_misses, report
    assert not mislabelled, report
