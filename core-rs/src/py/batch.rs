//! `ChatBatch`, `decode_batch` and `DecodedBatch` for Python, plus export and sealing.
//! Everything crossing here is a whole batch: lists of `(key, value)` byte pairs shaped
//! for LMDB's `putmulti`, so Python never loops over messages.

use std::collections::{BTreeMap, HashMap, HashSet};

use openssl::sha::sha256;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::audit::{run_audit, EncodedAudit, PyAuditBatch, PyWordList};
use super::detached;
use super::keys::{PyCipher, PyKeyRing};
use super::policy::PyConsentPolicy;
use super::vault::PyVault;
use crate::alerts::Role;
use crate::batch::{decrypt_batch as engine_decrypt, judge_batch as engine_judge, ChatBatch, Decoded};
use crate::crypto::seal::{seal_response as engine_seal, PlainItem, Sealer};
use crate::crypto::vault::app_digest;
use crate::error::Error;
use crate::export::record_line;
use crate::index::StoredView;
use crate::message::media::{media_refs, queue_entries, QueuedMedia};
use crate::policy::{consent_key, is_customer, spoken_key};

/// Status bytes of the `seen` table: every seq that ever arrived has exactly one.
pub const SEEN_STORED: &[u8] = b"S";
pub const SEEN_QUARANTINED: &[u8] = b"Q";
pub const SEEN_DROPPED: &[u8] = b"D";

pub fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

#[pyclass(name = "ChatBatch", module = "scrm_fast._core", frozen)]
pub struct PyChatBatch {
    pub(crate) inner: ChatBatch,
}

#[pymethods]
impl PyChatBatch {
    /// Parses one GetChatData response document. Raises `BatchFormatError` when the
    /// document as a whole is unusable (not JSON, errcode ≠ 0, no chatdata).
    #[staticmethod]
    fn parse(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        // `data` borrows the caller's `bytes` (immutable, alive for this call): parsed in
        // place without the GIL, no copy of the ~1 MB document
        let inner = detached(py, move || ChatBatch::parse(data))?;
        Ok(PyChatBatch { inner })
    }

    /// Rebuilds a batch from chatdata item JSON texts (as kept in quarantine).
    #[staticmethod]
    fn from_items(items: Vec<String>) -> Self {
        PyChatBatch {
            inner: ChatBatch::from_items(&items),
        }
    }

    /// The 8-byte big-endian storage keys of the items' seqs (items without seq omitted).
    fn seq_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let keys: Vec<_> = self.inner.seqs().map(|s| PyBytes::new(py, &seq_key(s))).collect();
        PyList::new(py, keys)
    }

    fn __len__(&self) -> usize {
        self.inner.items.len()
    }
}

#[pyclass(name = "DecodedBatch", module = "scrm_fast._core", frozen)]
pub struct PyDecoded {
    pub(crate) records: Vec<(u64, String, Vec<u8>)>,
    quarantined: Vec<(u64, Vec<u8>)>,
    rejected: Vec<([u8; 32], Vec<u8>)>,
    #[pyo3(get)]
    skipped: u64,
    #[pyo3(get)]
    unknown_msgtypes: u64,
    #[pyo3(get)]
    max_seq: Option<u64>,
    reasons: BTreeMap<&'static str, u64>,
    msgtypes: HashMap<String, u64>,
    dropped: Vec<u64>,
    convs: Vec<(String, u64, i64, u8)>,
    #[pyo3(get)]
    kept_by_rule: BTreeMap<&'static str, u64>,
    #[pyo3(get)]
    dropped_by_rule: BTreeMap<&'static str, u64>,
    consent: Vec<(Vec<u8>, Vec<u8>)>,
    spoken: Vec<(Vec<u8>, [u8; 8])>,
    events: Vec<(Vec<u8>, Vec<u8>)>,
    audits: Option<Vec<EncodedAudit>>,
    media: Vec<QueuedMedia>,
    /// What the index needs of each stored record, taken from the records (no msgpack
    /// read back when the batch is indexed).
    pub(crate) index_views: Vec<StoredView<'static>>,
}

fn pairs<'py, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    py: Python<'py>,
    it: impl Iterator<Item = (K, V)>,
) -> PyResult<Bound<'py, PyList>> {
    let mut out = Vec::new();
    for (k, v) in it {
        out.push(PyTuple::new(
            py,
            [PyBytes::new(py, k.as_ref()), PyBytes::new(py, v.as_ref())],
        )?);
    }
    PyList::new(py, out)
}

#[pymethods]
impl PyDecoded {
    /// `(seq_key, record_msgpack)` for the `records` table.
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.records.iter().map(|(s, _, v)| (seq_key(*s), v)))
    }

    /// `records()` sealed under `vault` for the `records` table, without the plaintext
    /// pairs crossing into Python first (what the commit writes).
    fn sealed_records<'py>(&self, py: Python<'py>, vault: &Bound<'py, PyVault>) -> PyResult<Bound<'py, PyList>> {
        let v = vault.get().inner.clone();
        let records = &self.records;
        let sealed: Vec<Vec<u8>> = detached(py, || {
            records
                .iter()
                .map(|(s, _, r)| v.seal(b"records", &seq_key(*s), r))
                .collect::<crate::error::Result<_>>()
        })?;
        pairs(
            py,
            self.records.iter().zip(&sealed).map(|((s, _, _), x)| (seq_key(*s), x)),
        )
    }

    /// `(conv \0 seq_key, msgtime(8 bytes) role)` for the `conv` table: messages by
    /// conversation, in order, with what the timeout-reply alerts need (rule A-6).
    fn conv_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(
            py,
            self.convs.iter().map(|(c, s, t, role)| {
                let mut k = Vec::with_capacity(c.len() + 9);
                k.extend_from_slice(c.as_bytes());
                k.push(0);
                k.extend_from_slice(&seq_key(*s));
                let mut v = [0u8; 9];
                v[..8].copy_from_slice(&t.to_be_bytes());
                v[8] = *role;
                (k, v)
            }),
        )
    }

    /// The audit records of this batch's stored messages (when `decode_batch` was asked to
    /// audit), computed on the decoded records in the same GIL-free call.
    fn audit_batch(&self) -> Option<PyAuditBatch> {
        self.audits.as_ref().map(|a| PyAuditBatch { audits: a.clone() })
    }

    /// The distinct conversations this batch stored messages in.
    /// The media of the stored messages: ``(seq, msgid, sdkfileid, md5sum, size, kind,
    /// filename)`` (spec §4 media types and the items of mixed messages).
    fn media(&self) -> Vec<(u64, String, String, String, u64, String, String)> {
        self.media
            .iter()
            .map(|q| {
                let m = &q.media;
                (
                    q.seq,
                    q.msgid.clone(),
                    m.sdkfileid.clone(),
                    m.md5sum.clone(),
                    m.size,
                    m.kind.clone(),
                    m.filename.clone(),
                )
            })
            .collect()
    }

    /// Whether any stored message has media.
    #[getter]
    fn has_media(&self) -> bool {
        !self.media.is_empty()
    }

    /// ``(md.todo entries, md.seq entries)`` of the batch's media, ``(key, msgpack)`` each:
    /// ``fid`` (the ``app_digest`` of the ``sdkfileid`` under ``mac_key`` and ``person``,
    /// kind ``media``) → what to fetch (the first message naming a file), and the 20-digit
    /// seq → its media in order. GIL released.
    fn media_entries<'py>(
        &self,
        py: Python<'py>,
        mac_key: Vec<u8>,
        person: Vec<u8>,
    ) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
        let media = &self.media;
        let (todo, seq) = detached(py, move || {
            queue_entries(media, |id| app_digest(&mac_key, &person, "media", id))
        })?;
        Ok((pairs(py, todo.into_iter())?, pairs(py, seq.into_iter())?))
    }

    fn conv_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.convs.iter().map(|c| c.0.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The newest message time among the stored messages (the stream's "now").
    #[getter]
    fn max_msgtime(&self) -> Option<i64> {
        self.convs.iter().map(|c| c.2).max()
    }

    /// `(msgid_utf8, seq_key)` for the `msgids` table.
    fn msgids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.records.iter().map(|(s, m, _)| (m.as_bytes(), seq_key(*s))))
    }

    /// `(seq_key, status)` for the `seen` table: `S` stored, `Q` quarantined, `D` dropped
    /// by the consent policy (so that a re-ingest skips it before any RSA work); in seq order.
    fn seen<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let stored = self.records.iter().map(|(s, _, _)| (*s, SEEN_STORED));
        let quarantined = self.quarantined.iter().map(|(s, _)| (*s, SEEN_QUARANTINED));
        let dropped = self.dropped.iter().map(|s| (*s, SEEN_DROPPED));
        // in key order: the store appends them (full pages) when they follow every stored seq
        let mut all: Vec<(u64, &[u8])> = stored.chain(quarantined).chain(dropped).collect();
        all.sort_by_key(|(s, _)| *s);
        pairs(py, all.into_iter().map(|(s, v)| (seq_key(s), v)))
    }

    /// `(key, msgpack)` for the `consent` table: consent changes from agree/disagree messages.
    fn consent_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.consent.iter().map(|(k, v)| (k, v)))
    }

    /// `(roomid\0userid, time)` for the `spoken` table: archived members' first words.
    fn spoken_entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.spoken.iter().map(|(k, v)| (k, v)))
    }

    /// `(key, msgpack)` for the `events` table: enforcement events (C-3, C-9, C-12).
    fn events<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.events.iter().map(|(k, v)| (k, v)))
    }

    #[getter]
    fn dropped(&self) -> usize {
        self.dropped.len()
    }

    /// `(seq_key, quarantine_msgpack)` for the `quarantine` table.
    fn quarantine<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.quarantined.iter().map(|(s, v)| (seq_key(*s), v)))
    }

    /// `(sha256_of_item, msgpack)` for items without a usable seq (`rejects` table).
    fn rejects<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        pairs(py, self.rejected.iter().map(|(k, v)| (k, v)))
    }

    #[getter]
    fn stored(&self) -> usize {
        self.records.len()
    }

    #[getter]
    fn quarantined(&self) -> usize {
        self.quarantined.len() + self.rejected.len()
    }

    /// Quarantined and rejected counts by reason code.
    #[getter]
    fn reasons(&self) -> BTreeMap<&'static str, u64> {
        self.reasons.clone()
    }

    /// Stored counts by msgtype.
    #[getter]
    fn msgtypes(&self) -> HashMap<String, u64> {
        self.msgtypes.clone()
    }
}

#[derive(serde::Serialize)]
struct ConsentValue<'a> {
    status: &'a str,
    source: &'a str,
    msgid: &'a str,
}

pub(crate) fn seen_set(seen: Option<Bound<'_, PyAny>>) -> PyResult<HashSet<u64>> {
    let mut set = HashSet::new();
    let Some(seen) = seen else { return Ok(set) };
    for entry in seen.try_iter()? {
        let entry = entry?;
        let key = match entry.cast::<PyTuple>() {
            Ok(t) => t.get_item(0)?,
            Err(_) => entry,
        };
        let b: &[u8] = key.extract()?;
        let arr: [u8; 8] = b.try_into().map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!("seen key must be 8 bytes, got {}", b.len()))
        })?;
        set.insert(u64::from_be_bytes(arr));
    }
    Ok(set)
}

/// Decrypts and parses a whole batch in parallel with the GIL released. `seen` holds the
/// seqs already in storage (keys, or `(key, value)` pairs as LMDB's `getmulti` returns
/// them): those items are skipped before any RSA work. `decrypt_batch` then `judge_batch`
/// in one call.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // keyword arguments of one Python call
#[pyo3(signature = (batch, keys, cipher, seen = None, now_ms = 0, policy = None, audit = false, words = None,
                    push_card = true, red_packet = true))]
fn decode_batch(
    py: Python<'_>,
    batch: &Bound<'_, PyChatBatch>,
    keys: &Bound<'_, PyKeyRing>,
    cipher: &Bound<'_, PyCipher>,
    seen: Option<Bound<'_, PyAny>>,
    now_ms: i64,
    policy: Option<&Bound<'_, PyConsentPolicy>>,
    audit: bool,
    words: Option<&Bound<'_, PyWordList>>,
    push_card: bool,
    red_packet: bool,
) -> PyResult<PyDecoded> {
    let decrypted = Bound::new(py, decrypt_batch(py, batch, keys, cipher, seen, now_ms)?)?;
    judge_batch(py, &decrypted, policy, audit, words, push_card, red_packet)
}

/// A batch decrypted (`decrypt_batch`) but not yet judged: batches may be decrypted in any
/// order and several at once; `judge_batch` then takes them one after another.
#[pyclass(name = "DecryptedBatch", module = "scrm_fast._core", frozen)]
pub struct PyDecrypted {
    inner: std::sync::Mutex<Option<Decoded>>,
    now_ms: i64,
}

/// The order-free part of `decode_batch` (RSA, AES, parsing on all cores, GIL released).
#[pyfunction]
#[pyo3(signature = (batch, keys, cipher, seen = None, now_ms = 0))]
fn decrypt_batch(
    py: Python<'_>,
    batch: &Bound<'_, PyChatBatch>,
    keys: &Bound<'_, PyKeyRing>,
    cipher: &Bound<'_, PyCipher>,
    seen: Option<Bound<'_, PyAny>>,
    now_ms: i64,
) -> PyResult<PyDecrypted> {
    let seen = seen_set(seen)?;
    let b = batch.get();
    let ring = keys.get().inner.clone();
    let cipher = cipher.get().inner.clone();
    let d = detached(py, move || Ok(engine_decrypt(&b.inner, &ring, &cipher, &seen, now_ms)))?;
    Ok(PyDecrypted {
        inner: std::sync::Mutex::new(Some(d)),
        now_ms,
    })
}

/// The rest of `decode_batch` for a `decrypt_batch` result: the consent policy's verdicts
/// (batches judged in the order they arrived), the audit, the shapes for the store. On the
/// calling thread (GIL released), never the pool: the pool is decrypting the next batches.
/// A batch is judged once (`ValueError` the second time).
#[pyfunction]
#[pyo3(signature = (decrypted, policy = None, audit = false, words = None, push_card = true, red_packet = true))]
fn judge_batch(
    py: Python<'_>,
    decrypted: &Bound<'_, PyDecrypted>,
    policy: Option<&Bound<'_, PyConsentPolicy>>,
    audit: bool,
    words: Option<&Bound<'_, PyWordList>>,
    push_card: bool,
    red_packet: bool,
) -> PyResult<PyDecoded> {
    let taken = decrypted.get().inner.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(mut d) = taken else {
        return Err(pyo3::exceptions::PyValueError::new_err("this batch was judged already"));
    };
    let now_ms = decrypted.get().now_ms;
    let wl = words.map(|w| w.get().inner.clone());
    let behaviours = crate::audit::Behaviours { push_card, red_packet };
    let policy = policy.map(|p| p.get().inner.clone());
    detached(py, move || {
        if let Some(p) = policy.as_deref() {
            engine_judge(&mut d, p);
        }
        let audit = audit.then_some(Audit {
            words: wl.as_deref(),
            behaviours,
        });
        Ok(shape(d, audit, now_ms))
    })
}

struct Audit<'a> {
    words: Option<&'a crate::matcher::WordList>,
    behaviours: crate::audit::Behaviours,
}

/// A decoded (decrypted and judged) batch in the shapes the store writes.
fn shape(mut d: Decoded, audit: Option<Audit<'_>>, now_ms: i64) -> PyDecoded {
    let audits = audit.map(|a| run_audit(&d.records, a.words, a.behaviours, now_ms, false));
    let consent = d
        .delta
        .consent
        .iter()
        .map(|(c, t, s, msgid)| {
            let v = rmp_serde::to_vec_named(&ConsentValue {
                status: s.as_str(),
                source: "stream",
                msgid,
            });
            (consent_key(c, *t, *s), v.unwrap_or_default())
        })
        .collect();
    let spoken = d
        .delta
        .spoken
        .iter()
        .map(|(r, u, t)| (spoken_key(r, u), (*t as u64).to_be_bytes()))
        .collect();
    let events = d
        .delta
        .events
        .iter()
        .map(|e| (e.key(), rmp_serde::to_vec_named(e).unwrap_or_default()))
        .collect();
    let mut msgtypes: HashMap<String, u64> = HashMap::new();
    for r in &d.records {
        *msgtypes.entry(r.msgtype.clone()).or_default() += 1;
    }
    let records = d
        .records
        .iter()
        .map(|r| (r.seq, r.msgid.clone(), r.to_msgpack()))
        .collect();
    let convs = d
        .records
        .iter()
        .map(|r| {
            let role = if is_customer(&r.from) {
                Role::Customer
            } else {
                Role::Employee
            };
            (r.conv.clone(), r.seq, r.msgtime, role.as_byte())
        })
        .collect();
    let media = d
        .records
        .iter()
        .flat_map(|r| {
            media_refs(&r.msgtype, &r.raw)
                .into_iter()
                .map(move |media| QueuedMedia {
                    seq: r.seq,
                    msgid: r.msgid.clone(),
                    media,
                })
        })
        .collect();
    // last: takes the records' fields
    let index_views = d.records.iter_mut().map(StoredView::of).collect();
    PyDecoded {
        records,
        quarantined: d.quarantined.iter().map(|(s, q)| (*s, q.to_msgpack())).collect(),
        rejected: d
            .rejected
            .iter()
            .map(|q| (sha256(q.item.as_bytes()), q.to_msgpack()))
            .collect(),
        skipped: d.skipped,
        unknown_msgtypes: d.unknown_msgtypes,
        max_seq: d.max_seq,
        reasons: d.reasons,
        msgtypes,
        dropped: d.dropped.iter().map(|(s, _)| *s).collect(),
        convs,
        kept_by_rule: d.kept_by_rule,
        dropped_by_rule: d.dropped_by_rule,
        consent,
        spoken,
        events,
        audits,
        media,
        index_views,
    }
}

/// Stored record values (msgpack) → JSONL bytes, one message a line with `seq` first.
#[pyfunction]
fn records_to_jsonl<'py>(py: Python<'py>, values: Vec<Bound<'py, PyBytes>>) -> PyResult<Bound<'py, PyBytes>> {
    let owned: Vec<Vec<u8>> = values.iter().map(|v| v.as_bytes().to_vec()).collect();
    let out = detached(py, move || {
        let mut out = Vec::with_capacity(owned.iter().map(|v| v.len()).sum());
        for v in &owned {
            record_line(v, &mut out)?;
        }
        Ok(out)
    })?;
    Ok(PyBytes::new(py, &out))
}

/// Seals plaintext messages into one GetChatData response (open scheme), in parallel.
/// `public_pems` maps publickey_ver → public key PEM; `items` are
/// `(seq, msgid, publickey_ver, plaintext_json_bytes)`.
#[pyfunction]
fn seal_response<'py>(
    py: Python<'py>,
    public_pems: BTreeMap<u32, Bound<'py, PyBytes>>,
    items: Vec<(u64, String, u32, Bound<'py, PyBytes>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let pems: BTreeMap<u32, Vec<u8>> = public_pems
        .into_iter()
        .map(|(k, v)| (k, v.as_bytes().to_vec()))
        .collect();
    let owned: Vec<PlainItem> = items
        .into_iter()
        .map(|(s, m, v, p)| (s, m, v, p.as_bytes().to_vec()))
        .collect();
    let doc = detached(py, move || {
        let mut sealers = BTreeMap::new();
        for (ver, pem) in &pems {
            sealers.insert(
                *ver,
                Sealer::new(pem).map_err(|e| Error::KeyVersion {
                    ver: *ver,
                    detail: e.to_string(),
                })?,
            );
        }
        engine_seal(&sealers, &owned)
    })?;
    Ok(PyBytes::new(py, &doc))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChatBatch>()?;
    m.add_class::<PyDecoded>()?;
    m.add_class::<PyDecrypted>()?;
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(decrypt_batch, m)?)?;
    m.add_function(wrap_pyfunction!(judge_batch, m)?)?;
    m.add_function(wrap_pyfunction!(records_to_jsonl, m)?)?;
    m.add_function(wrap_pyfunction!(seal_response, m)?)?;
    Ok(())
}
