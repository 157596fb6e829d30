//! `KeyRing` and `Cipher` for Python, plus key generation and the RSA-bound measurement.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::detached;
use crate::crypto::keyring::measure_rsa_rate;
use crate::crypto::seal::{generate_key_pem, public_pem_of};
use crate::crypto::{KeyRing, MessageCipher, VendorSdk};
use crate::error::Error;

#[pyclass(name = "KeyRing", module = "scrm_fast._core", frozen)]
pub struct PyKeyRing {
    pub(crate) inner: Arc<KeyRing>,
}

#[pymethods]
impl PyKeyRing {
    /// Loads every `<publickey_ver>.pem` of a directory.
    #[staticmethod]
    fn load_dir(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let ring = detached(py, move || KeyRing::load_dir(&path))?;
        Ok(PyKeyRing { inner: Arc::new(ring) })
    }

    /// Builds a ring from `{publickey_ver: pem_bytes}`.
    #[staticmethod]
    fn from_pems(py: Python<'_>, pems: BTreeMap<u32, Bound<'_, PyBytes>>) -> PyResult<Self> {
        let owned: BTreeMap<u32, Vec<u8>> = pems.into_iter().map(|(k, v)| (k, v.as_bytes().to_vec())).collect();
        let ring = detached(py, move || KeyRing::from_pems(owned))?;
        Ok(PyKeyRing { inner: Arc::new(ring) })
    }

    fn versions(&self) -> Vec<u32> {
        self.inner.versions()
    }

    fn __len__(&self) -> usize {
        self.inner.versions().len()
    }

    fn __repr__(&self) -> String {
        format!("KeyRing(versions={:?})", self.inner.versions())
    }

    /// RSA-2048 PKCS#1 v1.5 private decryptions/s with `threads` threads, each owning a
    /// copy of key `ver`, over `ciphertexts`, for `seconds`. Returns (ops, elapsed).
    fn measure_rsa_rate(
        &self,
        py: Python<'_>,
        ver: u32,
        ciphertexts: Vec<Bound<'_, PyBytes>>,
        threads: usize,
        seconds: f64,
    ) -> PyResult<(u64, f64)> {
        let cts: Vec<Vec<u8>> = ciphertexts.iter().map(|b| b.as_bytes().to_vec()).collect();
        let inner = self.inner.clone();
        detached(py, move || {
            let der = inner.key_der(ver).ok_or_else(|| Error::KeyVersion {
                ver,
                detail: "no such key in the ring".into(),
            })?;
            measure_rsa_rate(der, &cts, threads, seconds)
        })
    }
}

#[pyclass(name = "Cipher", module = "scrm_fast._core", frozen)]
pub struct PyCipher {
    pub(crate) inner: Arc<MessageCipher>,
}

#[pymethods]
impl PyCipher {
    /// The open scheme (spec §3), native.
    #[staticmethod]
    fn open() -> Self {
        PyCipher {
            inner: Arc::new(MessageCipher::Open),
        }
    }

    /// The vendor SDK's `DecryptData`, loaded from the `.so` at `path`.
    #[staticmethod]
    fn vendor(py: Python<'_>, path: String) -> PyResult<Self> {
        let sdk = detached(py, move || VendorSdk::load(&path))?;
        Ok(PyCipher {
            inner: Arc::new(MessageCipher::Vendor(Arc::new(sdk))),
        })
    }

    #[getter]
    fn kind(&self) -> &'static str {
        match &*self.inner {
            MessageCipher::Open => "open",
            MessageCipher::Vendor(_) => "vendor",
            MessageCipher::Supplied(_) => "supplied",
        }
    }

    fn __repr__(&self) -> String {
        match &*self.inner {
            MessageCipher::Open => "Cipher.open()".into(),
            MessageCipher::Vendor(s) => format!("Cipher.vendor({:?})", s.path()),
            MessageCipher::Supplied(p) => format!("<Cipher supplied by the SDK worker for {} items>", p.len()),
        }
    }
}

/// A new RSA private key as PEM (PKCS#8 when `pkcs8`, else PKCS#1).
#[pyfunction]
#[pyo3(signature = (bits = 2048, pkcs8 = true))]
fn generate_private_key<'py>(py: Python<'py>, bits: u32, pkcs8: bool) -> PyResult<Bound<'py, PyBytes>> {
    let pem = detached(py, move || generate_key_pem(bits, pkcs8))?;
    Ok(PyBytes::new(py, &pem))
}

/// The public key PEM of a private key PEM.
#[pyfunction]
fn public_key_of<'py>(py: Python<'py>, private_pem: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let owned = private_pem.to_vec();
    let pem = detached(py, move || public_pem_of(&owned))?;
    Ok(PyBytes::new(py, &pem))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyKeyRing>()?;
    m.add_class::<PyCipher>()?;
    m.add_function(wrap_pyfunction!(generate_private_key, m)?)?;
    m.add_function(wrap_pyfunction!(public_key_of, m)?)?;
    m.add_function(wrap_pyfunction!(wecom_callback_decrypt, m)?)?;
    m.add_function(wrap_pyfunction!(wecom_callback_encrypt, m)?)?;
    Ok(())
}

/// The message in a WeCom callback's `Encrypt` (or a URL check's `echostr`), checked: the
/// padding, the frame and the receive id (spec `wecom-api.md` §2). ValueError says why not.
#[pyfunction]
fn wecom_callback_decrypt<'py>(
    py: Python<'py>,
    encoding_aes_key: &str,
    encrypted: &str,
    receive_id: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    crate::crypto::callback::decrypt(encoding_aes_key, encrypted, receive_id)
        .map(|m| PyBytes::new(py, &m))
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}

/// A message encrypted as WeCom frames it (for the fake WeCom and for replies).
#[pyfunction]
fn wecom_callback_encrypt(
    encoding_aes_key: &str,
    message: &[u8],
    receive_id: &str,
    random16: [u8; 16],
) -> PyResult<String> {
    crate::crypto::callback::encrypt(encoding_aes_key, message, receive_id, &random16)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
}
