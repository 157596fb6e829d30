//! The supervised vendor SDK's batch calls for Python: `vendor_prepare` (RSA here),
//! `VendorJob` (requests for the worker, answers back into a `Cipher`) and
//! `Cipher.decrypt_request` (run inside the worker process).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::batch::{seen_set, PyChatBatch};
use super::detached;
use super::keys::{PyCipher, PyKeyRing};
use crate::crypto::MessageCipher;
use crate::error::Error;
use crate::vendor_job::{prepare, VendorJob};

#[pyclass(name = "VendorJob", module = "scrm_fast._core", frozen)]
pub struct PyVendorJob {
    inner: Arc<VendorJob>,
}

#[pymethods]
impl PyVendorJob {
    /// Items bound for the SDK worker.
    fn __len__(&self) -> usize {
        self.inner.entries.len()
    }

    /// The worker request (one buffer) for entries `start..end`.
    fn request<'py>(&self, py: Python<'py>, start: usize, end: usize) -> Bound<'py, PyBytes> {
        let job = self.inner.clone();
        let buf = py.detach(move || job.request(start, end));
        PyBytes::new(py, &buf)
    }

    /// The batch's cipher from the worker's answers: `(first entry, answer or None when
    /// the worker died on that one entry)` for consecutive ranges covering every entry.
    fn cipher(&self, py: Python<'_>, parts: Vec<(usize, Option<Vec<u8>>)>) -> PyResult<PyCipher> {
        let job = self.inner.clone();
        let c = detached(py, move || {
            let borrowed: Vec<(usize, Option<&[u8]>)> = parts.iter().map(|(s, a)| (*s, a.as_deref())).collect();
            job.supplied(&borrowed)
        })?;
        Ok(PyCipher { inner: Arc::new(c) })
    }
}

/// RSA-decrypts and validates every unseen item of `batch` (parallel, GIL released).
#[pyfunction]
#[pyo3(signature = (batch, keys, seen = None))]
fn vendor_prepare(
    py: Python<'_>,
    batch: &Bound<'_, PyChatBatch>,
    keys: &Bound<'_, PyKeyRing>,
    seen: Option<Bound<'_, PyAny>>,
) -> PyResult<PyVendorJob> {
    let seen = seen_set(seen)?;
    let b = batch.get();
    let ring = keys.get().inner.clone();
    let job = py.detach(|| prepare(&b.inner, &ring, &seen));
    Ok(PyVendorJob { inner: Arc::new(job) })
}

/// Inside the worker: answers one request with the vendor library (parallel).
#[pyfunction]
fn vendor_decrypt_request<'py>(
    py: Python<'py>,
    cipher: &Bound<'py, PyCipher>,
    request: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let c = cipher.get().inner.clone();
    let out = detached(py, move || match &*c {
        MessageCipher::Vendor(sdk) => sdk.decrypt_request(&request),
        _ => Err(Error::BatchFormat("decrypt_request needs a vendor cipher".into())),
    })?;
    Ok(PyBytes::new(py, &out))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVendorJob>()?;
    m.add_function(wrap_pyfunction!(vendor_prepare, m)?)?;
    m.add_function(wrap_pyfunction!(vendor_decrypt_request, m)?)?;
    Ok(())
}
