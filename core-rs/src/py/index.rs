//! `ArchiveIndex` (Tantivy search index) and the search helpers for Python. Every call that
//! touches the index releases the GIL.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::batch::PyDecoded;
use super::detached;
use crate::crypto::TokenKey;
use crate::index::{fold_text, items_json, page_items, parse_query, ArchiveIndex, Scope, SearchRequest};

#[pyclass(name = "ArchiveIndex", module = "scrm_fast._core", frozen)]
pub struct PyArchiveIndex {
    inner: Arc<ArchiveIndex>,
}

type Page = (u64, Vec<(i64, u64)>, Option<(i64, u64)>, Vec<String>);

#[pymethods]
impl PyArchiveIndex {
    /// Opens (or creates) the index in directory `path`, every term keyed with `token_key`
    /// (32 bytes); readers see new commits within a second, or at once after `reload()`.
    #[new]
    fn new(py: Python<'_>, path: PathBuf, token_key: &[u8]) -> PyResult<Self> {
        let key = TokenKey::new(token_key).map_err(super::errors::to_pyerr)?;
        let ix = detached(py, move || ArchiveIndex::open(&path, key))?;
        Ok(PyArchiveIndex { inner: Arc::new(ix) })
    }

    /// Takes the writer lock (one writer per index, across processes).
    #[pyo3(signature = (threads = 1, heap_mb = 64))]
    fn open_writer(&self, py: Python<'_>, threads: usize, heap_mb: usize) -> PyResult<()> {
        let ix = self.inner.clone();
        detached(py, move || ix.open_writer(threads, heap_mb << 20))
    }

    /// Indexes stored records (msgpack values of the `records` table); returns how many.
    fn add_stored(&self, py: Python<'_>, values: Vec<Vec<u8>>) -> PyResult<usize> {
        let ix = self.inner.clone();
        detached(py, move || ix.add_stored(&values))
    }

    /// Indexes the stored records of a decoded batch (call after the batch is durable).
    fn add_decoded(&self, py: Python<'_>, batch: &Bound<'_, PyDecoded>) -> PyResult<usize> {
        let ix = self.inner.clone();
        let d = batch.get();
        detached(py, move || ix.add_views(&d.index_views))
    }

    /// Drops every document at the next commit (before a rebuild).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let ix = self.inner.clone();
        detached(py, move || ix.clear())
    }

    /// Makes everything added durable and visible, recording `max_seq`.
    fn commit(&self, py: Python<'_>, max_seq: u64) -> PyResult<()> {
        let ix = self.inner.clone();
        detached(py, move || ix.commit(max_seq))
    }

    /// Releases the writer lock after running merges finish (uncommitted additions are lost).
    fn close_writer(&self, py: Python<'_>) -> PyResult<()> {
        let ix = self.inner.clone();
        detached(py, move || ix.close_writer())
    }

    fn reload(&self, py: Python<'_>) -> PyResult<()> {
        let ix = self.inner.clone();
        detached(py, move || ix.reload())
    }

    fn num_docs(&self) -> u64 {
        self.inner.num_docs()
    }

    fn num_segments(&self) -> usize {
        self.inner.num_segments()
    }

    /// `(layout, max_seq)` of the last commit, or None for a new index.
    fn committed(&self, py: Python<'_>) -> PyResult<Option<(u32, u64)>> {
        let ix = self.inner.clone();
        detached(py, move || ix.committed())
    }

    /// Every indexed seq, ascending.
    fn seqs(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        let ix = self.inner.clone();
        detached(py, move || ix.seqs())
    }

    /// One page: `(total, [(msgtime, seq)…] newest first, next cursor or None, highlight terms)`.
    /// `parties`: ids that must all take part; `scope_parties`/`scope_rooms`/`scope_convs`:
    /// the caller's data scope (a message is visible when one of them matches), less
    /// `scope_hidden` (conversations handed over to another employee).
    #[allow(clippy::too_many_arguments)] // keyword arguments of one Python call
    #[pyo3(signature = (query, *, parties = Vec::new(), room = None, conv = None, msgtypes = None, since = None,
                        until = None, scope_parties = None, scope_rooms = None, scope_convs = None,
                        scope_hidden = None, before = None, limit = 20))]
    fn search(
        &self,
        py: Python<'_>,
        query: String,
        parties: Vec<String>,
        room: Option<String>,
        conv: Option<String>,
        msgtypes: Option<Vec<String>>,
        since: Option<i64>,
        until: Option<i64>,
        scope_parties: Option<Vec<String>>,
        scope_rooms: Option<Vec<String>>,
        scope_convs: Option<Vec<String>>,
        scope_hidden: Option<Vec<String>>,
        before: Option<(i64, u64)>,
        limit: usize,
    ) -> PyResult<Page> {
        let scope = match (scope_parties, scope_rooms) {
            (None, None) => None,
            (p, r) => Some(Scope {
                parties: p.unwrap_or_default(),
                rooms: r.unwrap_or_default(),
                convs: scope_convs.unwrap_or_default(),
                hidden: scope_hidden.unwrap_or_default(),
            }),
        };
        let req = SearchRequest {
            query,
            parties,
            room,
            conv,
            msgtypes,
            since,
            until,
            scope,
            before,
            limit,
        };
        let ix = self.inner.clone();
        let page = detached(py, move || ix.search(&req))?;
        Ok((page.total, page.hits, page.next, page.terms))
    }
}

/// A page of results as JSON: `hits` (msgtime, seq) from `ArchiveIndex.search`, `raws` their
/// stored records (msgpack bytes or None), `terms` to highlight, `names` an optional
/// {userid: display name} (adds `from_name`, the user id when unknown). Returns the items
/// as one JSON array (bytes) and the seqs it holds (a hit without a record is left out).
#[pyfunction]
#[pyo3(signature = (hits, raws, terms, width = 80, names = None))]
fn page_json<'py>(
    py: Python<'py>,
    hits: Vec<(i64, u64)>,
    raws: Vec<Option<Bound<'py, PyBytes>>>,
    terms: Vec<String>,
    width: usize,
    names: Option<Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyBytes>, Vec<u64>)> {
    if hits.len() != raws.len() {
        return Err(PyValueError::new_err("hits and raws must have the same length"));
    }
    let slices: Vec<Option<&[u8]>> = raws.iter().map(|r| r.as_ref().map(|b| b.as_bytes())).collect();
    let mut items = py
        .detach(|| page_items(&hits, &slices, &terms, width))
        .map_err(PyValueError::new_err)?;
    if let Some(names) = names {
        for it in &mut items {
            let name = match names.get_item(it.from.as_ref())? {
                Some(n) => n.extract::<String>()?,
                None => it.from.to_string(),
            };
            it.from_name = Some(name);
        }
    }
    let seqs = items.iter().map(|it| it.seq).collect();
    let json = py.detach(|| items_json(&items));
    Ok((PyBytes::new(py, &json), seqs))
}

/// The search folding (case and width) applied to indexed text and queries.
#[pyfunction]
fn fold_search_text(text: &str) -> String {
    fold_text(text)
}

/// Checks a query string; returns its highlight terms (raises QuerySyntaxError).
#[pyfunction]
fn check_search_query(query: &str) -> PyResult<Vec<String>> {
    parse_query(query)
        .map(|q| q.positive_terms())
        .map_err(super::errors::to_pyerr)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyArchiveIndex>()?;
    m.add_function(wrap_pyfunction!(page_json, m)?)?;
    m.add_function(wrap_pyfunction!(fold_search_text, m)?)?;
    m.add_function(wrap_pyfunction!(check_search_query, m)?)?;
    Ok(())
}
