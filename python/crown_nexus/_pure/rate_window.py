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
from collections import OrderedDict, deque
from typing import Any, Final

__all__ = ["GCRA", "MAX_LIMIT", "MAX_WINDOW", "SlidingLog", "SlidingWindowCounter"]

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
