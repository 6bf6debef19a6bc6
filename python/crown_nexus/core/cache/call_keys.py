"""How a decorated call names its cache entries: the call's digest and ``{arg}`` templates.

Owns the rules shared by ``cached``, ``cache_aside``, ``invalidate_cache`` and ``memoize``:

- a call's digest (``make_key(name, args, kwargs)``, the ``cache_keys`` hot path), with typed
  errors: :class:`~crown_nexus.core.cache.exceptions.CacheKeyException` for an argument that
  cannot be hashed stably;
- methods: the instance (or, for a ``classmethod``, the class) is part of the digest, named by
  ``__cache_key__`` or by its field values, else
  :class:`~crown_nexus.core.cache.exceptions.CacheConfigurationException`;
- :class:`Templates`: tag, key and pattern strings with ``{arg}`` placeholders filled from a
  call's arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from crown_nexus import accel
from crown_nexus.core.cache.exceptions import (
    CacheConfigurationException,
    CacheException,
    CacheKeyException,
)

__all__ = ["CLS", "SELF", "Digest", "MakeKey", "Templates", "bound_kind", "digester", "key_error"]

MakeKey = Callable[[str, tuple[Any, ...], dict[str, Any]], str]
Digest = Callable[[tuple[Any, ...], dict[str, Any]], str]

SELF, CLS = 1, 2
_NO_HOOK: Any = object()
_hash_value = accel.get("cache_keys").hash_value


def bound_kind(func: Callable[..., Any]) -> int:
    """``SELF`` / ``CLS`` when the first parameter is named ``self`` / ``cls``, else 0."""
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return 0
    if not params:
        return 0
    return {"self": SELF, "cls": CLS}.get(params[0], 0)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _owner_part(first: Any) -> Any:
    """What identifies a method's instance (or a classmethod's class) inside its cache key.

    A class: its qualified name. An instance with ``__cache_key__``: ``(class name, value)``
    (called when it is a method). Otherwise the instance itself, hashed by value (dataclass,
    pydantic model); :func:`_owner_error` explains when that is impossible.
    """
    if isinstance(first, type):
        return ("cls", _class_name(first))
    hook = getattr(first, "__cache_key__", _NO_HOOK)
    if hook is _NO_HOOK:
        return first
    value = hook() if callable(hook) else hook
    return ("self", _class_name(type(first)), value)


def _owner_error(name: str, first: Any, owner: Any, exc: TypeError) -> CacheException | None:
    """A CacheConfigurationException when ``owner`` (not an argument) is what cannot be hashed."""
    try:
        _hash_value(owner)
    except TypeError:
        cls = first if isinstance(first, type) else type(first)
        if owner is first:
            message = (
                f"{name} is cached per instance, but a {_class_name(cls)} has no "
                "__cache_key__ and is not hashable by value: define __cache_key__ (a method, "
                "property or attribute naming the instance, e.g. its tenant) or use "
                "cache_aside(key_func=...)"
            )
        else:
            message = (
                f"{_class_name(cls)}.__cache_key__ returned a value that cannot be hashed "
                f"for a cache key ({exc})"
            )
        return CacheConfigurationException(
            message, details={"function": name, "class": _class_name(cls)}
        )
    return None


def key_error(exc: TypeError) -> CacheKeyException:
    """The typed error for an argument that cannot be hashed stably."""
    return CacheKeyException(str(exc), original_exception=exc)


def digester(name: str, bound: int, make_key: MakeKey) -> Digest:
    """``digest(args, kwargs)``: the stable digest of a call of ``name``, with typed errors.

    For a method (``bound``, see :func:`bound_kind`) the first argument is replaced by what
    identifies the instance. Raises :class:`CacheKeyException` for an argument that cannot be
    hashed and :class:`CacheConfigurationException` when the instance cannot be identified.
    """

    def digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not (bound and args):
            try:
                plain: str = make_key(name, args, kwargs)
            except TypeError as exc:
                raise key_error(exc) from exc
            return plain
        first = args[0]
        owner = _owner_part(first)
        try:
            keyed: str = make_key(name, (owner, *args[1:]), kwargs)
        except TypeError as exc:
            error = _owner_error(name, first, owner, exc)
            if error is not None:
                raise error from exc
            raise key_error(exc) from exc
        return keyed

    return digest


class Templates:
    """Strings with ``{arg}`` placeholders filled from a call's bound arguments.

    ``spec`` is ``None`` (nothing), a string or strings (placeholders allowed), or a callable of
    the call's arguments returning a string or strings.
    """

    def __init__(self, func: Callable[..., Any], spec: Any) -> None:
        self.func = func
        self.spec = spec
        self.sig: inspect.Signature | None = None
        if spec is None or callable(spec):
            self.static: tuple[str, ...] | None = None
        else:
            items = (spec,) if isinstance(spec, str) else tuple(spec)
            self.static = None if any("{" in s for s in items) else items
            self.items = items

    def resolve(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The strings for one call."""
        if self.spec is None:
            return ()
        if callable(self.spec):
            out = self.spec(*args, **kwargs)
            return (out,) if isinstance(out, str) else tuple(out or ())
        if self.static is not None:
            return self.static
        if self.sig is None:
            self.sig = inspect.signature(self.func)
        bound = self.sig.bind_partial(*args, **kwargs)
        bound.apply_defaults()
        return tuple(s.format(**bound.arguments) for s in self.items)
