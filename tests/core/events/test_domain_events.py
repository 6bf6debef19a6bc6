"""Typed domain events: create, to_dict/from_dict round trips, guide §10 examples."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, Dict  # noqa: UP035 - the guide's spelling

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crown_nexus.core.events import EventService
from crown_nexus.core.events.domain_events import DomainEvent, UserCreatedEvent, UserData
from crown_nexus.core.events.exceptions import EventDataException, EventPublishException


@dataclass
class PaymentProcessedEvent(DomainEvent[Dict[str, Any]]):  # noqa: UP006
    event_name: ClassVar[str] = "payment.processed"


@dataclass
class PaymentData:
    payment_id: str
    order_id: str
    amount: float
    status: str
    processor: str


@dataclass
class PaymentProcessedTypedEvent(DomainEvent[PaymentData]):
    event_name: ClassVar[str] = "payment.processed.typed"


def test_user_created_event_name_and_typed_data() -> None:
    """UserCreatedEvent is "user.created.typed" and create() rebuilds dict data as UserData."""
    e = UserCreatedEvent.create(
        data={"user_id": "1", "username": "ann", "email": "a@x.io"}, user_id=1, request_id="r1"
    )
    assert UserCreatedEvent.event_name == "user.created.typed"
    assert e.data == UserData(user_id="1", username="ann", email="a@x.io")
    assert e.user_id == "1" and e.request_id == "r1"


def test_to_dict_has_handler_shape_and_round_trips() -> None:
    """to_dict() is the SPEC §6 shape and from_dict(to_dict()) gives an equal event."""
    e = PaymentProcessedTypedEvent.create(
        data=PaymentData("p1", "o1", 12.5, "ok", "fake"), user_id="u", request_id="r"
    )
    d = e.to_dict()
    assert set(d) == {"id", "name", "data", "context", "timestamp"}
    assert d["name"] == "payment.processed.typed"
    assert d["data"] == {"payment_id": "p1", "order_id": "o1", "amount": 12.5, "status": "ok",
                         "processor": "fake"}
    assert d["context"] == {"user_id": "u", "request_id": "r"}
    back = PaymentProcessedTypedEvent.from_dict(d)
    assert back == e and isinstance(back.data, PaymentData)


def test_untyped_event_keeps_dict_data() -> None:
    """DomainEvent[Dict[str, Any]] keeps its data as given."""
    e = PaymentProcessedEvent.create(data={"amount": 3}, user_id=None)
    assert PaymentProcessedEvent.from_dict(e.to_dict()) == e
    assert e.data == {"amount": 3}


def test_bad_data_raises_event_data_exception() -> None:
    """Data that does not fit the dataclass raises EventDataException (a publish error)."""
    with pytest.raises(EventDataException) as info:
        UserCreatedEvent.create(data={"user_id": "1"})
    assert isinstance(info.value, EventPublishException) and info.value.status_code == 422
    with pytest.raises(EventDataException):
        UserCreatedEvent.from_dict({"name": "user.created.typed"})
    with pytest.raises(EventDataException):
        UserCreatedEvent.from_dict("nope")  # type: ignore[arg-type]
    with pytest.raises(EventDataException):
        UserCreatedEvent.from_dict({"data": {}, "context": 5})


@settings(max_examples=150, deadline=None)
@given(
    payment_id=st.text(), order_id=st.text(), status=st.text(), processor=st.text(),
    amount=st.floats(allow_nan=False, allow_infinity=False),
    user_id=st.none() | st.text(min_size=1), request_id=st.none() | st.text(),
)
def test_round_trip_property(
    payment_id: str, order_id: str, status: str, processor: str, amount: float,
    user_id: str | None, request_id: str | None,
) -> None:
    """Any typed event round-trips through to_dict/from_dict."""
    e = PaymentProcessedTypedEvent.create(
        data={"payment_id": payment_id, "order_id": order_id, "amount": amount,
              "status": status, "processor": processor},
        user_id=user_id, request_id=request_id,
    )
    assert PaymentProcessedTypedEvent.from_dict(e.to_dict()) == e


async def test_guide_typed_publish_and_handler(service: EventService) -> None:
    """The guide's typed flow: publish(payload=e.data, context=e.to_dict()); handler from_dict."""
    got: list[UserCreatedEvent] = []

    @service.event_handler("user.created.typed")
    async def handle_typed_user_event(event: dict[str, Any]) -> None:
        got.append(UserCreatedEvent.from_dict(event))

    user_created = UserCreatedEvent.create(
        data={"user_id": "42", "username": "bob", "email": "bob@example.com"},
        user_id="42",
        request_id="req-9",
    )
    await service.publish(
        event_name=user_created.event_name,
        payload=user_created.data,
        context=user_created.to_dict(),
    )
    assert await service.wait_for_pending(2)
    [typed] = got
    assert typed.data.user_id == "42" and typed.data.email == "bob@example.com"
    assert typed.id == user_created.id and typed.user_id == "42" and typed.request_id == "req-9"
    assert typed == user_created


def test_published_dict_round_trips_via_publish() -> None:
    """What a handler receives for publish(name, e.data, e.context()) rebuilds the event data."""
    svc = EventService()
    got: list[dict[str, Any]] = []
    svc.subscribe(UserCreatedEvent.event_name, got.append)
    e = UserCreatedEvent.create(data=UserData("1", "u", "e@x.io"), user_id="1")

    async def run() -> None:
        await svc.publish(e.event_name, e.data, e.context())
        await svc.wait_for_pending(1)
        await svc.shutdown()

    asyncio.run(run())
    back = UserCreatedEvent.from_dict(got[0])
    assert back.data == e.data and back.user_id == "1"


_any = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=10,
)
_event_dicts = st.fixed_dictionaries(
    {},
    optional={
        "id": _any, "name": _any, "timestamp": _any | st.datetimes().map(str),
        "data": _any | st.fixed_dictionaries(
            {"user_id": st.text(), "username": st.text(), "email": st.text()}
        ),
        "context": _any | st.dictionaries(st.sampled_from(["user_id", "request_id", "x"]), _any),
    },
)


@settings(max_examples=200, deadline=None)
@given(d=_event_dicts | _any)
def test_from_dict_bad_input_raises_only_event_data_exception(d: Any) -> None:
    """from_dict on arbitrary input returns an event or raises EventDataException, nothing else."""
    try:
        e = UserCreatedEvent.from_dict(d)
    except EventDataException:
        return
    assert isinstance(e.data, UserData)
