//! The one place engine errors become Python exceptions, and the one boundary helper.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError};
use pyo3::marker::Ungil;
use pyo3::prelude::*;

use crate::error::Error;

create_exception!(_core, ScrmError, PyException, "Root of every scrm_fast error.");
create_exception!(
    _core,
    KeyRingError,
    ScrmError,
    "A key file or key directory cannot be used."
);
create_exception!(
    _core,
    BatchFormatError,
    ScrmError,
    "A GetChatData document is not usable as a whole."
);
create_exception!(
    _core,
    VendorSdkError,
    ScrmError,
    "The vendor SDK library cannot be loaded or used."
);
create_exception!(
    _core,
    SealError,
    ScrmError,
    "A stored value or data key does not open: wrong master key, a missing data key, damage, \
     or a plaintext data directory of the earlier format."
);
create_exception!(_core, RecordError, ScrmError, "A stored record cannot be decoded.");
create_exception!(
    _core,
    SearchIndexError,
    ScrmError,
    "The search index cannot be opened, written or read."
);
create_exception!(
    _core,
    QuerySyntaxError,
    ScrmError,
    "A search query string is not well formed."
);

pub(crate) fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::KeyDirIo { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        Error::KeyDirIo { .. } => PyOSError::new_err(msg),
        Error::KeyParse { .. } | Error::NoKeys(_) | Error::KeyVersion { .. } => KeyRingError::new_err(msg),
        Error::BatchFormat(_) => BatchFormatError::new_err(msg),
        Error::VendorLoad { .. } => VendorSdkError::new_err(msg),
        Error::Record(_) => RecordError::new_err(msg),
        Error::Crypto(_) => ScrmError::new_err(msg),
        Error::Seal(_) => SealError::new_err(msg),
        Error::Index(_) => SearchIndexError::new_err(msg),
        Error::Query(_) => QuerySyntaxError::new_err(msg),
    }
}

/// Runs `f` with the GIL released and maps its error: every long-running binding goes
/// through here. Extract Python objects before, build Python objects after.
pub(crate) fn detached<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Ungil + FnOnce() -> crate::error::Result<T>,
    T: Ungil + Send,
{
    py.detach(f).map_err(to_pyerr)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ScrmError", py.get_type::<ScrmError>())?;
    m.add("KeyRingError", py.get_type::<KeyRingError>())?;
    m.add("BatchFormatError", py.get_type::<BatchFormatError>())?;
    m.add("VendorSdkError", py.get_type::<VendorSdkError>())?;
    m.add("RecordError", py.get_type::<RecordError>())?;
    m.add("SealError", py.get_type::<SealError>())?;
    m.add("SearchIndexError", py.get_type::<SearchIndexError>())?;
    m.add("QuerySyntaxError", py.get_type::<QuerySyntaxError>())?;
    Ok(())
}
