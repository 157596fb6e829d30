//! Decrypted message JSON → one normalized [`Record`] plus its searchable text (spec §4).
//!
//! Cost: one parse per message into a tree that borrows from the plaintext ([`json::Json`]:
//! an allocation per object, none per string) and a walk of the payload fields that carry
//! text. Unknown fields are kept because the raw
//! plaintext is kept whole; an unknown `msgtype` is a record with `known = false`.

pub mod json;
pub mod media;
mod text;

use serde::{Deserialize, Serialize};

use json::Json;

use crate::error::{ItemError, Reason};
pub use text::{is_known_msgtype, payload_key, searchable_text, KNOWN_MSGTYPES};

/// The normalized form of one archived message, stored as msgpack (field names are the
/// stored keys: keep them stable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub msgid: String,
    pub publickey_ver: u32,
    pub action: String,
    pub from: String,
    pub tolist: Vec<String>,
    pub roomid: String,
    pub msgtime: i64,
    pub msgtype: String,
    /// False when `msgtype` is not one this version knows (stored whole all the same).
    pub known: bool,
    /// Searchable text extracted per msgtype (spec §4 table), parts joined by `\n`.
    pub text: String,
    /// The decrypted message JSON exactly as it came.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
    /// The consent rule that let the message be stored (`C-1`, `C-4`, …), or empty when
    /// no consent policy was applied.
    #[serde(default)]
    pub rule: String,
    /// The conversation: `g:<roomid>` for a group, `p:<a>|<b>` (sorted ids) one to one,
    /// `s:<user>` for a switch record.
    #[serde(default)]
    pub conv: String,
}

/// The conversation id of a message (see [`Record::conv`]).
pub fn conversation_id(from: &str, tolist: &[String], roomid: &str, msgtype: &str) -> String {
    if !roomid.is_empty() {
        return format!("g:{roomid}");
    }
    if msgtype == "switch" {
        return format!("s:{from}");
    }
    let mut ids: Vec<&str> = std::iter::once(from).chain(tolist.iter().map(String::as_str)).collect();
    ids.sort_unstable();
    ids.dedup();
    format!("p:{}", ids.join("|"))
}

fn str_field(obj: &Json, key: &str) -> String {
    obj.get(key).and_then(Json::as_str).unwrap_or_default().to_string()
}

fn int_field(obj: &Json, key: &str) -> i64 {
    match obj.get(key) {
        Some(Json::Str(s)) => s.parse().unwrap_or(0),
        Some(n) => n.as_i64().unwrap_or(0),
        None => 0,
    }
}

/// Parses one decrypted plaintext. `envelope_msgid` is the msgid of the chatdata item; a
/// message that names a different one is refused (it would be evidence of tampering).
pub fn parse_message(seq: u64, publickey_ver: u32, envelope_msgid: &str, raw: Vec<u8>) -> Result<Record, ItemError> {
    let obj = Json::parse(&raw)
        .map_err(|e| ItemError::new(Reason::BadJson, format!("seq {seq}: plaintext is not JSON: {e}")))?;
    if !obj.is_object() {
        return Err(ItemError::new(
            Reason::BadJson,
            format!("seq {seq}: plaintext is not a JSON object"),
        ));
    }
    let obj = &obj;
    let msgid = match obj.get("msgid") {
        Some(Json::Str(s)) if !s.is_empty() => s.to_string(),
        _ => {
            return Err(ItemError::new(
                Reason::BadMessage,
                format!("seq {seq}: message has no msgid"),
            ))
        }
    };
    if !envelope_msgid.is_empty() && msgid != envelope_msgid {
        return Err(ItemError::new(
            Reason::MsgidMismatch,
            format!("seq {seq}: envelope msgid {envelope_msgid} but message says {msgid}"),
        ));
    }
    let action = str_field(obj, "action");
    let (msgtype, from, msgtime) = if action == "switch" {
        ("switch".to_string(), str_field(obj, "user"), int_field(obj, "time"))
    } else {
        let msgtype = match obj.get("msgtype") {
            Some(Json::Str(s)) if !s.is_empty() => s.to_string(),
            _ => {
                return Err(ItemError::new(
                    Reason::BadMessage,
                    format!("seq {seq}: message {msgid} has no msgtype"),
                ))
            }
        };
        (msgtype, str_field(obj, "from"), int_field(obj, "msgtime"))
    };
    let tolist = match obj.get("tolist") {
        Some(Json::Arr(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    let roomid = str_field(obj, "roomid");
    check_ids(
        seq,
        &msgtype,
        obj,
        [&msgid, &from, &roomid].into_iter().chain(tolist.iter()),
    )?;
    let known = is_known_msgtype(&msgtype);
    let text = searchable_text(&msgtype, obj);
    let conv = conversation_id(&from, &tolist, &roomid, &msgtype);
    if conv.len() > MAX_CONV_BYTES {
        return Err(ItemError::new(
            Reason::BadIds,
            format!(
                "seq {seq}: a conversation of {} participants without a roomid ({} bytes; at most {MAX_CONV_BYTES})",
                tolist.len() + 1,
                conv.len()
            ),
        ));
    }
    Ok(Record {
        seq,
        msgid,
        publickey_ver,
        action,
        from,
        tolist,
        roomid,
        msgtime,
        msgtype,
        known,
        text,
        raw,
        rule: String::new(),
        conv,
    })
}

/// The longest id a message may carry, in bytes. WeCom's ids are short ASCII (a msgid is
/// about 40 bytes); ids become parts of storage keys (LMDB keys are at most 511 bytes, and
/// `\0` separates the parts of a key), so a longer one, or one with a NUL, is quarantined as
/// `bad_ids` instead of failing its batch.
pub const MAX_ID_BYTES: usize = 128;
/// The longest conversation id (it is a key part with a seq after it).
pub const MAX_CONV_BYTES: usize = 400;

fn check_ids<'a>(seq: u64, msgtype: &str, obj: &Json, ids: impl Iterator<Item = &'a String>) -> Result<(), ItemError> {
    let bad = |what: &str, id: &str| {
        let shown: String = id.chars().take(24).collect();
        ItemError::new(
            Reason::BadIds,
            format!(
                "seq {seq}: {what} {shown:?}… is {} bytes{} (ids are at most {MAX_ID_BYTES} bytes, without NUL)",
                id.len(),
                if id.contains('\0') { " with a NUL" } else { "" }
            ),
        )
    };
    if msgtype.len() > 64 || msgtype.contains('\0') {
        return Err(bad("the msgtype", msgtype));
    }
    for id in ids {
        if id.len() > MAX_ID_BYTES || id.contains('\0') {
            return Err(bad("an id", id));
        }
    }
    // a consent event's customer id keys the consent table
    if msgtype == "agree" || msgtype == "disagree" {
        if let Some(u) = obj.get(msgtype).and_then(|p| p.get("userid")).and_then(Json::as_str) {
            if u.len() > MAX_ID_BYTES || u.contains('\0') {
                return Err(bad("the consent event's userid", u));
            }
        }
    }
    Ok(())
}

impl Record {
    pub fn to_msgpack(&self) -> Vec<u8> {
        // Serialising a plain struct of strings and integers cannot fail.
        rmp_serde::to_vec_named(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Record, ItemError> {
        parse_message(7, 1, "m1", json.as_bytes().to_vec())
    }

    #[test]
    fn text_message() {
        let r = parse(r#"{"msgid":"m1","action":"send","from":"zhangsan","tolist":["wmA"],"roomid":"","msgtime":1700000000000,"msgtype":"text","text":{"content":"你好 World"},"extra":1}"#).unwrap();
        assert_eq!(r.msgtype, "text");
        assert_eq!(r.text, "你好 World");
        assert_eq!(r.tolist, vec!["wmA"]);
        assert_eq!(r.msgtime, 1700000000000);
        assert!(r.known);
        assert_eq!(r.conv, "p:wmA|zhangsan");
        assert!(String::from_utf8(r.raw).unwrap().contains("\"extra\":1"));
    }

    #[test]
    fn switch_record() {
        let r = parse(r#"{"msgid":"m1","action":"switch","time":1700000000123,"user":"lisi"}"#).unwrap();
        assert_eq!(
            (r.msgtype.as_str(), r.from.as_str(), r.msgtime),
            ("switch", "lisi", 1700000000123)
        );
    }

    #[test]
    fn unknown_type_is_kept() {
        let r =
            parse(r#"{"msgid":"m1","action":"send","from":"a","msgtime":1,"msgtype":"hologram","hologram":{"x":1}}"#)
                .unwrap();
        assert!(!r.known);
        assert_eq!(r.msgtype, "hologram");
    }

    #[test]
    fn ids_that_cannot_be_keys_are_refused() {
        let long = "😀".repeat(1000);
        for bad in [
            format!(r#"{{"msgid":"{long}","msgtype":"text","from":"a","tolist":["b"]}}"#),
            format!(r#"{{"msgid":"m","msgtype":"text","from":"{long}","tolist":["b"]}}"#),
            format!(r#"{{"msgid":"m","msgtype":"text","from":"a","tolist":["b","{long}"]}}"#),
            format!(r#"{{"msgid":"m","msgtype":"text","from":"a","roomid":"{long}"}}"#),
            r#"{"msgid":"m","msgtype":"text","from":"a\u0000b","tolist":["b"]}"#.to_string(),
            format!(r#"{{"msgid":"m","msgtype":"agree","from":"a","agree":{{"userid":"{long}"}}}}"#),
            format!(r#"{{"msgid":"m","msgtype":"{}","from":"a"}}"#, "t".repeat(65)),
            format!(
                r#"{{"msgid":"m","msgtype":"text","from":"a","tolist":[{}]}}"#,
                (0..40)
                    .map(|i| format!(r#""wm{i:0>20}""#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ] {
            let e = parse_message(7, 1, "", bad.as_bytes().to_vec()).expect_err("refused");
            assert_eq!(e.reason, Reason::BadIds, "{bad:.80}");
        }
        let ok = format!(
            r#"{{"msgid":"m","msgtype":"text","from":"{}","tolist":["b"]}}"#,
            "a".repeat(MAX_ID_BYTES)
        );
        assert!(parse_message(7, 1, "", ok.into_bytes()).is_ok());
    }

    #[test]
    fn failures_have_reasons() {
        assert_eq!(parse("{not json").unwrap_err().reason, Reason::BadJson);
        assert_eq!(parse("[1,2]").unwrap_err().reason, Reason::BadJson);
        assert_eq!(parse(r#"{"action":"send"}"#).unwrap_err().reason, Reason::BadMessage);
        assert_eq!(
            parse(r#"{"msgid":"m1","action":"send"}"#).unwrap_err().reason,
            Reason::BadMessage
        );
        assert_eq!(
            parse(r#"{"msgid":"m2","action":"send","msgtype":"text"}"#)
                .unwrap_err()
                .reason,
            Reason::MsgidMismatch
        );
    }
}
