"""Cache value encoding: plain data, typed objects with a type tag, never pickle; Redis round trips."""

from __future__ import annotations

import dataclasses
import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crown_nexus.core.cache import CacheSerializationException, CacheService
from crown_nexus.core.cache.serialization import StaleEnvelope, dumps, loads


class Address(BaseModel):
    city: str
    zip: str | None = None


class Customer(BaseModel):
    id: int
    name: str
    address: Address
    created: dt.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str = ""


class Tick(msgspec.Struct):
    n: int


class _Base(DeclarativeBase):
    pass


class Widget(_Base):
    __tablename__ = "ser_widgets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(plain)
def test_plain_data_round_trips(value: object) -> None:
    """Any JSON-like value (plus bytes) comes back equal and of the same type."""
    out = loads(dumps(value))
    assert out == value
    assert type(out) is type(value)


@settings(max_examples=150, deadline=None)
@given(st.integers())
def test_ints_are_ascii_decimal(value: int) -> None:
    """Integers are stored as ASCII decimal (what Redis INCRBY reads and writes)."""
    assert dumps(value) == str(value).encode()
    assert loads(dumps(value)) == value


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_decode_or_raise_typed(data: bytes) -> None:
    """Garbage bytes either decode or raise CacheSerializationException, never anything else."""
    try:
        loads(data)
    except CacheSerializationException:
        pass


def test_typed_objects_round_trip() -> None:
    """Pydantic models (nested too), dataclasses, Structs and lists of them keep their class."""
    customer = Customer(
        id=1,
        name="Ada",
        address=Address(city="Paris"),
        created=dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    assert loads(dumps(customer)) == customer
    assert loads(dumps({"c": [customer]})) == {"c": [customer]}
    assert loads(dumps(Point(1, 2.5, "a"))) == Point(1, 2.5, "a")
    assert loads(dumps([Point(1, 2.0), Point(3, 4.0)])) == [Point(1, 2.0), Point(3, 4.0)]
    assert loads(dumps(Tick(n=3))) == Tick(n=3)
    env = StaleEnvelope(Point(1, 1.0), 123.5)
    assert loads(dumps(env)) == env


def test_orm_instances_come_back_transient_with_columns() -> None:
    """A SQLAlchemy ORM instance comes back as an instance of its class with its column values."""
    w = Widget(id=3, name="gear")
    out = loads(dumps(w))
    assert isinstance(out, Widget)
    assert (out.id, out.name) == (3, "gear")


def test_unserializable_value_is_a_typed_error() -> None:
    """Arbitrary objects are refused with CacheSerializationException (a TypeError); no pickle."""
    with pytest.raises(CacheSerializationException):
        dumps(object())
    with pytest.raises(TypeError):
        dumps(lambda: 1)


def test_forged_type_tag_cannot_import_or_build_arbitrary_classes() -> None:
    """A tag naming an unimported module or a non-model class is refused, nothing is imported."""
    import sys

    forged_module = msgspec.msgpack.encode(
        msgspec.msgpack.Ext(1, msgspec.msgpack.encode(("antigravity:Thing", {})))
    )
    with pytest.raises(CacheSerializationException):
        loads(forged_module)
    assert "antigravity" not in sys.modules
    forged_class = msgspec.msgpack.encode(
        msgspec.msgpack.Ext(1, msgspec.msgpack.encode(("subprocess:Popen", {"args": "id"})))
    )
    with pytest.raises(CacheSerializationException):
        loads(forged_class)


async def test_round_trips_through_every_backend(service: CacheService) -> None:
    """Typed values round-trip through memory and a real Redis alike."""
    customer = Customer(
        id=7,
        name="Grace",
        address=Address(city="NYC", zip="10001"),
        created=dt.datetime(2024, 5, 6, tzinfo=dt.UTC),
    )
    values = {
        "model": customer,
        "dc": Point(1, 2.0, "p"),
        "dcs": [Point(1, 2.0), Point(2, 3.0)],
        "bytes": b"\x00\xff",
        "nested": {"a": [1, 2.5, None, True, "s"]},
        "int": 12,
        "neg": -3,
        "bool": False,
    }
    await service.set_many(values, ttl=60)
    assert await service.get_many(list(values)) == values
    for k, v in values.items():
        got = await service.get(k)
        assert got == v and type(got) is type(v)


async def test_redis_refuses_unserializable_and_reads_corrupt_as_miss(
    redis_url: str,
    redis_client,  # type: ignore[no-untyped-def]
) -> None:
    """On Redis, an unserializable value raises on set; a foreign/corrupt entry reads as a miss."""
    from crown_nexus.settings import Settings

    svc = CacheService(Settings(), default_backend="redis", redis_url=redis_url)
    await svc.initialize()
    try:
        with pytest.raises(CacheSerializationException):
            await svc.set("bad", object(), ttl=60)
        await redis_client.set("corrupt", b"\xc1\xc1garbage")
        assert await svc.get("corrupt", "miss") == "miss"
    finally:
        await svc.shutdown()
