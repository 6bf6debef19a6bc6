//! log_render hot path (being written; see crown_nexus._pure.log_render for the contract).
use pyo3::prelude::*;

pub fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("IMPLEMENTATION", "native")?;
    Ok(())
}
