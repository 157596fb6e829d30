//! The vendor SDK run in a supervised worker process (spec §1: the library aborts the
//! whole process on some inputs, so it never runs inside the sync or the server).
//!
//! The work of one batch is split where the process boundary is: [`prepare`] does the RSA
//! step here (parallel, the dominant cost) and validates each item, producing a
//! [`VendorJob`]; the job's [`VendorJob::request`] frames the (random key,
//! `encrypt_chat_msg`) pairs of a range of items as one buffer for the worker, which answers
//! with [`crate::crypto::VendorSdk::decrypt_request`]; [`VendorJob::supplied`] turns the
//! answers (or the knowledge that the worker died on a single item) into a
//! [`MessageCipher::Supplied`] for `decode_batch`, which then only parses.

use std::collections::HashSet;

use rayon::prelude::*;

use crate::batch::{unwrap_key, ChatBatch};
use crate::crypto::vendor::{precheck, vendor_code_meaning};
use crate::crypto::{KeyRing, MessageCipher};
use crate::error::{Error, ItemError, Reason, Result};

/// Length-prefixed framing of requests and answers (little-endian u32 lengths).
pub mod frames {
    use crate::error::{Error, Result};

    /// The answer code of a pair the worker refused to pass to the library.
    pub const REFUSED: i32 = -1;

    fn put(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }

    fn take<'a>(buf: &'a [u8], at: &mut usize) -> Result<&'a [u8]> {
        let bad = || Error::BatchFormat("truncated SDK worker frame".into());
        let len_bytes: [u8; 4] = buf.get(*at..*at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let n = u32::from_le_bytes(len_bytes) as usize;
        let start = *at + 4;
        let b = buf.get(start..start + n).ok_or_else(bad)?;
        *at = start + n;
        Ok(b)
    }

    pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, m) in pairs {
            put(&mut out, k);
            put(&mut out, m);
        }
        out
    }

    pub fn decode_pairs(buf: &[u8]) -> Result<Vec<(&[u8], &[u8])>> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < buf.len() {
            let k = take(buf, &mut at)?;
            let m = take(buf, &mut at)?;
            out.push((k, m));
        }
        Ok(out)
    }

    pub fn encode_answers(answers: &[(i32, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (rc, body) in answers {
            out.extend_from_slice(&rc.to_le_bytes());
            put(&mut out, body);
        }
        out
    }

    pub fn decode_answers(buf: &[u8]) -> Result<Vec<(i32, &[u8])>> {
        let bad = || Error::BatchFormat("truncated SDK worker answer".into());
        let mut at = 0;
        let mut out = Vec::new();
        while at < buf.len() {
            let rc_bytes: [u8; 4] = buf.get(at..at + 4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
            at += 4;
            let body = take(buf, &mut at)?;
            out.push((i32::from_le_bytes(rc_bytes), body));
        }
        Ok(out)
    }
}

/// One item bound for the worker.
pub struct Entry {
    pub item: usize,
    pub seq: u64,
    pub key: Vec<u8>,
    pub msg: String,
}

/// The RSA-done part of one batch.
pub struct VendorJob {
    pub n_items: usize,
    pub entries: Vec<Entry>,
    /// Items that failed before the SDK (base64, RSA, validation), by item index.
    pub early: Vec<(usize, ItemError)>,
}

/// RSA-decrypts and validates every item of `batch` not in `seen`, in parallel.
pub fn prepare(batch: &ChatBatch, keys: &KeyRing, seen: &HashSet<u64>) -> VendorJob {
    let results: Vec<(usize, Option<std::result::Result<Entry, ItemError>>)> = batch
        .items
        .par_iter()
        .enumerate()
        .map(|(i, item)| {
            let Ok(f) = &item.fields else { return (i, None) };
            if seen.contains(&f.seq) {
                return (i, None);
            }
            let r = unwrap_key(f, keys, |key, em| {
                precheck(&key, em.len())?;
                Ok(Entry {
                    item: i,
                    seq: f.seq,
                    key,
                    msg: f.encrypt_chat_msg.trim().to_string(),
                })
            });
            (i, Some(r))
        })
        .collect();
    let mut job = VendorJob {
        n_items: batch.items.len(),
        entries: Vec::new(),
        early: Vec::new(),
    };
    for (i, r) in results {
        match r {
            Some(Ok(e)) => job.entries.push(e),
            Some(Err(e)) => job.early.push((i, e)),
            None => {}
        }
    }
    job
}

impl VendorJob {
    /// The worker request for entries `start..end`.
    pub fn request(&self, start: usize, end: usize) -> Vec<u8> {
        let end = end.min(self.entries.len());
        let start = start.min(end);
        frames::encode_pairs(
            self.entries[start..end]
                .iter()
                .map(|e| (e.key.as_slice(), e.msg.as_bytes())),
        )
    }

    /// The cipher for `decode_batch` from the worker's answers: `parts` are
    /// `(first entry, answer)` for consecutive ranges; an answer of `None` means the worker
    /// died on that range, which must then be one entry (found by bisection).
    pub fn supplied(&self, parts: &[(usize, Option<&[u8]>)]) -> Result<MessageCipher> {
        let mut plains: Vec<Option<std::result::Result<Vec<u8>, ItemError>>> = vec![None; self.n_items];
        for (i, e) in &self.early {
            plains[*i] = Some(Err(e.clone()));
        }
        let mut covered = 0usize;
        for (start, answer) in parts {
            if *start != covered {
                return Err(Error::BatchFormat(format!(
                    "SDK worker answers cover entries from {start}, expected {covered}"
                )));
            }
            match answer {
                None => {
                    let e = self
                        .entries
                        .get(*start)
                        .ok_or_else(|| Error::BatchFormat("SDK crash beyond the job".into()))?;
                    plains[e.item] = Some(Err(ItemError::new(
                        Reason::SdkCrash,
                        "the vendor SDK's process died decrypting this item (twice, alone)",
                    )));
                    covered += 1;
                }
                Some(buf) => {
                    let answers = frames::decode_answers(buf)?;
                    for (k, (rc, body)) in answers.into_iter().enumerate() {
                        let e = self
                            .entries
                            .get(*start + k)
                            .ok_or_else(|| Error::BatchFormat("SDK worker answered more than asked".into()))?;
                        plains[e.item] = Some(match rc {
                            0 => Ok(body.to_vec()),
                            frames::REFUSED => Err(ItemError::new(
                                Reason::VendorError,
                                String::from_utf8_lossy(body).into_owned(),
                            )),
                            rc => Err(ItemError::new(
                                Reason::VendorError,
                                format!("DecryptData returned {rc} ({})", vendor_code_meaning(rc)),
                            )),
                        });
                        covered += 1;
                    }
                }
            }
        }
        if covered != self.entries.len() {
            return Err(Error::BatchFormat(format!(
                "SDK worker answered {covered} of {} items",
                self.entries.len()
            )));
        }
        Ok(MessageCipher::Supplied(plains))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_an_error() {
        let req = frames::encode_pairs([(&b"k1"[..], &b"m1"[..]), (&b""[..], &b"mm"[..])].into_iter());
        let pairs = frames::decode_pairs(&req).unwrap();
        assert_eq!(pairs, vec![(&b"k1"[..], &b"m1"[..]), (&b""[..], &b"mm"[..])]);
        assert!(frames::decode_pairs(&req[..req.len() - 1]).is_err());
        let ans = frames::encode_answers(&[(0, b"plain".to_vec()), (10006, Vec::new())]);
        assert_eq!(
            frames::decode_answers(&ans).unwrap(),
            vec![(0, &b"plain"[..]), (10006, &b""[..])]
        );
        assert!(frames::decode_answers(&ans[..3]).is_err());
    }
}
