//! crown_nexus_native: the compiled twins of crown-nexus's pure hot paths.
//!
//! Each hot path is a submodule (`jwt`, `cache_keys`, `log_render`) with the same functions and
//! the same behaviour as `crown_nexus._pure.<name>`. `crown_nexus.accel` is the only importer.
use pyo3::prelude::*;

mod cache_keys;
mod jwt;
mod log_render;

/// Add `child` as attribute submodule `name` of `parent`.
fn add_submodule(
    py: Python<'_>,
    parent: &Bound<'_, PyModule>,
    name: &str,
    init: fn(&Bound<'_, PyModule>) -> PyResult<()>,
) -> PyResult<()> {
    let child = PyModule::new(py, name)?;
    init(&child)?;
    parent.add_submodule(&child)?;
    Ok(())
}

#[pymodule]
fn crown_nexus_native(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "BUILD_PROFILE",
        if cfg!(debug_assertions) { "debug" } else { "release" },
    )?;
    add_submodule(py, m, "cache_keys", cache_keys::init)?;
    add_submodule(py, m, "log_render", log_render::init)?;
    add_submodule(py, m, "jwt", jwt::init)?;
    Ok(())
}
