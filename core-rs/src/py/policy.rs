//! `ConsentPolicy` for Python: built once per ingest from the directory and the persisted
//! consent state, then passed to every `decode_batch` call.

use std::collections::HashMap;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::policy::{consent_key, decode_consent_key, ConsentPolicy, ConsentStatus, GroupInfo};

#[pyclass(name = "ConsentPolicy", module = "scrm_fast._core", frozen)]
pub struct PyConsentPolicy {
    pub(crate) inner: Arc<ConsentPolicy>,
}

type GroupTuple = (String, String, Vec<(i64, String)>, Vec<String>);

fn status(s: &str) -> PyResult<ConsentStatus> {
    ConsentStatus::parse(s).ok_or_else(|| PyValueError::new_err(format!("unknown consent status {s:?}")))
}

#[pymethods]
impl PyConsentPolicy {
    /// `groups`: (roomid, owner, [(time, new_owner)], [member ids]); `consent`:
    /// (external_userid, time, status) from the directory or the consent APIs;
    /// `consent_entries` / `spoken_entries`: the persisted tables as (key, value) pairs.
    #[new]
    #[pyo3(signature = (service_requires_consent, archived, employees, groups, consent, consent_entries, spoken_entries))]
    fn new(
        service_requires_consent: bool,
        archived: Vec<String>,
        employees: Vec<String>,
        groups: Vec<GroupTuple>,
        consent: Vec<(String, i64, String)>,
        consent_entries: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>,
        spoken_entries: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>,
    ) -> PyResult<Self> {
        let groups: HashMap<String, GroupInfo> = groups
            .into_iter()
            .map(|(room, owner, owner_changes, members)| {
                (
                    room,
                    GroupInfo {
                        owner,
                        owner_changes,
                        members,
                    },
                )
            })
            .collect();
        let mut timeline = Vec::with_capacity(consent.len() + consent_entries.len());
        for (c, t, s) in consent {
            timeline.push((c, t, status(&s)?));
        }
        for (k, _) in &consent_entries {
            let e =
                decode_consent_key(k.as_bytes()).ok_or_else(|| PyValueError::new_err("corrupt consent table key"))?;
            timeline.push(e);
        }
        let mut spoken = Vec::with_capacity(spoken_entries.len());
        for (k, v) in &spoken_entries {
            let key = std::str::from_utf8(k.as_bytes()).map_err(|_| PyValueError::new_err("corrupt spoken key"))?;
            let (room, user) = key
                .split_once('\0')
                .ok_or_else(|| PyValueError::new_err("corrupt spoken key"))?;
            let t: [u8; 8] = v
                .as_bytes()
                .try_into()
                .map_err(|_| PyValueError::new_err("corrupt spoken value"))?;
            spoken.push((room.to_string(), user.to_string(), u64::from_be_bytes(t) as i64));
        }
        let policy = ConsentPolicy::new(service_requires_consent, archived, employees, groups, timeline, spoken);
        Ok(PyConsentPolicy {
            inner: Arc::new(policy),
        })
    }

    #[getter]
    fn service_requires_consent(&self) -> bool {
        self.inner.service_requires_consent
    }

    /// The consent-table key of one change (for consent from the APIs).
    #[staticmethod]
    fn consent_key<'py>(py: Python<'py>, customer: &str, time: i64, status_: &str) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &consent_key(customer, time, status(status_)?)))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyConsentPolicy>()
}
