"""How cache values become bytes and back: msgpack (msgspec), never pickle.

Wire format (the first byte decides):

- an ``int`` (exactly ``int``, not ``bool``) is its ASCII decimal form (``b"-12"``), so Redis
  ``INCRBY`` works on values written by :meth:`set` and :meth:`get` reads counters back;
- anything else is one msgpack document (msgspec). Plain data round-trips: ``None``, ``bool``,
  ``int``, ``float``, ``str``, ``bytes``, lists and dicts, and timezone-aware ``datetime``.
  Tuples and sets come back as lists; naive datetimes, dates, UUIDs and Decimals as strings.
- typed objects carry a type tag (a msgpack extension holding ``"module:qualname"`` and the
  fields) and come back as instances of their class: pydantic models (anywhere in the value),
  dataclasses and ``msgspec.Struct`` objects (at the top level or as a homogeneous top-level list),
  and SQLAlchemy ORM instances (anywhere; they come back transient, with their column values).

A type tag resolves only to a class whose module is already imported in this process and only to
a class of the kind the tag says (a pydantic model, a dataclass, ...): a forged cache entry cannot
make the process import a module or build an arbitrary object. Values that cannot be encoded
raise :class:`~crown_nexus.core.cache.exceptions.CacheSerializationException` (a ``TypeError``);
bytes that cannot be decoded raise it too.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Final

import msgspec

from crown_nexus.core.cache.exceptions import CacheSerializationException

__all__ = ["StaleEnvelope", "dumps", "loads"]

_EXT_MODEL: Final = 1
_EXT_TYPED: Final = 2
_EXT_TYPED_LIST: Final = 3
_EXT_ORM: Final = 4
_EXT_STALE: Final = 5

# First bytes of an ASCII decimal int: "-" (0x2d) .. "9" (0x39). Our msgpack documents never start
# there: a top-level int is always written as ASCII, and no other msgpack type starts below 0x80.
_INT_FIRST: Final = frozenset(range(0x2D, 0x3A))


class StaleEnvelope:
    """A cached value with the wall-clock time (epoch seconds) until which it is fresh.

    Used by the stale-while-revalidate window of ``cached``/``cache_aside``: the entry lives for
    ``ttl + stale_ttl`` in the backend; after ``fresh_until`` it is served stale while one task
    refreshes it.
    """

    __slots__ = ("fresh_until", "value")

    def __init__(self, value: Any, fresh_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until

    def is_fresh(self, now: float | None = None) -> bool:
        """True while ``now`` (default: ``time.time()``) is before ``fresh_until``."""
        return (time.time() if now is None else now) < self.fresh_until

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StaleEnvelope)
            and self.value == other.value
            and self.fresh_until == other.fresh_until
        )

    def __hash__(self) -> int:  # pragma: no cover - envelopes are not used as keys
        return hash(self.fresh_until)

    def __repr__(self) -> str:
        return f"StaleEnvelope(value={self.value!r}, fresh_until={self.fresh_until!r})"


def _type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_resolved: dict[tuple[int, str], type] = {}


def _is_pydantic_model_class(cls: type) -> bool:
    base = getattr(sys.modules.get("pydantic"), "BaseModel", None)
    return base is not None and isinstance(cls, type) and issubclass(cls, base)


def _is_typed_class(cls: type) -> bool:
    return isinstance(cls, type) and (
        dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct)
    )


def _is_orm_class(cls: type) -> bool:
    return isinstance(cls, type) and hasattr(cls, "__mapper__") and hasattr(cls, "__table__")


_KIND_CHECK = {
    _EXT_MODEL: _is_pydantic_model_class,
    _EXT_TYPED: _is_typed_class,
    _EXT_TYPED_LIST: _is_typed_class,
    _EXT_ORM: _is_orm_class,
}


def _resolve(code: int, path: str) -> type:
    """The class named ``path`` if its module is imported and it is of the kind ``code`` says."""
    cls = _resolved.get((code, path))
    if cls is not None:
        return cls
    modname, _, qualname = path.partition(":")
    module = sys.modules.get(modname)
    obj: Any = module
    if module is not None and qualname:
        for part in qualname.split("."):
            if part == "<locals>":
                obj = None
                break
            obj = getattr(obj, part, None)
            if obj is None:
                break
    if obj is None or not isinstance(obj, type) or not _KIND_CHECK[code](obj):
        raise CacheSerializationException(
            "cached value names a type that is not available here", operation="deserialize"
        )
    _resolved[(code, path)] = obj
    return obj


def _orm_columns(obj: Any) -> dict[str, Any]:
    state = obj._sa_instance_state
    loaded = state.dict
    return {attr.key: loaded[attr.key] for attr in state.mapper.column_attrs if attr.key in loaded}


def _enc_hook(obj: Any) -> Any:
    cls = type(obj)
    if hasattr(cls, "model_dump") and _is_pydantic_model_class(cls):
        return msgspec.msgpack.Ext(
            _EXT_MODEL, _encoder.encode((_type_path(cls), obj.model_dump(round_trip=True)))
        )
    if hasattr(obj, "_sa_instance_state") and _is_orm_class(cls):
        return msgspec.msgpack.Ext(_EXT_ORM, _encoder.encode((_type_path(cls), _orm_columns(obj))))
    if isinstance(obj, StaleEnvelope):
        return msgspec.msgpack.Ext(_EXT_STALE, _encoder.encode((obj.fresh_until, dumps(obj.value))))
    if isinstance(obj, frozenset):
        return list(obj)
    raise TypeError(f"values of type {cls.__qualname__} cannot be cached")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == _EXT_STALE:
        fresh_until, inner = _decoder.decode(data)
        return StaleEnvelope(loads(inner), fresh_until)
    if code not in _KIND_CHECK:
        raise CacheSerializationException(
            "unknown type tag in cached value", operation="deserialize"
        )
    path, payload = _decoder.decode(data)
    cls = _resolve(code, path)
    if code == _EXT_MODEL:
        return cls.model_validate(payload)  # type: ignore[attr-defined]
    if code == _EXT_TYPED:
        return msgspec.convert(payload, cls)
    if code == _EXT_TYPED_LIST:
        return msgspec.convert(payload, list[cls])  # type: ignore[valid-type]
    return cls(**payload)


_encoder: Final = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
_decoder: Final = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
_encode = _encoder.encode
_decode = _decoder.decode


def _top_level(value: Any) -> Any:
    """Wrap a top-level dataclass / Struct (or a homogeneous list of them) in its type tag."""
    cls = type(value)
    if dataclasses.is_dataclass(cls) or isinstance(value, msgspec.Struct):
        return msgspec.msgpack.Ext(_EXT_TYPED, _encode((_type_path(cls), value)))
    if (cls is list or cls is tuple) and value:
        first = type(value[0])
        if (dataclasses.is_dataclass(first) or issubclass(first, msgspec.Struct)) and all(
            type(v) is first for v in value
        ):
            return msgspec.msgpack.Ext(_EXT_TYPED_LIST, _encode((_type_path(first), value)))
    return value


def dumps(value: Any) -> bytes:
    """Encode ``value`` for the cache (see the module docstring for the format).

    Raises :class:`CacheSerializationException` (a ``TypeError``) for values that cannot be cached.
    """
    if type(value) is int:
        return str(value).encode()
    try:
        return _encode(_top_level(value))
    except CacheSerializationException:
        raise
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise CacheSerializationException(
            f"value cannot be cached: {exc}", operation="serialize"
        ) from exc


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode bytes written by :func:`dumps` back into the value.

    Raises :class:`CacheSerializationException` for bytes that are not a valid cache value.
    """
    if data and data[0] in _INT_FIRST:
        try:
            return int(bytes(data))
        except ValueError as exc:
            raise CacheSerializationException(
                "cached value is not valid", operation="deserialize"
            ) from exc
    try:
        return _decode(data)
    except CacheSerializationException:
        raise
    except Exception as exc:
        raise CacheSerializationException(
            "cached value is not valid", operation="deserialize"
        ) from exc
