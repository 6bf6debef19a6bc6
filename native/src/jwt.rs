//! jwt hot path: the compiled twin of `crown_nexus._pure.jwt`.
//!
//! The pure module's docstring is the contract (token text rules, strict JSON, the check order of
//! `decode`, the reasons of `InvalidTokenError`); this file follows it step by step.
//!
//! Fast path, without calling into Python: argument checks, base64url, the strict JSON parser
//! that builds the header and claims dicts directly, HS256/384/512 (constant-time compare through
//! `Mac::verify_slice`), EdDSA (ed25519-dalek) and ES256 (p256), the claim rules.
//! Delegated to the pure module (the whole call, so the result is the pure one by construction):
//! RS256; keys whose PEM this crate cannot read (the pure module then accepts or refuses them);
//! argument types other than list/tuple/dict; claim or header values other than
//! None/bool/int/float/str/list/tuple/dict (e.g. `datetime`); `public_jwk`.
//! `InvalidTokenError` is the pure module's class, imported once.
//! Parsed public/private keys and keyed HMAC states (secret already absorbed) are cached per key
//! bytes, at most 64 per kind (the cache is emptied when full); only secrets that fit HMAC are
//! cached. Ed25519/P-256 signing and verifying run with the GIL released.
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signer, Verifier};
use hmac::{Hmac, Mac};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use sha2::{Sha256, Sha384, Sha512};

const PURE_MODULE: &str = "crown_nexus._pure.jwt";
const MAX_JSON_DEPTH: usize = 64;
const DEFAULT_MAX_LENGTH: i64 = 8192;
/// Deeper values are handed to the pure module (orjson's own limit is higher).
const MAX_ENCODE_DEPTH: usize = 100;
const KEY_CACHE_SIZE: usize = 64;
const NOT_A_SECRET: [&[u8]; 3] = [b"-----BEGIN", b"ssh-", b"ecdsa-sha2-"];

static PURE: GILOnceCell<Py<PyModule>> = GILOnceCell::new();
static INVALID_TOKEN_ERROR: GILOnceCell<Py<PyType>> = GILOnceCell::new();

fn pure(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(PURE
        .get_or_try_init(py, || PyModule::import(py, PURE_MODULE).map(Bound::unbind))?
        .bind(py))
}

fn invalid_token_error(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    Ok(INVALID_TOKEN_ERROR
        .get_or_try_init(py, || -> PyResult<Py<PyType>> {
            Ok(pure(py)?
                .getattr("InvalidTokenError")?
                .downcast_into::<PyType>()?
                .unbind())
        })?
        .bind(py))
}

/// Why the fast path stopped.
enum Fail {
    /// refuse the token with this `InvalidTokenError.reason`
    Reason(&'static str),
    /// a Python error (TypeError, ValueError, ...) to raise as is
    Py(PyErr),
    /// hand the whole call to the pure module
    Delegate,
}

impl From<PyErr> for Fail {
    fn from(err: PyErr) -> Self {
        Fail::Py(err)
    }
}

type R<T> = Result<T, Fail>;

fn reason<T>(r: &'static str) -> R<T> {
    Err(Fail::Reason(r))
}

fn type_error<T>(msg: &str) -> R<T> {
    Err(Fail::Py(PyTypeError::new_err(msg.to_owned())))
}

fn value_error<T>(msg: &str) -> R<T> {
    Err(Fail::Py(PyValueError::new_err(msg.to_owned())))
}

fn raise_reason(py: Python<'_>, r: &'static str) -> PyErr {
    match invalid_token_error(py).and_then(|cls| cls.call1((r,))) {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}

// ------------------------------------------------------------------------------ keys

type HmacKind = u8; // 0: SHA-256, 1: SHA-384, 2: SHA-512

fn hmac_sign(state: HmacState, msg: &[u8]) -> Vec<u8> {
    match state {
        HmacState::S256(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        HmacState::S384(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
        HmacState::S512(mut mac) => {
            mac.update(msg);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// Constant-time HMAC check (`verify_slice` compares with `subtle`).
fn hmac_verify(state: HmacState, msg: &[u8], sig: &[u8]) -> bool {
    match state {
        HmacState::S256(mut mac) => {
            mac.update(msg);
            mac.verify_slice(sig).is_ok()
        }
        HmacState::S384(mut mac) => {
            mac.update(msg);
            mac.verify_slice(sig).is_ok()
        }
        HmacState::S512(mut mac) => {
            mac.update(msg);
            mac.verify_slice(sig).is_ok()
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An HMAC secret must be non-empty and must not look like a PEM or SSH key.
fn hmac_secret_fits(secret: &[u8]) -> bool {
    !secret.is_empty() && !NOT_A_SECRET.iter().any(|m| contains(secret, m))
}

struct KeyCache<K: Clone> {
    map: Mutex<HashMap<Vec<u8>, K>>,
}

impl<K: Clone> KeyCache<K> {
    fn new() -> Self {
        KeyCache {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The parsed key for `pem` (cached), or None when `parse` cannot read it.
    fn get(&self, pem: &[u8], parse: impl Fn(&[u8]) -> Option<K>) -> Option<K> {
        if let Ok(map) = self.map.lock() {
            if let Some(k) = map.get(pem) {
                return Some(k.clone());
            }
        }
        let key = parse(pem)?;
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= KEY_CACHE_SIZE {
                map.clear();
            }
            map.insert(pem.to_vec(), key.clone());
        }
        Some(key)
    }
}

/// `str` view of a PEM key (PEM is ASCII; anything else is not a PEM this crate reads).
fn pem_str(pem: &[u8]) -> Option<&str> {
    std::str::from_utf8(pem).ok()
}

/// HMAC state with the key already absorbed (ipad/opad blocks), cloned per message.
#[derive(Clone)]
enum HmacState {
    S256(Hmac<Sha256>),
    S384(Hmac<Sha384>),
    S512(Hmac<Sha512>),
}

static HMAC_KEYS: LazyLock<[KeyCache<HmacState>; 3]> =
    LazyLock::new(|| [KeyCache::new(), KeyCache::new(), KeyCache::new()]);

/// The keyed HMAC state for `key`, or None when the secret does not fit (empty, PEM, SSH key).
/// Only fitting secrets are cached, so a cache hit skips the check.
fn hmac_state(kind: HmacKind, key: &[u8]) -> Option<HmacState> {
    HMAC_KEYS[usize::from(kind)].get(key, |k| {
        if !hmac_secret_fits(k) {
            return None;
        }
        Some(match kind {
            0 => HmacState::S256(Hmac::<Sha256>::new_from_slice(k).ok()?),
            1 => HmacState::S384(Hmac::<Sha384>::new_from_slice(k).ok()?),
            _ => HmacState::S512(Hmac::<Sha512>::new_from_slice(k).ok()?),
        })
    })
}

static ED_PUBLIC: LazyLock<KeyCache<ed25519_dalek::VerifyingKey>> = LazyLock::new(KeyCache::new);
static ED_PRIVATE: LazyLock<KeyCache<ed25519_dalek::SigningKey>> = LazyLock::new(KeyCache::new);
static P256_PUBLIC: LazyLock<KeyCache<p256::ecdsa::VerifyingKey>> = LazyLock::new(KeyCache::new);
static P256_PRIVATE: LazyLock<KeyCache<p256::ecdsa::SigningKey>> = LazyLock::new(KeyCache::new);

#[derive(Clone, Copy, PartialEq)]
enum Alg {
    Hs(HmacKind),
    EdDsa,
    Es256,
    Rs256,
}

fn parse_alg(name: &str) -> Option<Alg> {
    match name {
        "HS256" => Some(Alg::Hs(0)),
        "HS384" => Some(Alg::Hs(1)),
        "HS512" => Some(Alg::Hs(2)),
        "EdDSA" => Some(Alg::EdDsa),
        "ES256" => Some(Alg::Es256),
        "RS256" => Some(Alg::Rs256),
        _ => None,
    }
}

// ------------------------------------------------------------------------------ arguments

/// `bytes` as is, `str` as UTF-8 (the caller keeps the Python object alive).
fn key_bytes<'a>(key: &'a Bound<'_, PyAny>) -> R<&'a [u8]> {
    if let Ok(b) = key.downcast::<PyBytes>() {
        return Ok(b.as_bytes());
    }
    if let Ok(s) = key.downcast::<PyString>() {
        return Ok(s.to_str()?.as_bytes());
    }
    type_error(&format!(
        "key must be bytes or str, not {}",
        key.get_type().name()?
    ))
}

/// A list or tuple of str; other sequences go to the pure module.
fn str_items<'py>(name: &str, value: &Bound<'py, PyAny>) -> R<Vec<Bound<'py, PyString>>> {
    let msg = format!("{name} must be a sequence of str");
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        return type_error(&msg);
    }
    let items: Vec<Bound<'py, PyAny>> = if let Ok(l) = value.downcast_exact::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = value.downcast_exact::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(Fail::Delegate);
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.downcast_into::<PyString>() {
            Ok(s) => out.push(s),
            Err(_) => return type_error(&msg),
        }
    }
    Ok(out)
}

fn as_float(name: &str, value: &Bound<'_, PyAny>) -> R<f64> {
    if value.is_instance_of::<PyBool>()
        || !(value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>())
    {
        return type_error(&format!("{name} must be a number"));
    }
    let f: f64 = value.extract()?;
    if !f.is_finite() {
        return value_error(&format!("{name} must be finite"));
    }
    Ok(f)
}

fn max_length_of(value: Option<&Bound<'_, PyAny>>) -> R<i64> {
    let Some(v) = value.filter(|v| !v.is_none()) else {
        return Ok(DEFAULT_MAX_LENGTH);
    };
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return type_error("max_length must be an int");
    }
    match v.extract::<i64>() {
        Ok(n) => Ok(n),
        Err(_) => Ok(if v.gt(0)? { i64::MAX } else { i64::MIN }),
    }
}

fn str_eq(a: &Bound<'_, PyString>, b: &str) -> bool {
    a.to_str().map(|s| s == b).unwrap_or(false)
}

// ------------------------------------------------------------------------------ strict JSON

enum JsonNum {
    I(i64),
    U(u64),
    F(f64),
}

struct JsonParser<'a, 'py> {
    py: Python<'py>,
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

fn malformed<T>() -> R<T> {
    reason("malformed")
}

impl<'a, 'py> JsonParser<'a, 'py> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self) -> R<Bound<'py, PyAny>> {
        match self.peek() {
            Some(b'{') => Ok(self.object()?.into_any()),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(self.string()?.into_any()),
            Some(b't') => self.literal(b"true", PyBool::new(self.py, true).to_owned().into_any()),
            Some(b'f') => self.literal(b"false", PyBool::new(self.py, false).to_owned().into_any()),
            Some(b'n') => self.literal(b"null", self.py.None().into_bound(self.py)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => malformed(),
        }
    }

    fn literal_ok(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            malformed()
        }
    }

    fn literal(&mut self, word: &[u8], value: Bound<'py, PyAny>) -> R<Bound<'py, PyAny>> {
        self.literal_ok(word)?;
        Ok(value)
    }

    /// Check one value without building it (same grammar and limits as `value`).
    fn skip_value(&mut self) -> R<()> {
        match self.peek() {
            Some(b'{') => self.skip_container(b'}', true),
            Some(b'[') => self.skip_container(b']', false),
            Some(b'"') => self.string_raw().map(|_| ()),
            Some(b't') => self.literal_ok(b"true"),
            Some(b'f') => self.literal_ok(b"false"),
            Some(b'n') => self.literal_ok(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number_raw().map(|_| ()),
            _ => malformed(),
        }
    }

    fn skip_container(&mut self, close: u8, is_object: bool) -> R<()> {
        self.enter()?;
        if self.peek() == Some(close) {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if is_object {
                if self.peek() != Some(b'"') {
                    return malformed();
                }
                self.string_raw()?;
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return malformed();
                }
                self.i += 1;
                self.skip_ws();
            }
            self.skip_value()?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.skip_ws();
                }
                Some(c) if c == close => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return malformed(),
            }
        }
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return malformed();
        }
        self.i += 1;
        self.skip_ws();
        Ok(())
    }

    fn object(&mut self) -> R<Bound<'py, PyDict>> {
        self.enter()?;
        let dict = PyDict::new(self.py);
        if self.peek() == Some(b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(dict);
        }
        loop {
            if self.peek() != Some(b'"') {
                return malformed();
            }
            let key = self.key()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return malformed();
            }
            self.i += 1;
            self.skip_ws();
            let value = self.value()?;
            dict.set_item(key, value)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(dict);
                }
                _ => return malformed(),
            }
        }
    }

    fn array(&mut self) -> R<Bound<'py, PyAny>> {
        self.enter()?;
        let list = PyList::empty(self.py);
        if self.peek() == Some(b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(list.into_any());
        }
        loop {
            list.append(self.value()?)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(list.into_any());
                }
                _ => return malformed(),
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let digits = self
            .b
            .get(self.i..self.i + 4)
            .ok_or(Fail::Reason("malformed"))?;
        let mut v = 0u32;
        for &d in digits {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return malformed(),
            };
            v = v * 16 + u32::from(n);
        }
        self.i += 4;
        Ok(v)
    }

    /// An object key: the names of registered and common claims/headers come from interned
    /// strings (no allocation, cached hash, pointer-equal dict lookups); others as `string`.
    fn key(&mut self) -> R<Bound<'py, PyString>> {
        let start = self.i + 1;
        let mut j = start;
        while j < self.b.len() {
            match self.b[j] {
                b'"' => {
                    if let Some(k) = known_key(self.py, &self.s[start..j]) {
                        self.i = j + 1;
                        return Ok(k);
                    }
                    break;
                }
                b'\\' => break,
                c if c < 0x20 => break,
                _ => j += 1,
            }
        }
        self.string()
    }

    fn string(&mut self) -> R<Bound<'py, PyString>> {
        let text = self.string_raw()?;
        Ok(PyString::new(self.py, &text))
    }

    /// One JSON string (at its opening quote), unescaped; borrowed when it has no escapes.
    fn string_raw(&mut self) -> R<Cow<'a, str>> {
        self.i += 1; // opening quote
        let start = self.i;
        // fast path: no escapes
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                b'\\' => break,
                c if c < 0x20 => return malformed(),
                _ => self.i += 1,
            }
        }
        let mut out = String::from(&self.s[start..self.i]);
        loop {
            let Some(c) = self.peek() else {
                return malformed();
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return malformed();
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return malformed();
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return malformed();
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return malformed();
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).ok_or(Fail::Reason("malformed"))?);
                        }
                        _ => return malformed(),
                    }
                }
                c if c < 0x20 => return malformed(),
                _ => {
                    // copy a run of plain bytes (the document is valid UTF-8; runs end at ASCII)
                    let run_start = self.i;
                    while self.i < self.b.len()
                        && !matches!(self.b[self.i], b'"' | b'\\')
                        && self.b[self.i] >= 0x20
                    {
                        self.i += 1;
                    }
                    out.push_str(&self.s[run_start..self.i]);
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> R<Bound<'py, PyAny>> {
        Ok(match self.number_raw()? {
            JsonNum::I(v) => v.into_pyobject(self.py).map_err(PyErr::from)?.into_any(),
            JsonNum::U(v) => v.into_pyobject(self.py).map_err(PyErr::from)?.into_any(),
            JsonNum::F(v) => PyFloat::new(self.py, v).into_any(),
        })
    }

    fn number_raw(&mut self) -> R<JsonNum> {
        let start = self.i;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return malformed(),
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return malformed();
            }
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return malformed();
            }
            is_float = true;
        }
        let text = &self.s[start..self.i];
        if !is_float {
            // integers within 64 bits stay integers (`-0` is 0); larger ones become floats
            if negative {
                if let Ok(v) = text.parse::<i64>() {
                    return Ok(JsonNum::I(v));
                }
            } else if let Ok(v) = text.parse::<u64>() {
                return Ok(JsonNum::U(v));
            }
        }
        let f: f64 = text.parse().map_err(|_| Fail::Reason("malformed"))?;
        if !f.is_finite() {
            return malformed();
        }
        Ok(JsonNum::F(f))
    }
}

/// Interned Python strings for the keys almost every token has.
fn known_key<'py>(py: Python<'py>, name: &str) -> Option<Bound<'py, PyString>> {
    use pyo3::intern;
    let key = match name {
        "alg" => intern!(py, "alg"),
        "typ" => intern!(py, "typ"),
        "kid" => intern!(py, "kid"),
        "sub" => intern!(py, "sub"),
        "exp" => intern!(py, "exp"),
        "iat" => intern!(py, "iat"),
        "nbf" => intern!(py, "nbf"),
        "jti" => intern!(py, "jti"),
        "iss" => intern!(py, "iss"),
        "aud" => intern!(py, "aud"),
        "type" => intern!(py, "type"),
        "role" => intern!(py, "role"),
        "permissions" => intern!(py, "permissions"),
        "user_data" => intern!(py, "user_data"),
        _ => return None,
    };
    Some(key.clone())
}

/// Parse `raw` as a strict JSON object (see the pure module): `malformed` otherwise.
fn parse_json_object<'py>(py: Python<'py>, raw: &[u8]) -> R<Bound<'py, PyDict>> {
    let s = std::str::from_utf8(raw).map_err(|_| Fail::Reason("malformed"))?;
    let mut p = JsonParser {
        py,
        s,
        b: raw,
        i: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return malformed();
    }
    let obj = p.object()?;
    p.skip_ws();
    if p.i != raw.len() {
        return malformed();
    }
    Ok(obj)
}

// ------------------------------------------------------------------------------ token text

fn b64_decode(segment: &str) -> R<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| Fail::Reason("malformed"))
}

/// Steps 1-2 and the segment split: (token text, header, payload, signature segments).
fn segments<'t>(token: &'t Bound<'_, PyAny>, max_length: i64) -> R<[&'t str; 4]> {
    let Ok(token) = token.downcast::<PyString>() else {
        return malformed();
    };
    let length = token.len()?;
    if i64::try_from(length).unwrap_or(i64::MAX) > max_length {
        return reason("too_large");
    }
    let Ok(text) = token.to_str() else {
        return malformed();
    };
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return malformed();
    };
    Ok([text, h, p, s])
}

/// Step 3 for `get_unverified_header`: the header as a dict, other segments checked.
fn header_dict<'py>(
    py: Python<'py>,
    token: &Bound<'py, PyAny>,
    max_length: i64,
) -> R<Bound<'py, PyDict>> {
    let [_, h, p, s] = segments(token, max_length)?;
    let header = parse_json_object(py, &b64_decode(h)?)?;
    b64_decode(p)?;
    b64_decode(s)?;
    match header.get_item(pyo3::intern!(py, "alg"))? {
        Some(a) if a.is_instance_of::<PyString>() => {}
        _ => return malformed(),
    }
    if let Some(kid) = header.get_item(pyo3::intern!(py, "kid"))? {
        if !kid.is_instance_of::<PyString>() {
            return malformed();
        }
    }
    Ok(header)
}

/// Step 3 for `decode`: the header JSON checked like `parse_json_object` but without building
/// it; returns `alg` (a string; `kid`, when present, a string), last duplicate winning.
fn scan_header(py: Python<'_>, raw: &[u8]) -> R<String> {
    let s = std::str::from_utf8(raw).map_err(|_| Fail::Reason("malformed"))?;
    let mut p = JsonParser {
        py,
        s,
        b: raw,
        i: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        return malformed();
    }
    p.enter()?;
    // None: absent; Some(None): not a string
    let mut alg: Option<Option<String>> = None;
    let mut kid_ok = true;
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            if p.peek() != Some(b'"') {
                return malformed();
            }
            let key = p.string_raw()?;
            p.skip_ws();
            if p.peek() != Some(b':') {
                return malformed();
            }
            p.i += 1;
            p.skip_ws();
            let is_str = p.peek() == Some(b'"');
            match key.as_ref() {
                "alg" if is_str => alg = Some(Some(p.string_raw()?.into_owned())),
                "alg" => {
                    p.skip_value()?;
                    alg = Some(None);
                }
                "kid" => {
                    p.skip_value()?;
                    kid_ok = is_str;
                }
                _ => p.skip_value()?,
            }
            p.skip_ws();
            match p.peek() {
                Some(b',') => {
                    p.i += 1;
                    p.skip_ws();
                }
                Some(b'}') => {
                    p.i += 1;
                    break;
                }
                _ => return malformed(),
            }
        }
    }
    p.skip_ws();
    if p.i != raw.len() {
        return malformed();
    }
    match alg {
        Some(Some(alg)) if kid_ok => Ok(alg),
        _ => malformed(),
    }
}

// ------------------------------------------------------------------------------ claims

/// Exact comparison of an integer with a float, as Python does it (None when `f` is NaN).
fn cmp_int_float(i: i128, f: f64) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    if f.is_nan() {
        return None;
    }
    // claims are 64-bit integers: beyond ±2^65 the float decides alone
    if f >= 3.7e19 {
        return Some(Ordering::Less);
    }
    if f <= -3.7e19 {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    let fi = floor as i128; // exact: |floor| < 2^66 and an integer
    Some(match i.cmp(&fi) {
        Ordering::Equal if f > floor => Ordering::Less,
        other => other,
    })
}

enum Num {
    Int(i128),
    Float(f64),
}

/// A JSON number claim (bool is not a number), or `invalid_claim`.
fn number_claim(value: &Bound<'_, PyAny>) -> R<Num> {
    if value.is_instance_of::<PyBool>() {
        return reason("invalid_claim");
    }
    if let Ok(f) = value.downcast::<PyFloat>() {
        return Ok(Num::Float(f.value()));
    }
    if value.is_instance_of::<PyInt>() {
        // the parser makes only 64-bit integers
        return Ok(Num::Int(match value.extract::<i64>() {
            Ok(i) => i128::from(i),
            Err(_) => i128::from(value.extract::<u64>()?),
        }));
    }
    reason("invalid_claim")
}

/// `claim <= bound`
fn num_le(n: &Num, bound: f64) -> bool {
    match n {
        Num::Float(f) => *f <= bound,
        Num::Int(i) => matches!(
            cmp_int_float(*i, bound),
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ),
    }
}

/// `claim > bound`
fn num_gt(n: &Num, bound: f64) -> bool {
    match n {
        Num::Float(f) => *f > bound,
        Num::Int(i) => matches!(cmp_int_float(*i, bound), Some(std::cmp::Ordering::Greater)),
    }
}

fn check_claims(
    claims: &Bound<'_, PyDict>,
    require: &Option<Vec<Bound<'_, PyString>>>,
    now: f64,
    leeway: f64,
    issuer: Option<&Bound<'_, PyString>>,
    audiences: &Option<Vec<Bound<'_, PyString>>>,
) -> R<()> {
    let py = claims.py();
    match require {
        Some(names) => {
            for name in names {
                match claims.get_item(name)? {
                    Some(v) if !v.is_none() => {}
                    _ => return reason("missing_claim"),
                }
            }
        }
        None => {
            let names = [
                pyo3::intern!(py, "exp"),
                pyo3::intern!(py, "iat"),
                pyo3::intern!(py, "sub"),
            ];
            for name in names {
                match claims.get_item(name)? {
                    Some(v) if !v.is_none() => {}
                    _ => return reason("missing_claim"),
                }
            }
        }
    }
    if let Some(exp) = claims.get_item(pyo3::intern!(py, "exp"))? {
        if num_le(&number_claim(&exp)?, now - leeway) {
            return reason("expired");
        }
    }
    if let Some(nbf) = claims.get_item(pyo3::intern!(py, "nbf"))? {
        if num_gt(&number_claim(&nbf)?, now + leeway) {
            return reason("not_yet_valid");
        }
    }
    if let Some(iat) = claims.get_item(pyo3::intern!(py, "iat"))? {
        if num_gt(&number_claim(&iat)?, now + leeway) {
            return reason("issued_in_future");
        }
    }
    if let Some(issuer) = issuer {
        match claims.get_item(pyo3::intern!(py, "iss"))? {
            None => return reason("missing_claim"),
            Some(iss) => {
                if !iss.eq(issuer)? {
                    return reason("wrong_issuer");
                }
            }
        }
    }
    match audiences {
        None => {
            if claims.contains(pyo3::intern!(py, "aud"))? {
                return reason("wrong_audience");
            }
        }
        Some(wanted) => {
            let Some(aud) = claims.get_item(pyo3::intern!(py, "aud"))? else {
                return reason("missing_claim");
            };
            let values: Vec<Bound<'_, PyAny>> = if aud.is_instance_of::<PyString>() {
                vec![aud]
            } else if let Ok(list) = aud.downcast::<PyList>() {
                let items: Vec<_> = list.iter().collect();
                if !items.iter().all(|a| a.is_instance_of::<PyString>()) {
                    return reason("invalid_claim");
                }
                items
            } else {
                return reason("invalid_claim");
            };
            let mut matched = false;
            'outer: for a in &values {
                for w in wanted {
                    if a.eq(w)? {
                        matched = true;
                        break 'outer;
                    }
                }
            }
            if !matched {
                return reason("wrong_audience");
            }
        }
    }
    for name in [pyo3::intern!(py, "sub"), pyo3::intern!(py, "jti")] {
        if let Some(v) = claims.get_item(name)? {
            if !v.is_instance_of::<PyString>() {
                return reason("invalid_claim");
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------ decode

#[allow(clippy::too_many_arguments)]
fn decode_fast<'py>(
    py: Python<'py>,
    token: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    algorithms: &Bound<'py, PyAny>,
    issuer: Option<&Bound<'py, PyAny>>,
    audience: Option<&Bound<'py, PyAny>>,
    leeway: Option<&Bound<'py, PyAny>>,
    now: Option<&Bound<'py, PyAny>>,
    require: Option<&Bound<'py, PyAny>>,
    max_length: Option<&Bound<'py, PyAny>>,
) -> R<Bound<'py, PyDict>> {
    // arguments, in the pure module's order
    let allowed = str_items("algorithms", algorithms)?;
    let require = match require.filter(|r| !r.is_none()) {
        None => None,
        Some(r) => Some(str_items("require", r)?),
    };
    let issuer = match issuer.filter(|i| !i.is_none()) {
        None => None,
        Some(i) => match i.downcast::<PyString>() {
            Ok(s) => Some(s.clone()),
            Err(_) => return type_error("issuer must be a str or None"),
        },
    };
    let audiences = match audience.filter(|a| !a.is_none()) {
        None => None,
        Some(a) => match a.downcast::<PyString>() {
            Ok(s) => Some(vec![s.clone()]),
            Err(_) => Some(str_items("audience", a)?),
        },
    };
    let leeway = match leeway.filter(|l| !l.is_none()) {
        None => 0.0,
        Some(l) => as_float("leeway", l)?,
    };
    let now = match now.filter(|n| !n.is_none()) {
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        Some(n) => as_float("now", n)?,
    };
    let key = key_bytes(key)?;
    let max_length = max_length_of(max_length)?;

    // 1-3 token text
    let [text, h, p, s] = segments(token, max_length)?;
    let alg_name = scan_header(py, &b64_decode(h)?)?;
    let payload = b64_decode(p)?;
    let signature = b64_decode(s)?;

    // 4 algorithm
    if !allowed.iter().any(|a| str_eq(a, &alg_name)) {
        return reason("algorithm_not_allowed");
    }
    let Some(alg) = parse_alg(&alg_name) else {
        return reason("algorithm_not_allowed");
    };
    let msg = &text.as_bytes()[..h.len() + 1 + p.len()];
    // 5 signature
    let ok = match alg {
        Alg::Hs(kind) => {
            let Some(state) = hmac_state(kind, key) else {
                return reason("algorithm_not_allowed");
            };
            hmac_verify(state, msg, &signature)
        }
        Alg::EdDsa => {
            let vk = ED_PUBLIC
                .get(key, |pem| {
                    ed25519_dalek::VerifyingKey::from_public_key_pem(pem_str(pem)?).ok()
                })
                .ok_or(Fail::Delegate)?;
            match ed25519_dalek::Signature::from_slice(&signature) {
                // tens of microseconds of curve arithmetic: let other Python threads run
                Ok(sig) => py.allow_threads(|| vk.verify(msg, &sig).is_ok()),
                Err(_) => false,
            }
        }
        Alg::Es256 => {
            let vk = P256_PUBLIC
                .get(key, |pem| {
                    p256::ecdsa::VerifyingKey::from_public_key_pem(pem_str(pem)?).ok()
                })
                .ok_or(Fail::Delegate)?;
            match p256::ecdsa::Signature::from_slice(&signature) {
                // tens of microseconds of curve arithmetic: let other Python threads run
                Ok(sig) => py.allow_threads(|| vk.verify(msg, &sig).is_ok()),
                Err(_) => false,
            }
        }
        Alg::Rs256 => return Err(Fail::Delegate),
    };
    if !ok {
        return reason("bad_signature");
    }
    // 6-13 claims
    let claims = parse_json_object(py, &payload)?;
    check_claims(&claims, &require, now, leeway, issuer.as_ref(), &audiences)?;
    Ok(claims)
}

/// Verify `token` and return its claims (see `crown_nexus._pure.jwt.decode`).
#[pyfunction]
#[pyo3(signature = (
    token, key, *, algorithms, issuer=None, audience=None, leeway=None, now=None, require=None,
    max_length=None
))]
#[allow(clippy::too_many_arguments)]
fn decode<'py>(
    py: Python<'py>,
    token: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    algorithms: &Bound<'py, PyAny>,
    issuer: Option<&Bound<'py, PyAny>>,
    audience: Option<&Bound<'py, PyAny>>,
    leeway: Option<&Bound<'py, PyAny>>,
    now: Option<&Bound<'py, PyAny>>,
    require: Option<&Bound<'py, PyAny>>,
    max_length: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match decode_fast(
        py, token, key, algorithms, issuer, audience, leeway, now, require, max_length,
    ) {
        Ok(claims) => Ok(claims.into_any()),
        Err(Fail::Reason(r)) => Err(raise_reason(py, r)),
        Err(Fail::Py(err)) => Err(err),
        Err(Fail::Delegate) => {
            let kwargs = PyDict::new(py);
            kwargs.set_item("algorithms", algorithms)?;
            kwargs.set_item("issuer", issuer)?;
            kwargs.set_item("audience", audience)?;
            kwargs.set_item("leeway", leeway)?;
            kwargs.set_item("now", now)?;
            kwargs.set_item("require", require)?;
            kwargs.set_item("max_length", max_length)?;
            pure(py)?
                .getattr("decode")?
                .call((token, key), Some(&kwargs))
        }
    }
}

/// The JOSE header of `token`, signature NOT checked (see the pure module).
#[pyfunction]
#[pyo3(signature = (token, max_length=None))]
fn get_unverified_header<'py>(
    py: Python<'py>,
    token: &Bound<'py, PyAny>,
    max_length: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let result = max_length_of(max_length).and_then(|n| header_dict(py, token, n));
    match result {
        Ok(header) => Ok(header.into_any()),
        Err(Fail::Reason(r)) => Err(raise_reason(py, r)),
        Err(Fail::Py(err)) => Err(err),
        Err(Fail::Delegate) => pure(py)?
            .getattr("get_unverified_header")?
            .call1((token, max_length)),
    }
}

// ------------------------------------------------------------------------------ encode

fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            c if c < 0x20 => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Serialize a value of the basic JSON types the way orjson does; anything else delegates.
fn write_value(out: &mut Vec<u8>, v: &Bound<'_, PyAny>, depth: usize) -> R<()> {
    if depth > MAX_ENCODE_DEPTH {
        return Err(Fail::Delegate);
    }
    if v.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = v.downcast_exact::<PyString>() {
        write_str(out, s.to_str().map_err(|_| Fail::Delegate)?);
    } else if let Ok(b) = v.downcast_exact::<PyBool>() {
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if v.is_exact_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        } else if let Ok(u) = v.extract::<u64>() {
            out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
        } else {
            return Err(Fail::Delegate);
        }
    } else if let Ok(f) = v.downcast_exact::<PyFloat>() {
        let f = f.value();
        if f.is_finite() {
            out.extend_from_slice(ryu::Buffer::new().format_finite(f).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    } else if let Ok(d) = v.downcast_exact::<PyDict>() {
        out.push(b'{');
        for (n, (k, val)) in d.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            let k = k.downcast_exact::<PyString>().map_err(|_| Fail::Delegate)?;
            write_str(out, k.to_str().map_err(|_| Fail::Delegate)?);
            out.push(b':');
            write_value(out, &val, depth + 1)?;
        }
        out.push(b'}');
    } else if let Ok(l) = v.downcast_exact::<PyList>() {
        out.push(b'[');
        for (n, item) in l.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_value(out, &item, depth + 1)?;
        }
        out.push(b']');
    } else if let Ok(t) = v.downcast_exact::<PyTuple>() {
        out.push(b'[');
        for (n, item) in t.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_value(out, &item, depth + 1)?;
        }
        out.push(b']');
    } else {
        return Err(Fail::Delegate);
    }
    Ok(())
}

fn encode_fast<'py>(
    py: Python<'py>,
    claims: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    algorithm: &Bound<'py, PyAny>,
    headers: Option<&Bound<'py, PyAny>>,
) -> R<String> {
    let alg_name = match algorithm.downcast::<PyString>() {
        Ok(s) => s.to_str().ok(),
        Err(_) => None,
    };
    let Some(alg) = alg_name.and_then(parse_alg) else {
        return value_error(&format!("unsupported algorithm {}", algorithm.repr()?));
    };
    let alg_name = alg_name.unwrap_or_default();
    let Ok(claims) = claims.downcast_exact::<PyDict>() else {
        return Err(Fail::Delegate);
    };
    let headers = match headers.filter(|h| !h.is_none()) {
        None => None,
        Some(h) => Some(h.downcast_exact::<PyDict>().map_err(|_| Fail::Delegate)?),
    };
    let key = key_bytes(key)?;
    enum Signer_ {
        Hs(HmacState),
        Ed(ed25519_dalek::SigningKey),
        Es(p256::ecdsa::SigningKey),
    }
    let signer = match alg {
        Alg::Hs(kind) => {
            let Some(state) = hmac_state(kind, key) else {
                return value_error("key does not fit the algorithm (empty, or an asymmetric key)");
            };
            Signer_::Hs(state)
        }
        Alg::EdDsa => Signer_::Ed(
            ED_PRIVATE
                .get(key, |pem| {
                    ed25519_dalek::SigningKey::from_pkcs8_pem(pem_str(pem)?).ok()
                })
                .ok_or(Fail::Delegate)?,
        ),
        Alg::Es256 => Signer_::Es(
            P256_PRIVATE
                .get(key, |pem| {
                    p256::ecdsa::SigningKey::from_pkcs8_pem(pem_str(pem)?).ok()
                })
                .ok_or(Fail::Delegate)?,
        ),
        Alg::Rs256 => return Err(Fail::Delegate),
    };

    // header: {"alg", "typ", **headers} with alg forced
    let typ = PyString::new(py, "JWT").into_any();
    let alg_obj = PyString::new(py, alg_name).into_any();
    let mut entries: Vec<(String, Bound<'py, PyAny>)> =
        vec![("alg".to_owned(), alg_obj), ("typ".to_owned(), typ)];
    if let Some(h) = headers {
        for (k, v) in h.iter() {
            let k = k.downcast_exact::<PyString>().map_err(|_| Fail::Delegate)?;
            let k = k.to_str().map_err(|_| Fail::Delegate)?;
            if k == "alg" {
                continue;
            }
            if let Some(slot) = entries.iter_mut().find(|(name, _)| name == k) {
                slot.1 = v;
            } else {
                entries.push((k.to_owned(), v));
            }
        }
    }
    let mut header_json = Vec::with_capacity(64);
    header_json.push(b'{');
    for (n, (k, v)) in entries.iter().enumerate() {
        if n > 0 {
            header_json.push(b',');
        }
        write_str(&mut header_json, k);
        header_json.push(b':');
        write_value(&mut header_json, v, 1)?;
    }
    header_json.push(b'}');
    let mut payload_json = Vec::with_capacity(256);
    write_value(&mut payload_json, claims.as_any(), 0)?;

    let mut token = String::with_capacity((header_json.len() + payload_json.len()) * 4 / 3 + 100);
    URL_SAFE_NO_PAD.encode_string(&header_json, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload_json, &mut token);
    let signature: Vec<u8> = match signer {
        Signer_::Hs(state) => hmac_sign(state, token.as_bytes()),
        Signer_::Ed(sk) => py.allow_threads(|| sk.sign(token.as_bytes()).to_bytes().to_vec()),
        Signer_::Es(sk) => {
            let sig: p256::ecdsa::Signature = py.allow_threads(|| sk.sign(token.as_bytes()));
            sig.to_bytes().to_vec()
        }
    };
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
    Ok(token)
}

/// Sign `claims` and return the compact JWS token (see `crown_nexus._pure.jwt.encode`).
#[pyfunction]
#[pyo3(signature = (claims, key, algorithm, headers=None))]
fn encode<'py>(
    py: Python<'py>,
    claims: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    algorithm: &Bound<'py, PyAny>,
    headers: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match encode_fast(py, claims, key, algorithm, headers) {
        Ok(token) => Ok(PyString::new(py, &token).into_any()),
        Err(Fail::Reason(r)) => Err(raise_reason(py, r)),
        Err(Fail::Py(err)) => Err(err),
        Err(Fail::Delegate) => pure(py)?
            .getattr("encode")?
            .call1((claims, key, algorithm, headers)),
    }
}

/// The public JWK of a PEM key (delegated to the pure module: not a hot path).
#[pyfunction]
fn public_jwk<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    algorithm: &Bound<'py, PyAny>,
    kid: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    pure(py)?
        .getattr("public_jwk")?
        .call1((key, algorithm, kid))
}

pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("IMPLEMENTATION", "native")?;
    m.add("MAX_JSON_DEPTH", MAX_JSON_DEPTH)?;
    m.add("DEFAULT_MAX_LENGTH", DEFAULT_MAX_LENGTH)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(get_unverified_header, m)?)?;
    m.add_function(wrap_pyfunction!(public_jwk, m)?)?;
    // The pure module owns the shared exception class and constants. If it cannot be imported
    // the jwt hot path is unusable anyway (accel needs the pure twin too), but the other
    // submodules of this extension must still load: no error here.
    if let Ok(pure_mod) = pure(py) {
        m.add("InvalidTokenError", invalid_token_error(py)?)?;
        for name in ["SUPPORTED_ALGORITHMS", "REASONS", "DEFAULT_REQUIRE"] {
            m.add(name, pure_mod.getattr(name)?)?;
        }
    }
    Ok(())
}
