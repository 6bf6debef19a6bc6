# cython: language_level=3
"""In-memory rate-limit windows, compiled twin of ``crown_nexus._pure.rate_window``.

Same classes, same results, same exceptions and messages; the pure module's docstring defines the
canonical integer-microsecond arithmetic followed here. Keys live in a dict; recency is an
intrusive doubly linked list (borrowed pointers, the dict owns the entries), so a hit is a dict
lookup, a few pointer moves and integer arithmetic (128-bit where products can exceed 64 bits).
"""

cimport cython
from contextvars import ContextVar
from time import monotonic as _monotonic
from time import perf_counter as _perf_counter
from cpython.contextvars cimport get_value
from cpython.dict cimport PyDict_GetItem, PyDict_GetItemWithError
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_SET_ITEM
from libc.math cimport ceil, floor, isfinite
from libc.stdlib cimport free, realloc

cdef extern from *:
    ctypedef long long i128 "__int128"

cdef extern from "Python.h":
    Py_ssize_t Py_REFCNT(object o)

cdef extern from *:
    """
    /* time.monotonic() read directly: on Linux CPython reads CLOCK_MONOTONIC and converts the
       nanoseconds exactly like this (_PyTime_AsSecondsDouble), so the value is the same. */
    #if defined(__linux__)
    #include <time.h>
    #define CROWN_HAVE_MONOTONIC 1
    static int crown_monotonic(double *out) {
        struct timespec ts;
        long long t;
        volatile double d;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return -1;
        t = (long long)ts.tv_sec * 1000000000LL + (long long)ts.tv_nsec;
        if (t % 1000000000LL == 0) {
            d = (double)(t / 1000000000LL);
        } else {
            d = (double)t;
            d /= 1e9;
        }
        *out = d;
        return 0;
    }
    #else
    #define CROWN_HAVE_MONOTONIC 0
    static int crown_monotonic(double *out) { (void)out; return -1; }
    #endif
    """
    int CROWN_HAVE_MONOTONIC
    int crown_monotonic(double *out) noexcept

ctypedef long long i64

MAX_LIMIT = 1_000_000_000
MAX_WINDOW = 1_000_000_000.0
MAX_TIME = 1e12

cdef double _MAX_TIME = 1e12
cdef i128 _I64_MAX = 9223372036854775807
#: 2**53 as a C integer (a bare literal this large would be compared as a Python int)
cdef i64 _TWO_53 = 9007199254740992

__all__ = [
    "GCRA",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "CheckRateLimit",
    "SlidingLog",
    "SlidingWindowCounter",
    "UnitCheck",
]


cdef object _check_int(object value, str name):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or value > MAX_LIMIT:
        raise ValueError(f"{name} must be between 1 and {MAX_LIMIT}, got {value}")
    return int(value)


cdef i64 _check_window(object value) except -1:
    cdef double w
    cdef i64 w_us
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"window must be an int or float, got {type(value).__name__}")
    w = float(value)
    if not isfinite(w) or w <= 0.0 or w > MAX_WINDOW:
        raise ValueError(f"window must be a positive number of seconds up to {MAX_WINDOW:g}")
    w_us = <i64>floor(w * 1e6 + 0.5)
    if w_us < 1:
        raise ValueError("window must be at least one microsecond")
    return w_us


cdef inline int _check_key(object key) except -1:
    if type(key) is str:
        return 0
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    return 0


cdef inline i64 _to_us(object now) except? -1:
    """``now`` seconds as integer microseconds (inline fast path for an in-range float)."""
    cdef double t
    if type(now) is float:
        t = PyFloat_AS_DOUBLE(now)
        if isfinite(t) and (t if t >= 0.0 else -t) <= _MAX_TIME:
            return <i64>floor(t * 1e6 + 0.5)
    return _to_us_slow(now)


cdef i64 _to_us_slow(object now) except? -1:
    cdef double t
    if type(now) is float:
        t = <double>now
    else:
        if not isinstance(now, (int, float)) or isinstance(now, bool):
            raise TypeError(f"now must be an int or float, got {type(now).__name__}")
        t = float(now)
    if not isfinite(t) or (t if t >= 0.0 else -t) > _MAX_TIME:
        raise ValueError(f"now must be a finite number of seconds with abs(now) <= {MAX_TIME:g}")
    return <i64>floor(t * 1e6 + 0.5)


cdef object _ONE = 1


cdef inline i64 _cost(object cost, i64 capacity) except -1:
    """``_check_cost`` with the default cost (the cached int 1, always valid) answered inline."""
    if cost is _ONE:
        return 1
    return _check_cost(cost, capacity)


cdef i64 _check_cost(object cost, i64 capacity) except -1:
    cdef int overflow = 0
    cdef long long v
    if type(cost) is int:
        v = PyLong_AsLongLongAndOverflow(cost, &overflow)
        if overflow == 0 and 1 <= v <= capacity:
            return v
    if not isinstance(cost, int) or isinstance(cost, bool):
        raise TypeError(f"cost must be an int, got {type(cost).__name__}")
    if cost < 1:
        raise ValueError(f"cost must be >= 1, got {cost}")
    if cost > capacity:
        raise ValueError(f"cost {cost} exceeds the capacity {capacity}; it could never be admitted")
    return <i64>cost


cdef inline void _refill(tuple res, object a, object b, object c):
    """Put ``a, b, c`` into the 3-tuple ``res`` in place. Only for a tuple nobody else holds
    (the caller checks ``Py_REFCNT(res) == 2``: its owner's attribute and the caller's local):
    like CPython's ``zip``, this saves allocating, GC-tracking and freeing a tuple per answer."""
    cdef PyObject* old
    old = PyTuple_GET_ITEM(res, 0)
    Py_INCREF(a)
    PyTuple_SET_ITEM(res, 0, a)
    Py_DECREF(<object>old)
    old = PyTuple_GET_ITEM(res, 1)
    Py_INCREF(b)
    PyTuple_SET_ITEM(res, 1, b)
    Py_DECREF(<object>old)
    old = PyTuple_GET_ITEM(res, 2)
    Py_INCREF(c)
    PyTuple_SET_ITEM(res, 2, c)
    Py_DECREF(<object>old)


cdef inline i64 _floordiv(i64 a, i64 b) noexcept:
    """Python's ``a // b`` for ``b > 0``."""
    if a >= 0:
        return a // b
    return -((-a + b - 1) // b)


cdef inline i128 _ceil_div(i128 a, i64 b) noexcept:
    """``ceil(a / b)`` for ``a >= 0, b > 0`` (64-bit division when it fits)."""
    if a <= _I64_MAX - b:
        return (<i64>a + b - 1) // b
    return (a + b - 1) // b


cdef inline i64 _muldiv(i64 a, i64 b, i64 c) noexcept:
    """``(a * b) // c`` for ``a, b >= 0, c > 0``, exact (128-bit product when needed)."""
    cdef i128 p = <i128>a * b
    cdef i64 p64, q
    if p <= _I64_MAX:
        p64 = <i64>p
        if p64 < _TWO_53:
            # below 2**53 both operands are exact doubles: a (much faster) floating division
            # gives the quotient to within one, which the two integer checks make exact
            q = <i64>(<double>p64 / <double>c)
            if q * c > p64:
                q -= 1
            elif (q + 1) * c <= p64:
                q += 1
            return q
        return p64 // c
    return <i64>(p // c)


@cython.final
cdef class _Entry:
    """One tracked key: recency links plus the state of every algorithm (only one is used)."""

    cdef object key
    cdef PyObject* prev
    cdef PyObject* next
    cdef i64 last
    # counter
    cdef i64 bucket
    cdef i64 pcount
    cdef i64 ccount
    # gcra
    cdef i128 level
    # log: ring buffer of stamps
    cdef i64* buf
    cdef i64 cap
    cdef i64 head
    cdef i64 n

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL

    cdef inline i64 at(self, i64 i) noexcept:
        cdef i64 j = self.head + i
        if j >= self.cap:
            j -= self.cap
        return self.buf[j]

    cdef int push(self, i64 stamp, i64 count, i64 limit) except -1:
        cdef i64 newcap, i, j
        cdef i64* nb
        if self.n + count > self.cap:
            newcap = self.cap * 2 if self.cap > 0 else 8
            while newcap < self.n + count:
                newcap *= 2
            if newcap > limit:
                newcap = limit
            nb = <i64*>realloc(NULL, newcap * sizeof(i64))
            if nb == NULL:
                raise MemoryError()
            for i in range(self.n):
                nb[i] = self.at(i)
            if self.buf != NULL:
                free(self.buf)
            self.buf = nb
            self.cap = newcap
            self.head = 0
        for i in range(count):
            j = self.head + self.n
            if j >= self.cap:
                j -= self.cap
            self.buf[j] = stamp
            self.n += 1
        return 0


cdef class _Windows:
    """Shared bookkeeping: the key map, recency list, eviction, reset/clear/sweep."""

    cdef dict _map
    cdef _Entry _head
    cdef i64 _w
    cdef i64 _limit
    cdef i64 _max_keys
    cdef double _window
    cdef object _limit_obj
    cdef object _max_keys_obj
    cdef tuple _res

    def __cinit__(self, *args, **kwargs):
        self._res = (False, 0, 0.0)
        self._map = {}
        self._head = _Entry()
        self._head.prev = <PyObject*>self._head
        self._head.next = <PyObject*>self._head

    @property
    def limit(self):
        """Requests allowed per window."""
        return self._limit_obj

    @property
    def window(self):
        """Window length in seconds."""
        return self._window

    @property
    def max_keys(self):
        """Most keys tracked at once."""
        return self._max_keys_obj

    def __len__(self):
        """Number of tracked keys."""
        return len(self._map)

    cdef bint _idle(self, _Entry e, i64 now):
        return True

    cdef tuple _result(self, bint allowed, object count, object reset):
        """The ``(allowed, count, reset)`` tuple of a hit.

        Like CPython's ``zip``, the previous result tuple is refilled in place when nobody else
        holds it any more (its only references are ``self._res`` and the local here), which
        saves allocating, GC-tracking and freeing a tuple per hit; otherwise a new one is made.
        """
        cdef tuple res = self._res
        cdef object flag = True if allowed else False
        if Py_REFCNT(res) == 2:
            _refill(res, flag, count, reset)
            return res
        res = (flag, count, reset)
        self._res = res
        return res

    cdef inline void _unlink(self, _Entry e) noexcept:
        (<_Entry>e.prev).next = e.next
        (<_Entry>e.next).prev = e.prev

    cdef inline void _append(self, _Entry e) noexcept:
        cdef _Entry tail = <_Entry>self._head.prev
        e.prev = <PyObject*>tail
        e.next = <PyObject*>self._head
        tail.next = <PyObject*>e
        self._head.prev = <PyObject*>e

    cdef int _remove(self, _Entry e) except -1:
        self._unlink(e)
        del self._map[e.key]
        return 0

    cdef _Entry _lookup(self, object key, i64 now, bint *created):
        """Return the entry of ``key``, moved to most recent; insert a fresh one if missing."""
        cdef PyObject* found = PyDict_GetItemWithError(self._map, key)
        cdef _Entry e
        cdef _Entry first
        if found != NULL:
            e = <_Entry>found
            if e.next != <PyObject*>self._head:
                self._unlink(e)
                self._append(e)
            created[0] = False
            return e
        if self._head.next != <PyObject*>self._head:
            first = <_Entry>self._head.next
            if self._idle(first, now):
                self._remove(first)
        while len(self._map) >= self._max_keys:
            self._remove(<_Entry>self._head.next)
        e = _Entry.__new__(_Entry)
        e.key = key
        self._map[key] = e
        self._append(e)
        created[0] = True
        return e

    def reset(self, key):
        """Forget ``key`` (no error when it is not tracked)."""
        _check_key(key)
        cdef PyObject* found = PyDict_GetItem(self._map, key)
        if found != NULL:
            self._remove(<_Entry>found)

    def clear(self):
        """Forget every key."""
        self._map.clear()
        self._head.prev = <PyObject*>self._head
        self._head.next = <PyObject*>self._head

    def sweep(self, now):
        """Drop every key that is idle at ``now``; return how many were dropped."""
        cdef i64 t = _to_us(now)
        cdef _Entry e
        cdef list idle = []
        for e in self._map.values():
            if self._idle(e, t):
                idle.append(e)
        for e in idle:
            self._remove(e)
        return len(idle)


cdef class SlidingWindowCounter(_Windows):
    """Sliding-window counter: two fixed buckets, the previous one weighted by its overlap.

    ``limit`` requests per ``window`` seconds, at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    def __init__(self, limit, window, *, max_keys=100_000):
        self._limit_obj = _check_int(limit, "limit")
        self._limit = self._limit_obj
        self._w = _check_window(window)
        self._window = float(window)
        self._max_keys_obj = _check_int(max_keys, "max_keys")
        self._max_keys = self._max_keys_obj

    cdef bint _idle(self, _Entry e, i64 now):
        cdef i64 b, prev, curr
        self._view(e, &now, &b, &prev, &curr)
        return curr == 0 and _muldiv(prev, self._w - (now - b * self._w), self._w) == 0

    cdef inline i64 _zero_after(self, i64 b, i64 prev, i64 curr, i64 now) noexcept:
        cdef i64 w = self._w
        cdef i64 start = b * w
        cdef i64 t
        if curr > 0:
            return start + w + _muldiv(w, curr - 1, curr) + 1 - now
        if prev > 0:
            t = start + _muldiv(w, prev - 1, prev) + 1 - now
            return t if t > 0 else 0
        return 0

    cdef inline bint _decide(self, i64 b, i64 prev, i64 curr, i64 now, i64 cost,
                             i64 *used, i64 *reset) noexcept:
        cdef i64 w = self._w
        cdef i64 start = b * w
        cdef i64 e = now - start
        cdef i64 r
        used[0] = curr + _muldiv(prev, w - e, w) if prev else curr
        if used[0] + cost <= self._limit:
            reset[0] = 0
            return True
        r = self._limit - cost - curr
        if r >= 0:
            reset[0] = start + _muldiv(w, prev - r - 1, prev) + 1 - now
        else:
            r = self._limit - cost
            reset[0] = start + w + _muldiv(w, curr - r - 1, curr) + 1 - now
        return False

    cdef inline void _view(self, _Entry st, i64 *now, i64 *b, i64 *prev, i64 *curr) noexcept:
        cdef i64 w = self._w
        cdef i64 start
        if now[0] < st.last:
            now[0] = st.last
        # st.last lies in bucket st.bucket and now >= st.last: the bucket is found without a
        # division while the key is hit at least once per window (the common case)
        start = st.bucket * w
        if now[0] - start < w:
            b[0] = st.bucket
        elif now[0] - start < 2 * w:
            b[0] = st.bucket + 1
        else:
            b[0] = _floordiv(now[0], w)
        if b[0] == st.bucket:
            prev[0] = st.pcount
            curr[0] = st.ccount
        elif b[0] == st.bucket + 1:
            prev[0] = st.ccount
            curr[0] = 0
        else:
            prev[0] = 0
            curr[0] = 0

    def hit(self, key, now, cost=1):
        """Count a request of ``cost`` for ``key`` at ``now`` if it fits; see the module docs."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 c = _cost(cost, self._limit)
        cdef i64 count
        cdef double reset
        cdef bint allowed = self._count(key, t, c, &count, &reset)
        return self._result(allowed, count, reset)

    cdef int _count(self, object key, i64 t, i64 c, i64 *count, double *reset_after) except -1:
        """The hit of a checked key, time (us) and cost: 1 allowed, 0 refused; ``count`` and
        ``reset_after`` (seconds) are the result's other two fields."""
        cdef bint created
        cdef i64 b, prev, curr, used, reset
        cdef bint allowed
        cdef _Entry st = self._lookup(key, t, &created)
        if created:
            st.bucket = _floordiv(t, self._w)
            st.pcount = 0
            st.ccount = 0
            st.last = t
        self._view(st, &t, &b, &prev, &curr)
        allowed = self._decide(b, prev, curr, t, c, &used, &reset)
        st.bucket = b
        st.pcount = prev
        st.ccount = curr
        st.last = t
        if not allowed:
            count[0] = used
            reset_after[0] = reset / 1e6
            return 0
        st.ccount = curr + c
        count[0] = used + c
        reset_after[0] = self._zero_after(b, prev, curr + c, t) / 1e6
        return 1

    def peek(self, key, now):
        """Return what a unit ``hit`` would return, without counting or touching recency."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 b, prev, curr, used, reset
        cdef PyObject* found = PyDict_GetItem(self._map, key)
        if found == NULL:
            return True, 0, 0.0
        self._view(<_Entry>found, &t, &b, &prev, &curr)
        if not self._decide(b, prev, curr, t, 1, &used, &reset):
            return False, used, reset / 1e6
        return True, used, self._zero_after(b, prev, curr, t) / 1e6


cdef class SlidingLog(_Windows):
    """Sliding log: exact, one timestamp per counted request.

    ``limit`` requests in any ``window`` seconds, at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    cdef object _w_sec

    def __init__(self, limit, window, *, max_keys=100_000):
        self._limit_obj = _check_int(limit, "limit")
        self._limit = self._limit_obj
        self._w = _check_window(window)
        self._window = float(window)
        self._max_keys_obj = _check_int(max_keys, "max_keys")
        self._max_keys = self._max_keys_obj
        self._w_sec = self._w / 1e6  # the reset of every admitted hit: one shared float

    cdef bint _idle(self, _Entry e, i64 now):
        if now < e.last:
            now = e.last
        return e.n == 0 or e.at(e.n - 1) + self._w <= now

    def hit(self, key, now, cost=1):
        """Count a request of ``cost`` for ``key`` at ``now`` if it fits; see the module docs."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 c = _cost(cost, self._limit)
        cdef i64 count
        cdef double reset
        cdef bint allowed = self._count(key, t, c, &count, &reset)
        if allowed:  # every admitted hit resets after one window: the one shared float
            return self._result(True, count, self._w_sec)
        return self._result(False, count, reset)

    cdef int _count(self, object key, i64 t, i64 c, i64 *count, double *reset_after) except -1:
        """The hit of a checked key, time (us) and cost: 1 allowed, 0 refused; ``count`` and
        ``reset_after`` (seconds) are the result's other two fields."""
        cdef bint created
        cdef i64 w = self._w
        cdef i64 k
        cdef _Entry st = self._lookup(key, t, &created)
        if created:
            st.last = t
        if t < st.last:
            t = st.last
        st.last = t
        while st.n > 0 and st.buf[st.head] + w <= t:
            st.head += 1
            if st.head == st.cap:
                st.head = 0
            st.n -= 1
        if st.n + c > self._limit:
            k = st.n + c - self._limit
            count[0] = st.n
            reset_after[0] = (st.at(k - 1) + w - t) / 1e6
            return 0
        if c == 1 and st.n < st.cap:  # room in the ring: store the stamp in place
            k = st.head + st.n
            if k >= st.cap:
                k -= st.cap
            st.buf[k] = t
            st.n += 1
        else:
            st.push(t, c, self._limit)
        count[0] = st.n
        reset_after[0] = w / 1e6
        return 1

    def peek(self, key, now):
        """Return what a unit ``hit`` would return, without counting or touching recency."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 w = self._w
        cdef i64 i = 0
        cdef i64 count
        cdef _Entry st
        cdef PyObject* found = PyDict_GetItem(self._map, key)
        if found == NULL:
            return True, 0, 0.0
        st = <_Entry>found
        if t < st.last:
            t = st.last
        while i < st.n and st.at(i) + w <= t:
            i += 1
        count = st.n - i
        if count + 1 > self._limit:
            return False, count, (st.at(i) + w - t) / 1e6
        if count == 0:
            return True, 0, 0.0
        return True, count, (st.at(st.n - 1) + w - t) / 1e6


cdef class GCRA(_Windows):
    """GCRA / token bucket: sustained ``limit`` per ``window`` seconds, bucket depth ``burst``.

    ``burst`` defaults to ``limit``; at most ``max_keys`` tracked keys.
    Raises ``TypeError``/``ValueError`` for arguments of the wrong type or range.
    """

    cdef i64 _burst
    cdef object _burst_obj
    cdef i128 _cap

    def __init__(self, limit, window, *, burst=None, max_keys=100_000):
        self._limit_obj = _check_int(limit, "limit")
        self._limit = self._limit_obj
        self._w = _check_window(window)
        self._window = float(window)
        self._burst_obj = self._limit_obj if burst is None else _check_int(burst, "burst")
        self._burst = self._burst_obj
        self._max_keys_obj = _check_int(max_keys, "max_keys")
        self._max_keys = self._max_keys_obj
        self._cap = <i128>self._burst * self._w

    @property
    def burst(self):
        """Bucket depth: most requests admitted at once."""
        return self._burst_obj

    cdef inline i128 _level(self, _Entry st, i64 *now) noexcept:
        cdef i64 dt
        if now[0] < st.last:
            now[0] = st.last
        dt = now[0] - st.last
        if st.level <= _I64_MAX:
            if dt > (<i64>st.level) // self._limit:
                return 0
            return st.level - <i128>(dt * self._limit)
        if dt > st.level // self._limit:
            return 0
        return st.level - <i128>dt * self._limit

    cdef bint _idle(self, _Entry e, i64 now):
        return self._level(e, &now) == 0

    def hit(self, key, now, cost=1):
        """Count a request of ``cost`` for ``key`` at ``now`` if it fits; see the module docs."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 c = _cost(cost, self._burst)
        cdef i64 count
        cdef double reset
        cdef bint allowed = self._count(key, t, c, &count, &reset)
        return self._result(allowed, count, reset)

    cdef int _count(self, object key, i64 t, i64 c, i64 *count, double *reset_after) except -1:
        """The hit of a checked key, time (us) and cost: 1 allowed, 0 refused; ``count`` and
        ``reset_after`` (seconds) are the result's other two fields."""
        cdef bint created
        cdef i128 level, new
        cdef i64 w = self._w
        cdef _Entry st = self._lookup(key, t, &created)
        if created:
            st.level = 0
            st.last = t
        level = self._level(st, &t)
        st.level = level
        st.last = t
        new = level + <i128>c * w
        if new > self._cap:
            count[0] = <i64>_ceil_div(level, w)
            reset_after[0] = <double>_ceil_div(new - self._cap, self._limit) / 1e6
            return 0
        st.level = new
        count[0] = <i64>_ceil_div(new, w)
        reset_after[0] = <double>_ceil_div(new, self._limit) / 1e6
        return 1

    def peek(self, key, now):
        """Return what a unit ``hit`` would return, without counting or touching recency."""
        _check_key(key)
        cdef i64 t = _to_us(now)
        cdef i64 w = self._w
        cdef i128 level, new
        cdef PyObject* found = PyDict_GetItem(self._map, key)
        if found == NULL:
            return True, 0, 0.0
        level = self._level(<_Entry>found, &t)
        new = level + w
        if new > self._cap:
            return (False, <i64>_ceil_div(level, w),
                    <double>_ceil_div(new - self._cap, self._limit) / 1e6)
        return True, <i64>_ceil_div(level, w), <double>_ceil_div(level, self._limit) / 1e6


# ------------------------------------------------------------------ metered unit checks


cdef object _callable(object value, str name):
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


cdef list _one_item_list(object value, str name):
    if type(value) is not list or len(value) != 1:
        raise TypeError(f"{name} must be a one-item list, got {type(value).__name__}")
    return <list>value


cdef inline object _guide_reset(bint limited, double reset):
    """``reset_after`` as the guide's whole seconds: >= 1 when limited, 0 when (about) zero."""
    cdef double whole
    if limited:
        whole = ceil(reset - 1e-9)
        return <long long>whole if whole > 1.0 else 1
    if reset > 1e-9:
        return <long long>ceil(reset - 1e-9)
    return 0


@cython.final
@cython.final
cdef class UnitCheck:
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
    position without ``timed``. The pure twin ``crown_nexus._pure.rate_window.UnitCheck``
    behaves identically.
    """

    cdef _Windows _window
    cdef int _kind
    cdef object _clock
    cdef object _sweep
    cdef list _sweep_due
    cdef list _sample
    cdef long _sample_every
    cdef list _cell
    cdef long _flush_every
    cdef object _noted
    cdef object _refused
    cdef object _timed
    cdef tuple _res
    cdef bint _direct

    def __init__(self, window, clock, sweep, sweep_due, sample, sample_every, cell, flush_every,
                 noted, refused, timed=None):
        if type(window) is SlidingWindowCounter:
            self._kind = 1
        elif type(window) is SlidingLog:
            self._kind = 2
        elif type(window) is GCRA:
            self._kind = 3
        else:
            raise TypeError(
                f"window must be a SlidingWindowCounter, SlidingLog or GCRA of this module, "
                f"got {type(window).__name__}"
            )
        self._window = <_Windows>window
        self._clock = _callable(clock, "clock")
        self._direct = CROWN_HAVE_MONOTONIC and clock is _monotonic
        self._sweep = _callable(sweep, "sweep")
        self._sweep_due = _one_item_list(sweep_due, "sweep_due")
        self._sample = _one_item_list(sample, "sample")
        self._sample_every = _check_int(sample_every, "sample_every")
        self._cell = _one_item_list(cell, "cell")
        self._flush_every = _check_int(flush_every, "flush_every")
        self._noted = _callable(noted, "noted")
        self._refused = _callable(refused, "refused")
        self._timed = None if timed is None else _callable(timed, "timed")
        self._res = (False, 0, 0)

    @property
    def window(self):
        """The window this check counts on."""
        return self._window

    cdef int _step(self, object key, i64 *count, double *reset) except -2:
        """-1: declined (nothing counted); else 1 allowed / 0 refused, metered, with the
        result's ``count`` and ``reset_after`` filled in."""
        cdef long checks = self._sample[0]
        cdef object started
        cdef int r
        if checks == 0:
            if self._timed is None or type(key) is not str:
                return -1
            self._sample[0] = 1 if 1 < self._sample_every else 0
            started = _perf_counter()
            r = self._count(key, count, reset)
            self._timed(_perf_counter() - started)
            return r
        if type(key) is not str:
            return -1
        checks += 1
        self._sample[0] = checks if checks < self._sample_every else 0
        return self._count(key, count, reset)

    cdef inline int _count(self, object key, i64 *count, double *reset) except -2:
        """Sweep when due, count in the window, meter: 1 allowed / 0 refused."""
        cdef object now, due
        cdef double d
        cdef i64 t
        cdef int allowed
        cdef long c
        due = self._sweep_due[0]
        if self._direct and type(due) is float and crown_monotonic(&d) == 0:
            # the clock is time.monotonic: its value without a call or a float object
            if d >= PyFloat_AS_DOUBLE(due):
                self._sweep(d)
            if isfinite(d) and (d if d >= 0.0 else -d) <= _MAX_TIME:
                t = <i64>floor(d * 1e6 + 0.5)
            else:
                t = _to_us_slow(d)
        else:
            now = self._clock()
            due = self._sweep_due[0]
            if type(now) is float and type(due) is float:
                if PyFloat_AS_DOUBLE(now) >= PyFloat_AS_DOUBLE(due):
                    self._sweep(now)
            elif now >= due:
                self._sweep(now)
            t = _to_us(now)
        if self._kind == 1:
            allowed = (<SlidingWindowCounter>self._window)._count(key, t, 1, count, reset)
        elif self._kind == 2:
            allowed = (<SlidingLog>self._window)._count(key, t, 1, count, reset)
        else:
            allowed = (<GCRA>self._window)._count(key, t, 1, count, reset)
        if allowed:
            c = self._cell[0]
            c += 1
            self._cell[0] = c
            if c == 1 or c >= self._flush_every:
                self._noted(c)
            return 1
        self._refused(count[0], reset[0])
        return 0

    def check(self, key):
        """Count one request for ``key``: the window's ``(allowed, count, reset_after)``, or
        ``None`` (nothing counted) when the service must check it instead."""
        return self._check(key)

    def __call__(self, key):
        """``check(key)``."""
        return self._check(key)

    cdef object _check(self, object key):
        cdef i64 count
        cdef double reset
        cdef int r = self._step(key, &count, &reset)
        if r < 0:
            return None
        return self._window._result(r == 1, count, reset)


    def guide(self, key):
        """Count one request for ``key``: the guide's ``(is_limited, count, reset_seconds)``, or
        ``None`` (nothing counted) when the service must check it instead."""
        return self._guide(key)

    cdef object _guide(self, object key):
        cdef i64 count
        cdef double reset
        cdef int r = self._step(key, &count, &reset)
        cdef tuple res
        cdef object limited, n, whole
        if r < 0:
            return None
        limited = True if r == 0 else False
        n = count
        whole = _guide_reset(r == 0, reset)
        res = self._res
        if Py_REFCNT(res) == 2:  # nobody else holds the last answer (see _result)
            _refill(res, limited, n, whole)
            return res
        res = (limited, n, whole)
        self._res = res
        return res


@cython.final
cdef class CheckRateLimit:
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
    ``service()``. The pure twin behaves identically.
    """

    cdef object _service
    cdef dict _rules
    cdef dict _default
    cdef object _default_algorithm
    cdef object _name
    cdef object _container_var
    cdef object _resolving_var
    cdef object _registry
    cdef dict _overrides
    cdef dict _inherited
    cdef dict _instances

    def __init__(self, service, rules, default_algorithm, registry=None):
        self._service = _callable(service, "service")
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
        default = (<dict>rules).get(default_algorithm)
        if type(default) is not dict:
            raise TypeError("rules must hold a dict for the default algorithm")
        self._rules = <dict>rules
        self._default = <dict>default
        self._default_algorithm = default_algorithm

    def fast(self, key, max_requests, window_seconds, algorithm):
        """The guide's answer; the cached entry when its service must answer; ``None`` when
        the full path must (see the class)."""
        return self._fast(key, max_requests, window_seconds, algorithm)

    def current_service(self):
        """The service the fast path checks against: what ``service()`` returns."""
        return self._current_service()

    cdef object _current_service(self):
        cdef object container, registry, overrides, inherited, instances
        cdef PyObject* found
        if self._name is None:
            return self._service()
        container = get_value(self._container_var, None)
        registry = getattr(container, "registry", None)
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
            self._overrides = <dict>overrides
            self._inherited = <dict>inherited
            self._instances = <dict>instances
        if self._overrides or self._inherited:
            return self._service()
        found = PyDict_GetItemWithError(self._instances, self._name)
        if found == NULL or get_value(self._resolving_var, None):
            return self._service()
        return <object>found

    def __call__(self, key, max_requests, window_seconds, algorithm):
        """``fast(key, max_requests, window_seconds, algorithm)``."""
        return self._fast(key, max_requests, window_seconds, algorithm)

    cdef object _fast(self, object key, object max_requests, object window_seconds,
                      object algorithm):
        cdef PyObject* found
        cdef object table, entry, checker, answer
        if type(max_requests) is not int or type(window_seconds) is not int:
            return None
        if algorithm is self._default_algorithm:
            table = self._default
        else:
            try:
                found = PyDict_GetItemWithError(self._rules, algorithm)
            except TypeError:
                return None
            if found == NULL:
                return None
            table = <object>found
            if type(table) is not dict:
                return None
        found = PyDict_GetItemWithError(<dict>table, max_requests)
        if found == NULL or type(<object>found) is not dict:
            return None
        found = PyDict_GetItemWithError(<dict><object>found, window_seconds)
        if found == NULL or type(<object>found) is not list or len(<list><object>found) != 3:
            return None
        entry = <object>found
        if (<list>entry)[1] is not self._current_service():
            return None
        checker = (<list>entry)[2]
        if type(checker) is UnitCheck:
            answer = (<UnitCheck>checker)._guide(key)
        elif checker is None:
            return entry
        else:
            answer = checker.guide(key)
        return entry if answer is None else answer
