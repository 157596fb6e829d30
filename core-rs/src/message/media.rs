//! The media a message refers to (spec §4: image, voice, video, file, emotion, meeting
//! voice call, voip doc share, and the items of mixed messages): what the media fetcher
//! asks `GetMediaData` for, with the `md5sum` and size the message states.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::json::Json;
use crate::error::{Error, Result};

/// One piece of media of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    pub sdkfileid: String,
    pub md5sum: String,
    pub size: u64,
    /// The msgtype the media belongs to (for a mixed message, the item's type).
    pub kind: String,
    /// File name (file and voip doc share), else empty.
    pub filename: String,
}

const MEDIA_TYPES: [&str; 7] = [
    "image",
    "voice",
    "video",
    "file",
    "emotion",
    "meeting_voice_call",
    "voip_doc_share",
];

fn from_payload(kind: &str, p: &Json, out: &mut Vec<MediaRef>) {
    let s = |k: &str| p.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let n = |k: &str| p.get(k).and_then(Json::as_u64).unwrap_or(0);
    let id = s("sdkfileid");
    if id.is_empty() {
        return;
    }
    let size = [n("filesize"), n("voice_size"), n("imagesize")]
        .into_iter()
        .max()
        .unwrap_or(0);
    out.push(MediaRef {
        sdkfileid: id,
        md5sum: s("md5sum"),
        size,
        kind: kind.to_string(),
        filename: s("filename"),
    });
}

/// The media of one decrypted message (`raw`: its JSON). Malformed parts are skipped.
pub fn media_refs(msgtype: &str, raw: &[u8]) -> Vec<MediaRef> {
    let mut out = Vec::new();
    if !MEDIA_TYPES.contains(&msgtype) && msgtype != "mixed" {
        return out;
    }
    let Ok(msg) = Json::parse(raw) else {
        return out;
    };
    let payload = |name: &str| msg.get(name).filter(|p| p.is_object());
    match msgtype {
        "mixed" => {
            let items = payload("mixed").and_then(|m| m.get("item")).and_then(Json::as_array);
            for it in items.into_iter().flatten() {
                let kind = it.get("type").and_then(Json::as_str).unwrap_or("");
                if !MEDIA_TYPES.contains(&kind) {
                    continue;
                }
                // the item's content is a JSON string of that type's payload
                let content = it.get("content").and_then(Json::as_str).unwrap_or("");
                if let Ok(p @ Json::Obj(_)) = Json::parse(content.as_bytes()) {
                    from_payload(kind, &p, &mut out);
                }
            }
        }
        "meeting_voice_call" => {
            if let Some(p) = payload("meeting_voice_call") {
                from_payload(msgtype, p, &mut out);
            }
        }
        "voip_doc_share" => {
            if let Some(p) = payload("voip_doc_share") {
                from_payload(msgtype, p, &mut out);
            }
        }
        t => {
            if let Some(p) = payload(t) {
                from_payload(t, p, &mut out);
            }
        }
    }
    out
}

/// A piece of media of a stored message: what the fetcher's queue holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMedia {
    pub seq: u64,
    pub msgid: String,
    pub media: MediaRef,
}

/// The value of an `md.todo` entry (what to fetch, and for which message).
#[derive(Serialize)]
struct Todo<'a> {
    sdkfileid: &'a str,
    md5: &'a str,
    size: u64,
    kind: &'a str,
    filename: &'a str,
    seq: u64,
    msgid: &'a str,
}

/// One item of an `md.seq` entry (a message's media, in order).
#[derive(Serialize)]
struct SeqItem<'a> {
    #[serde(with = "serde_bytes")]
    fid: &'a [u8],
    kind: &'a str,
    filename: &'a str,
    size: u64,
}

/// `(key, msgpack value)` pairs of a (key, msgpack value) table.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn pack<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>> {
    rmp_serde::to_vec_named(v).map_err(|e| Error::Record(e.to_string()))
}

/// The `md.todo` entries (`fid` → what to fetch; the first message naming a file wins) and
/// the `md.seq` entries (20-digit seq → its media in order) of a batch's media, each value
/// msgpack (maps by field name). `fid` is the keyed digest of a `sdkfileid`.
pub fn queue_entries(media: &[QueuedMedia], fid: impl Fn(&str) -> Result<[u8; 16]>) -> Result<(Entries, Entries)> {
    let mut todo: Entries = Vec::new();
    let mut queued: HashSet<[u8; 16]> = HashSet::new();
    let mut by_seq: Vec<(u64, Vec<SeqItem<'_>>)> = Vec::new();
    let mut seq_at: HashMap<u64, usize> = HashMap::new();
    let fids: Vec<[u8; 16]> = media.iter().map(|q| fid(&q.media.sdkfileid)).collect::<Result<_>>()?;
    for (q, f) in media.iter().zip(&fids) {
        let m = &q.media;
        if queued.insert(*f) {
            let v = Todo {
                sdkfileid: &m.sdkfileid,
                md5: &m.md5sum,
                size: m.size,
                kind: &m.kind,
                filename: &m.filename,
                seq: q.seq,
                msgid: &q.msgid,
            };
            todo.push((f.to_vec(), pack(&v)?));
        }
        let at = *seq_at.entry(q.seq).or_insert_with(|| {
            by_seq.push((q.seq, Vec::new()));
            by_seq.len() - 1
        });
        by_seq[at].1.push(SeqItem {
            fid: f,
            kind: &m.kind,
            filename: &m.filename,
            size: m.size,
        });
    }
    let seq = by_seq
        .iter()
        .map(|(s, items)| Ok((format!("{s:020}").into_bytes(), pack(items)?)))
        .collect::<Result<_>>()?;
    Ok((todo, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_mixed_and_broken() {
        let img = br#"{"msgtype":"image","image":{"md5sum":"ab","filesize":12,"sdkfileid":"F1"}}"#;
        assert_eq!(
            media_refs("image", img),
            vec![MediaRef {
                sdkfileid: "F1".into(),
                md5sum: "ab".into(),
                size: 12,
                kind: "image".into(),
                filename: String::new()
            }]
        );
        let mixed = br#"{"msgtype":"mixed","mixed":{"item":[{"type":"text","content":"{\"content\":\"hi\"}"},
            {"type":"file","content":"{\"sdkfileid\":\"F2\",\"md5sum\":\"cd\",\"filesize\":5,\"filename\":\"a.pdf\"}"},
            {"type":"image","content":"not json"}]}}"#;
        let m = media_refs("mixed", mixed);
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].sdkfileid.as_str(), m[0].filename.as_str(), m[0].kind.as_str()),
            ("F2", "a.pdf", "file")
        );
        assert!(media_refs("text", br#"{"text":{"content":"x"}}"#).is_empty());
        assert!(media_refs("image", b"{broken").is_empty());
        assert!(media_refs("voice", br#"{"voice":{"md5sum":"x"}}"#).is_empty());
    }

    #[test]
    fn queue_entries_group_by_message_and_queue_a_file_once() {
        let m = |id: &str, kind: &str, size| MediaRef {
            sdkfileid: id.into(),
            md5sum: format!("md5-{id}"),
            size,
            kind: kind.into(),
            filename: if kind == "file" { "a.pdf".into() } else { String::new() },
        };
        let q = |seq, media| QueuedMedia {
            seq,
            msgid: format!("m{seq}"),
            media,
        };
        // a mixed message with two pieces, then a message forwarding the first file again
        let media = [
            q(7, m("F1", "file", 5)),
            q(7, m("I1", "image", 9)),
            q(12, m("F1", "file", 5)),
        ];
        let fid = |id: &str| -> Result<[u8; 16]> {
            let mut f = [0u8; 16];
            f[..id.len()].copy_from_slice(id.as_bytes());
            Ok(f)
        };
        let (todo, seq) = queue_entries(&media, fid).unwrap();
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct T {
            sdkfileid: String,
            md5: String,
            size: u64,
            kind: String,
            filename: String,
            seq: u64,
            msgid: String,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct S {
            #[serde(with = "serde_bytes")]
            fid: Vec<u8>,
            kind: String,
            filename: String,
            size: u64,
        }
        let todo: Vec<(Vec<u8>, T)> = todo
            .iter()
            .map(|(k, v)| (k.clone(), rmp_serde::from_slice(v).unwrap()))
            .collect();
        assert_eq!(todo.len(), 2);
        assert_eq!(todo[0].0, fid("F1").unwrap().to_vec());
        assert_eq!(
            todo[0].1,
            T {
                sdkfileid: "F1".into(),
                md5: "md5-F1".into(),
                size: 5,
                kind: "file".into(),
                filename: "a.pdf".into(),
                seq: 7,
                msgid: "m7".into()
            }
        );
        assert_eq!((todo[1].1.sdkfileid.as_str(), todo[1].1.seq), ("I1", 7));
        let seq: Vec<(String, Vec<S>)> = seq
            .iter()
            .map(|(k, v)| (String::from_utf8(k.clone()).unwrap(), rmp_serde::from_slice(v).unwrap()))
            .collect();
        assert_eq!(seq.len(), 2);
        assert_eq!(seq[0].0, "00000000000000000007");
        let kinds: Vec<(&[u8], &str, u64)> = seq[0]
            .1
            .iter()
            .map(|s| (&s.fid[..2], s.kind.as_str(), s.size))
            .collect();
        assert_eq!(kinds, vec![(&b"F1"[..], "file", 5), (&b"I1"[..], "image", 9)]);
        assert_eq!(seq[1].0, "00000000000000000012");
        assert_eq!(
            seq[1].1,
            vec![S {
                fid: fid("F1").unwrap().to_vec(),
                kind: "file".into(),
                filename: "a.pdf".into(),
                size: 5
            }]
        );
        // a failing digest is an error, not a silent drop
        assert!(queue_entries(&media, |_| Err(Error::Crypto("no key".into()))).is_err());
    }
}
