"""ETag helpers: parsing If-None-Match, weak comparison, content-coded representations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.cache import content_hash
from crown_nexus.core.cache.etags import (
    MAX_MEMBERS,
    EntityTag,
    encoded_etag,
    if_none_match,
    make_etag,
    parse_entity_tags,
    weak_etag,
)


def test_make_etag_is_the_quoted_content_hash() -> None:
    """make_etag gives "<content_hash>" (W/ when weak), equal for equal values."""
    assert make_etag({"a": 1}) == f'"{content_hash({"a": 1})}"'
    assert make_etag({"a": 1}, weak=True) == f'W/"{content_hash({"a": 1})}"'


def test_parse_lists_weak_tags_and_commas_inside_quotes() -> None:
    """Members are split on commas outside quotes; whitespace and empty members are allowed."""
    assert parse_entity_tags(' "a", W/"b" ,, "c,d"') == (
        EntityTag("a"),
        EntityTag("b", weak=True),
        EntityTag("c,d"),
    )
    assert parse_entity_tags(['"a"', 'W/"b"']) == (EntityTag("a"), EntityTag("b", True))
    assert parse_entity_tags(" * ") == "*"
    assert parse_entity_tags(None) == ()
    assert parse_entity_tags('""') == (EntityTag(""),)


def test_parse_skips_malformed_members() -> None:
    """Unquoted, unterminated, lowercase w/ and junk-trailed members are skipped, not fatal."""
    assert parse_entity_tags('abc, "ok"') == (EntityTag("ok"),)
    assert parse_entity_tags('w/"x", "ok"') == (EntityTag("ok"),)
    assert parse_entity_tags('"x"junk, "ok"') == (EntityTag("ok"),)
    assert parse_entity_tags('"ok", "unterminated') == (EntityTag("ok"),)
    assert parse_entity_tags('"sp ace", "ok"') == (EntityTag("ok"),)
    assert parse_entity_tags('"a", *') == (EntityTag("a"),)
    assert len(parse_entity_tags(", ".join(f'"{i}"' for i in range(500)))) == MAX_MEMBERS


def test_if_none_match_weak_comparison() -> None:
    """Weak comparison: W/ ignored, the -gzip suffix stripped; the held tag is returned."""
    assert if_none_match('"a"', '"a"') == '"a"'
    assert if_none_match('W/"a"', '"a"') == 'W/"a"'
    assert if_none_match('"a"', 'W/"a"') == '"a"'
    assert if_none_match('"x", W/"a-gzip"', '"a"') == 'W/"a-gzip"'
    assert if_none_match("*", '"a"') == '"a"'
    assert if_none_match('"b"', '"a"') is None
    assert if_none_match('"a-gzipx"', '"a"') is None
    assert if_none_match(None, '"a"') is None
    assert if_none_match("*", "not-an-etag") is None


def test_encoded_and_weak_etags() -> None:
    """encoded_etag appends the coding inside the quotes; weak_etag adds W/; junk unchanged."""
    assert encoded_etag('"a"') == '"a-gzip"'
    assert encoded_etag('W/"a"', "br") == 'W/"a-br"'
    assert weak_etag('"a"') == 'W/"a"' and weak_etag('W/"a"') == 'W/"a"'
    assert encoded_etag("junk") == "junk" and weak_etag("junk") == "junk"


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.lists(st.text(), max_size=5)), st.text())
def test_fuzz_if_none_match_never_raises(field: str | list[str], etag: str) -> None:
    """Any If-None-Match value (and any current ETag) is evaluated without raising."""
    tags = parse_entity_tags(field)
    assert tags == "*" or all(isinstance(t, EntityTag) for t in tags)
    result = if_none_match(field, etag)
    assert result is None or isinstance(result, str)


_etagc = st.characters(
    codec="latin-1", exclude_characters='"', min_codepoint=0x21, exclude_categories=()
).filter(lambda c: c != "\x7f")  # etagc: %x21 / %x23-7E / obs-text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.text(_etagc, max_size=20)), min_size=1, max_size=8))
def test_fuzz_well_formed_lists_round_trip(members: list[tuple[bool, str]]) -> None:
    """A list built from well-formed tags parses back to exactly those tags, each matching."""
    field = " , ".join(str(EntityTag(opaque, weak)) for weak, opaque in members)
    assert parse_entity_tags(field) == tuple(EntityTag(o, w) for w, o in members)
    for weak, opaque in members:
        assert if_none_match(field, f'"{opaque}"') is not None
