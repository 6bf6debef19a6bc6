"""Stable cache keys and content hashes: the reference (pure Python) implementation.

The compiled twin ``crown_nexus_native.cache_keys`` follows the encoding below byte for byte, so
both give the same digest for the same input, in every process and every run (nothing depends on
``hash()``, ``id()``, ``repr()`` or ``PYTHONHASHSEED``).

Canonical encoding
==================

Every value is encoded as one self-delimiting *node*; its tag (one ASCII byte) fixes its form::

    leaf       = tag + u32le(len(head)) + head                           tags N T F i f s b y D a m e u c
    container  = tag + u32le(n) + child_1 + ... + child_n                tags l t d S z
    composite  = tag + u32le(len(head)) + head + u32le(n) + children     tags E C P

where each child is itself a node, so the encoding is unambiguous. A value nested more than
:data:`MAX_DEPTH` levels deep (the root is depth 0; the children of a node at depth ``d`` are at
``d + 1``), which includes every self-containing value, raises :class:`UnhashableValueError`; so
does a head or a child count that does not fit in 32 bits.

====================  ====  ==========================================  ==========================
value                 tag   head                                        children
====================  ====  ==========================================  ==========================
``None``              N     empty                                       none
``True`` / ``False``  T/F   empty                                       none
int (any size)        i     ASCII of ``format(v, "x")`` (``-ff``)       none
float                 f     8 bytes, IEEE 754 binary64 big-endian;      none
                            every NaN is ``7ff8000000000000``;
                            ``-0.0`` keeps its sign bit
str                   s     UTF-8 (``surrogatepass`` for lone           none
                            surrogates)
bytes                 b     the bytes                                   none
bytearray             y     the bytes                                   none
list                  l     --                                          the items, in order
tuple                 t     --                                          the items, in order
dict                  d     --                                          ``2n`` nodes: the pairs
                                                                        ``node(k) + node(v)``
                                                                        sorted bytewise
set                   S     --                                          the member nodes sorted
frozenset             z     --                                          the member nodes sorted
datetime              D     ASCII ``v.isoformat()``                     none
date                  a     ASCII ``v.isoformat()``                     none
time                  m     ASCII ``v.isoformat()``                     none
timedelta             e     ASCII ``"{days},{seconds},{microseconds}"``  none
UUID                  u     the 16 bytes ``v.bytes``                    none
Decimal               c     ASCII ``str(v)``                            none
Enum member           E     UTF-8 ``"{module}.{qualname}"`` of its      ``(v.value,)``
                            class
dataclass instance    C     UTF-8 class name as for Enum                ``name_1, value_1, ...``
                                                                        over ``dataclasses.fields``
                                                                        in declaration order
pydantic model        P     UTF-8 class name as for Enum                ``name, value`` pairs over
                                                                        ``model_fields`` in order,
                                                                        then extra fields sorted
                                                                        by name
====================  ====  ==========================================  ==========================

For a dict the child count ``n`` is ``2 * len(dict)``. So ``1``, ``1.0``, ``True`` and ``"1"`` all
differ, a list differs from a tuple, and a dict, set or frozenset is independent of its order.
Subclasses of the builtin types (other than Enum members) are encoded as their builtin base
(``str.__str__(v)``, ``int.__int__(v)``, ``float.__float__(v)``, ``list(v)``, ``tuple(v)``,
``dict(v)``, ``set(v)``, ``frozenset(v)``, ``bytes(memoryview(v))``). Anything else raises
:class:`UnhashableValueError` naming the type -- never a ``repr`` that may contain an address.

Digests
=======

The digest is BLAKE2b with a 256-bit output (``hashlib.blake2b(data, digest_size=32)``: no key,
salt or personalization), chosen over SHA-256 because it is about twice as fast in software on
these short inputs (CPUs without SHA extensions) with the same 128-bit collision resistance.

- ``make_key(qualname, args, kwargs)`` is ``blake2b(b"cnk1" + node(qualname) + node(args) +
  node(kwargs), digest_size=32).hexdigest()``; ``args`` (a tuple, encoded as a tuple even if it is
  a subclass) and ``kwargs`` (a dict) are encoded at depth 0.
- ``hash_value(value)`` is ``blake2b(b"cnv1" + node(value), digest_size=32).hexdigest()``.

Both return 64 lowercase hex characters. (Format history: before BLAKE2b the digest was SHA-256;
keys are not persisted across versions, so nothing migrates.) orjson is not used: its output cannot tell a tuple from
a list or NaN from ``None``, and cannot carry ints beyond 64 bits, sets or non-str keys.

The compiled twin encodes the builtin types itself and calls :func:`_reduce` (this module) for
every other value, so the rules for the rarer types live in one place.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import struct
import sys
import uuid
from decimal import Decimal
from typing import Any, Final

__all__ = ["MAX_DEPTH", "UnhashableValueError", "hash_value", "make_key"]

#: Deepest nesting accepted (the root value is depth 0).
MAX_DEPTH: Final = 128

_KEY_DOMAIN: Final = b"cnk1"
_VALUE_DOMAIN: Final = b"cnv1"
_NAN: Final = bytes.fromhex("7ff8000000000000")
_LEAF_TAGS: Final = frozenset(b"NTFifsbyDamecu")
_U32_MAX: Final = 0xFFFFFFFF
_pack_u32 = struct.Struct("<I").pack
_pack_double = struct.Struct(">d").pack
_blake2b = hashlib.blake2b
_NONE_NODE: Final = b"N" + _pack_u32(0)
_TRUE_NODE: Final = b"T" + _pack_u32(0)
_FALSE_NODE: Final = b"F" + _pack_u32(0)
_FLOAT_PREFIX: Final = b"f" + _pack_u32(8)


class UnhashableValueError(TypeError):
    """A value cannot be hashed stably (unsupported type, or nested too deeply / cyclic)."""


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _unsupported(value: Any) -> UnhashableValueError:
    return UnhashableValueError(
        f"cannot hash a value of type {_type_name(value)} stably; use str, bytes, int, float, "
        "bool, None, list, tuple, dict, set, frozenset, datetime, date, time, timedelta, UUID, "
        "Decimal, Enum, a dataclass or a pydantic model"
    )


def _too_deep() -> UnhashableValueError:
    return UnhashableValueError(
        f"cannot hash a value nested more than {MAX_DEPTH} levels deep (or one that contains itself)"
    )


def _too_large() -> UnhashableValueError:
    return UnhashableValueError(
        "cannot hash a value with more than 4294967295 bytes or items in one piece"
    )


def _u32(n: int) -> bytes:
    if n > _U32_MAX:
        raise _too_large()
    return _pack_u32(n)


def _leaf(tag: bytes, head: bytes) -> bytes:
    return tag + _u32(len(head)) + head


def _class_name(obj: Any) -> bytes:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}".encode("utf-8", "surrogatepass")


def _pydantic_base() -> Any:
    """Return ``pydantic.BaseModel`` if pydantic is imported (else None): no import here."""
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _reduce(value: Any) -> tuple[bytes | None, bytes, tuple[Any, ...]]:
    """Reduce a value that is not of an exact builtin type to ``(tag, head, children)``.

    A ``tag`` of ``None`` means "encode ``children[0]`` instead, at the same depth": it is the
    exact builtin value a subclass instance stands for. Raises :class:`UnhashableValueError` for
    unsupported types. Shared by both implementations (the compiled twin calls it).
    """
    if isinstance(value, enum.Enum):
        return b"E", _class_name(value), (value.value,)
    if isinstance(value, _dt.datetime):
        return b"D", value.isoformat().encode("ascii"), ()
    if isinstance(value, _dt.date):
        return b"a", value.isoformat().encode("ascii"), ()
    if isinstance(value, _dt.time):
        return b"m", value.isoformat().encode("ascii"), ()
    if isinstance(value, _dt.timedelta):
        return b"e", f"{value.days},{value.seconds},{value.microseconds}".encode("ascii"), ()
    if isinstance(value, uuid.UUID):
        return b"u", value.bytes, ()
    if isinstance(value, Decimal):
        return b"c", str(value).encode("ascii"), ()
    if isinstance(value, bytearray):
        return b"y", bytes(value), ()
    # subclasses of builtin types stand for their builtin base
    if isinstance(value, str):
        return None, b"", (str.__str__(value),)
    if isinstance(value, bool):  # pragma: no cover - bool cannot be subclassed
        return None, b"", (bool(value),)
    if isinstance(value, int):
        return None, b"", (int.__int__(value),)
    if isinstance(value, float):
        return None, b"", (float.__float__(value),)
    if isinstance(value, bytes):
        return None, b"", (bytes(memoryview(value)),)
    if isinstance(value, list):
        return None, b"", (list(value),)
    if isinstance(value, tuple):
        return None, b"", (tuple(value),)
    if isinstance(value, dict):
        return None, b"", (dict(value),)
    if isinstance(value, frozenset):
        return None, b"", (frozenset(value),)
    if isinstance(value, set):
        return None, b"", (set(value),)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        children: list[Any] = []
        for field in dataclasses.fields(value):
            children.append(field.name)
            children.append(getattr(value, field.name))
        return b"C", _class_name(value), tuple(children)
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        children = []
        for name in type(value).model_fields:
            children.append(name)
            children.append(getattr(value, name))
        extra = value.__pydantic_extra__ or {}
        for name in sorted(extra):
            children.append(name)
            children.append(extra[name])
        return b"P", _class_name(value), tuple(children)
    raise _unsupported(value)


def _container(tag: bytes, children: list[bytes]) -> bytes:
    return tag + _u32(len(children)) + b"".join(children)


def _encode(value: Any, depth: int) -> bytes:
    """Return the canonical node of ``value`` at nesting ``depth`` (see the module docstring)."""
    if depth > MAX_DEPTH:
        raise _too_deep()
    kind = type(value)
    # the common leaves inlined (a str or bytes head over 4 GiB is caught by _u32)
    if kind is str:
        try:
            head = value.encode()
        except UnicodeEncodeError:
            head = value.encode("utf-8", "surrogatepass")
        return b"s" + _u32(len(head)) + head
    if kind is int:
        head = b"%x" % value
        return b"i" + _pack_u32(len(head)) + head
    if value is None:
        return _NONE_NODE
    if kind is bool:
        return _TRUE_NODE if value else _FALSE_NODE
    if kind is float:
        return _FLOAT_PREFIX + (_NAN if value != value else _pack_double(value))
    if kind is bytes:
        return b"b" + _u32(len(value)) + value
    if kind is list or kind is tuple:
        inner = depth + 1
        return _container(b"l" if kind is list else b"t", [_encode(v, inner) for v in value])
    if kind is dict:
        inner = depth + 1
        pairs = sorted([_encode(k, inner) + _encode(v, inner) for k, v in value.items()])
        return b"d" + _u32(2 * len(pairs)) + b"".join(pairs)
    if kind is set or kind is frozenset:
        inner = depth + 1
        members = sorted([_encode(v, inner) for v in value])
        return _container(b"S" if kind is set else b"z", members)
    tag, head, children = _reduce(value)
    if tag is None:
        return _encode(children[0], depth)
    if tag[0] in _LEAF_TAGS:
        return _leaf(tag, head)
    inner = depth + 1
    encoded = [_encode(v, inner) for v in children]
    return tag + _u32(len(head)) + head + _u32(len(encoded)) + b"".join(encoded)


def make_key(qualname: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Return the stable hex digest (64 chars) of a call ``qualname(*args, **kwargs)``.

    Same in every process and run; independent of the order of ``kwargs``; distinguishes ``1``,
    ``1.0``, ``True`` and ``"1"``. Raises :class:`TypeError` when ``qualname`` is not a str,
    ``args`` not a tuple or ``kwargs`` not a dict, and :class:`UnhashableValueError` (a
    ``TypeError``) for a value that cannot be hashed stably.
    """
    if not isinstance(qualname, str):
        raise TypeError(f"qualname must be a str, not {_type_name(qualname)}")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple, not {_type_name(args)}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {_type_name(kwargs)}")
    data = (
        _KEY_DOMAIN
        + _encode(qualname, 0)
        + _encode(args if type(args) is tuple else tuple(args), 0)
        + _encode(kwargs if type(kwargs) is dict else dict(kwargs), 0)
    )
    return _blake2b(data, digest_size=32).hexdigest()


def hash_value(value: Any) -> str:
    """Return the stable hex digest (64 chars) of one value: a strong ETag / content hash.

    Equal for values with the same canonical encoding, in every process and run. Raises
    :class:`UnhashableValueError` (a ``TypeError``) for a value that cannot be hashed stably.
    """
    return _blake2b(_VALUE_DOMAIN + _encode(value, 0), digest_size=32).hexdigest()
