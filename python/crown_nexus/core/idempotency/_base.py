"""The idempotency store contract and the record encoding both stores share.

A key moves through two states: **pending** (claimed by the request running it; the value is
``p:<owner>:<fingerprint>`` and expires after the lock timeout, so a crashed worker never blocks
the key for good) and **done** (``d:<json>`` holding the fingerprint and the stored response,
kept for the TTL). Only the owner of a pending claim completes or releases it.
"""

from __future__ import annotations

import base64
import enum
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass

import orjson

__all__ = [
    "Claim",
    "ClaimState",
    "IdempotencyStore",
    "StoredResponse",
    "decode_record",
    "done_record",
    "new_owner",
    "pending_prefix",
    "pending_record",
    "ttl_ms",
]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for replay: status, headers (``(name, value)`` Latin-1 text) and body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


class ClaimState(enum.StrEnum):
    """What :meth:`IdempotencyStore.claim` found."""

    #: the key was free and now belongs to the caller (``Claim.owner``): run the request
    CLAIMED = "claimed"
    #: another request holds the key and has not finished
    IN_PROGRESS = "in_progress"
    #: a request with this key finished; its response is in ``Claim.response``
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of a claim: the state, the fingerprint of the request that holds or stored the
    key (``None`` when claimed), the stored response (completed) and the owner token (claimed)."""

    state: ClaimState
    fingerprint: str | None = None
    response: StoredResponse | None = None
    owner: str | None = None


def new_owner() -> str:
    """A fresh owner token for a claim (no ``:``, so it delimits safely)."""
    return secrets.token_hex(16)


def pending_prefix(owner: str) -> str:
    """The start of a pending record held by ``owner``."""
    return f"p:{owner}:"


def pending_record(owner: str, fingerprint: str) -> str:
    """The value of a key claimed by ``owner`` for a request with ``fingerprint``."""
    return f"{pending_prefix(owner)}{fingerprint}"


def done_record(fingerprint: str, response: StoredResponse) -> str:
    """The value of a key whose request finished with ``response``."""
    payload = {
        "f": fingerprint,
        "s": response.status,
        "h": [list(h) for h in response.headers],
        "b": base64.b64encode(response.body).decode("ascii"),
    }
    return "d:" + orjson.dumps(payload).decode("utf-8")


def decode_record(value: str | bytes) -> Claim:
    """The :class:`Claim` (in progress or completed) a stored value stands for.

    A value that is neither record (written by something else) raises ``ValueError``.
    """
    text = value.decode("utf-8") if isinstance(value, bytes | bytearray) else value
    if text.startswith("p:"):
        _, _, rest = text[2:].partition(":")
        return Claim(ClaimState.IN_PROGRESS, fingerprint=rest)
    if text.startswith("d:"):
        try:
            data = orjson.loads(text[2:])
            response = StoredResponse(
                status=int(data["s"]),
                headers=tuple((str(k), str(v)) for k, v in data["h"]),
                body=base64.b64decode(data["b"]),
            )
            return Claim(ClaimState.COMPLETED, fingerprint=str(data["f"]), response=response)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"corrupt idempotency record: {exc}") from exc
    raise ValueError("not an idempotency record")


class IdempotencyStore(ABC):
    """Where idempotency keys and their responses live (memory for one process, Redis shared).

    Every method is atomic for one key: two claims of a free key never both succeed.
    """

    #: short backend name (``memory``, ``redis``)
    name: str = "abstract"

    @abstractmethod
    async def claim(self, key: str, fingerprint: str, lock_ttl: float) -> Claim:
        """Take ``key`` for a request with ``fingerprint`` if it is free (pending for
        ``lock_ttl`` seconds), else report who holds it or what it stored."""

    @abstractmethod
    async def complete(
        self, key: str, owner: str, fingerprint: str, response: StoredResponse, ttl: float
    ) -> bool:
        """Store ``response`` under ``key`` for ``ttl`` seconds if ``owner`` still holds it (or
        the claim expired and nobody took it); ``False`` when another request holds it now."""

    @abstractmethod
    async def release(self, key: str, owner: str) -> bool:
        """Free ``key`` if ``owner`` holds it (the request failed: a retry runs it again)."""

    async def close(self) -> None:
        """Release connections (nothing to do by default)."""
        return None


def ttl_ms(seconds: float) -> int:
    """``seconds`` as whole milliseconds, at least 1."""
    return max(1, int(seconds * 1000))
