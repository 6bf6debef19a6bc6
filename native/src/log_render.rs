//! log_render hot path: the compiled twin of `crown_nexus._pure.log_render`.
//!
//! Writes `orjson.dumps(S(event_dict), option=OPT_APPEND_NEWLINE)` byte for byte (see the pure
//! module's docstring): exact str / int / float / bool / None / list / tuple / dict are written
//! here, in Rust, with orjson's escaping and float format (zmij, as orjson uses); every other value
//! goes through the pure module's `_sanitize` (as does a dict with any key that is not a valid str),
//! whose plain result is then written here. Never raises for an ordinary `Exception` inside a conversion.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{LazyLock, Mutex};

use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};

const FALLBACK_LINE: &[u8] = b"{\"event\":\"<unrenderable event>\"}\n";

/// What we need from the pure module, looked up once.
struct Pure {
    sanitize: PyObject,
    max_depth: usize,
    depth_marker: String,
    // exact types written here as `S()` gives them, without calling `_sanitize`
    datetime: Py<PyType>,
    date: Py<PyType>,
    time: Py<PyType>,
    timedelta: Py<PyType>,
    uuid: Py<PyType>,
    decimal: Py<PyType>,
    enum_base: Py<PyType>,
}

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py
        .import(module)?
        .getattr(name)?
        .downcast_into::<PyType>()?
        .unbind())
}

static PURE: GILOnceCell<Pure> = GILOnceCell::new();

fn pure(py: Python<'_>) -> PyResult<&'static Pure> {
    PURE.get_or_try_init(py, || {
        let module = py.import("crown_nexus._pure.log_render")?;
        Ok(Pure {
            sanitize: module.getattr("_sanitize")?.unbind(),
            max_depth: module.getattr("MAX_DEPTH")?.extract()?,
            depth_marker: module.getattr("_DEPTH_MARKER")?.extract()?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            time: class(py, "datetime", "time")?,
            timedelta: class(py, "datetime", "timedelta")?,
            uuid: class(py, "uuid", "UUID")?,
            decimal: class(py, "decimal", "Decimal")?,
            enum_base: class(py, "enum", "Enum")?,
        })
    })
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Top-level keys of event dicts are nearly always the same str objects (the logger's own field
/// names, interned keyword-argument names), so their JSON form is kept per object: a small
/// direct-mapped cache from the object's address to its quoted, escaped bytes. Each entry holds
/// a strong reference, so an address can only ever name the object it was computed for, and the
/// bytes are exactly what `write_str` writes for it (strs are immutable): the output is unchanged.
const KEY_SLOTS: usize = 256;

struct KeyEntry {
    key: Py<PyAny>,
    json: Box<[u8]>,
}

static KEY_CACHE: LazyLock<Mutex<Vec<Option<KeyEntry>>>> =
    LazyLock::new(|| Mutex::new((0..KEY_SLOTS).map(|_| None).collect()));

/// 0: copy as is; b'u': \u00XX; anything else: backslash + that byte.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// True when any byte of `word` needs escaping (< 0x20, `"` or `\\`).
#[inline]
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    (below_space | has_zero(word ^ (ONES * b'"' as u64)) | has_zero(word ^ (ONES * b'\\' as u64)))
        != 0
}

/// Write `s` as a JSON string: quoted, escaped exactly as orjson escapes.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len();
    out.reserve(len + 2);
    let base = out.len();
    // Fast path: copy and check in one pass (8 bytes at a time), no escapes expected.
    // SAFETY: `reserve` made room for `len + 2` bytes past `base`; every write below stays in
    // `base .. base + len + 2`, and `set_len` only covers bytes written.
    unsafe {
        let dst = out.as_mut_ptr().add(base);
        let src = bytes.as_ptr();
        *dst = b'"';
        let mut i = 0;
        let mut clean = true;
        #[cfg(target_arch = "x86_64")]
        {
            // SSE2 is part of x86_64: 16 bytes per step
            use std::arch::x86_64::*;
            let space = _mm_set1_epi8(0x20);
            let quote = _mm_set1_epi8(b'"' as i8);
            let backslash = _mm_set1_epi8(b'\\' as i8);
            while i + 16 <= len {
                let chunk = _mm_loadu_si128(src.add(i) as *const __m128i);
                // unsigned chunk < 0x20  <=>  max(chunk, 0x20) != chunk
                let control = _mm_xor_si128(
                    _mm_cmpeq_epi8(_mm_max_epu8(chunk, space), chunk),
                    _mm_set1_epi8(-1),
                );
                let special = _mm_or_si128(
                    control,
                    _mm_or_si128(
                        _mm_cmpeq_epi8(chunk, quote),
                        _mm_cmpeq_epi8(chunk, backslash),
                    ),
                );
                if _mm_movemask_epi8(special) != 0 {
                    clean = false;
                    break;
                }
                _mm_storeu_si128(dst.add(1 + i) as *mut __m128i, chunk);
                i += 16;
            }
        }
        while clean && i + 8 <= len {
            let word = (src.add(i) as *const u64).read_unaligned();
            if needs_escape(u64::from_le(word)) {
                clean = false;
                break;
            }
            (dst.add(1 + i) as *mut u64).write_unaligned(word);
            i += 8;
        }
        if clean && i < len {
            if len >= 8 {
                // the last 8 bytes, overlapping what was already copied
                let word = (src.add(len - 8) as *const u64).read_unaligned();
                if needs_escape(u64::from_le(word)) {
                    clean = false;
                } else {
                    (dst.add(1 + len - 8) as *mut u64).write_unaligned(word);
                }
            } else {
                while i < len {
                    let b = *src.add(i);
                    if ESCAPE[b as usize] != 0 {
                        clean = false;
                        break;
                    }
                    *dst.add(1 + i) = b;
                    i += 1;
                }
            }
        }
        if clean {
            *dst.add(1 + len) = b'"';
            out.set_len(base + len + 2);
            return;
        }
    }
    write_escaped(out, bytes);
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

struct Writer<'a> {
    pure: &'a Pure,
    out: Vec<u8>,
}

impl Writer<'_> {
    fn marker(&mut self) {
        let marker = self.pure.depth_marker.clone();
        write_str(&mut self.out, &marker);
    }

    /// Write an exact str (valid UTF-8), int (64-bit range), float, bool or None; return false,
    /// writing nothing, for any other value. Runs no Python code, so `value` may be borrowed.
    #[inline]
    fn scalar(&mut self, value: &Bound<'_, PyAny>) -> bool {
        if value.is_exact_instance_of::<PyString>() {
            return match unsafe { value.downcast_unchecked::<PyString>() }.to_str() {
                Ok(text) => {
                    write_str(&mut self.out, text);
                    true
                }
                Err(_) => false,
            };
        }
        if value.is_exact_instance_of::<PyInt>() {
            let mut overflow: std::os::raw::c_int = 0;
            let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &mut overflow) };
            let mut buf = itoa::Buffer::new();
            if overflow == 0 {
                self.out.extend_from_slice(buf.format(v).as_bytes());
                return true;
            }
            if overflow > 0 {
                let u = unsafe { ffi::PyLong_AsUnsignedLongLong(value.as_ptr()) };
                if u != u64::MAX || unsafe { ffi::PyErr_Occurred() }.is_null() {
                    self.out.extend_from_slice(buf.format(u).as_bytes());
                    return true;
                }
                unsafe { ffi::PyErr_Clear() };
            }
            return false;
        }
        if value.is_exact_instance_of::<PyFloat>() {
            let v = unsafe { value.downcast_unchecked::<PyFloat>() }.value();
            if v.is_finite() {
                let mut buf = zmij::Buffer::new();
                self.out.extend_from_slice(buf.format_finite(v).as_bytes());
            } else {
                self.out.extend_from_slice(b"null");
            }
            return true;
        }
        if value.is_none() {
            self.out.extend_from_slice(b"null");
            return true;
        }
        if value.is_exact_instance_of::<PyBool>() {
            let truth = unsafe { value.downcast_unchecked::<PyBool>() }.is_true();
            self.out
                .extend_from_slice(if truth { b"true" } else { b"false" });
            return true;
        }
        false
    }

    /// Write the item held by a borrowed pointer: scalars in place, anything else through an
    /// owned reference (so Python code run by a conversion cannot free it under us).
    #[inline]
    fn item(&mut self, py: Python<'_>, ptr: *mut ffi::PyObject, depth: usize) -> PyResult<()> {
        let item = unsafe { Borrowed::from_ptr(py, ptr) };
        if self.scalar(&item) {
            return Ok(());
        }
        let owned = item.to_owned();
        self.value(&owned, depth)
    }

    /// Write `S(value)` for a value enclosed by `depth` containers.
    fn value(&mut self, value: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
        if self.scalar(value) {
            return Ok(());
        }
        let py = value.py();
        let is_list = value.is_exact_instance_of::<PyList>();
        if is_list || value.is_exact_instance_of::<PyTuple>() {
            if depth >= self.pure.max_depth {
                self.marker();
                return Ok(());
            }
            self.out.push(b'[');
            let seq = value.as_ptr();
            let mut i: ffi::Py_ssize_t = 0;
            loop {
                // lists are re-measured on every step: a conversion may have resized them
                let (len, ptr) = unsafe {
                    if is_list {
                        let len = ffi::PyList_Size(seq);
                        (
                            len,
                            if i < len {
                                ffi::PyList_GetItem(seq, i)
                            } else {
                                std::ptr::null_mut()
                            },
                        )
                    } else {
                        let len = ffi::PyTuple_Size(seq);
                        (
                            len,
                            if i < len {
                                ffi::PyTuple_GetItem(seq, i)
                            } else {
                                std::ptr::null_mut()
                            },
                        )
                    }
                };
                if i >= len || ptr.is_null() {
                    break;
                }
                if i > 0 {
                    self.out.push(b',');
                }
                self.item(py, ptr, depth + 1)?;
                i += 1;
            }
            self.out.push(b']');
            return Ok(());
        }
        if value.is_exact_instance_of::<PyDict>() {
            if depth >= self.pure.max_depth {
                self.marker();
                return Ok(());
            }
            return self.dict(value, depth);
        }
        if self.known(value)? {
            return Ok(());
        }
        self.sanitized(value, depth)
    }

    /// Write an exact datetime/date/time (`isoformat()`), timedelta/UUID/Decimal (`str()`), or an
    /// Enum member whose value is a plain scalar, as `S()` does; false (nothing written) else.
    fn known(&mut self, value: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = value.py();
        let ty = value.get_type_ptr();
        let pure = self.pure;
        let text = if ty == pure.datetime.as_ptr().cast()
            || ty == pure.date.as_ptr().cast()
            || ty == pure.time.as_ptr().cast()
        {
            value.call_method0(intern!(py, "isoformat"))?
        } else if ty == pure.uuid.as_ptr().cast()
            || ty == pure.decimal.as_ptr().cast()
            || ty == pure.timedelta.as_ptr().cast()
        {
            value.str()?.into_any()
        } else if value.is_instance(pure.enum_base.bind(py))? {
            let Ok(inner) = value.getattr(intern!(py, "value")) else {
                return Ok(false);
            };
            return Ok(self.scalar(&inner));
        } else {
            return Ok(false);
        };
        match text.downcast::<PyString>()?.to_str() {
            Ok(s) => {
                write_str(&mut self.out, s);
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    fn dict(&mut self, dict: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
        let py = dict.py();
        let start = self.out.len();
        let size = unsafe { ffi::PyDict_Size(dict.as_ptr()) };
        self.out.push(b'{');
        let mut pos: ffi::Py_ssize_t = 0;
        let mut key_ptr: *mut ffi::PyObject = std::ptr::null_mut();
        let mut value_ptr: *mut ffi::PyObject = std::ptr::null_mut();
        let mut first = true;
        // the key cache is locked once per top-level dict (try_lock: never waits; a nested
        // render on this thread, or another thread meanwhile, simply goes without it)
        let mut cache = if depth == 0 {
            KEY_CACHE.try_lock().ok()
        } else {
            None
        };
        // PyDict_Next re-reads the table on every call, so a conversion that mutates the dict
        // cannot make this read freed memory; a borrowed value is turned into an owned
        // reference before any Python code runs (see `item`).
        while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key_ptr, &mut value_ptr) }
            != 0
        {
            let key = unsafe { Borrowed::from_ptr(py, key_ptr) };
            if !first {
                self.out.push(b',');
            }
            first = false;
            if !self.plain_key(&key, cache.as_deref_mut()) {
                // a key needs converting, and converted keys may collide ({1: .., "1": ..}):
                // S() keeps the last value at the first position, so let S() build the dict
                self.out.truncate(start);
                return self.sanitized(dict, depth);
            }
            self.out.push(b':');
            self.item(py, value_ptr, depth + 1)?;
            if unsafe { ffi::PyDict_Size(dict.as_ptr()) } != size {
                // as Python's own dict iteration (and so the pure renderer) fails
                return Err(PyRuntimeError::new_err(
                    "dictionary changed size during iteration",
                ));
            }
        }
        self.out.push(b'}');
        Ok(())
    }

    /// Write an exact, valid-UTF-8 str key; return false (writing nothing) for any other key.
    /// `cache`: the locked [`KEY_CACHE`] to look the key up in and add it to (top-level keys
    /// only, so that keys made up per event deeper down do not churn it).
    fn plain_key(
        &mut self,
        key: &Bound<'_, PyAny>,
        cache: Option<&mut Vec<Option<KeyEntry>>>,
    ) -> bool {
        if !key.is_exact_instance_of::<PyString>() {
            return false;
        }
        let addr = key.as_ptr() as usize;
        let slot = (addr >> 4) % KEY_SLOTS;
        if let Some(cache) = &cache {
            if let Some(entry) = &cache[slot] {
                if entry.key.as_ptr() as usize == addr {
                    self.out.extend_from_slice(&entry.json);
                    return true;
                }
            }
        }
        let Ok(text) = (unsafe { key.downcast_unchecked::<PyString>() }).to_str() else {
            return false;
        };
        let start = self.out.len();
        write_str(&mut self.out, text);
        if let Some(cache) = cache {
            // an evicted str is decref'd here: freeing a str runs no Python code
            cache[slot] = Some(KeyEntry {
                key: key.clone().unbind(),
                json: self.out[start..].into(),
            });
        }
        true
    }

    /// Write a value through the pure module's `_sanitize` (which returns plain JSON types).
    fn sanitized(&mut self, value: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
        let plain = self.pure.sanitize.bind(value.py()).call1((value, depth))?;
        if plain.is_exact_instance_of::<PyString>() {
            // _sanitize returns valid UTF-8 str; a failure here would otherwise loop
            let text = unsafe { plain.downcast_unchecked::<PyString>() }.to_str()?;
            write_str(&mut self.out, text);
            return Ok(());
        }
        self.value(&plain, depth)
    }
}

fn render_bytes(py: Python<'_>, event: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let mut writer = Writer {
        pure: pure(py)?,
        out: Vec::with_capacity(1024),
    };
    if event.is_instance_of::<PyDict>() {
        writer.value(event, 0)?;
    } else {
        writer.out.extend_from_slice(b"{\"event\":");
        writer.value(event, 1)?;
        writer.out.push(b'}');
    }
    writer.out.push(b'\n');
    Ok(writer.out)
}

/// Render one event dict as one compact JSON line ending in `b"\n"`; see the pure module.
#[pyfunction]
fn render<'py>(py: Python<'py>, event_dict: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let outcome = catch_unwind(AssertUnwindSafe(|| render_bytes(py, event_dict)));
    match outcome {
        Ok(Ok(bytes)) => Ok(PyBytes::new(py, &bytes)),
        // a KeyboardInterrupt / SystemExit during a conversion is not ours to swallow
        Ok(Err(err)) if !err.is_instance_of::<PyException>(py) => Err(err),
        _ => Ok(PyBytes::new(py, FALLBACK_LINE)),
    }
}

/// Keys whose place in the line the chain fixes: a field (or context field) named like one of
/// them makes the renderer hand the event to the general path. `event` and `logger` are read
/// from the event dict rather than written as fields.
const RESERVED: [&str; 7] = [
    "timestamp",
    "level",
    "request_id",
    "user_id",
    "filename",
    "lineno",
    "func_name",
];

/// One field of the line: its key and the value to render (after redaction).
type Field<'py> = (Bound<'py, PyString>, Bound<'py, PyAny>);

/// What a key of the event dict (or of the context fields) is to the renderer.
#[derive(PartialEq, Eq, Clone, Copy)]
enum KeyKind {
    /// an exact, valid-UTF-8 str key that is a plain field
    Field,
    /// `event`
    Event,
    /// `logger`
    Logger,
    /// anything else: not a str, a lone surrogate, `exc_info` or one of [`RESERVED`]
    General,
}

fn key_kind(key: &Bound<'_, PyAny>) -> KeyKind {
    if !key.is_exact_instance_of::<PyString>() {
        return KeyKind::General;
    }
    let Ok(text) = unsafe { key.downcast_unchecked::<PyString>() }.to_str() else {
        return KeyKind::General;
    };
    match text {
        "event" => KeyKind::Event,
        "logger" => KeyKind::Logger,
        "exc_info" => KeyKind::General,
        _ if RESERVED.contains(&text) => KeyKind::General,
        _ => KeyKind::Field,
    }
}

/// `LineRenderer.__call__` after its checks: the line's parts, or None for the general path.
struct Parts<'py> {
    level: Bound<'py, PyAny>,
    logger: Bound<'py, PyAny>,
    event: Bound<'py, PyAny>,
    extra: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)>,
    fields: Vec<Field<'py>>,
}

/// The log chain's last step, compiled: `(logger, method_name, event_dict) -> bytes`.
///
/// Writes exactly what the general path (`general(method_name, event_dict, frame)`: the Python
/// `EventPreparer` and `render`) writes for the same event, without building the prepared dict:
/// core fields (the timestamp, see [`LineRenderer::timestamp`]; the level of `method_name` in
/// `level_names`; `event_dict["logger"]`; the event text scrubbed through
/// `event_cache`/`scrub_event`; `request_id()`, `user_id()`), the context fields
/// (`extra_get()`, or `context_fields()` while `context_hooks["_span_ids"]` is set), the
/// event's other fields redacted by `redactor`, then the caller's location (the first frame,
/// from the calling one up, whose file is not in `skip_files`). Anything else (not a dict,
/// `exc_info`, a non-str or reserved key, a key shared by the context and the event, a lone
/// surrogate, an event that is not a str or None, context fields that are not a dict) goes to
/// `general`. Exceptions of the collaborators propagate; rendering itself never raises.
#[pyclass(module = "crown_nexus_native.log_render", frozen)]
struct LineRenderer {
    #[pyo3(get)]
    redactor: PyObject,
    safe: PyObject,
    is_sensitive_key: PyObject,
    redact_value: PyObject,
    general: PyObject,
    now: PyObject,
    clock: PyObject,
    time_ns: PyObject,
    stamp: PyObject,
    context_fields: PyObject,
    context_hooks: PyObject,
    extra_get: PyObject,
    request_id: PyObject,
    user_id: PyObject,
    skip_files: PyObject,
    getframe: PyObject,
    one: PyObject,
    event_cache: PyObject,
    scrub_event: PyObject,
    level_names: PyObject,
}

/// The last timestamp written: (epoch millisecond, its stamp as `stamp` gave it).
static STAMP_CACHE: Mutex<Option<(i64, Py<PyAny>)>> = Mutex::new(None);

impl LineRenderer {
    /// The line's timestamp: `stamp(ms)` of the epoch millisecond of `clock["_wall_ns"]()`, read
    /// here without a Python call while that clock is `time.time_ns` (same clock, same ms); a
    /// clock returning something else than an int gives `now()`. One stamp per millisecond.
    fn timestamp<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let clock = self.clock.bind(py).downcast::<PyDict>()?;
        let ms: i64 = match clock.get_item(intern!(py, "_wall_ns"))? {
            Some(wall) if wall.is(self.time_ns.bind(py)) => {
                match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                    Ok(since) => since.as_millis() as i64,
                    Err(_) => return self.now.bind(py).call0(), // a clock before 1970
                }
            }
            Some(wall) => {
                let ns = wall.call0()?;
                if !ns.is_exact_instance_of::<PyInt>() {
                    return self.now.bind(py).call0();
                }
                match ns.extract::<i64>() {
                    Ok(ns) => ns.div_euclid(1_000_000),
                    Err(_) => return self.now.bind(py).call0(),
                }
            }
            None => return self.now.bind(py).call0(),
        };
        if let Ok(cache) = STAMP_CACHE.try_lock() {
            if let Some((cached_ms, stamp)) = cache.as_ref() {
                if *cached_ms == ms {
                    return Ok(stamp.bind(py).clone());
                }
            }
        }
        let stamp = self.stamp.bind(py).call1((ms,))?;
        if let Ok(mut cache) = STAMP_CACHE.try_lock() {
            // the replaced stamp is decref'd here (a str: freeing it runs no Python code)
            *cache = Some((ms, stamp.clone().unbind()));
        }
        Ok(stamp)
    }

    /// Redact one field value as the general path does: a key not known safe that the redactor
    /// calls sensitive gives `"[REDACTED]"`; a str longer than 12 characters or holding `=` or
    /// `:` (a `key=value` or `scheme://` secret), or any value that is not an exact
    /// int/float/bool/None, goes through `redact_value`. None: a lone surrogate in a str.
    fn redact<'py>(
        &self,
        key: &Bound<'py, PyString>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = key.py();
        let safe = self.safe.bind(py);
        let known_safe = if safe.is_exact_instance_of::<PySet>() {
            match unsafe { ffi::PySet_Contains(safe.as_ptr(), key.as_ptr()) } {
                1 => true,
                0 => false,
                _ => return Err(PyErr::fetch(py)),
            }
        } else {
            safe.contains(key)?
        };
        if !known_safe && self.is_sensitive_key.bind(py).call1((key,))?.is_truthy()? {
            return Ok(Some(intern!(py, "[REDACTED]").clone().into_any()));
        }
        let needs_work = if value.is_exact_instance_of::<PyString>() {
            let Ok(text) = unsafe { value.downcast_unchecked::<PyString>() }.to_str() else {
                return Ok(None);
            };
            text.len() > 12 && (unsafe { ffi::PyUnicode_GetLength(value.as_ptr()) }) > 12
                || text.bytes().any(|b| b == b'=' || b == b':')
        } else {
            !(value.is_exact_instance_of::<PyInt>()
                || value.is_exact_instance_of::<PyFloat>()
                || value.is_exact_instance_of::<PyBool>()
                || value.is_none())
        };
        if needs_work {
            Ok(Some(self.redact_value.bind(py).call1((&value,))?))
        } else {
            Ok(Some(value))
        }
    }

    /// The checks and the collaborator calls, in the general path's order; None: general path.
    fn parts<'py>(
        &self,
        method_name: &Bound<'py, PyAny>,
        event_dict: &Bound<'py, PyDict>,
    ) -> PyResult<Option<Parts<'py>>> {
        let py = event_dict.py();
        let none = py.None().into_bound(py);
        let mut raw_event = none.clone();
        let mut logger = none;
        let mut fields = Vec::with_capacity(event_dict.len());
        for (key, value) in event_dict.iter() {
            match key_kind(&key) {
                KeyKind::General => return Ok(None),
                KeyKind::Event => raw_event = value,
                KeyKind::Logger => logger = value,
                KeyKind::Field => {
                    let key = unsafe { key.downcast_into_unchecked::<PyString>() };
                    let Some(value) = self.redact(&key, value)? else {
                        return Ok(None);
                    };
                    fields.push((key, value));
                }
            }
        }
        let event = if raw_event.is_none() {
            raw_event
        } else if raw_event.is_exact_instance_of::<PyString>() {
            if unsafe { raw_event.downcast_unchecked::<PyString>() }
                .to_str()
                .is_err()
            {
                return Ok(None);
            }
            let cache = self.event_cache.bind(py).downcast::<PyDict>()?;
            match cache.get_item(&raw_event)? {
                Some(scrubbed) => scrubbed,
                None => self.scrub_event.bind(py).call1((&raw_event,))?,
            }
        } else {
            return Ok(None);
        };
        let level = self
            .level_names
            .bind(py)
            .downcast::<PyDict>()?
            .get_item(method_name)?
            .unwrap_or_else(|| method_name.clone());
        // tracing off (no span-id source in the context module): the context variable itself
        let span_source = self
            .context_hooks
            .bind(py)
            .downcast::<PyDict>()?
            .get_item(intern!(py, "_span_ids"))?;
        let raw_extra = match span_source {
            Some(source) if !source.is_none() => self.context_fields.bind(py).call0()?,
            _ => self.extra_get.bind(py).call0()?,
        };
        let mut extra = Vec::new();
        if raw_extra.is_truthy()? {
            if !raw_extra.is_exact_instance_of::<PyDict>() {
                return Ok(None);
            }
            let raw_extra = unsafe { raw_extra.downcast_unchecked::<PyDict>() };
            for (key, value) in raw_extra.iter() {
                if key_kind(&key) != KeyKind::Field || event_dict.contains(&key)? {
                    return Ok(None);
                }
                extra.push((unsafe { key.downcast_into_unchecked::<PyString>() }, value));
            }
        }
        Ok(Some(Parts {
            level,
            logger,
            event,
            extra,
            fields,
        }))
    }
}

extern "C" {
    /// Public C API of CPython since 3.9 (a new reference, or NULL without an exception); not
    /// part of the limited API, so pyo3-ffi leaves it out of abi3 builds.
    fn PyFrame_GetBack(frame: *mut ffi::PyFrameObject) -> *mut ffi::PyFrameObject;
    /// Public C API of CPython since 3.11: what `frame.f_lasti` gives, without the int object.
    fn PyFrame_GetLasti(frame: *mut ffi::PyFrameObject) -> std::os::raw::c_int;
    /// Exported by CPython since 3.9 (in the limited API from 3.12): a call without a tuple.
    fn PyObject_Vectorcall(
        callable: *mut ffi::PyObject,
        args: *const *mut ffi::PyObject,
        nargsf: usize,
        kwnames: *mut ffi::PyObject,
    ) -> *mut ffi::PyObject;
}

/// (module globals, size of skip_files, whether that module is logging machinery) of the last
/// module `caller_frame` asked about.
type MachineryEntry = (Py<PyAny>, ffi::Py_ssize_t, bool);
static MACHINERY: Mutex<Option<MachineryEntry>> = Mutex::new(None);

/// The first frame, from the current one (the logger method's) up, whose file is not in
/// `skip` (None when every frame is machinery), with its code object.
///
/// When the current frame's module (its globals' `__file__`) is itself in `skip`, the walk
/// starts at its caller (`getframe(1)`, i.e. `sys._getframe(1)`): the logger method's own frame
/// is then never turned into a frame object, which CPython would allocate and free on every
/// line. Its code comes from that same module, so its `co_filename` is in `skip` as well.
fn caller_frame<'py>(
    py: Python<'py>,
    skip: &Bound<'py, PyAny>,
    getframe: &Bound<'py, PyAny>,
    one: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let globals = unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyEval_GetGlobals()) };
    let mut machinery = false;
    if let Some(globals) = globals {
        // the verdict for the last module asked about (nearly always the logger method's), valid
        // while skip_files keeps its size; each entry holds its dict, so the address names it
        let skip_len = if skip.is_exact_instance_of::<PySet>() {
            unsafe { ffi::PySet_Size(skip.as_ptr()) }
        } else {
            -1
        };
        let mut known = None;
        if skip_len >= 0 {
            if let Ok(cache) = MACHINERY.try_lock() {
                if let Some((dict, len, verdict)) = cache.as_ref() {
                    if dict.as_ptr() == globals.as_ptr() && *len == skip_len {
                        known = Some(*verdict);
                    }
                }
            }
        }
        machinery = match known {
            Some(verdict) => verdict,
            None => {
                let mut verdict = false;
                if let Ok(dict) = globals.downcast::<PyDict>() {
                    if let Some(file) = dict.get_item(intern!(py, "__file__"))? {
                        verdict = skip.contains(&file)?;
                    }
                }
                if skip_len >= 0 {
                    let previous = MACHINERY.try_lock().ok().and_then(|mut cache| {
                        cache.replace((globals.clone().unbind(), skip_len, verdict))
                    });
                    drop(previous); // decref'd after the lock is released
                }
                verdict
            }
        };
    }
    let mut frame = if machinery {
        let args = [one.as_ptr()];
        let result = unsafe {
            PyObject_Vectorcall(getframe.as_ptr(), args.as_ptr(), 1, std::ptr::null_mut())
        };
        match unsafe { Bound::from_owned_ptr_or_err(py, result) } {
            Ok(frame) => Some(frame),
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyValueError>(py) => None,
            Err(err) => return Err(err),
        }
    } else {
        unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyEval_GetFrame() as *mut ffi::PyObject) }
    };
    while let Some(current) = frame {
        let code = unsafe {
            Bound::from_owned_ptr(
                py,
                ffi::PyFrame_GetCode(current.as_ptr() as *mut ffi::PyFrameObject)
                    as *mut ffi::PyObject,
            )
        };
        let filename = code.getattr(intern!(py, "co_filename"))?;
        if !skip.contains(&filename)? {
            return Ok(Some((current, code)));
        }
        frame = unsafe {
            Bound::from_owned_ptr_or_opt(
                py,
                PyFrame_GetBack(current.as_ptr() as *mut ffi::PyFrameObject) as *mut ffi::PyObject,
            )
        };
    }
    Ok(None)
}

#[pymethods]
impl LineRenderer {
    #[new]
    #[pyo3(signature = (
        redactor, *, general, now, clock, stamp, context_fields, context_hooks, extra_get,
        request_id, user_id, skip_files, event_cache, scrub_event, level_names
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        redactor: &Bound<'_, PyAny>,
        general: PyObject,
        now: PyObject,
        clock: Bound<'_, PyDict>,
        stamp: PyObject,
        context_fields: PyObject,
        context_hooks: Bound<'_, PyDict>,
        extra_get: PyObject,
        request_id: PyObject,
        user_id: PyObject,
        skip_files: PyObject,
        event_cache: Bound<'_, PyDict>,
        scrub_event: PyObject,
        level_names: Bound<'_, PyDict>,
    ) -> PyResult<Self> {
        let py = redactor.py();
        Ok(Self {
            safe: redactor.getattr(intern!(py, "_safe"))?.unbind(),
            is_sensitive_key: redactor.getattr(intern!(py, "is_sensitive_key"))?.unbind(),
            redact_value: redactor.getattr(intern!(py, "redact_value"))?.unbind(),
            redactor: redactor.clone().unbind(),
            general,
            now,
            clock: clock.into_any().unbind(),
            time_ns: py.import("time")?.getattr("time_ns")?.unbind(),
            stamp,
            context_fields,
            context_hooks: context_hooks.into_any().unbind(),
            extra_get,
            request_id,
            user_id,
            skip_files,
            getframe: py.import("sys")?.getattr("_getframe")?.unbind(),
            one: 1i64.into_pyobject(py)?.into_any().unbind(),
            event_cache: event_cache.into_any().unbind(),
            scrub_event,
            level_names: level_names.into_any().unbind(),
        })
    }

    /// One event dict -> one JSON line (see the class).
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        logger: &Bound<'py, PyAny>,
        method_name: &Bound<'py, PyAny>,
        event_dict: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = logger;
        let general = || -> PyResult<Bound<'py, PyAny>> {
            let frame = unsafe {
                Bound::from_borrowed_ptr_or_opt(py, ffi::PyEval_GetFrame() as *mut ffi::PyObject)
            }
            .unwrap_or_else(|| py.None().into_bound(py));
            self.general
                .bind(py)
                .call1((method_name, event_dict, frame))
        };
        if !event_dict.is_exact_instance_of::<PyDict>() {
            return general();
        }
        let dict = unsafe { event_dict.downcast_unchecked::<PyDict>() };
        // a redaction call that resizes the dict makes PyO3's iterator panic: general path
        let parts = match catch_unwind(AssertUnwindSafe(|| self.parts(method_name, dict))) {
            Ok(Ok(Some(parts))) => parts,
            Ok(Ok(None)) | Err(_) => return general(),
            Ok(Err(err)) => return Err(err),
        };
        let timestamp = self.timestamp(py)?;
        let request_id = self.request_id.bind(py).call0()?;
        let user_id = self.user_id.bind(py).call0()?;
        let location = match caller_frame(
            py,
            self.skip_files.bind(py),
            self.getframe.bind(py),
            self.one.bind(py),
        )? {
            None => Vec::new(),
            Some((frame, code)) => match location_json(py, &frame, &code)? {
                Some(json) => json,
                None => return Ok(PyBytes::new(py, FALLBACK_LINE).into_any()),
            },
        };
        let core = [
            &timestamp,
            &parts.level,
            &parts.logger,
            &parts.event,
            &request_id,
            &user_id,
        ];
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            render_event_bytes(py, core, &parts.extra, &parts.fields, &location)
        }));
        match outcome {
            Ok(Ok(bytes)) => Ok(PyBytes::new(py, &bytes).into_any()),
            Ok(Err(err)) if !err.is_instance_of::<PyException>(py) => Err(err),
            _ => Ok(PyBytes::new(py, FALLBACK_LINE).into_any()),
        }
    }
}

/// The caller location as JSON (`,"filename":..,"lineno":..,"func_name":..`) per (code object,
/// instruction): a frame's `f_lineno` scans the code's line table on every read, and the table,
/// `co_filename` and `co_name` never change. Direct-mapped; each entry holds its code object,
/// so the address in it names that object for as long as the entry exists.
const LOC_SLOTS: usize = 1024;

struct LocEntry {
    code: Py<PyAny>,
    lasti: isize,
    json: Box<[u8]>,
}

static LOC_CACHE: LazyLock<Mutex<Vec<Option<LocEntry>>>> =
    LazyLock::new(|| Mutex::new((0..LOC_SLOTS).map(|_| None).collect()));

/// The location JSON for `frame` (whose code object is `code`), as `render` writes the three
/// fields `code.co_filename`, `frame.f_lineno`, `code.co_name`; None when rendering them fails
/// (the line is then the fallback line, as `render` gives). Attribute errors propagate.
fn location_json(
    py: Python<'_>,
    frame: &Bound<'_, PyAny>,
    code: &Bound<'_, PyAny>,
) -> PyResult<Option<Vec<u8>>> {
    let lasti = unsafe { PyFrame_GetLasti(frame.as_ptr() as *mut ffi::PyFrameObject) } as isize;
    let addr = code.as_ptr() as usize;
    let slot = ((addr >> 4) ^ (lasti as usize).wrapping_mul(0x9E37_79B9)) % LOC_SLOTS;
    if let Ok(cache) = LOC_CACHE.try_lock() {
        if let Some(entry) = &cache[slot] {
            if entry.code.as_ptr() as usize == addr && entry.lasti == lasti {
                return Ok(Some(entry.json.to_vec()));
            }
        }
    }
    let filename = code.getattr(intern!(py, "co_filename"))?;
    let lineno = frame.getattr(intern!(py, "f_lineno"))?;
    let func_name = code.getattr(intern!(py, "co_name"))?;
    let mut writer = Writer {
        pure: pure(py)?,
        out: Vec::with_capacity(128),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| -> PyResult<()> {
        writer.out.extend_from_slice(b",\"filename\":");
        writer.value(&filename, 1)?;
        writer.out.extend_from_slice(b",\"lineno\":");
        writer.value(&lineno, 1)?;
        writer.out.extend_from_slice(b",\"func_name\":");
        writer.value(&func_name, 1)
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) if !err.is_instance_of::<PyException>(py) => return Err(err),
        _ => return Ok(None),
    }
    let cacheable = filename.is_exact_instance_of::<PyString>()
        && func_name.is_exact_instance_of::<PyString>()
        && lineno.is_exact_instance_of::<PyInt>();
    if cacheable {
        if let Ok(mut cache) = LOC_CACHE.try_lock() {
            // an evicted code object is decref'd here, with the GIL held
            cache[slot] = Some(LocEntry {
                code: code.clone().unbind(),
                lasti,
                json: writer.out.clone().into_boxed_slice(),
            });
        }
    }
    Ok(Some(writer.out))
}

/// The line, as `render` writes the general path's dict: core fields, context fields, event
/// fields, location.
fn render_event_bytes(
    py: Python<'_>,
    core: [&Bound<'_, PyAny>; 6],
    extra: &[Field<'_>],
    items: &[Field<'_>],
    location: &[u8],
) -> PyResult<Vec<u8>> {
    let mut writer = Writer {
        pure: pure(py)?,
        out: Vec::with_capacity(512),
    };
    const CORE_KEYS: [&[u8]; 6] = [
        b"{\"timestamp\":",
        b",\"level\":",
        b",\"logger\":",
        b",\"event\":",
        b",\"request_id\":",
        b",\"user_id\":",
    ];
    for (key, value) in CORE_KEYS.iter().zip(core) {
        writer.out.extend_from_slice(key);
        writer.value(value, 1)?;
    }
    for (key, value) in extra.iter().chain(items) {
        writer.out.push(b',');
        write_str(&mut writer.out, key.to_str()?);
        writer.out.push(b':');
        writer.value(value, 1)?;
    }
    writer.out.extend_from_slice(location);
    writer.out.extend_from_slice(b"}\n");
    Ok(writer.out)
}

pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("IMPLEMENTATION", "native")?;
    m.add_function(wrap_pyfunction!(render, m)?)?;
    m.add_class::<LineRenderer>()?;
    Ok(())
}
