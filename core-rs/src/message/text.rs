//! Searchable text per msgtype (spec §4 table). Nested messages (`chatrecord`, `mixed`)
//! carry their items' payloads as JSON strings; those are parsed and walked too, to a
//! bounded depth so a hostile message cannot recurse without end.

use super::json::Json;

/// Every msgtype of spec §4, plus `switch` (which has no msgtype of its own).
pub const KNOWN_MSGTYPES: &[&str] = &[
    "text",
    "image",
    "revoke",
    "agree",
    "disagree",
    "voice",
    "video",
    "card",
    "location",
    "emotion",
    "file",
    "link",
    "weapp",
    "chatrecord",
    "todo",
    "vote",
    "collect",
    "redpacket",
    "external_redpacket",
    "meeting",
    "docmsg",
    "markdown",
    "news",
    "calendar",
    "mixed",
    "meeting_voice_call",
    "voip_doc_share",
    "sphfeed",
    "voiptext",
    "qydiskfile",
    "switch",
];

pub fn is_known_msgtype(t: &str) -> bool {
    KNOWN_MSGTYPES.contains(&t)
}

/// The name of the payload object of a message of type `msgtype` (spec §4 exceptions).
pub fn payload_key(msgtype: &str) -> &str {
    match msgtype {
        "docmsg" => "doc",
        "markdown" | "news" | "voiptext" | "qydiskfile" => "info",
        other => other,
    }
}

const MAX_DEPTH: u32 = 6;

/// The searchable text of a whole message object: its non-empty parts joined by `\n`.
pub fn searchable_text(msgtype: &str, msg: &Json) -> String {
    let payload = msg.get(payload_key(msgtype)).or_else(|| msg.get(msgtype)).or_else(|| {
        if msgtype == "external_redpacket" {
            msg.get("redpacket")
        } else {
            None
        }
    });
    let mut out = String::new();
    if let Some(p) = payload.filter(|p| p.is_object()) {
        payload_text(msgtype, p, 0, &mut out);
    }
    out
}

/// Appends one part (an empty one is no part).
fn push_part(s: &str, out: &mut String) {
    if s.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

fn push_str(p: &Json, key: &str, out: &mut String) {
    if let Some(s) = p.get(key).and_then(Json::as_str) {
        push_part(s, out);
    }
}

fn items<'j, 'a>(p: &'j Json<'a>, key: &str) -> impl Iterator<Item = &'j Json<'a>> {
    p.get(key).and_then(Json::as_array).into_iter().flatten()
}

/// Nested item type names: `ChatRecordText` → `text`, `text` → `text`.
fn nested_kind(t: &str) -> String {
    t.strip_prefix("ChatRecord").unwrap_or(t).to_ascii_lowercase()
}

fn nested_text(item: &Json, depth: u32, out: &mut String) {
    if depth >= MAX_DEPTH || !item.is_object() {
        return;
    }
    let kind = item
        .get("type")
        .and_then(Json::as_str)
        .map(nested_kind)
        .unwrap_or_default();
    match item.get("content") {
        // the item's payload, as a JSON string of its own
        Some(Json::Str(s)) => {
            if let Ok(p) = Json::parse(s.as_bytes()) {
                if p.is_object() {
                    payload_text(&kind, &p, depth + 1, out);
                }
            }
        }
        Some(p @ Json::Obj(_)) => payload_text(&kind, p, depth + 1, out),
        _ => {}
    }
}

fn payload_text(msgtype: &str, p: &Json, depth: u32, out: &mut String) {
    match msgtype {
        "text" | "markdown" => push_str(p, "content", out),
        "card" => push_str(p, "corpname", out),
        "location" => {
            push_str(p, "title", out);
            push_str(p, "address", out);
        }
        "file" | "voip_doc_share" | "qydiskfile" => push_str(p, "filename", out),
        "link" => {
            push_str(p, "title", out);
            push_str(p, "description", out);
            push_str(p, "link_url", out);
        }
        "weapp" => {
            push_str(p, "title", out);
            push_str(p, "description", out);
            push_str(p, "displayname", out);
        }
        "todo" => {
            push_str(p, "title", out);
            push_str(p, "content", out);
        }
        "vote" => {
            push_str(p, "votetitle", out);
            for it in items(p, "voteitem") {
                if let Some(s) = it.as_str() {
                    push_part(s, out);
                }
            }
        }
        "collect" => {
            push_str(p, "title", out);
            for it in items(p, "details") {
                if let Some(q) = it.get("ques").and_then(Json::as_str) {
                    push_part(q, out);
                }
            }
        }
        "redpacket" | "external_redpacket" => push_str(p, "wish", out),
        "meeting" => {
            push_str(p, "topic", out);
            push_str(p, "remarks", out);
        }
        "docmsg" | "doc" => push_str(p, "title", out),
        "news" => {
            for it in items(p, "item") {
                if it.is_object() {
                    push_str(it, "title", out);
                    push_str(it, "description", out);
                }
            }
        }
        "calendar" => {
            push_str(p, "title", out);
            push_str(p, "place", out);
            push_str(p, "remarks", out);
        }
        "sphfeed" => {
            push_str(p, "sph_name", out);
            push_str(p, "feed_desc", out);
        }
        "chatrecord" => {
            push_str(p, "title", out);
            for it in items(p, "item") {
                nested_text(it, depth, out);
            }
        }
        "mixed" => {
            for it in items(p, "item") {
                nested_text(it, depth, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(msgtype: &str, json: &str) -> String {
        searchable_text(msgtype, &Json::parse(json.as_bytes()).unwrap())
    }

    #[test]
    fn payload_exceptions() {
        assert_eq!(text_of("markdown", r#"{"info":{"content":"**hi**"}}"#), "**hi**");
        assert_eq!(
            text_of("docmsg", r#"{"doc":{"title":"周报","doc_creator":"a"}}"#),
            "周报"
        );
        assert_eq!(text_of("qydiskfile", r#"{"info":{"filename":"a.pdf"}}"#), "a.pdf");
        assert_eq!(
            text_of(
                "news",
                r#"{"info":{"item":[{"title":"T1","description":"D1"},{"title":"T2"}]}}"#
            ),
            "T1\nD1\nT2"
        );
        assert_eq!(
            text_of("external_redpacket", r#"{"redpacket":{"wish":"恭喜发财"}}"#),
            "恭喜发财"
        );
        assert_eq!(text_of("image", r#"{"image":{"sdkfileid":"x"}}"#), "");
    }

    #[test]
    fn nested_chatrecord_and_mixed() {
        let j = r#"{"chatrecord":{"title":"群聊记录","item":[
            {"type":"ChatRecordText","content":"{\"content\":\"第一条\"}"},
            {"type":"ChatRecordFile","content":"{\"filename\":\"合同.docx\"}"},
            {"type":"ChatRecordMixed","content":"{\"item\":[{\"type\":\"text\",\"content\":\"{\\\"content\\\":\\\"深层\\\"}\"}]}"},
            {"type":"ChatRecordText","content":"not json"}]}}"#;
        assert_eq!(text_of("chatrecord", j), "群聊记录\n第一条\n合同.docx\n深层");
        let m =
            r#"{"mixed":{"item":[{"type":"text","content":"{\"content\":\"A\"}"},{"type":"image","content":"{}"}]}}"#;
        assert_eq!(text_of("mixed", m), "A");
    }

    #[test]
    fn every_known_type_has_a_payload_key() {
        for t in KNOWN_MSGTYPES {
            assert!(!payload_key(t).is_empty());
        }
    }
}
