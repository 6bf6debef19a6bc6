"""Typed domain events (guide §10): ``DomainEvent[T]`` dataclasses that round-trip the handler dict.

A domain event carries ``data`` of type ``T`` plus an ``id``, a ``timestamp``, the acting
``user_id``, the ``request_id`` and free ``metadata``. Define your own as the guide shows::

    @dataclass
    class PaymentData:
        payment_id: str
        amount: float

    @dataclass
    class PaymentProcessedTypedEvent(DomainEvent[PaymentData]):
        event_name: ClassVar[str] = "payment.processed.typed"

``create(data=..., user_id=..., request_id=...)`` accepts the data as its dataclass or as a dict
(rebuilt into the dataclass, checked); :meth:`DomainEvent.to_dict` gives the SPEC §6 handler
shape ``{"id", "name", "data", "context", "timestamp"}`` and :meth:`DomainEvent.from_dict` reads
it back, whether it comes from ``to_dict()`` or from what a handler received (including the guide's
``publish(payload=e.data, context=e.to_dict())`` form, where the event's own fields sit in
``context``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import msgspec

from crown_nexus.core.events.envelope import new_event_id
from crown_nexus.core.events.exceptions import EventDataException

__all__ = ["DomainEvent", "UserCreatedEvent", "UserData", "new_event_id", "utc_now_iso"]

T = TypeVar("T")


def utc_now_iso() -> str:
    """The current time as ISO-8601 UTC, e.g. ``2026-01-01T12:00:00.123456+00:00``."""
    return datetime.now(UTC).isoformat()


def _data_type(cls: type) -> Any:
    """The ``T`` a ``DomainEvent[T]`` subclass declared (``Any`` when it declared none)."""
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, DomainEvent):
                args = typing.get_args(base)
                if args and not isinstance(args[0], TypeVar):
                    return args[0]
    return Any


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise EventDataException(f"invalid event timestamp {value!r}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if value is None:
        return datetime.now(UTC)
    raise EventDataException(f"invalid event timestamp {value!r}")


_RESERVED_CONTEXT = frozenset({"user_id", "request_id", "id", "name", "data", "context", "timestamp"})


@dataclass
class DomainEvent(Generic[T]):
    """A typed event: ``data`` of type ``T`` with identity, time and who/which request caused it.

    ``event_name`` is the name it is published under; subclasses set their own.
    """

    event_name: ClassVar[str] = "domain.event"

    data: T
    id: str = field(default_factory=new_event_id)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))
    user_id: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def data_type(cls) -> Any:
        """The declared type of ``data`` (``T``), or ``Any``."""
        return _data_type(cls)

    @classmethod
    def _coerce_data(cls, data: Any) -> Any:
        tp = cls.data_type()
        if tp is Any:
            return data
        if isinstance(tp, type) and isinstance(data, tp):
            return data
        try:
            return msgspec.convert(data, tp, strict=False, from_attributes=True)
        except (msgspec.ValidationError, TypeError) as exc:
            name = getattr(tp, "__name__", str(tp))
            raise EventDataException(
                f"{cls.event_name}: data does not fit {name}: {exc}",
                event_name=cls.event_name,
            ) from exc

    @classmethod
    def create(
        cls,
        data: Any,
        user_id: Any = None,
        request_id: str | None = None,
        **metadata: Any,
    ) -> typing.Self:
        """A new event with a fresh id and the current time.

        ``data`` may be an instance of ``T`` or a mapping rebuilt into ``T`` (when ``T`` is a
        dataclass or another type msgspec can convert to); data that does not fit raises
        :class:`EventDataException`. ``user_id`` is kept as a string.
        """
        return cls(
            data=cls._coerce_data(data),
            user_id=None if user_id is None else str(user_id),
            request_id=request_id,
            metadata=dict(metadata),
        )

    @property
    def name(self) -> str:
        """The event's name (``event_name``)."""
        return self.event_name

    def data_dict(self) -> Any:
        """``data`` as plain JSON-ready builtins (a dataclass becomes a dict)."""
        try:
            return msgspec.to_builtins(self.data)
        except TypeError as exc:
            raise EventDataException(
                f"{self.event_name}: data is not serializable: {exc}", event_name=self.event_name
            ) from exc

    def context(self) -> dict[str, Any]:
        """The event's context: ``user_id``, ``request_id`` and its metadata."""
        return {**self.metadata, "user_id": self.user_id, "request_id": self.request_id}

    def to_dict(self) -> dict[str, Any]:
        """The SPEC §6 handler shape: ``{"id", "name", "data", "context", "timestamp"}``."""
        return {
            "id": self.id,
            "name": self.event_name,
            "data": self.data_dict(),
            "context": self.context(),
            "timestamp": self.timestamp.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, Any]) -> typing.Self:
        """Rebuild the event from :meth:`to_dict` output or from a handler's event dict.

        ``data`` is rebuilt into ``T``. When the event was published as
        ``publish(payload=e.data, context=e.to_dict())``, its own id, time, user and request
        are read from the nested context. Raises :class:`EventDataException` on a malformed dict.
        """
        if not isinstance(d, typing.Mapping):
            raise EventDataException(
                f"{cls.event_name}: expected an event dict, got {type(d).__name__}",
                event_name=cls.event_name,
            )
        if "data" not in d:
            raise EventDataException(
                f"{cls.event_name}: event dict has no 'data'", event_name=cls.event_name
            )
        ctx = d.get("context") or {}
        if not isinstance(ctx, typing.Mapping):
            raise EventDataException(
                f"{cls.event_name}: 'context' must be a dict", event_name=cls.event_name
            )
        source: typing.Mapping[str, Any] = d
        inner = ctx.get("context")
        if ctx.get("name") == cls.event_name and "id" in ctx and isinstance(inner, typing.Mapping):
            # published as publish(payload=e.data, context=e.to_dict()): the event lives in context
            source, ctx = ctx, inner
        metadata = {k: v for k, v in ctx.items() if k not in _RESERVED_CONTEXT}
        user_id = ctx.get("user_id")
        return cls(
            data=cls._coerce_data(d["data"]),
            id=str(source.get("id") or new_event_id()),
            timestamp=_parse_timestamp(source.get("timestamp")),
            user_id=None if user_id is None else str(user_id),
            request_id=ctx.get("request_id"),
            metadata=metadata,
        )


@dataclass
class UserData:
    """Data of :class:`UserCreatedEvent`."""

    user_id: str
    username: str
    email: str


@dataclass
class UserCreatedEvent(DomainEvent[UserData]):
    """A user was created (typed data: :class:`UserData`)."""

    event_name: ClassVar[str] = "user.created.typed"
