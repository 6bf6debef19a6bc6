"""The hash chain of the audit trail: canonical encoding, record hashes and verification.

Owns only pure computation (no I/O), so the same code hashes on append and checks on verify.

Canonical encoding of a record (version 1) is UTF-8 JSON with sorted keys, no whitespace
(``separators=(",", ":")``), ``ensure_ascii=False`` and no NaN/Infinity, of exactly these keys::

    {"v": 1, "seq": int, "ts": "YYYY-MM-DDTHH:MM:SS.ffffffZ", "actor_id": str|null,
     "action": str, "resource_type": str|null, "resource_id": str|null,
     "target_id": str|null, "details": <JSON object>, "request_id": str|null,
     "client_ip": str|null, "prev": <hex hash of the previous record>}

The timestamp is UTC with microseconds. ``details`` is the JSON object as stored (after
redaction and :func:`jsonable`), so re-reading it from the database gives the same bytes.
A record's ``hash`` is the hex SHA-256 of that encoding; it covers ``prev`` (the previous
record's hash, :data:`GENESIS_HASH` for the first record ever, or the anchor's hash after
retention deleted older records) and ``seq``, so a changed, deleted, inserted or reordered
record breaks the chain at the first place it touches.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

__all__ = [
    "ENCODING_VERSION",
    "GENESIS_HASH",
    "MAX_LISTED_BREAKS",
    "ChainBreak",
    "ChainVerification",
    "ChainVerifier",
    "canonical_encoding",
    "format_timestamp",
    "jsonable",
    "record_hash",
]

#: ``prev`` of the first record of a chain that was never trimmed.
GENESIS_HASH = "0" * 64
ENCODING_VERSION = 1
_MAX_DEPTH = 32


def format_timestamp(ts: datetime) -> str:
    """``ts`` as ISO 8601 UTC with microseconds (``2026-01-02T03:04:05.000006Z``); naive = UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def jsonable(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON data: str keys, lists for tuples/sets, ISO datetimes, finite floats.

    Anything else (and non-finite floats) becomes its ``str``; nesting deeper than 32 levels is
    cut to a string. The result round-trips through ``json`` unchanged, which the hash relies on.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        items = [jsonable(v, _depth + 1) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def canonical_encoding(fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one record (see the module docstring for the exact form).

    ``fields`` holds ``seq``, ``created_at`` (datetime), ``actor_id``, ``action``,
    ``resource_type``, ``resource_id``, ``target_id``, ``details``, ``request_id``,
    ``client_ip`` and ``prev_hash``.
    """
    doc = {
        "v": ENCODING_VERSION,
        "seq": int(fields["seq"]),
        "ts": format_timestamp(fields["created_at"]),
        "actor_id": fields.get("actor_id"),
        "action": fields["action"],
        "resource_type": fields.get("resource_type"),
        "resource_id": fields.get("resource_id"),
        "target_id": fields.get("target_id"),
        "details": fields.get("details") or {},
        "request_id": fields.get("request_id"),
        "client_ip": fields.get("client_ip"),
        "prev": fields["prev_hash"],
    }
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(fields: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`canonical_encoding` of ``fields``."""
    return hashlib.sha256(canonical_encoding(fields)).hexdigest()


#: at most this many breaks are listed in :attr:`ChainVerification.breaks`
MAX_LISTED_BREAKS = 1000


@dataclass(frozen=True)
class ChainBreak:
    """One place where the chain fails: the record's ``seq``, a ``reason`` code and a sentence."""

    seq: int
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """As JSON data."""
        return {"seq": self.seq, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class ChainVerification:
    """The result of ``verify_chain()``.

    ``ok`` is True when every record from the anchor to the head hashes correctly, links to its
    predecessor and the sequence has no gap. Otherwise ``first_broken`` is the ``seq`` of the
    first record (in sequence order) where the chain fails, ``reason``/``detail`` say why, and
    ``breaks`` lists every failing place (verification goes on past a break, trusting the
    stored hash, so several independent tamperings are each reported; at most
    :data:`MAX_LISTED_BREAKS`). Reasons: ``"hash_mismatch"`` (the record's content or seq was
    changed), ``"prev_mismatch"`` (it does not link to the record before it: that one was
    changed and re-hashed, or records were reordered), ``"gap"`` (records before it are
    missing), ``"missing_tail"`` (records from ``seq`` up to the recorded head are missing),
    ``"beyond_head"`` (a record after the recorded head), ``"head_mismatch"`` (the recorded
    head hash differs from the last record's) or ``"missing_state"``. ``checked`` counts the
    records read; ``anchor_seq``/``head_seq`` bound the chain that was verified.
    """

    ok: bool
    checked: int
    first_broken: int | None = None
    reason: str | None = None
    anchor_seq: int = 0
    head_seq: int = 0
    detail: str | None = None
    breaks: tuple[ChainBreak, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON data (the demo's ``GET /audit/verify`` body)."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken": self.first_broken,
            "reason": self.reason,
            "detail": self.detail,
            "anchor_seq": self.anchor_seq,
            "head_seq": self.head_seq,
            "breaks": [b.to_dict() for b in self.breaks],
        }

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class ChainVerifier:
    """Checks records fed in ``seq`` order against the anchor, then the head in :meth:`finish`."""

    anchor_seq: int
    anchor_hash: str
    head_seq: int
    head_hash: str
    checked: int = 0
    _expected_seq: int = field(init=False)
    _prev_hash: str = field(init=False)
    _breaks: list[ChainBreak] = field(init=False, default_factory=list)
    _break_count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._expected_seq = self.anchor_seq + 1
        self._prev_hash = self.anchor_hash

    def _fail(self, seq: int, reason: str, detail: str) -> None:
        self._break_count += 1
        if len(self._breaks) < MAX_LISTED_BREAKS:
            self._breaks.append(ChainBreak(seq, reason, detail))

    def feed(self, fields: Mapping[str, Any]) -> None:
        """Check the next record (at most one break is reported per record)."""
        self.checked += 1
        seq = int(fields["seq"])
        if seq > self.head_seq:
            self._fail(seq, "beyond_head", f"record {seq} is after the recorded head {self.head_seq}")
        elif seq != self._expected_seq:
            self._fail(seq, "gap", f"expected record {self._expected_seq}, found {seq}")
        elif fields["prev_hash"] != self._prev_hash:
            self._fail(seq, "prev_mismatch", f"record {seq} does not link to record {seq - 1}")
        elif record_hash(fields) != fields["hash"]:
            self._fail(seq, "hash_mismatch", f"record {seq} does not match its hash")
        # go on from what is stored, so a later, independent tampering is found too
        self._prev_hash = str(fields["hash"])
        self._expected_seq = max(self._expected_seq, seq + 1)

    def finish(self) -> ChainVerification:
        """The verdict after the last record was fed."""
        if self._expected_seq <= self.head_seq:
            self._fail(
                self._expected_seq,
                "missing_tail",
                f"records {self._expected_seq}..{self.head_seq} are missing",
            )
        elif not self._breaks and self._prev_hash != self.head_hash:
            self._fail(self.head_seq, "head_mismatch", "the recorded head hash differs")
        if not self._breaks:
            return ChainVerification(
                ok=True, checked=self.checked, anchor_seq=self.anchor_seq, head_seq=self.head_seq
            )
        first = self._breaks[0]
        return ChainVerification(
            ok=False,
            checked=self.checked,
            first_broken=first.seq,
            reason=first.reason,
            anchor_seq=self.anchor_seq,
            head_seq=self.head_seq,
            detail=first.detail,
            breaks=tuple(self._breaks),
        )
