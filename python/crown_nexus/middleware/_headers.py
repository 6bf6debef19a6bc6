"""Raw ASGI header edits shared by the compression and formatter middleware."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Message

__all__ = ["add_vary", "has_header", "rewrite_etag"]

RawHeaders = list[tuple[bytes, bytes]]


def has_header(message: Message, name: bytes) -> bool:
    """True when the ``http.response.start`` message has header ``name`` (lowercase bytes)."""
    return any(k.lower() == name for k, _ in message.get("headers", ()))


def add_vary(raw: RawHeaders, token: bytes = b"Accept-Encoding") -> None:
    """Add ``token`` to the Vary header of ``raw`` (in place), once; ``Vary: *`` is left alone."""
    wanted = token.lower()
    for i, (key, value) in enumerate(raw):
        if key.lower() == b"vary":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if wanted in tokens or b"*" in tokens:
                return
            raw[i] = (key, value + b", " + token if value.strip() else token)
            return
    raw.append((b"vary", token))


def rewrite_etag(raw: RawHeaders, change: Callable[[str], str]) -> None:
    """Replace the ETag header of ``raw`` (in place) by ``change(etag)``; no ETag, no change."""
    for i, (key, value) in enumerate(raw):
        if key.lower() == b"etag":
            raw[i] = (key, change(value.decode("latin-1")).encode("latin-1"))
