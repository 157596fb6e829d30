//! The media a message refers to (spec §4: image, voice, video, file, emotion, meeting
//! voice call, voip doc share, and the items of mixed messages): what the media fetcher
//! asks `GetMediaData` for, with the `md5sum` and size the message states.

use super::json::Json;

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
}
