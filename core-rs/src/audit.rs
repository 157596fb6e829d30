//! Content and behaviour audit records (rules) for stored messages: every
//! stored message is matched against the word-list entries that apply to its sender, and
//! pushed contact cards and red packets sent by employees are behaviours. Used by ingest
//! (on each batch) and by the retroactive rescan (on the whole archive, from storage).
//!
//! Cost: a msgpack decode, one normalization and one automaton pass per message, in
//! parallel; records are keyed so that re-auditing the same message never duplicates.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;

use crate::matcher::WordList;
use crate::message::Record;
use crate::policy::is_customer;

/// Which sensitive behaviours are detected (rule A-4: each on by default).
#[derive(Debug, Clone, Copy)]
pub struct Behaviours {
    pub push_card: bool,
    pub red_packet: bool,
}

impl Default for Behaviours {
    fn default() -> Self {
        Behaviours {
            push_card: true,
            red_packet: true,
        }
    }
}

/// An audit record as stored (msgpack; keep field names stable).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub id: String,
    pub kind: &'static str,
    pub seq: u64,
    pub msgid: String,
    pub msgtime: i64,
    pub employee: String,
    pub customer: String,
    pub roomid: String,
    pub conv: String,
    pub sender: String,
    pub entry_id: Option<u32>,
    pub word: Option<String>,
    pub words: Vec<String>,
    pub category: Option<String>,
    pub severity: Option<u8>,
    pub behaviour: Option<&'static str>,
    pub text: String,
    pub status: &'static str,
    pub verdict: Option<String>,
    pub remark: Option<String>,
    pub handled_by: Option<String>,
    pub handled_at: Option<i64>,
    pub created_at: i64,
}

/// `c` + seq + entry id (content) or `b` + seq (behaviour): one record per message and
/// entry, whatever the number of hits.
pub fn content_key(seq: u64, entry_id: u32) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&entry_id.to_be_bytes());
    k
}

pub fn behaviour_key(seq: u64) -> Vec<u8> {
    let mut k = vec![b'b'];
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

const MAX_TEXT_CHARS: usize = 4000;

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The audit records of one stored message.
pub fn audit_message(r: &Record, words: Option<&WordList>, b: Behaviours, now_ms: i64) -> Vec<(Vec<u8>, AuditRecord)> {
    let sender_is_customer = is_customer(&r.from);
    let employee = if sender_is_customer {
        r.tolist.iter().find(|t| !is_customer(t)).cloned().unwrap_or_default()
    } else {
        r.from.clone()
    };
    let customer = if r.roomid.is_empty() {
        std::iter::once(&r.from)
            .chain(r.tolist.iter())
            .find(|p| is_customer(p))
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    };
    let base = |id: String, kind: &'static str| AuditRecord {
        id,
        kind,
        seq: r.seq,
        msgid: r.msgid.clone(),
        msgtime: r.msgtime,
        employee: employee.clone(),
        customer: customer.clone(),
        roomid: r.roomid.clone(),
        conv: r.conv.clone(),
        sender: r.from.clone(),
        entry_id: None,
        word: None,
        words: Vec::new(),
        category: None,
        severity: None,
        behaviour: None,
        text: clip(&r.text),
        status: "pending",
        verdict: None,
        remark: None,
        handled_by: None,
        handled_at: None,
        created_at: now_ms,
    };
    let mut out = Vec::new();
    if let Some(wl) = words {
        // rule A-1: all hits of one entry in one message are one trigger
        let mut by_entry: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for h in wl.find(&r.text, sender_is_customer) {
            let ws = by_entry.entry(h.entry).or_default();
            if !ws.contains(&h.word) {
                ws.push(h.word);
            }
        }
        for (idx, ws) in by_entry {
            let e = wl.entry(idx as usize);
            let mut a = base(format!("c-{}-{}", r.seq, e.id), "content");
            a.entry_id = Some(e.id);
            a.word = Some(e.word.clone());
            a.words = ws;
            a.category = Some(e.category.clone());
            a.severity = Some(e.severity);
            out.push((content_key(r.seq, e.id), a));
        }
    }
    // rule A-4: behaviours of employees
    let behaviour = match r.msgtype.as_str() {
        "card" if b.push_card => Some("push_card"),
        "redpacket" | "external_redpacket" if b.red_packet => Some("red_packet"),
        _ => None,
    };
    if let (Some(kind), false) = (behaviour, sender_is_customer) {
        let mut a = base(format!("b-{}", r.seq), "behaviour");
        a.behaviour = Some(kind);
        out.push((behaviour_key(r.seq), a));
    }
    out
}

/// Audit records of a batch of stored records.
pub struct AuditBatch {
    pub audits: Vec<(Vec<u8>, AuditRecord)>,
}

impl AuditBatch {
    pub fn run(records: &[Record], words: Option<&WordList>, b: Behaviours, now_ms: i64) -> AuditBatch {
        let audits = records
            .par_iter()
            .flat_map_iter(|r| audit_message(r, words, b, now_ms))
            .collect();
        AuditBatch { audits }
    }

    /// [`AuditBatch::run`] on the calling thread: the ingest audits batch *n* while the pool
    /// decrypts batch *n + 1*, and a job queued behind that work would wait for all of it.
    pub fn run_here(records: &[Record], words: Option<&WordList>, b: Behaviours, now_ms: i64) -> AuditBatch {
        let audits = records
            .iter()
            .flat_map(|r| audit_message(r, words, b, now_ms))
            .collect();
        AuditBatch { audits }
    }
}
