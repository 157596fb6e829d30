//! All PyO3 code: the `scrm_fast._core` module. Engine types are wrapped here once; every
//! long call goes through [`detached`], which releases the GIL and maps engine errors.

mod audit;
mod batch;
mod errors;
mod index;
mod keys;
mod loadgen;
mod policy;
mod vault;
mod vendor;

use pyo3::prelude::*;

pub(crate) use errors::detached;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::heap::return_freed_memory();
    errors::register(m)?;
    keys::register(m)?;
    batch::register(m)?;
    policy::register(m)?;
    audit::register(m)?;
    index::register(m)?;
    loadgen::register(m)?;
    vault::register(m)?;
    vendor::register(m)?;
    m.add("KNOWN_MSGTYPES", crate::message::KNOWN_MSGTYPES.to_vec())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
