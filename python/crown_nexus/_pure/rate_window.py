"""In-memory rate-limit windows, per key, with the time passed in (pure Python reference).

Three algorithms share one interface; ``crown_nexus._cython.rate_window`` is the compiled twin and
must behave identically (same results, same exceptions, same messages):

* :class:`SlidingWindowCounter` -- two fixed buckets, the previous one weighted by how much of it
  still overlaps the sliding window (the default algorithm; O(1) memory per key).
* :class:`SlidingLog` -- exact: one timestamp per counted request (O(limit) memory per key).
* :class:`GCRA` -- generic cell rate algorithm, i.e. a token bucket: sustained rate
  ``limit / window``, bucket depth ``burst`` (default ``limit``).

Every method taking ``now`` accepts seconds as ``int`` or ``float`` from any clock (monotonic or
wall clock, the caller's choice, but one clock per instance).

Canonical arithmetic (both twins follow it exactly, so no float rounding can differ):

* ``now`` and ``window`` are converted to whole microseconds: ``us(x) = floor(x * 1e6 + 0.5)``.
  All state and all comparisons are integers; a result ``reset_after`` is ``reset_us / 1e6``.
* Time never runs backwards per key: a key's effective time is ``max(now, last time seen)``.
* Counter: bucket ``b = floor(now_us / window_us)``, ``e = now_us - b * window_us`` (elapsed in
  bucket). ``used = curr + (prev * (window_us - e)) // window_us`` where ``prev`` counts bucket
  ``b - 1`` and ``curr`` bucket ``b``. A hit is allowed iff ``used + cost <= limit``.
* Log: a stamp ``s`` counts at ``now`` iff ``s + window_us > now_us``. Allowed iff
  ``count + cost <= limit``; an allowed hit records ``cost`` stamps at ``now``.
* GCRA: the level ``L`` is kept in units where one request is ``window_us`` units and the bucket
  drains ``limit`` units per microsecond; capacity is ``burst * window_us``. Allowed iff
  ``L_now + cost * window_us <= capacity``; ``count = ceil(L / window_us)``.

Results: ``hit`` and ``peek`` return ``(allowed, count, reset_after)``:

* ``count`` -- requests counted in the current window after this hit (a denied hit is not counted;
  for GCRA the equivalent used capacity, rounded up).
* ``reset_after`` -- when denied: seconds until a hit of the same cost would be admitted, if nothing
  else is counted meanwhile (always > 0). When allowed: seconds until the count drops back to zero
  (> 0 after an allowed hit; ``0.0`` only from ``peek`` on a key with nothing counted).

Exactness: with limit ``N`` exactly ``N`` unit hits are allowed in a fresh window (for the log, in
any window of length ``window``; for GCRA, ``burst`` at once then one per ``window / limit``).

Memory is bounded: at most ``max_keys`` keys are tracked. Inserting a new key first drops the
least-recently-used key if it is idle, then evicts least-recently-used keys while full. ``sweep``
drops every idle key (a key is idle when its state no longer affects any result).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

_perf_counter = time.perf_counter

__all__ = [
    "GCRA",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "CheckRateLimit",
    "SlidingLog",
    "SlidingWindowCounter",
    "UnitCheck",
]

#: largest accepted ``limit``, ``burst`` and ``max_keys``
MAX_LIMIT: Final = 1_000_000_000
#: largest accepted ``window``, in seconds
MAX_WINDOW: Final = 1_000_000_000.0
#: largest accepted ``abs(now)``, in seconds
MAX_TIME: Final = 1e12

Result = tuple[bool, int, float]


def _check_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or value > MAX_LIMIT:
        raise ValueError(f"{name} must be between 1 and {MAX_LIMIT}, got {value}")
    return int(value)


def _check_window(value: object) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"window must be an int or float, got {type(value).__name__}")
    w = float(value)
    if not math.isfinite(w) or w <= 0.0 or w > MAX_WINDOW:
        raise ValueError(f"window must be a positive number of seconds up to {MAX_WINDOW:g}")
    w_us = math.floor(w * 1e6 + 0.5)
    if w_us < 1:
        raise ValueError("window must be at least one microsecond")
    return w_us


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")


def _to_us(now: object) -> int:
    if not isinstance(now, (int, float)) or isinstance(now, bool):
        raise TypeError(f"now must be an int or float, got {type(now).__name__}")
    t = float(now)
    if not math.isfinite(t) or abs(t) > MAX_TIME:
        raise ValueError(f"now must be a finite number of seconds with abs(now) <= {MAX_TIME:g}")
    return math.floor(t * 1e6 + 0.5)


def _check_cost(cost: object, capacity: int) -> int:
    if not isinstance(cost, int) or isinstance(cost, bool):
        raise TypeError(f"cost must be an int, got {type(cost).__name__}")
    if cost < 1:
        raise ValueError(f"cost must be >= 1, got {cost}")
    if cost > capacity:
        raise ValueError(f"cost {cost} exceeds the capacity {capacity}; it could never be admitted")
    return int(cost)


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


class _Locked:
    """``hit``/``peek``/``sweep`` run under a lock, so threads see each call as atomic (as the
    compiled twin's calls are under the GIL)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def hit(self, key: str, now: float, cost: int = 1) -> Result:
        """Count a request of ``cost`` for ``key`` at ``now`` if it fits; see the module docs."""
        with self._lock:
            return self._hit(key, now, cost)  # type: ignore[attr-defined, no-any-return]

    def peek(self, key: str, now: float) -> Result:
        """Return what a unit ``hit`` would return, without counting or touching recency."""
        with self._lock:
            return self._peek(key, now)  # type: ignore[attr-defined, no-any-return]

    def sweep(self, now: float) -> int:
        """Drop every key that is idle at ``now``; return how many were dropped."""
        with self._lock:
            return self._sweep(now)

    # Key bookkeeping shared by every window: subclasses hold ``_entries`` (an OrderedDict in
    # least-recently-used order), ``_max_keys`` and ``_idle(state, now_us)``.
    _entries: OrderedDict[str, Any]
    _max_keys: int

    def _make_room(self, now: int) -> None:
        entries = self._entries
        if entries:
            first = next(iter(entries))
            if self._idle(entries[first], now):  # type: ignore[attr-defined]
                del entries[first]
        while len(entries) >= self._max_keys:
            entries.popitem(last=False)

    def reset(self, key: str) -> None:
        """Forget ``key`` (no error when it is not tracked)."""
        _check_key(key)
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every key."""
        self._entries.clear()

    def _sweep(self, now: float) -> int:
        t = _to_us(now)
        idle = [k for k, st in self._entries.items() if self._idle(st, t)]  # type: ignore[attr-defined]
        for k in idle:
            del self._entries[k]
        return len(idle)


class SlidingWindowCounter(_Locked):
    """Sliding-window counter: two fixed buckets, the previous one weighted by its overlap.

    ``limit`` requests per ``window`` seconds, at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    __slots__ = ("_entries", "_limit", "_max_keys", "_w", "_window")

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        super().__init__()
        self._limit: int = _check_int(limit, "limit")
        self._w: int = _check_window(window)
        self._window: float = float(window)
        self._max_keys: int = _check_int(max_keys, "max_keys")
        # key -> [bucket index, prev count, curr count, last seen us]
        self._entries: OrderedDict[str, list[int]] = OrderedDict()

    @property
    def limit(self) -> int:
        """Requests allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self._window

    @property
    def max_keys(self) -> int:
        """Most keys tracked at once."""
        return self._max_keys

    def __len__(self) -> int:
        """Number of tracked keys."""
        return len(self._entries)

    def _view(self, st: list[int], now: int) -> tuple[int, int, int, int]:
        """Return ``(now, bucket, prev, curr)`` as seen at ``now`` (effective), without mutating."""
        if now < st[3]:
            now = st[3]
        b = now // self._w
        if b == st[0]:
            return now, b, st[1], st[2]
        if b == st[0] + 1:
            return now, b, st[2], 0
        return now, b, 0, 0

    def _idle(self, st: list[int], now: int) -> bool:
        now, b, prev, curr = self._view(st, now)
        return curr == 0 and (prev * (self._w - (now - b * self._w))) // self._w == 0

    def _zero_after(self, b: int, prev: int, curr: int, now: int) -> int:
        w = self._w
        start = b * w
        if curr > 0:
            return start + w + (w * (curr - 1)) // curr + 1 - now
        if prev > 0:
            t = start + (w * (prev - 1)) // prev + 1 - now
            return t if t > 0 else 0
        return 0

    def _decide(self, b: int, prev: int, curr: int, now: int, cost: int) -> tuple[bool, int, int]:
        """Return ``(allowed, used, reset_us)`` for a hit of ``cost``; ``used`` excludes it."""
        w = self._w
        start = b * w
        e = now - start
        used = curr + (prev * (w - e)) // w
        if used + cost <= self._limit:
            return True, used, 0
        r = self._limit - cost - curr
        if r >= 0:
            reset = start + (w * (prev - r - 1)) // prev + 1 - now
        else:
            r = self._limit - cost
            reset = start + w + (w * (curr - r - 1)) // curr + 1 - now
        return False, used, reset

    def _hit(self, key: str, now: float, cost: int = 1) -> Result:
        _check_key(key)
        t = _to_us(now)
        cost = _check_cost(cost, self._limit)
        entries = self._entries
        st = entries.get(key)
        if st is None:
            self._make_room(t)
            st = [t // self._w, 0, 0, t]
            entries[key] = st
        else:
            entries.move_to_end(key)
        t, b, prev, curr = self._view(st, t)
        allowed, used, reset = self._decide(b, prev, curr, t, cost)
        st[0], st[1], st[2], st[3] = b, prev, curr, t
        if not allowed:
            return False, used, reset / 1e6
        st[2] = curr + cost
        return True, used + cost, self._zero_after(b, prev, curr + cost, t) / 1e6

    def _peek(self, key: str, now: float) -> Result:
        _check_key(key)
        t = _to_us(now)
        st = self._entries.get(key)
        if st is None:
            return True, 0, 0.0
        t, b, prev, curr = self._view(st, t)
        allowed, used, reset = self._decide(b, prev, curr, t, 1)
        if not allowed:
            return False, used, reset / 1e6
        return True, used, self._zero_after(b, prev, curr, t) / 1e6


class SlidingLog(_Locked):
    """Sliding log: exact, one timestamp per counted request.

    ``limit`` requests in any ``window`` seconds, at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    __slots__ = ("_entries", "_limit", "_max_keys", "_w", "_window")

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000) -> None:
        super().__init__()
        self._limit: int = _check_int(limit, "limit")
        self._w: int = _check_window(window)
        self._window: float = float(window)
        self._max_keys: int = _check_int(max_keys, "max_keys")
        # key -> [last seen us, deque of stamps (non-decreasing)]
        self._entries: OrderedDict[str, list] = OrderedDict()  # type: ignore[type-arg]

    @property
    def limit(self) -> int:
        """Requests allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self._window

    @property
    def max_keys(self) -> int:
        """Most keys tracked at once."""
        return self._max_keys

    def __len__(self) -> int:
        """Number of tracked keys."""
        return len(self._entries)

    def _idle(self, st: list, now: int) -> bool:  # type: ignore[type-arg]
        if now < st[0]:
            now = st[0]
        stamps: deque[int] = st[1]
        return not stamps or stamps[-1] + self._w <= now

    def _first_active(self, stamps: deque[int], now: int) -> int:
        """Index of the oldest stamp still counted at ``now``."""
        w = self._w
        i = 0
        n = len(stamps)
        while i < n and stamps[i] + w <= now:
            i += 1
        return i

    def _hit(self, key: str, now: float, cost: int = 1) -> Result:
        _check_key(key)
        t = _to_us(now)
        cost = _check_cost(cost, self._limit)
        entries = self._entries
        st = entries.get(key)
        if st is None:
            self._make_room(t)
            st = [t, deque()]
            entries[key] = st
        else:
            entries.move_to_end(key)
        if t < st[0]:
            t = st[0]
        st[0] = t
        stamps: deque[int] = st[1]
        w = self._w
        while stamps and stamps[0] + w <= t:
            stamps.popleft()
        count = len(stamps)
        if count + cost > self._limit:
            k = count + cost - self._limit
            return False, count, (stamps[k - 1] + w - t) / 1e6
        stamps.extend([t] * cost)
        return True, count + cost, w / 1e6

    def _peek(self, key: str, now: float) -> Result:
        _check_key(key)
        t = _to_us(now)
        st = self._entries.get(key)
        if st is None:
            return True, 0, 0.0
        if t < st[0]:
            t = st[0]
        stamps: deque[int] = st[1]
        w = self._w
        i = self._first_active(stamps, t)
        count = len(stamps) - i
        if count + 1 > self._limit:
            return False, count, (stamps[i] + w - t) / 1e6
        if count == 0:
            return True, 0, 0.0
        return True, count, (stamps[-1] + w - t) / 1e6


class GCRA(_Locked):
    """GCRA / token bucket: sustained ``limit`` per ``window`` seconds, bucket depth ``burst``.

    ``burst`` defaults to ``limit``; at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    __slots__ = ("_burst", "_cap", "_entries", "_limit", "_max_keys", "_w", "_window")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        burst: int | None = None,
        max_keys: int = 100_000,
    ) -> None:
        super().__init__()
        self._limit: int = _check_int(limit, "limit")
        self._w: int = _check_window(window)
        self._window: float = float(window)
        self._burst: int = self._limit if burst is None else _check_int(burst, "burst")
        self._max_keys: int = _check_int(max_keys, "max_keys")
        self._cap: int = self._burst * self._w
        # key -> [level units, last seen us]
        self._entries: OrderedDict[str, list[int]] = OrderedDict()

    @property
    def burst(self) -> int:
        """Bucket depth: most requests admitted at once."""
        return self._burst

    @property
    def limit(self) -> int:
        """Requests allowed per window."""
        return self._limit

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self._window

    @property
    def max_keys(self) -> int:
        """Most keys tracked at once."""
        return self._max_keys

    def __len__(self) -> int:
        """Number of tracked keys."""
        return len(self._entries)

    def _level(self, st: list[int], now: int) -> tuple[int, int]:
        """Return ``(effective now, level at now)`` without mutating."""
        if now < st[1]:
            now = st[1]
        level = st[0] - (now - st[1]) * self._limit
        return now, level if level > 0 else 0

    def _idle(self, st: list[int], now: int) -> bool:
        return self._level(st, now)[1] == 0

    def _hit(self, key: str, now: float, cost: int = 1) -> Result:
        _check_key(key)
        t = _to_us(now)
        cost = _check_cost(cost, self._burst)
        entries = self._entries
        st = entries.get(key)
        if st is None:
            self._make_room(t)
            st = [0, t]
            entries[key] = st
        else:
            entries.move_to_end(key)
        t, level = self._level(st, t)
        st[0], st[1] = level, t
        w = self._w
        new = level + cost * w
        if new > self._cap:
            return False, _ceil_div(level, w), _ceil_div(new - self._cap, self._limit) / 1e6
        st[0] = new
        return True, _ceil_div(new, w), _ceil_div(new, self._limit) / 1e6

    def _peek(self, key: str, now: float) -> Result:
        _check_key(key)
        t = _to_us(now)
        st = self._entries.get(key)
        if st is None:
            return True, 0, 0.0
        t, level = self._level(st, t)
        w = self._w
        count = _ceil_div(level, w)
        new = level + w
        if new > self._cap:
            return False, count, _ceil_div(new - self._cap, self._limit) / 1e6
        return True, count, _ceil_div(level, self._limit) / 1e6


# ------------------------------------------------------------------ metered unit checks

#: the guide's answer: ``(is_limited, count, reset_seconds)``
GuideAnswer = tuple[bool, int, int]
_ceil = math.ceil
_MISSING = object()


def _get_value(var: ContextVar[Any]) -> Any:
    """The variable's value, else its default, else ``None``."""
    try:
        return var.get()
    except LookupError:
        return None


def _callable(value: Any, name: str) -> Any:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def _one_item_list(value: Any, name: str) -> list[Any]:
    if type(value) is not list or len(value) != 1:
        raise TypeError(f"{name} must be a one-item list, got {type(value).__name__}")
    return value


class UnitCheck:
    """One unit check of one window, metered: the memory backend's synchronous checker.

    ``UnitCheck(window, clock, sweep, sweep_due, sample, sample_every, cell, flush_every, noted,
    refused)``. ``window`` is a window of this module; ``clock()`` gives the time, ``sweep(now)``
    is called first when ``now >= sweep_due[0]``. ``sample`` is the service's duration-sampling
    position ``[n]`` (shared with ``RateLimitingService.check``): at 0 the check is declined so
    the service times it; otherwise it advances, wrapping to 0 at ``sample_every``. An allowed
    check adds one to ``cell[0]`` and calls ``noted(c)`` when it reaches 1 or ``flush_every``;
    a refused one calls ``refused(count, reset_after)`` (the service records it at once).
    ``timed``, when given, takes the sampled check too: it runs here, timed with
    ``time.perf_counter`` (clock, sweep, window and metering), and ``timed(seconds)`` is called
    after it (the service observes the duration); without it that check is declined.

    ``check(key)`` returns the window's ``(allowed, count, reset_after)``; ``guide(key)`` the
    guide's ``(is_limited, count, reset_seconds)`` (whole seconds, ``ceil(reset - 1e-9)``, >= 1
    when limited, 0 when allowed with nothing left to reset). Both return ``None`` -- counting
    nothing -- when the check is declined: a key that is not exactly a ``str``, or the sampled
    position without ``timed``. The compiled twin ``crown_nexus._cython.rate_window.UnitCheck``
    behaves identically.
    """

    __slots__ = (
        "_cell", "_clock", "_flush_every", "_hit", "_noted", "_refused", "_sample",
        "_sample_every", "_sweep", "_sweep_due", "_timed", "_window",
    )

    def __init__(
        self,
        window: SlidingWindowCounter | SlidingLog | GCRA,
        clock: Callable[[], float],
        sweep: Callable[[float], Any],
        sweep_due: list[float],
        sample: list[int],
        sample_every: int,
        cell: list[int],
        flush_every: int,
        noted: Callable[[int], Any],
        refused: Callable[[int, float], Any],
        timed: Callable[[float], Any] | None = None,
    ) -> None:
        if type(window) not in (SlidingWindowCounter, SlidingLog, GCRA):
            raise TypeError(
                f"window must be a SlidingWindowCounter, SlidingLog or GCRA of this module, "
                f"got {type(window).__name__}"
            )
        self._window = window
        self._hit = window.hit
        self._clock = _callable(clock, "clock")
        self._sweep = _callable(sweep, "sweep")
        self._sweep_due = _one_item_list(sweep_due, "sweep_due")
        self._sample = _one_item_list(sample, "sample")
        self._sample_every = _check_int(sample_every, "sample_every")
        self._cell = _one_item_list(cell, "cell")
        self._flush_every = _check_int(flush_every, "flush_every")
        self._noted = _callable(noted, "noted")
        self._refused = _callable(refused, "refused")
        self._timed = None if timed is None else _callable(timed, "timed")

    @property
    def window(self) -> SlidingWindowCounter | SlidingLog | GCRA:
        """The window this check counts on."""
        return self._window

    def check(self, key: str) -> Result | None:
        """Count one request for ``key``: the window's ``(allowed, count, reset_after)``, or
        ``None`` (nothing counted) when the service must check it instead."""
        sample = self._sample
        checks = sample[0]
        if checks == 0:
            timed = self._timed
            if timed is None or type(key) is not str:
                return None
            sample[0] = 1 if 1 < self._sample_every else 0
            started = _perf_counter()
            answer = self._count(key)
            timed(_perf_counter() - started)
            return answer
        if type(key) is not str:
            return None
        checks += 1
        sample[0] = checks if checks < self._sample_every else 0
        return self._count(key)

    def _count(self, key: str) -> Result:
        """Sweep when due, count in the window, meter the answer."""
        now = self._clock()
        if now >= self._sweep_due[0]:
            self._sweep(now)
        answer: Result = self._hit(key, now, 1)
        if answer[0]:
            cell = self._cell
            c = cell[0] + 1
            cell[0] = c
            if c == 1 or c >= self._flush_every:
                self._noted(c)
            return answer
        self._refused(answer[1], answer[2])
        return answer

    __call__ = check

    def guide(self, key: str) -> GuideAnswer | None:
        """Count one request for ``key``: the guide's ``(is_limited, count, reset_seconds)``, or
        ``None`` (nothing counted) when the service must check it instead."""
        answer = self.check(key)
        if answer is None:
            return None
        allowed, count, reset = answer
        if allowed:
            return False, count, (_ceil(reset - 1e-9) if reset > 1e-9 else 0)
        whole = _ceil(reset - 1e-9)
        return True, count, (whole if whole > 1 else 1)


class CheckRateLimit:
    """The fast path of ``check_rate_limit(key, max_requests, window_seconds, algorithm)``.

    ``CheckRateLimit(service, rules, default_algorithm, registry=None)``: ``service()`` returns
    the current rate limiting service; ``rules`` is ``{algorithm: {max_requests:
    {window_seconds: entry}}}`` where ``entry`` is ``[rule, service, checker]`` (the validated
    rule, and the checker that service built for it). ``fast(key, max_requests, window_seconds,
    algorithm)`` answers the guide's ``(is_limited, count, reset_seconds)`` through
    ``checker.guide(key)`` when the limits are exact ``int`` s with a cached entry built for the
    current service. When that entry's checker declines (or it has none: another backend) it
    returns the ``entry`` itself: the caller awaits ``entry[1].check(key, entry[0])``. Any
    other case is a miss: ``None``, and the caller takes the full path. A hash of
    ``algorithm`` that raises ``TypeError`` is a miss.

    ``registry``, when given, is ``(name, container_var, resolving_var)`` of the dependency
    manager that ``service`` is the getter of, so the common case is answered without calling
    it: the current container's registry (``container_var``) with no overrides of its own or
    inherited, ``name`` built, and nothing being resolved (``resolving_var`` empty) -- exactly
    the case in which the getter returns ``registry._instances[name]``. Any other state calls
    ``service()``. The compiled twin behaves identically.
    """

    __slots__ = (
        "_container_var", "_default", "_default_algorithm", "_dicts", "_name", "_registry",
        "_resolving_var", "_rules", "_service",
    )

    def __init__(
        self,
        service: Callable[[], Any],
        rules: dict[Any, Any],
        default_algorithm: Any,
        registry: tuple[str, ContextVar[Any], ContextVar[Any]] | None = None,
    ) -> None:
        self._service = _callable(service, "service")
        self._name: str | None = None
        self._container_var: ContextVar[Any] | None = None
        self._resolving_var: ContextVar[Any] | None = None
        self._registry: Any = None
        self._dicts: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
        if registry is not None:
            if (
                type(registry) is not tuple
                or len(registry) != 3
                or type(registry[0]) is not str
                or type(registry[1]) is not ContextVar
                or type(registry[2]) is not ContextVar
            ):
                raise TypeError("registry must be (name, container_var, resolving_var)")
            self._name, self._container_var, self._resolving_var = registry
        if type(rules) is not dict:
            raise TypeError(f"rules must be a dict, got {type(rules).__name__}")
        default = rules.get(default_algorithm)
        if type(default) is not dict:
            raise TypeError("rules must hold a dict for the default algorithm")
        self._rules = rules
        self._default: dict[Any, Any] = default
        self._default_algorithm = default_algorithm

    def fast(
        self, key: str, max_requests: int, window_seconds: int, algorithm: Any
    ) -> GuideAnswer | list[Any] | None:
        """The guide's answer; the cached entry when its service must answer; ``None`` when
        the full path must (see the class)."""
        if type(max_requests) is not int or type(window_seconds) is not int:
            return None
        table: Any
        if algorithm is self._default_algorithm:
            table = self._default
        else:
            try:
                table = self._rules.get(algorithm)
            except TypeError:
                return None
            if type(table) is not dict:
                return None
        by_window = table.get(max_requests)
        if type(by_window) is not dict:
            return None
        entry = by_window.get(window_seconds)
        if type(entry) is not list or len(entry) != 3:
            return None
        if entry[1] is not self.current_service():
            return None
        checker = entry[2]
        if checker is None:
            return entry
        answer: GuideAnswer | None = checker.guide(key)
        return entry if answer is None else answer

    __call__ = fast

    def current_service(self) -> Any:
        """The service the fast path checks against: what ``service()`` returns."""
        if self._name is None:
            return self._service()
        assert self._container_var is not None and self._resolving_var is not None
        registry = getattr(_get_value(self._container_var), "registry", None)
        if registry is None:
            return self._service()
        if registry is not self._registry:
            # a registry's dicts are made once and only changed in place (direct_lookup's
            # contract): read them once per registry met
            overrides = getattr(registry, "_overrides", None)
            inherited = getattr(registry, "_inherited", None)
            instances = getattr(registry, "_instances", None)
            if type(overrides) is not dict or type(inherited) is not dict or type(instances) is not dict:
                return self._service()
            self._registry = registry
            self._dicts = (overrides, inherited, instances)
        overrides, inherited, instances = self._dicts
        if overrides or inherited:
            return self._service()
        found = instances.get(self._name, _MISSING)
        if found is _MISSING or _get_value(self._resolving_var):
            return self._service()
        return found
