//! Whole GetChatData batches: parsing a response document into items, and decrypting and
//! parsing every item in parallel (rayon) into storage records, quarantine records and
//! counts.
//!
//! Cost: one RSA private-key operation per item that is not already stored (dominant),
//! plus base64, AES and JSON parsing (a few µs). Items whose seq the caller marks as
//! already seen are skipped before any decryption, so re-ingest spends no RSA.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::{DecodeSliceError, Engine};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::crypto::open::open_decrypt;
use crate::crypto::{KeyRing, MessageCipher};
use crate::error::{Error, ItemError, Reason, Result};
use crate::message::{parse_message, Record};
use crate::policy::{ConsentPolicy, PolicyDelta};

/// The fields of one chatdata item; `raw` is the item's JSON exactly as received, kept so
/// that a quarantined item can be re-driven later (archive data is not re-fetchable).
#[derive(Debug, Clone)]
pub struct Item {
    pub raw: String,
    pub seq: Option<u64>,
    pub fields: Result<ItemFields, ItemError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemFields {
    pub seq: u64,
    #[serde(default)]
    pub msgid: String,
    pub publickey_ver: u32,
    pub encrypt_random_key: String,
    pub encrypt_chat_msg: String,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    #[serde(borrow)]
    chatdata: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// A parsed GetChatData response.
#[derive(Debug, Clone, Default)]
pub struct ChatBatch {
    pub items: Vec<Item>,
}

impl ChatBatch {
    /// Parses one response document (`{"errcode":0,"errmsg":"ok","chatdata":[…]}`). A
    /// document that is not JSON, has a non-zero errcode or no `chatdata` array is an
    /// error for the whole document; a broken item is kept as an item with an error.
    pub fn parse(doc: &[u8]) -> Result<ChatBatch> {
        let env: Envelope =
            serde_json::from_slice(doc).map_err(|e| Error::BatchFormat(format!("not a GetChatData response: {e}")))?;
        if env.errcode != 0 {
            return Err(Error::BatchFormat(format!("errcode {} ({})", env.errcode, env.errmsg)));
        }
        let chatdata = env
            .chatdata
            .ok_or_else(|| Error::BatchFormat("no chatdata array".into()))?;
        Ok(ChatBatch {
            items: chatdata.into_iter().map(|r| Item::parse(r.get())).collect(),
        })
    }

    /// Rebuilds a batch from raw item JSON texts (quarantine retry).
    pub fn from_items<S: AsRef<str>>(raws: &[S]) -> ChatBatch {
        ChatBatch {
            items: raws.iter().map(|r| Item::parse(r.as_ref())).collect(),
        }
    }

    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().filter_map(|i| i.seq)
    }
}

impl Item {
    pub fn parse(raw: &str) -> Item {
        let fields = serde_json::from_str::<ItemFields>(raw)
            .map_err(|e| ItemError::new(Reason::BadItem, format!("chatdata item: {e}")));
        // a broken item may still name its seq (it is then quarantined under it)
        let seq = match &fields {
            Ok(f) => Some(f.seq),
            Err(_) => serde_json::from_str::<SeqOnly>(raw).ok().map(|s| s.seq),
        };
        Item {
            raw: raw.to_string(),
            seq,
            fields,
        }
    }
}

/// What became of one item.
pub enum Outcome {
    Skipped,
    Stored(Box<Record>),
    Quarantined {
        seq: u64,
        error: ItemError,
    },
    /// An item without a usable seq: it cannot be keyed by seq, so it is kept by content.
    Rejected {
        error: ItemError,
    },
}

/// A quarantine record as stored (msgpack; keep field names stable).
#[derive(Debug, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub seq: Option<u64>,
    pub msgid: String,
    pub publickey_ver: Option<u32>,
    pub reason: String,
    pub detail: String,
    /// The chatdata item JSON exactly as received.
    pub item: String,
    pub at_ms: i64,
}

/// The result of one batch call.
#[derive(Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub quarantined: Vec<(u64, QuarantineRecord)>,
    pub rejected: Vec<QuarantineRecord>,
    pub skipped: u64,
    pub unknown_msgtypes: u64,
    /// Quarantine and reject counts by reason code.
    pub reasons: BTreeMap<&'static str, u64>,
    pub max_seq: Option<u64>,
    /// Messages the consent policy dropped: (seq, rule). Never stored, indexed or audited.
    pub dropped: Vec<(u64, &'static str)>,
    /// Stored messages by the consent rule that kept them.
    pub kept_by_rule: BTreeMap<&'static str, u64>,
    pub dropped_by_rule: BTreeMap<&'static str, u64>,
    /// Consent-state changes made while judging this batch (persist them with it).
    pub delta: PolicyDelta,
}

fn decrypt_item(
    i: usize,
    f: &ItemFields,
    keys: &KeyRing,
    cipher: &MessageCipher,
    random_key: Option<RandomKey>,
) -> Result<Record, ItemError> {
    let plain = match cipher {
        MessageCipher::Supplied(plains) => match plains.get(i) {
            Some(Some(answer)) => answer.clone(),
            _ => Err(ItemError::new(
                Reason::VendorError,
                "no plaintext came back from the SDK worker",
            )),
        },
        MessageCipher::Open | MessageCipher::Vendor(_) => {
            let random_key = random_key.unwrap_or_else(|| rsa_step(f, keys));
            with_decoded_msg(f, random_key, |random_key, em| match cipher {
                MessageCipher::Vendor(sdk) => sdk.decrypt(&random_key, f.encrypt_chat_msg.trim(), em.len()),
                _ => open_decrypt(&random_key, em),
            })
        }
    }
    .map_err(|e| ItemError::new(e.reason, format!("seq {}: {}", f.seq, e.detail)))?;
    parse_message(f.seq, f.publickey_ver, &f.msgid, plain)
}

/// An item's RSA step done ahead: its random key, or why not. A bad `encrypt_random_key`
/// (base64) is told apart from a failed decryption, which ranks after a bad
/// `encrypt_chat_msg` (the order [`unwrap_key`] reports them in).
pub(crate) enum RandomKey {
    BadBase64(ItemError),
    Decrypted(Result<Vec<u8>, ItemError>),
}

/// The RSA step of one item alone: `encrypt_random_key` decoded and decrypted.
pub(crate) fn rsa_step(f: &ItemFields, keys: &KeyRing) -> RandomKey {
    let bad_key = |e: base64::DecodeError| ItemError::new(Reason::BadBase64Key, format!("encrypt_random_key: {e}"));
    let ek_text = f.encrypt_random_key.trim();
    // RSA keys up to 8192 bits fit on the stack; anything longer is decoded all the same
    // (and refused by the RSA step, as before)
    let mut stack = [0u8; 1024];
    let heap;
    let ek: &[u8] = match STANDARD.decode_slice(ek_text, &mut stack) {
        Ok(n) => &stack[..n],
        Err(DecodeSliceError::DecodeError(e)) => return RandomKey::BadBase64(bad_key(e)),
        Err(DecodeSliceError::OutputSliceTooSmall) => match STANDARD.decode(ek_text) {
            Ok(v) => {
                heap = v;
                &heap
            }
            Err(e) => return RandomKey::BadBase64(bad_key(e)),
        },
    };
    RandomKey::Decrypted(keys.decrypt_key(f.publickey_ver, ek))
}

/// `then(random_key, encrypt_chat_msg decoded)` after an item's [`rsa_step`]; errors in
/// [`unwrap_key`]'s order (bad key base64, bad message base64, failed RSA).
fn with_decoded_msg<T>(
    f: &ItemFields,
    random_key: RandomKey,
    then: impl FnOnce(Vec<u8>, &[u8]) -> Result<T, ItemError>,
) -> Result<T, ItemError> {
    let random_key = match random_key {
        RandomKey::BadBase64(e) => return Err(e),
        RandomKey::Decrypted(k) => k,
    };
    DECODED_MSG.with(|buf| {
        let mut em = buf.borrow_mut();
        em.clear();
        STANDARD
            .decode_vec(f.encrypt_chat_msg.trim(), &mut em)
            .map_err(|e| ItemError::new(Reason::BadBase64Msg, format!("encrypt_chat_msg: {e}")))?;
        then(random_key?, &em)
    })
}

thread_local! {
    // `encrypt_chat_msg` decoded, on each decrypting thread: one buffer reused item after
    // item (a fresh zeroed ~1 KB allocation per message was most of the base64 step)
    static DECODED_MSG: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The RSA step of one item: its random key, then `then(random_key, encrypt_chat_msg
/// decoded)` (the decoded bytes are lent from this thread's buffer).
pub(crate) fn unwrap_key<T>(
    f: &ItemFields,
    keys: &KeyRing,
    then: impl FnOnce(Vec<u8>, &[u8]) -> Result<T, ItemError>,
) -> Result<T, ItemError> {
    with_decoded_msg(f, rsa_step(f, keys), then)
}

/// Decrypts and parses every item of `batch` whose seq is not in `seen`, in parallel, then
/// (when a policy is given) judges the messages in seq order and keeps only what consent
/// allows: [`decrypt_batch`] then [`judge_batch`].
pub fn decode_batch(
    batch: &ChatBatch,
    keys: &KeyRing,
    cipher: &MessageCipher,
    seen: &HashSet<u64>,
    now_ms: i64,
    policy: Option<&ConsentPolicy>,
) -> Decoded {
    let mut d = decrypt_batch(batch, keys, cipher, seen, now_ms);
    if let Some(policy) = policy {
        judge_batch(&mut d, policy);
    }
    d
}

/// The order-free part of [`decode_batch`]: decrypts and parses (in parallel) every item
/// whose seq is not in `seen`. Batches may be decrypted in any order, several at once; the
/// consent policy then judges them one after another, in seq order ([`judge_batch`]).
pub fn decrypt_batch(
    batch: &ChatBatch,
    keys: &KeyRing,
    cipher: &MessageCipher,
    seen: &HashSet<u64>,
    now_ms: i64,
) -> Decoded {
    let unseen = |item: &Item| item.seq.is_none_or(|seq| !seen.contains(&seq));
    // every RSA step first, then the rest: a thread runs the RSA code item after item
    // with its caches warm, not interleaved with base64, AES and JSON
    let mut random_keys: Vec<Option<RandomKey>> = match cipher {
        MessageCipher::Supplied(_) => Vec::new(),
        _ => batch
            .items
            .par_iter()
            .map(|item| match &item.fields {
                Ok(f) if unseen(item) => Some(rsa_step(f, keys)),
                _ => None,
            })
            .collect(),
    };
    random_keys.resize_with(batch.items.len(), || None);
    let outcomes: Vec<(usize, Outcome)> = batch
        .items
        .par_iter()
        .zip(random_keys.into_par_iter())
        .enumerate()
        .map(|(i, (item, random_key))| {
            if !unseen(item) {
                return (i, Outcome::Skipped);
            }
            let out = match (&item.fields, item.seq) {
                (Ok(f), _) => match decrypt_item(i, f, keys, cipher, random_key) {
                    Ok(r) => Outcome::Stored(Box::new(r)),
                    Err(error) => Outcome::Quarantined { seq: f.seq, error },
                },
                (Err(e), Some(seq)) => Outcome::Quarantined { seq, error: e.clone() },
                (Err(e), None) => Outcome::Rejected { error: e.clone() },
            };
            (i, out)
        })
        .collect();

    let mut d = Decoded::default();
    let mut in_batch: HashSet<u64> = HashSet::new();
    for (i, out) in outcomes {
        let item = &batch.items[i];
        if let Some(s) = item.seq {
            d.max_seq = Some(d.max_seq.map_or(s, |m| m.max(s)));
        }
        let qrec = |error: ItemError| QuarantineRecord {
            seq: item.seq,
            msgid: item.fields.as_ref().map(|f| f.msgid.clone()).unwrap_or_default(),
            publickey_ver: item.fields.as_ref().ok().map(|f| f.publickey_ver),
            reason: error.reason.as_str().to_string(),
            detail: error.detail,
            item: item.raw.clone(),
            at_ms: now_ms,
        };
        match out {
            Outcome::Skipped => d.skipped += 1,
            Outcome::Stored(r) => {
                // The same seq twice inside one document: the first wins, the rest are duplicates.
                if !in_batch.insert(r.seq) {
                    d.skipped += 1;
                    continue;
                }
                if !r.known {
                    d.unknown_msgtypes += 1;
                }
                d.records.push(*r);
            }
            Outcome::Quarantined { seq, error } => {
                if !in_batch.insert(seq) {
                    d.skipped += 1;
                    continue;
                }
                *d.reasons.entry(error.reason.as_str()).or_default() += 1;
                d.quarantined.push((seq, qrec(error)));
            }
            Outcome::Rejected { error } => {
                *d.reasons.entry(error.reason.as_str()).or_default() += 1;
                d.rejected.push(qrec(error));
            }
        }
    }
    d
}

/// Judges a decrypted batch under `policy` (rules C-0 … C-12), keeping only what consent
/// allows and updating the policy's state: batches must be judged in the order they
/// arrived.
pub fn judge_batch(d: &mut Decoded, policy: &ConsentPolicy) {
    d.records.sort_by_key(|r| r.seq);
    let (verdicts, delta) = policy.judge_batch(&d.records);
    d.delta = delta;
    let records = std::mem::take(&mut d.records);
    for (mut r, v) in records.into_iter().zip(verdicts) {
        if v.keep {
            *d.kept_by_rule.entry(v.rule).or_default() += 1;
            r.rule = v.rule.to_string();
            d.records.push(r);
        } else {
            *d.dropped_by_rule.entry(v.rule).or_default() += 1;
            if !r.known {
                d.unknown_msgtypes -= 1;
            }
            d.dropped.push((r.seq, v.rule));
        }
    }
}

impl QuarantineRecord {
    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::{generate_key_pem, public_pem_of, Sealer};

    fn ring_and_sealer() -> (KeyRing, Sealer) {
        let pem = generate_key_pem(2048, true).unwrap();
        let ring = KeyRing::from_pems(BTreeMap::from([(1, pem.clone())])).unwrap();
        (ring, Sealer::new(&public_pem_of(&pem).unwrap()).unwrap())
    }

    fn item(s: &Sealer, seq: u64, ver: u32, plain: &str) -> String {
        let (ek, em) = s.seal(plain.as_bytes()).unwrap();
        format!(
            r#"{{"seq":{seq},"msgid":"m{seq}","publickey_ver":{ver},"encrypt_random_key":"{}","encrypt_chat_msg":"{}"}}"#,
            STANDARD.encode(ek),
            STANDARD.encode(em)
        )
    }

    fn text(seq: u64) -> String {
        format!(
            r#"{{"msgid":"m{seq}","action":"send","from":"a","tolist":["b"],"roomid":"","msgtime":{seq},"msgtype":"text","text":{{"content":"hi {seq}"}}}}"#
        )
    }

    #[test]
    fn good_bad_and_skipped_items() {
        let (ring, s) = ring_and_sealer();
        let mut items = vec![
            item(&s, 1, 1, &text(1)),
            item(&s, 2, 9, &text(2)),
            item(&s, 3, 1, "{broken"),
            item(&s, 4, 1, &text(4)),
        ];
        items.push(
            r#"{"seq":5,"msgid":"m5","publickey_ver":1,"encrypt_random_key":"!!notbase64","encrypt_chat_msg":"AAAA"}"#
                .into(),
        );
        items.push(r#"{"msgid":"nos"}"#.into());
        items.push(item(&s, 1, 1, &text(1)));
        let doc = format!(r#"{{"errcode":0,"errmsg":"ok","chatdata":[{}]}}"#, items.join(","));
        let batch = ChatBatch::parse(doc.as_bytes()).unwrap();
        assert_eq!(batch.items.len(), 7);
        let d = decode_batch(&batch, &ring, &MessageCipher::Open, &HashSet::from([4]), 99, None);
        assert_eq!(d.records.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
        assert_eq!(d.records[0].text, "hi 1");
        let q: Vec<(u64, &str)> = d.quarantined.iter().map(|(s, q)| (*s, q.reason.as_str())).collect();
        assert_eq!(
            q,
            vec![(2, "unknown_key_version"), (3, "bad_json"), (5, "bad_base64_key")]
        );
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].reason, "bad_item");
        assert_eq!(d.skipped, 2); // seq 4 (seen) and the second seq 1
        assert_eq!(d.max_seq, Some(5));
        assert_eq!(d.quarantined[0].1.at_ms, 99);
        assert!(d.quarantined[0].1.item.contains("\"seq\":2"));
    }

    #[test]
    fn base64_of_any_size_and_a_reused_buffer() {
        let (ring, s) = ring_and_sealer();
        let long = STANDARD.encode(vec![7u8; 2000]); // longer than the stack buffer
                                                     // a long message, then short ones: the thread's buffer shrinks its contents, not its bytes
        let big = format!(
            r#"{{"msgid":"m1","action":"send","from":"a","tolist":["b"],"roomid":"","msgtime":1,"msgtype":"text","text":{{"content":"{}"}}}}"#,
            "长".repeat(3000)
        );
        let items = [
            item(&s, 1, 1, &big),
            item(&s, 2, 1, &text(2)),
            format!(
                r#"{{"seq":3,"msgid":"m3","publickey_ver":1,"encrypt_random_key":"{long}","encrypt_chat_msg":"AAAA"}}"#
            ),
            r#"{"seq":4,"msgid":"m4","publickey_ver":1,"encrypt_random_key":"AAAA","encrypt_chat_msg":"!!"}"#.into(),
            item(&s, 5, 1, &text(5)),
        ];
        let doc = format!(r#"{{"errcode":0,"errmsg":"ok","chatdata":[{}]}}"#, items.join(","));
        let batch = ChatBatch::parse(doc.as_bytes()).unwrap();
        // one thread: the same buffer serves every item in turn
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let d = pool.install(|| decode_batch(&batch, &ring, &MessageCipher::Open, &HashSet::new(), 0, None));
        let texts: Vec<(u64, String)> = d.records.iter().map(|r| (r.seq, r.text.clone())).collect();
        assert_eq!(
            texts,
            vec![(1, "长".repeat(3000)), (2, "hi 2".into()), (5, "hi 5".into())]
        );
        let q: Vec<(u64, &str)> = d.quarantined.iter().map(|(s, q)| (*s, q.reason.as_str())).collect();
        // an over-long key decodes and fails RSA (it has the wrong length), as any wrong key
        assert_eq!(q, vec![(3, "rsa_failed"), (4, "bad_base64_msg")]);
    }

    #[test]
    fn whole_document_errors() {
        assert!(ChatBatch::parse(b"{oops").is_err());
        let e = ChatBatch::parse(br#"{"errcode":10001,"errmsg":"network"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10001"), "{e}");
        assert!(ChatBatch::parse(br#"{"errcode":0}"#).is_err());
    }
}
