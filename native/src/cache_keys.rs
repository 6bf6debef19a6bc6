//! cache_keys hot path: the compiled twin of `crown_nexus._pure.cache_keys`.
//!
//! Follows the canonical encoding defined in that module's docstring byte for byte:
//! leaves, containers and composites with u32le lengths, BLAKE2b-256 over a domain prefix.
//! Exact builtin types are encoded here; every other value goes through the pure module's
//! `_reduce`, so the rules for the rarer types (Enum, datetime, dataclasses, ...) live in one
//! place. Errors are the pure module's `UnhashableValueError`.
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};
use std::cell::RefCell;

/// BLAKE2b with a 256-bit digest (`hashlib.blake2b(digest_size=32)`).
type Blake2b256 = Blake2b<U32>;

const KEY_DOMAIN: &[u8] = b"cnk1";
const VALUE_DOMAIN: &[u8] = b"cnv1";
const CANONICAL_NAN: u64 = 0x7ff8_0000_0000_0000;

/// What we need from the pure module, looked up once.
struct Pure {
    reduce: PyObject,
    unhashable: Py<PyType>,
    max_depth: usize,
    // exact types encoded here without a call to `_reduce` (same bytes as `_reduce` gives)
    uuid: Py<PyType>,
    datetime: Py<PyType>,
    date: Py<PyType>,
    time: Py<PyType>,
    timedelta: Py<PyType>,
    decimal: Py<PyType>,
}

static PURE: GILOnceCell<Pure> = GILOnceCell::new();

fn pure(py: Python<'_>) -> PyResult<&'static Pure> {
    PURE.get_or_try_init(py, || {
        let module = py.import("crown_nexus._pure.cache_keys")?;
        Ok(Pure {
            reduce: module.getattr("_reduce")?.unbind(),
            unhashable: module
                .getattr("UnhashableValueError")?
                .downcast_into::<PyType>()?
                .unbind(),
            max_depth: module.getattr("MAX_DEPTH")?.extract()?,
            uuid: class(py, "uuid", "UUID")?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            time: class(py, "datetime", "time")?,
            timedelta: class(py, "datetime", "timedelta")?,
            decimal: class(py, "decimal", "Decimal")?,
        })
    })
}

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py
        .import(module)?
        .getattr(name)?
        .downcast_into::<PyType>()?
        .unbind())
}

/// `"{module}.{qualname}"` of the value's type, as the pure module names it.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    let ty = value.get_type();
    let module = ty
        .getattr("__module__")
        .and_then(|m| m.extract::<String>())
        .unwrap_or_default();
    let qualname = ty
        .getattr("__qualname__")
        .and_then(|m| m.extract::<String>())
        .unwrap_or_default();
    format!("{module}.{qualname}")
}

/// Tags whose node is a leaf (`tag + u32le(len(head)) + head`), as in the pure module.
const LEAF_TAGS: &[u8] = b"NTFifsbyDamecu";

/// Lowercase hex of an i64 with a leading `-` when negative, as Python's `format(v, "x")`,
/// written right-aligned into `buf`; returns where it starts.
fn put_hex_i64(buf: &mut [u8; 17], v: i64) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    i
}

/// Members of a dict or set kept on the stack (more spill to the heap).
const SMALL: usize = 16;

type Pair<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// `(start, end)` of each member node written to the output, on the stack while few.
struct Pieces {
    stack: [(usize, usize); SMALL],
    len: usize,
    heap: Vec<(usize, usize)>,
}

impl Pieces {
    fn new() -> Self {
        Pieces {
            stack: [(0, 0); SMALL],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, piece: (usize, usize)) {
        if self.len < SMALL {
            self.stack[self.len] = piece;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack);
            }
            self.heap.push(piece);
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn as_mut_slice(&mut self) -> &mut [(usize, usize)] {
        if self.len <= SMALL {
            &mut self.stack[..self.len]
        } else {
            &mut self.heap
        }
    }
}

struct Encoder<'a> {
    pure: &'a Pure,
}

impl Encoder<'_> {
    fn error(&self, py: Python<'_>, message: String) -> PyErr {
        PyErr::from_type(self.pure.unhashable.bind(py).clone(), message)
    }

    fn too_deep(&self, py: Python<'_>) -> PyErr {
        self.error(
            py,
            format!(
                "cannot hash a value nested more than {} levels deep (or one that contains itself)",
                self.pure.max_depth
            ),
        )
    }

    fn u32_of(&self, py: Python<'_>, n: usize) -> PyResult<[u8; 4]> {
        match u32::try_from(n) {
            Ok(v) => Ok(v.to_le_bytes()),
            Err(_) => Err(self.error(
                py,
                "cannot hash a value with more than 4294967295 bytes or items in one piece"
                    .to_owned(),
            )),
        }
    }

    /// `tag + u32le(len(head)) + head`
    fn leaf(&self, py: Python<'_>, out: &mut Vec<u8>, tag: u8, head: &[u8]) -> PyResult<()> {
        let len = self.u32_of(py, head.len())?;
        out.push(tag);
        out.extend_from_slice(&len);
        out.extend_from_slice(head);
        Ok(())
    }

    /// Write `tag` and a placeholder child count; returns where the count goes.
    fn open(out: &mut Vec<u8>, tag: u8) -> usize {
        out.push(tag);
        let at = out.len();
        out.extend_from_slice(&[0u8; 4]);
        at
    }

    fn close(&self, py: Python<'_>, out: &mut [u8], at: usize, n: usize) -> PyResult<()> {
        let count = self.u32_of(py, n)?;
        out[at..at + 4].copy_from_slice(&count);
        Ok(())
    }

    /// Reorder the member nodes written to `out[region..]` (at `pieces`) bytewise, then write
    /// the child count `n` at `at`. Nothing moves when they are already in order (one member).
    fn sort_region(
        &self,
        py: Python<'_>,
        out: &mut Vec<u8>,
        at: usize,
        region: usize,
        pieces: &mut [(usize, usize)],
        n: usize,
    ) -> PyResult<()> {
        if pieces.len() > 1 {
            let data: &[u8] = out;
            pieces.sort_unstable_by(|&(a, b), &(c, d)| data[a..b].cmp(&data[c..d]));
            if !pieces.windows(2).all(|w| w[0].0 < w[1].0) {
                let written = out[region..].to_vec();
                out.truncate(region);
                for &(a, b) in pieces.iter() {
                    out.extend_from_slice(&written[a - region..b - region]);
                }
            }
        }
        self.close(py, out, at, n)
    }

    fn encode(&self, value: &Bound<'_, PyAny>, depth: usize, out: &mut Vec<u8>) -> PyResult<()> {
        let py = value.py();
        if depth > self.pure.max_depth {
            return Err(self.too_deep(py));
        }
        if value.is_exact_instance_of::<PyString>() {
            let s = unsafe { value.downcast_unchecked::<PyString>() };
            return match s.to_str() {
                Ok(text) => self.leaf(py, out, b's', text.as_bytes()),
                Err(_) => {
                    let raw = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                    self.leaf(py, out, b's', raw.downcast::<PyBytes>()?.as_bytes())
                }
            };
        }
        if value.is_exact_instance_of::<PyInt>() {
            let mut overflow: std::os::raw::c_int = 0;
            let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(value.as_ptr(), &mut overflow) };
            if overflow == 0 && (v != -1 || unsafe { ffi::PyErr_Occurred() }.is_null()) {
                let mut head = [0u8; 17];
                let start = put_hex_i64(&mut head, v);
                return self.leaf(py, out, b'i', &head[start..]);
            }
            if overflow == 0 {
                return Err(PyErr::fetch(py));
            }
            let text = value.call_method1(intern!(py, "__format__"), ("x",))?;
            return self.leaf(
                py,
                out,
                b'i',
                text.downcast::<PyString>()?.to_str()?.as_bytes(),
            );
        }
        if value.is_none() {
            return self.leaf(py, out, b'N', b"");
        }
        if value.is_exact_instance_of::<PyBool>() {
            let truth = unsafe { value.downcast_unchecked::<PyBool>() }.is_true();
            return self.leaf(py, out, if truth { b'T' } else { b'F' }, b"");
        }
        if value.is_exact_instance_of::<PyFloat>() {
            let v = unsafe { value.downcast_unchecked::<PyFloat>() }.value();
            let bits = if v.is_nan() {
                CANONICAL_NAN
            } else {
                v.to_bits()
            };
            return self.leaf(py, out, b'f', &bits.to_be_bytes());
        }
        if value.is_exact_instance_of::<PyBytes>() {
            let raw = unsafe { value.downcast_unchecked::<PyBytes>() }.as_bytes();
            return self.leaf(py, out, b'b', raw);
        }
        if value.is_exact_instance_of::<PyList>() {
            let at = Self::open(out, b'l');
            let mut n = 0;
            for item in unsafe { value.downcast_unchecked::<PyList>() }.iter() {
                self.encode(&item, depth + 1, out)?;
                n += 1;
            }
            return self.close(py, out, at, n);
        }
        if value.is_exact_instance_of::<PyTuple>() {
            let at = Self::open(out, b't');
            let mut n = 0;
            for item in unsafe { value.downcast_unchecked::<PyTuple>() }.iter() {
                self.encode(&item, depth + 1, out)?;
                n += 1;
            }
            return self.close(py, out, at, n);
        }
        if value.is_exact_instance_of::<PyDict>() {
            // snapshot the pairs first: encoding may run Python code (via _reduce)
            // (on the stack for small dicts; no Python code runs while the snapshot is taken)
            let len = unsafe { ffi::PyDict_Size(value.as_ptr()) }.max(0) as usize;
            let mut small: [Option<Pair<'_>>; SMALL] = Default::default();
            let mut big: Vec<Option<Pair<'_>>> = Vec::new();
            let mut n = 0;
            let mut pos: ffi::Py_ssize_t = 0;
            let mut key: *mut ffi::PyObject = std::ptr::null_mut();
            let mut val: *mut ffi::PyObject = std::ptr::null_mut();
            if len > SMALL {
                big.reserve_exact(len);
            }
            while unsafe { ffi::PyDict_Next(value.as_ptr(), &mut pos, &mut key, &mut val) } != 0 {
                let pair = unsafe {
                    (
                        Bound::from_borrowed_ptr(py, key),
                        Bound::from_borrowed_ptr(py, val),
                    )
                };
                if len > SMALL {
                    big.push(Some(pair));
                } else if n < SMALL {
                    small[n] = Some(pair);
                }
                n += 1;
            }
            let snapshot: &[Option<Pair<'_>>] = if len > SMALL {
                &big
            } else {
                &small[..n.min(SMALL)]
            };
            let at = Self::open(out, b'd');
            let region = out.len();
            let mut pieces = Pieces::new();
            for (k, v) in snapshot.iter().flatten() {
                let start = out.len();
                self.encode(k, depth + 1, out)?;
                self.encode(v, depth + 1, out)?;
                pieces.push((start, out.len()));
            }
            let count = 2 * pieces.len();
            return self.sort_region(py, out, at, region, pieces.as_mut_slice(), count);
        }
        let is_set = value.is_exact_instance_of::<PySet>();
        if is_set || value.is_exact_instance_of::<PyFrozenSet>() {
            let at = Self::open(out, if is_set { b'S' } else { b'z' });
            let region = out.len();
            let mut pieces = Pieces::new();
            for item in value.try_iter()? {
                let start = out.len();
                self.encode(&item?, depth + 1, out)?;
                pieces.push((start, out.len()));
            }
            let count = pieces.len();
            return self.sort_region(py, out, at, region, pieces.as_mut_slice(), count);
        }
        if self.encode_known(value, out)? {
            return Ok(());
        }
        self.encode_reduced(value, depth, out)
    }

    /// Encode an exact UUID, datetime, date, time, timedelta or Decimal as `_reduce` would;
    /// return false (writing nothing) for any other value.
    fn encode_known(&self, value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<bool> {
        let py = value.py();
        let ty = value.get_type_ptr();
        let pure = self.pure;
        if ty == pure.uuid.as_ptr().cast() {
            let int: u128 = value.getattr(intern!(py, "int"))?.extract()?;
            self.leaf(py, out, b'u', &int.to_be_bytes())?;
        } else if ty == pure.datetime.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            self.leaf(
                py,
                out,
                b'D',
                text.downcast::<PyString>()?.to_str()?.as_bytes(),
            )?;
        } else if ty == pure.date.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            self.leaf(
                py,
                out,
                b'a',
                text.downcast::<PyString>()?.to_str()?.as_bytes(),
            )?;
        } else if ty == pure.time.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            self.leaf(
                py,
                out,
                b'm',
                text.downcast::<PyString>()?.to_str()?.as_bytes(),
            )?;
        } else if ty == pure.timedelta.as_ptr().cast() {
            let days: i64 = value.getattr(intern!(py, "days"))?.extract()?;
            let seconds: i64 = value.getattr(intern!(py, "seconds"))?.extract()?;
            let micros: i64 = value.getattr(intern!(py, "microseconds"))?.extract()?;
            self.leaf(
                py,
                out,
                b'e',
                format!("{days},{seconds},{micros}").as_bytes(),
            )?;
        } else if ty == pure.decimal.as_ptr().cast() {
            let text = value.str()?;
            self.leaf(py, out, b'c', text.to_str()?.as_bytes())?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    fn encode_reduced(
        &self,
        value: &Bound<'_, PyAny>,
        depth: usize,
        out: &mut Vec<u8>,
    ) -> PyResult<()> {
        let py = value.py();
        let reduced = self.pure.reduce.bind(py).call1((value,))?;
        let reduced = reduced.downcast::<PyTuple>()?;
        let tag = reduced.get_item(0)?;
        let children = reduced.get_item(2)?;
        let children = children.downcast::<PyTuple>()?;
        if tag.is_none() {
            return self.encode(&children.get_item(0)?, depth, out);
        }
        let tag_bytes = tag.downcast::<PyBytes>()?.as_bytes();
        if tag_bytes.len() != 1 {
            return Err(PyTypeError::new_err("_reduce returned a malformed tag"));
        }
        let head_obj = reduced.get_item(1)?;
        let head = head_obj.downcast::<PyBytes>()?.as_bytes();
        if LEAF_TAGS.contains(&tag_bytes[0]) {
            return self.leaf(py, out, tag_bytes[0], head);
        }
        // composite: tag + u32le(len(head)) + head + u32le(n) + children
        self.leaf(py, out, tag_bytes[0], head)?;
        let at = out.len();
        out.extend_from_slice(&[0u8; 4]);
        let mut n = 0;
        for child in children.iter() {
            self.encode(&child, depth + 1, out)?;
            n += 1;
        }
        self.close(py, out, at, n)
    }
}

/// Two lowercase hex digits for every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    table
};

thread_local! {
    /// Encoding buffer reused between calls on this thread (taken out while in use, so a call
    /// re-entered from Python code run by `_reduce` simply gets a fresh one).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest buffer kept between calls (a huge argument does not pin its memory).
const KEEP_BUFFER: usize = 16 * 1024;

/// Encode into the reused buffer (`domain` first) and return the hex BLAKE2b-256 digest.
fn digest_with<'py>(
    py: Python<'py>,
    domain: &[u8],
    fill: impl FnOnce(&mut Vec<u8>) -> PyResult<()>,
) -> PyResult<Bound<'py, PyString>> {
    let mut out = BUFFER.with(|b| b.take());
    out.clear();
    if out.capacity() == 0 {
        out.reserve(256);
    }
    out.extend_from_slice(domain);
    let filled = fill(&mut out);
    let digest = filled.map(|()| Blake2b256::digest(&out));
    if out.capacity() <= KEEP_BUFFER {
        BUFFER.with(|b| {
            let mut slot = b.borrow_mut();
            if slot.capacity() == 0 {
                *slot = out;
            }
        });
    }
    let digest = digest?;
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
        pair.copy_from_slice(&HEX_PAIRS[*byte as usize]);
    }
    // SAFETY: every byte is an ASCII hex digit
    Ok(PyString::new(py, unsafe {
        std::str::from_utf8_unchecked(&hex)
    }))
}

/// Stable hex digest (64 chars) of the call `qualname(*args, **kwargs)`; see the pure module.
#[pyfunction]
fn make_key<'py>(
    py: Python<'py>,
    qualname: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
    kwargs: &Bound<'_, PyAny>,
) -> PyResult<Bound<'py, PyString>> {
    if !qualname.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "qualname must be a str, not {}",
            type_name(qualname)
        )));
    }
    if !args.is_instance_of::<PyTuple>() {
        return Err(PyTypeError::new_err(format!(
            "args must be a tuple, not {}",
            type_name(args)
        )));
    }
    if !kwargs.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err(format!(
            "kwargs must be a dict, not {}",
            type_name(kwargs)
        )));
    }
    let encoder = Encoder { pure: pure(py)? };
    digest_with(py, KEY_DOMAIN, |out| {
        encoder.encode(qualname, 0, out)?;
        if args.is_exact_instance_of::<PyTuple>() {
            encoder.encode(args, 0, out)?;
        } else {
            let exact = py.get_type::<PyTuple>().call1((args,))?;
            encoder.encode(&exact, 0, out)?;
        }
        if kwargs.is_exact_instance_of::<PyDict>() {
            encoder.encode(kwargs, 0, out)
        } else {
            let exact = py.get_type::<PyDict>().call1((kwargs,))?;
            encoder.encode(&exact, 0, out)
        }
    })
}

/// Stable hex digest (64 chars) of one value (a strong ETag); see the pure module.
#[pyfunction]
fn hash_value<'py>(py: Python<'py>, value: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let encoder = Encoder { pure: pure(py)? };
    digest_with(py, VALUE_DOMAIN, |out| encoder.encode(value, 0, out))
}

pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("IMPLEMENTATION", "native")?;
    m.add_function(wrap_pyfunction!(make_key, m)?)?;
    m.add_function(wrap_pyfunction!(hash_value, m)?)?;
    Ok(())
}
