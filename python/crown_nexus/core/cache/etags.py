"""Entity tags and ``If-None-Match`` (RFC 9110 §8.8.3, §13.1.2), in one place.

Every ETag the app sends and every conditional request it answers goes through here:

- :func:`make_etag` -- the strong ETag of a value (``"<content_hash>"``, the same in every worker).
- :func:`encoded_etag` -- the ETag of a content-coded representation. A gzip body is a different
  representation from the identity body, so it must not carry the same strong ETag (RFC 9110
  §8.8.3.3). As Apache's ``mod_deflate`` does (``DeflateAlterETag AddSuffix``), the coding is
  appended *inside* the quotes: ``"abc"`` -> ``"abc-gzip"``, ``W/"abc"`` -> ``W/"abc-gzip"``.
  Unlike Apache, conditional requests strip the suffix again (:func:`if_none_match`), so a gzip
  client revalidating ``"abc-gzip"`` gets its 304 (Apache bug 45023).
- :func:`weak_etag` -- ``W/"abc"``: for a representation whose bytes change from response to
  response while its meaning does not (the SPEC §3 envelope carries a timestamp and a request id).
- :func:`parse_entity_tags` -- ``If-None-Match`` / ``If-Match`` field values: ``*`` or a
  comma-separated list of ``"opaque"`` and ``W/"opaque"`` tags (commas may occur inside the
  quotes). Malformed members are skipped; parsing never raises.
- :func:`if_none_match` -- the weak comparison of §13.1.2: does the request's ``If-None-Match``
  match the current ETag? Returns the ETag to send with the 304, or ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from crown_nexus.core.cache.keys import content_hash

__all__ = [
    "ENCODING_SUFFIXES",
    "EntityTag",
    "encoded_etag",
    "if_none_match",
    "make_etag",
    "parse_entity_tags",
    "weak_etag",
]

#: content codings whose suffix :func:`encoded_etag` appends and :func:`if_none_match` strips
ENCODING_SUFFIXES: tuple[str, ...] = ("-gzip", "-br", "-zstd", "-deflate")

#: at most this many members of one field value are looked at (a bound on work per request)
MAX_MEMBERS = 64


@dataclass(frozen=True, slots=True)
class EntityTag:
    """One parsed entity-tag: its opaque part (without quotes) and whether it is weak."""

    opaque: str
    weak: bool = False

    def __str__(self) -> str:
        return f'W/"{self.opaque}"' if self.weak else f'"{self.opaque}"'


def _is_etagc(ch: str) -> bool:
    # etagc = %x21 / %x23-7E / obs-text (%x80-FF); anything else ends a malformed member
    code = ord(ch)
    return code == 0x21 or 0x23 <= code <= 0x7E or 0x80 <= code <= 0xFF


def _skip_member(value: str, i: int) -> int:
    comma = value.find(",", i)
    return len(value) if comma < 0 else comma + 1


def parse_entity_tags(
    field: str | Iterable[str] | None,
) -> Literal["*"] | tuple[EntityTag, ...]:
    """Parse an ``If-None-Match`` / ``If-Match`` field value (or several header lines).

    ``"*"`` for the wildcard, else the well-formed entity-tags in order (at most
    :data:`MAX_MEMBERS`). Whitespace and empty list members are allowed; a malformed member
    (no quotes, a bad character, a lowercase ``w/``...) is skipped up to the next comma. Never
    raises, whatever the input.
    """
    if field is None:
        return ()
    value = field if isinstance(field, str) else ",".join(str(f) for f in field)
    if value.strip(" \t") == "*":
        return "*"
    tags: list[EntityTag] = []
    n = len(value)
    i = 0
    while i < n and len(tags) < MAX_MEMBERS:
        ch = value[i]
        if ch in " \t,":
            i += 1
            continue
        weak = value.startswith('W/"', i)
        start = i + 3 if weak else i + 1
        if not weak and ch != '"':
            i = _skip_member(value, i)
            continue
        end = start
        while end < n and value[end] != '"' and _is_etagc(value[end]):
            end += 1
        if end >= n or value[end] != '"':
            i = _skip_member(value, end)
            continue
        rest = end + 1
        while rest < n and value[rest] in " \t":
            rest += 1
        if rest < n and value[rest] != ",":
            i = _skip_member(value, rest)  # trailing junk: not an entity-tag
            continue
        tags.append(EntityTag(value[start:end], weak))
        i = rest + 1
    return tuple(tags)


def _parse_one(etag: str) -> EntityTag | None:
    tags = parse_entity_tags(etag)
    return tags[0] if isinstance(tags, tuple) and len(tags) == 1 else None


def _base(opaque: str) -> str:
    for suffix in ENCODING_SUFFIXES:
        if opaque.endswith(suffix) and len(opaque) > len(suffix):
            return opaque[: -len(suffix)]
    return opaque


def make_etag(value: Any, *, weak: bool = False) -> str:
    """The ETag of ``value``: ``"<content_hash(value)>"`` (``W/"..."`` with ``weak=True``).

    Equal values give equal tags in every process. Raises ``CacheKeyException`` for a value that
    cannot be hashed stably.
    """
    return str(EntityTag(content_hash(value), weak))


def weak_etag(etag: str) -> str:
    """``etag`` as a weak validator (``"a"`` -> ``W/"a"``); a malformed value is returned as is."""
    tag = _parse_one(etag)
    return etag if tag is None else str(EntityTag(tag.opaque, True))


def encoded_etag(etag: str, coding: str = "gzip") -> str:
    """The ETag of ``etag``'s representation content-coded with ``coding``: ``"a"`` -> ``"a-gzip"``.

    Weakness is kept. A malformed value is returned unchanged (nothing to tell apart).
    """
    tag = _parse_one(etag)
    if tag is None:
        return etag
    return str(EntityTag(f"{tag.opaque}-{coding}", tag.weak))


def if_none_match(field: str | Iterable[str] | None, etag: str) -> str | None:
    """Whether ``If-None-Match`` matches the current ``etag``; the ETag for the 304 if it does.

    Weak comparison (RFC 9110 §8.8.3.2: opaque parts equal, ``W/`` ignored), after removing a
    content-coding suffix (:data:`ENCODING_SUFFIXES`) from both sides, so ``"a"``, ``W/"a"`` and
    ``"a-gzip"`` all match ``"a"``. ``*`` matches any current representation. Returns ``None``
    when nothing matches (or the field is absent or malformed), else the member that matched,
    as the client sent it (``etag`` itself for ``*``): the ETag of the representation the client
    holds, for the 304 (§15.4.5). Never raises.
    """
    current = _parse_one(etag)
    if current is None:
        return None
    tags = parse_entity_tags(field)
    if tags == "*":
        return etag
    wanted = _base(current.opaque)
    for tag in tags:
        if _base(tag.opaque) == wanted:
            return str(tag)
    return None
