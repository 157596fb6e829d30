//! `WordList` and `audit_records` for Python.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySequence, PyString, PyTuple};
use rayon::prelude::*;

use crate::audit::{AuditBatch, Behaviours};
use crate::matcher::{AppliesTo, Entry, FindBuffer, RawHit, WordList};
use crate::message::Record;

#[pyclass(name = "WordList", module = "scrm_fast._core", frozen)]
pub struct PyWordList {
    pub(crate) inner: Arc<WordList>,
    /// the listed words as Python strings, made once (a hit shares one, no copy)
    words: Vec<Py<PyString>>,
}

type EntryTuple = (u32, String, Vec<String>, String, u8, String);

/// Turns the byte offsets of `hits` (all in `text`) into str (character) offsets: one pass
/// over the text for all its hits (a long text with many hits stays linear).
fn to_char_offsets(text: &str, hits: &mut [RawHit]) {
    // characters are the bytes that do not continue one (no allocation: hits are few, texts
    // short; starts come in order, so one walk counts them)
    let b = text.as_bytes();
    let count = |from: usize, to: usize| b[from..to].iter().filter(|&&x| (x as i8) >= -0x40).count();
    let (mut byte, mut chars) = (0, 0);
    for h in hits {
        if h.start < byte {
            (byte, chars) = (0, 0);
        }
        chars += count(byte, h.start);
        byte = h.start;
        (h.start, h.end) = (chars, chars + count(h.start, h.end));
    }
}

#[pymethods]
impl PyWordList {
    /// `entries`: (id, word, related words, category, severity, applies_to) with
    /// applies_to one of `employee` (default), `customer`, `both`; `allow`: phrases that
    /// suppress a hit lying inside them.
    #[new]
    #[pyo3(signature = (entries, allow = Vec::new()))]
    fn new(py: Python<'_>, entries: Vec<EntryTuple>, allow: Vec<String>) -> PyResult<Self> {
        let mut es = Vec::with_capacity(entries.len());
        for (id, word, related, category, severity, applies) in entries {
            let applies_to = AppliesTo::parse(&applies).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "entry {id}: applies_to must be employee, customer or both, not {applies:?}"
                ))
            })?;
            es.push(Entry {
                id,
                word,
                related,
                category,
                severity,
                applies_to,
            });
        }
        let wl = py
            .detach(move || WordList::new(es, &allow))
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let words = wl.words().iter().map(|w| PyString::new(py, w).unbind()).collect();
        Ok(PyWordList {
            inner: Arc::new(wl),
            words,
        })
    }

    fn __len__(&self) -> usize {
        self.inner.entries().len()
    }

    /// Hits in each text: lists of (entry id, listed word, start, end) with str (character)
    /// offsets into the original text. `customers[i]` says whether text i was sent by a
    /// customer (default: all by employees). `parallel=False` keeps to one core.
    #[pyo3(signature = (texts, customers = None, parallel = true))]
    fn find_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        customers: Option<Vec<bool>>,
        parallel: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let n = texts.len()?;
        let flat = self.scan(py, texts, customers, parallel)?;
        let mut per: Vec<Vec<Bound<'py, PyAny>>> = (0..n).map(|_| Vec::new()).collect();
        for item in flat.iter() {
            let t = item.cast::<PyTuple>()?;
            let i: usize = t.get_item(0)?.extract()?;
            per[i].push(t.get_slice(1, 5).into_any());
        }
        PyList::new(
            py,
            per.into_iter()
                .map(|v| PyList::new(py, v))
                .collect::<PyResult<Vec<_>>>()?,
        )
    }

    /// Hits of a whole batch as one flat list of (text index, entry id, listed word, start,
    /// end), character offsets: the cheap shape for large batches with few hits.
    ///
    /// `texts` (a sequence of str) is taken in chunks: a chunk's strings are borrowed (their
    /// UTF-8, no copy), scanned with the GIL released and let go while their objects are
    /// still in cache (borrowing a whole large batch first, then scanning, then releasing it
    /// touched every string object three times from memory).
    #[pyo3(signature = (texts, customers = None, parallel = true))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        customers: Option<Vec<bool>>,
        parallel: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        let hits = self.collect(py, texts, customers, parallel)?;
        let items: Vec<Bound<'py, PyTuple>> = hits
            .into_iter()
            .map(|(i, id, w, start, end)| (i, id, self.words[w as usize].clone_ref(py), start, end).into_pyobject(py))
            .collect::<Result<_, _>>()?;
        PyList::new(py, items)
    }

    /// `scan`'s hits as columns in one buffer, no Python object per hit: five
    /// little-endian u32 per hit — text index, entry id, word index (into `words()`), start,
    /// end (character offsets). For hit-heavy text, where a tuple per hit cost more than
    /// finding it.
    #[pyo3(signature = (texts, customers = None, parallel = true))]
    fn scan_columns<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        customers: Option<Vec<bool>>,
        parallel: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let hits = self.collect(py, texts, customers, parallel)?;
        let to_u32 = |v: usize| u32::try_from(v).map_err(|_| PyValueError::new_err("a batch over 2^32 characters"));
        let mut buf = Vec::with_capacity(hits.len() * 20);
        for (i, id, w, start, end) in hits {
            for v in [to_u32(i)?, id, w, to_u32(start)?, to_u32(end)?] {
                buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(PyBytes::new(py, &buf))
    }

    /// The listed words by word index (what `scan_columns`' third column points into).
    fn words<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.words.iter().map(|w| w.clone_ref(py)))
    }
}

/// (text index, entry id, word index, start, end) of one hit of a batch scan.
type ScanHit = (usize, u32, u32, usize, usize);

impl PyWordList {
    /// Every hit of `texts`, as [`ScanHit`]s.
    fn collect<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        customers: Option<Vec<bool>>,
        parallel: bool,
    ) -> PyResult<Vec<ScanHit>> {
        const CHUNK: usize = 1024;
        if texts.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err("texts must be a sequence of str, not one str"));
        }
        let seq = texts.cast::<PySequence>()?;
        let n = seq.len()?;
        if let Some(c) = &customers {
            if c.len() != n {
                return Err(PyValueError::new_err("customers must have one flag per text"));
            }
        }
        let wl = &*self.inner;
        // (text index, entry id, word index, start, end)
        let mut hits: Vec<ScanHit> = Vec::new();
        let mut buf = (FindBuffer::default(), Vec::new());
        for first in (0..n).step_by(CHUNK) {
            let items: Vec<Bound<'py, PyString>> = (first..n.min(first + CHUNK))
                .map(|i| Ok(seq.get_item(i)?.cast_into::<PyString>()?))
                .collect::<PyResult<_>>()?;
            // borrowed UTF-8 views of the Python strings (kept alive by `items`): no copies
            let strs: Vec<&str> = items.iter().map(|t| t.to_str()).collect::<PyResult<_>>()?;
            let customers = customers.as_deref().map(|c| &c[first..first + strs.len()]);
            let (hits, buf) = (&mut hits, &mut buf);
            py.detach(move || {
                // one text's hits into `out` (its own scratch `raw` reused)
                let one = |(fb, raw): &mut (FindBuffer, Vec<RawHit>), j: usize, out: &mut Vec<_>| {
                    let t = strs[j];
                    raw.clear();
                    wl.find_raw(t, customers.is_some_and(|c| c[j]), fb, raw);
                    if !raw.is_empty() {
                        to_char_offsets(t, raw);
                        let id = |h: &RawHit| wl.entry(h.entry as usize).id;
                        out.extend(raw.iter().map(|h| (first + j, id(h), h.word, h.start, h.end)));
                    }
                };
                if parallel {
                    let found: Vec<Vec<_>> = (0..strs.len())
                        .into_par_iter()
                        .map_init(
                            || (FindBuffer::default(), Vec::new()),
                            |b, j| {
                                let mut out = Vec::new();
                                one(b, j, &mut out);
                                out
                            },
                        )
                        .collect();
                    hits.extend(found.into_iter().flatten());
                } else {
                    (0..strs.len()).for_each(|j| one(buf, j, hits));
                }
            });
        }
        Ok(hits)
    }
}

/// (key, msgpack record, entry id of a content record, message time)
pub(crate) type EncodedAudit = (Vec<u8>, Vec<u8>, Option<u32>, i64);

#[pyclass(name = "AuditBatch", module = "scrm_fast._core", frozen)]
pub struct PyAuditBatch {
    pub(crate) audits: Vec<EncodedAudit>,
}

/// Audits `records` and encodes the result for Python (called with the GIL released).
pub(crate) fn run_audit(
    records: &[Record],
    words: Option<&WordList>,
    b: Behaviours,
    now_ms: i64,
    parallel: bool,
) -> Vec<EncodedAudit> {
    let batch = if parallel {
        AuditBatch::run(records, words, b, now_ms)
    } else {
        AuditBatch::run_here(records, words, b, now_ms)
    };
    batch
        .audits
        .into_iter()
        .map(|(k, a)| {
            let v = rmp_serde::to_vec_named(&a).unwrap_or_default();
            (k, v, a.entry_id, a.msgtime)
        })
        .collect()
}

#[pymethods]
impl PyAuditBatch {
    /// (key, msgpack audit record) pairs for the `audits` table.
    fn audits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<Bound<'py, PyTuple>> = self
            .audits
            .iter()
            .map(|(k, v, _, _)| PyTuple::new(py, [PyBytes::new(py, k), PyBytes::new(py, v)]))
            .collect::<Result<_, _>>()?;
        PyList::new(py, items)
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.audits.iter().map(|(k, _, _, _)| PyBytes::new(py, k)))
    }

    /// The same batch without the records whose keys are in `found` (keys or (key, value)
    /// pairs, as LMDB's getmulti returns them): what a rescan must add.
    fn without(&self, found: Vec<Bound<'_, PyAny>>) -> PyResult<PyAuditBatch> {
        let mut skip: HashSet<Vec<u8>> = HashSet::new();
        for f in found {
            let key = match f.cast::<PyTuple>() {
                Ok(t) => t.get_item(0)?,
                Err(_) => f,
            };
            skip.insert(key.extract::<Vec<u8>>()?);
        }
        Ok(PyAuditBatch {
            audits: self
                .audits
                .iter()
                .filter(|(k, _, _, _)| !skip.contains(k))
                .cloned()
                .collect(),
        })
    }

    /// Per entry id: (triggers, latest trigger time) in this batch.
    fn entry_triggers(&self) -> BTreeMap<u32, (u64, i64)> {
        let mut t: BTreeMap<u32, (u64, i64)> = BTreeMap::new();
        for (_, _, id, time) in &self.audits {
            if let Some(id) = id {
                let e = t.entry(*id).or_insert((0, i64::MIN));
                e.0 += 1;
                e.1 = e.1.max(*time);
            }
        }
        t
    }

    fn __len__(&self) -> usize {
        self.audits.len()
    }
}

/// Audits stored records: `records` are msgpack values or (key, value) pairs as the
/// `records` table yields them. GIL released, parallel.
#[pyfunction]
#[pyo3(signature = (records, words = None, push_card = true, red_packet = true, now_ms = 0))]
fn audit_records(
    py: Python<'_>,
    records: Vec<Bound<'_, PyAny>>,
    words: Option<&Bound<'_, PyWordList>>,
    push_card: bool,
    red_packet: bool,
    now_ms: i64,
) -> PyResult<PyAuditBatch> {
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(records.len());
    for r in &records {
        let v = match r.cast::<PyTuple>() {
            Ok(t) => t.get_item(1)?,
            Err(_) => r.clone(),
        };
        raw.push(v.cast::<PyBytes>()?.as_bytes().to_vec());
    }
    let wl = words.map(|w| w.get().inner.clone());
    let b = Behaviours { push_card, red_packet };
    let out = py.detach(move || -> Result<Vec<EncodedAudit>, String> {
        let recs: Vec<Record> = raw
            .iter()
            .map(|v| rmp_serde::from_slice::<Record>(v).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(run_audit(&recs, wl.as_deref(), b, now_ms, true))
    });
    let audits = out.map_err(|e| super::errors::RecordError::new_err(format!("stored record: {e}")))?;
    Ok(PyAuditBatch { audits })
}

/// The matcher's normalization of `text` (NFKC, case, traditional → simplified, only
/// letters and digits kept): what word lists and messages are compared in.
#[pyfunction]
fn normalize_text(text: &str) -> String {
    crate::matcher::normalize_str(text)
}

type TimeoutTuple = (String, u64, usize, i64, i64, Option<i64>, i64);

/// Timeout-reply alerts (rule A-6) from `conv` table entries: (conv, seq of the waiting
/// customer message, level, threshold ms, since, answered at, delay ms), and the
/// conversations whose customer still waits short of the last threshold. `touched` limits
/// the conversations recomputed; `stream_now` is the newest message time.
#[pyfunction]
#[pyo3(signature = (conv_entries, thresholds_ms, stream_now, touched = None))]
fn reply_timeouts(
    py: Python<'_>,
    conv_entries: Vec<(Bound<'_, PyBytes>, Bound<'_, PyBytes>)>,
    thresholds_ms: Vec<i64>,
    stream_now: i64,
    touched: Option<HashSet<String>>,
) -> PyResult<(Vec<TimeoutTuple>, Vec<String>)> {
    let mut timeline = Vec::with_capacity(conv_entries.len());
    for (k, v) in &conv_entries {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        if k.len() < 9 || v.len() != 9 {
            return Err(super::errors::RecordError::new_err("corrupt conversation index entry"));
        }
        let conv = String::from_utf8_lossy(&k[..k.len() - 9]).into_owned();
        let seq = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap_or_default());
        let t = i64::from_be_bytes(v[..8].try_into().unwrap_or_default());
        timeline.push((conv, seq, t, crate::alerts::Role::from_byte(v[8])));
    }
    let (alerts, waiting) = py
        .detach(move || crate::alerts::reply_timeouts_waiting(&timeline, touched.as_ref(), &thresholds_ms, stream_now));
    let alerts = alerts
        .into_iter()
        .map(|a| {
            (
                a.conv,
                a.seq,
                a.level,
                a.threshold_ms,
                a.since,
                a.answered_at,
                a.delay_ms,
            )
        })
        .collect();
    Ok((alerts, waiting))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(reply_timeouts, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_text, m)?)?;
    m.add_class::<PyWordList>()?;
    m.add_class::<PyAuditBatch>()?;
    m.add_function(wrap_pyfunction!(audit_records, m)?)
}
