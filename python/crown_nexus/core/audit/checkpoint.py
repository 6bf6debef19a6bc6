"""Signed checkpoints of the audit chain: its head, kept outside the database.

The hash chain finds a record that was edited, deleted, inserted or reordered, but not a
history rewritten whole by someone who can write to the database: recompute every hash from
the first changed record on, update the chain-state row, and the chain verifies again. A
checkpoint closes that gap the way signed tree heads do for transparency logs: the chain's head
(``seq`` and ``hash``) at a moment, signed with HMAC-SHA256 under a key the database does not
hold (the application's secret key), handed to somewhere else -- a log line, an operator's
file, another system. Later, :func:`check` confirms that the record at that ``seq`` still has
that hash and that the chain verifies: a rewrite of anything up to the checkpoint changes the
hash at its ``seq`` and is found.

Signed bytes (version 1), UTF-8::

    crown-nexus-audit-checkpoint:v1\\n<seq>\\n<hash>\\n<created_at>

Owns only the format, signing and the decision (no I/O); the service reads the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crown_nexus.core.audit.chain import GENESIS_HASH, ChainVerification, format_timestamp
from crown_nexus.core.exceptions import ConfigurationException, ValidationException

__all__ = ["Checkpoint", "CheckpointVerification", "check", "genuine", "sign_checkpoint"]

_PREFIX = b"crown-nexus-audit-checkpoint:v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _key(secret_key: str | bytes | None) -> bytes:
    if not secret_key:
        raise ConfigurationException(
            "audit checkpoints need a secret key (the settings' secret_key)",
            config_key="secret_key",
        )
    return secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)


def sign_checkpoint(seq: int, hash_: str, created_at: str, secret_key: str | bytes | None) -> str:
    """The hex HMAC-SHA256 of a checkpoint's fields under ``secret_key`` (see the module)."""
    message = b"\n".join((_PREFIX, str(seq).encode(), hash_.encode(), created_at.encode()))
    return hmac.new(_key(secret_key), message, hashlib.sha256).hexdigest()


def _invalid(field: str, message: str) -> ValidationException:
    return ValidationException(
        f"invalid audit checkpoint: {message}",
        errors=[{"loc": ["checkpoint", field], "msg": message, "type": "value_error"}],
    )


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at ``created_at`` (UTC, microseconds) and its ``signature``."""

    seq: int
    hash: str
    created_at: str
    signature: str

    @classmethod
    def create(
        cls, seq: int, hash_: str, at: datetime, secret_key: str | bytes | None
    ) -> Checkpoint:
        """Sign the head ``(seq, hash_)`` as of ``at``."""
        created_at = format_timestamp(at)
        return cls(seq, hash_, created_at, sign_checkpoint(seq, hash_, created_at, secret_key))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | Checkpoint) -> Checkpoint:
        """A checkpoint from its :meth:`to_dict` form; :class:`ValidationException` (422) for
        anything malformed (missing or extra keys, wrong types, not hex, negative ``seq``)."""
        if isinstance(data, Checkpoint):
            return data
        if not isinstance(data, Mapping):
            raise _invalid("checkpoint", "expected an object")
        keys = {"seq", "hash", "created_at", "signature"}
        if set(data) != keys:
            raise _invalid("checkpoint", f"expected exactly the keys {sorted(keys)}")
        seq, hash_, created_at, signature = (
            data["seq"], data["hash"], data["created_at"], data["signature"]
        )
        if type(seq) is not int or seq < 0:
            raise _invalid("seq", "must be a non-negative integer")
        if not isinstance(hash_, str) or not _HEX64.fullmatch(hash_):
            raise _invalid("hash", "must be 64 lower-case hex digits")
        if not isinstance(signature, str) or not _HEX64.fullmatch(signature):
            raise _invalid("signature", "must be 64 lower-case hex digits")
        if not isinstance(created_at, str) or not _TIMESTAMP.fullmatch(created_at):
            raise _invalid("created_at", "must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
        return cls(seq, hash_, created_at, signature)

    def to_dict(self) -> dict[str, Any]:
        """As JSON data (what to store outside the database)."""
        return {
            "seq": self.seq,
            "hash": self.hash,
            "created_at": self.created_at,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class CheckpointVerification:
    """Whether the trail still holds a checkpoint's head.

    ``ok`` is True when the signature is genuine, the chain verifies and the record at the
    checkpoint's ``seq`` (or the genesis, for ``seq`` 0) has the checkpoint's hash. Otherwise
    ``reason``: ``"bad_signature"`` (not signed with this key, or a field changed),
    ``"chain_broken"`` (see ``chain``), ``"truncated"`` (the chain ends before the
    checkpoint), ``"rewritten"`` (the record at ``seq`` has another hash: history up to the
    checkpoint was replaced) or ``"before_anchor"`` (retention deleted that part, so it cannot
    be confirmed any more). ``chain`` is the chain verification when it ran.
    """

    ok: bool
    reason: str | None = None
    detail: str | None = None
    chain: ChainVerification | None = None

    def to_dict(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "detail": self.detail,
            "chain": None if self.chain is None else self.chain.to_dict(),
        }

    def __bool__(self) -> bool:
        return self.ok


def genuine(checkpoint: Checkpoint, secret_key: str | bytes | None) -> bool:
    """True when ``checkpoint``'s signature is its fields' under ``secret_key`` (constant time)."""
    expected = sign_checkpoint(
        checkpoint.seq, checkpoint.hash, checkpoint.created_at, secret_key
    )
    return hmac.compare_digest(expected, checkpoint.signature)


def check(
    checkpoint: Checkpoint,
    chain: ChainVerification,
    anchor_hash: str,
    hash_at_seq: str | None,
) -> CheckpointVerification:
    """Decide for a checkpoint whose signature is genuine, given the chain's verification, the
    anchor's hash and the stored hash of the record at the checkpoint's ``seq`` (``None`` when
    there is none)."""
    if not chain.ok:
        return CheckpointVerification(False, "chain_broken", chain.detail, chain)
    seq = checkpoint.seq
    if seq == 0:
        if checkpoint.hash != GENESIS_HASH:
            return CheckpointVerification(False, "rewritten", "seq 0 is the genesis", chain)
        return CheckpointVerification(True, chain=chain)
    if seq > chain.head_seq:
        return CheckpointVerification(
            False, "truncated", f"the chain ends at {chain.head_seq}, before {seq}", chain
        )
    if seq < chain.anchor_seq:
        return CheckpointVerification(
            False, "before_anchor", f"retention deleted records up to {chain.anchor_seq}", chain
        )
    stored = anchor_hash if seq == chain.anchor_seq else hash_at_seq
    if stored is None or not hmac.compare_digest(stored, checkpoint.hash):
        return CheckpointVerification(
            False, "rewritten", f"the record at {seq} is not the one checkpointed", chain
        )
    return CheckpointVerification(True, chain=chain)
