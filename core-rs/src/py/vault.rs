//! `Vault` (the data keys of one data directory) and the master-key wrapping for Python.
//! Batch calls seal or open on all cores with the GIL released.

use std::collections::BTreeMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use rayon::prelude::*;

use super::detached;
use super::errors::to_pyerr;
use crate::crypto::vault::{self, Vault};

#[pyclass(name = "Vault", module = "scrm_fast._core", frozen)]
pub struct PyVault {
    pub(crate) inner: Arc<Vault>,
}

fn owned(pairs: &[(Bound<'_, PyBytes>, Bound<'_, PyBytes>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// Below this many values a batch is opened on the calling thread: waking the pool costs
/// more than a page of 20 records takes (the HTTP pages); above it (reindex, rescan) every core
/// helps.
const PARALLEL_FROM: usize = 256;

#[pymethods]
impl PyVault {
    /// `keys` maps data key ids to 32-byte keys; new values are sealed with `current`.
    #[new]
    fn new(keys: BTreeMap<u32, Bound<'_, PyBytes>>, current: u32) -> PyResult<Self> {
        let keys: Vec<(u32, Vec<u8>)> = keys.into_iter().map(|(k, v)| (k, v.as_bytes().to_vec())).collect();
        Ok(PyVault {
            inner: Arc::new(Vault::new(keys, current).map_err(to_pyerr)?),
        })
    }

    #[getter]
    fn current(&self) -> u32 {
        self.inner.current()
    }

    /// One value sealed for record `key` of `table`.
    fn seal<'py>(&self, py: Python<'py>, table: &[u8], key: &[u8], value: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let s = self.inner.seal(table, key, value).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, &s))
    }

    /// One sealed value opened (`SealError` when it does not open).
    fn open<'py>(&self, py: Python<'py>, table: &[u8], key: &[u8], value: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        let s = self.inner.open(table, key, value).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, &s))
    }

    /// `[(key, sealed value)]` of `[(key, value)]`, on the calling thread (GIL released).
    fn seal_pairs<'py>(
        &self,
        py: Python<'py>,
        table: Vec<u8>,
        pairs: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let items = owned(&pairs);
        let v = self.inner.clone();
        // on this thread, never the pool: ingest seals batch n while the pool decrypts batch
        // n + 1, and sealing jobs queued behind that work stalled the commit (measured: the
        // ingest ratio vs the RSA bound fell 0.865 -> 0.83); ~1.5 µs a record
        let sealed: Vec<Vec<u8>> = detached(py, move || items.iter().map(|(k, x)| v.seal(&table, k, x)).collect())?;
        let out: Vec<Bound<'py, PyTuple>> = pairs
            .iter()
            .zip(&sealed)
            .map(|((k, _), s)| PyTuple::new(py, [k.as_any().clone(), PyBytes::new(py, s).into_any()]))
            .collect::<PyResult<_>>()?;
        PyList::new(py, out)
    }

    /// `[(head + digest, sealed value)]` of personal `values` (conversation ids, file ids):
    /// each keyed by its [`vault::app_digest`] (`kind`, `mac_key`, `person`), its value the
    /// msgpack string, sealed for `table` and that key. What `AppTxn.put_digested` writes;
    /// on the calling thread, GIL released (as `seal_pairs`).
    #[allow(clippy::too_many_arguments)] // the parts of one table's key, from Python
    fn seal_digested<'py>(
        &self,
        py: Python<'py>,
        table: Vec<u8>,
        head: Vec<u8>,
        mac_key: Vec<u8>,
        person: Vec<u8>,
        kind: String,
        values: Vec<String>,
    ) -> PyResult<Bound<'py, PyList>> {
        let v = self.inner.clone();
        let out: Vec<(Vec<u8>, Vec<u8>)> = detached(py, move || {
            values
                .iter()
                .map(|value| {
                    let mut full = head.clone();
                    full.extend_from_slice(&vault::app_digest(&mac_key, &person, &kind, value)?);
                    let packed =
                        rmp_serde::to_vec(value.as_str()).map_err(|e| crate::error::Error::Record(e.to_string()))?;
                    let sealed = v.seal(&table, &full, &packed)?;
                    Ok((full, sealed))
                })
                .collect::<crate::error::Result<_>>()
        })?;
        let items: Vec<Bound<'py, PyTuple>> = out
            .iter()
            .map(|(k, s)| PyTuple::new(py, [PyBytes::new(py, k), PyBytes::new(py, s)]))
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    /// The opened values of `[(key, sealed value)]` (on all cores for large batches).
    fn open_pairs<'py>(
        &self,
        py: Python<'py>,
        table: Vec<u8>,
        pairs: Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let items = owned(&pairs);
        let v = self.inner.clone();
        let opened: Vec<Vec<u8>> = detached(py, move || {
            let open = |(k, x): &(Vec<u8>, Vec<u8>)| v.open(&table, k, x);
            if items.len() < PARALLEL_FROM {
                items.iter().map(open).collect()
            } else {
                items.par_iter().map(open).collect()
            }
        })?;
        PyList::new(py, opened.iter().map(|o| PyBytes::new(py, o)))
    }

    /// The data key id a sealed value names (None: not sealed).
    #[staticmethod]
    fn key_id_of(value: &[u8]) -> Option<u32> {
        vault::key_id_of(value)
    }

    fn __repr__(&self) -> String {
        format!("Vault(current={})", self.inner.current())
    }
}

/// Data key `id` wrapped under `master` (32 bytes).
#[pyfunction]
fn wrap_key<'py>(py: Python<'py>, master: &[u8], id: u32, key: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(py, &vault::wrap_key(master, id, key).map_err(to_pyerr)?))
}

/// Data key `id` unwrapped with `master` (`SealError`: not the master it was wrapped with).
#[pyfunction]
fn unwrap_key<'py>(py: Python<'py>, master: &[u8], id: u32, wrapped: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &vault::unwrap_key(master, id, wrapped).map_err(to_pyerr)?,
    ))
}

/// [`vault::app_digest`] of each of `values` (`ArchiveStore.app_digests`), GIL released.
#[pyfunction]
fn app_digests<'py>(
    py: Python<'py>,
    mac_key: Vec<u8>,
    person: Vec<u8>,
    kind: String,
    values: Vec<String>,
) -> PyResult<Bound<'py, PyList>> {
    let out: Vec<[u8; 16]> = detached(py, move || {
        values
            .iter()
            .map(|v| vault::app_digest(&mac_key, &person, &kind, v))
            .collect()
    })?;
    PyList::new(py, out.iter().map(|d| PyBytes::new(py, d)))
}

/// `n` random bytes (OpenSSL's DRBG): new master, data and token keys.
#[pyfunction]
fn random_key<'py>(py: Python<'py>, n: Option<usize>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &vault::random_bytes(n.unwrap_or(vault::KEY_LEN)).map_err(to_pyerr)?,
    ))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyVault>()?;
    m.add_function(wrap_pyfunction!(wrap_key, m)?)?;
    m.add_function(wrap_pyfunction!(unwrap_key, m)?)?;
    m.add_function(wrap_pyfunction!(random_key, m)?)?;
    m.add_function(wrap_pyfunction!(app_digests, m)?)?;
    m.add("SEALED_OVERHEAD", vault::OVERHEAD)?;
    Ok(())
}
