//! cache_keys hot path: the compiled twin of `crown_nexus._pure.cache_keys`.
//!
//! Follows the canonical encoding defined in that module's docstring byte for byte:
//! `node = tag + u64le(len(head)) + head + u64le(n) + children`, sha256 over a domain prefix.
//! Exact builtin types are encoded here; every other value goes through the pure module's
//! `_reduce`, so the rules for the rarer types (Enum, datetime, dataclasses, ...) live in one
//! place. Errors are the pure module's `UnhashableValueError`.
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};
use sha2::{Digest, Sha256};

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

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn leaf(out: &mut Vec<u8>, tag: u8, head: &[u8]) {
    out.push(tag);
    put_len(out, head.len());
    out.extend_from_slice(head);
    put_len(out, 0);
}

/// Start a node with an empty head; returns the offset of its child count (patched later).
fn open_node(out: &mut Vec<u8>, tag: u8, head: &[u8]) -> usize {
    out.push(tag);
    put_len(out, head.len());
    out.extend_from_slice(head);
    let at = out.len();
    put_len(out, 0);
    at
}

fn close_node(out: &mut [u8], at: usize, n: usize) {
    out[at..at + 8].copy_from_slice(&(n as u64).to_le_bytes());
}

fn hex_i64(v: i64) -> String {
    if v < 0 {
        format!("-{:x}", v.unsigned_abs())
    } else {
        format!("{v:x}")
    }
}

struct Encoder<'a> {
    pure: &'a Pure,
}

impl Encoder<'_> {
    fn too_deep(&self, py: Python<'_>) -> PyErr {
        PyErr::from_type(
            self.pure.unhashable.bind(py).clone(),
            format!(
                "cannot hash a value nested more than {} levels deep (or one that contains itself)",
                self.pure.max_depth
            ),
        )
    }

    fn encode(&self, value: &Bound<'_, PyAny>, depth: usize, out: &mut Vec<u8>) -> PyResult<()> {
        let py = value.py();
        if depth > self.pure.max_depth {
            return Err(self.too_deep(py));
        }
        if value.is_exact_instance_of::<PyString>() {
            let s = unsafe { value.downcast_unchecked::<PyString>() };
            match s.to_str() {
                Ok(text) => leaf(out, b's', text.as_bytes()),
                Err(_) => {
                    let raw = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                    leaf(out, b's', raw.downcast::<PyBytes>()?.as_bytes());
                }
            }
            return Ok(());
        }
        if value.is_exact_instance_of::<PyInt>() {
            match value.extract::<i64>() {
                Ok(v) => leaf(out, b'i', hex_i64(v).as_bytes()),
                Err(_) => {
                    let text = value.call_method1("__format__", ("x",))?;
                    leaf(out, b'i', text.downcast::<PyString>()?.to_str()?.as_bytes());
                }
            }
            return Ok(());
        }
        if value.is_none() {
            leaf(out, b'N', b"");
            return Ok(());
        }
        if value.is_exact_instance_of::<PyBool>() {
            leaf(out, if value.is_truthy()? { b'T' } else { b'F' }, b"");
            return Ok(());
        }
        if value.is_exact_instance_of::<PyFloat>() {
            let v = unsafe { value.downcast_unchecked::<PyFloat>() }.value();
            let bits = if v.is_nan() {
                CANONICAL_NAN
            } else {
                v.to_bits()
            };
            leaf(out, b'f', &bits.to_be_bytes());
            return Ok(());
        }
        if value.is_exact_instance_of::<PyBytes>() {
            leaf(
                out,
                b'b',
                unsafe { value.downcast_unchecked::<PyBytes>() }.as_bytes(),
            );
            return Ok(());
        }
        if value.is_exact_instance_of::<PyList>() {
            let at = open_node(out, b'l', b"");
            let mut n = 0;
            for item in unsafe { value.downcast_unchecked::<PyList>() }.iter() {
                self.encode(&item, depth + 1, out)?;
                n += 1;
            }
            close_node(out, at, n);
            return Ok(());
        }
        if value.is_exact_instance_of::<PyTuple>() {
            let at = open_node(out, b't', b"");
            let mut n = 0;
            for item in unsafe { value.downcast_unchecked::<PyTuple>() }.iter() {
                self.encode(&item, depth + 1, out)?;
                n += 1;
            }
            close_node(out, at, n);
            return Ok(());
        }
        if value.is_exact_instance_of::<PyDict>() {
            let dict = unsafe { value.downcast_unchecked::<PyDict>() };
            // snapshot the items: encoding may run Python code (via _reduce)
            let items = dict.items();
            let mut pairs: Vec<Vec<u8>> = Vec::with_capacity(items.len());
            for item in items.iter() {
                let pair = item.downcast_into::<PyTuple>()?;
                let mut buf = Vec::new();
                self.encode(&pair.get_item(0)?, depth + 1, &mut buf)?;
                self.encode(&pair.get_item(1)?, depth + 1, &mut buf)?;
                pairs.push(buf);
            }
            pairs.sort_unstable();
            let at = open_node(out, b'd', b"");
            for pair in &pairs {
                out.extend_from_slice(pair);
            }
            close_node(out, at, 2 * pairs.len());
            return Ok(());
        }
        let is_set = value.is_exact_instance_of::<PySet>();
        if is_set || value.is_exact_instance_of::<PyFrozenSet>() {
            let mut members: Vec<Vec<u8>> = Vec::new();
            for item in value.try_iter()? {
                let mut buf = Vec::new();
                self.encode(&item?, depth + 1, &mut buf)?;
                members.push(buf);
            }
            members.sort_unstable();
            let at = open_node(out, if is_set { b'S' } else { b'z' }, b"");
            for member in &members {
                out.extend_from_slice(member);
            }
            close_node(out, at, members.len());
            return Ok(());
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
            leaf(out, b'u', &int.to_be_bytes());
        } else if ty == pure.datetime.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            leaf(out, b'D', text.downcast::<PyString>()?.to_str()?.as_bytes());
        } else if ty == pure.date.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            leaf(out, b'a', text.downcast::<PyString>()?.to_str()?.as_bytes());
        } else if ty == pure.time.as_ptr().cast() {
            let text = value.call_method0(intern!(py, "isoformat"))?;
            leaf(out, b'm', text.downcast::<PyString>()?.to_str()?.as_bytes());
        } else if ty == pure.timedelta.as_ptr().cast() {
            let days: i64 = value.getattr(intern!(py, "days"))?.extract()?;
            let seconds: i64 = value.getattr(intern!(py, "seconds"))?.extract()?;
            let micros: i64 = value.getattr(intern!(py, "microseconds"))?.extract()?;
            leaf(out, b'e', format!("{days},{seconds},{micros}").as_bytes());
        } else if ty == pure.decimal.as_ptr().cast() {
            let text = value.str()?;
            leaf(out, b'c', text.to_str()?.as_bytes());
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
        let head = reduced.get_item(1)?;
        let at = open_node(out, tag_bytes[0], head.downcast::<PyBytes>()?.as_bytes());
        let mut n = 0;
        for child in children.iter() {
            self.encode(&child, depth + 1, out)?;
            n += 1;
        }
        close_node(out, at, n);
        Ok(())
    }
}

fn hex_digest(data: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for byte in digest {
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 0xf) as usize] as char);
    }
    s
}

/// Stable hex digest (64 chars) of the call `qualname(*args, **kwargs)`; see the pure module.
#[pyfunction]
fn make_key(
    py: Python<'_>,
    qualname: &Bound<'_, PyAny>,
    args: &Bound<'_, PyAny>,
    kwargs: &Bound<'_, PyAny>,
) -> PyResult<String> {
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
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(KEY_DOMAIN);
    encoder.encode(qualname, 0, &mut out)?;
    if args.is_exact_instance_of::<PyTuple>() {
        encoder.encode(args, 0, &mut out)?;
    } else {
        let exact = py.get_type::<PyTuple>().call1((args,))?;
        encoder.encode(&exact, 0, &mut out)?;
    }
    if kwargs.is_exact_instance_of::<PyDict>() {
        encoder.encode(kwargs, 0, &mut out)?;
    } else {
        let exact = py.get_type::<PyDict>().call1((kwargs,))?;
        encoder.encode(&exact, 0, &mut out)?;
    }
    Ok(hex_digest(&out))
}

/// Stable hex digest (64 chars) of one value (a strong ETag); see the pure module.
#[pyfunction]
fn hash_value(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<String> {
    let encoder = Encoder { pure: pure(py)? };
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(VALUE_DOMAIN);
    encoder.encode(value, 0, &mut out)?;
    Ok(hex_digest(&out))
}

pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("IMPLEMENTATION", "native")?;
    m.add_function(wrap_pyfunction!(make_key, m)?)?;
    m.add_function(wrap_pyfunction!(hash_value, m)?)?;
    Ok(())
}
