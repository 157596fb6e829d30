//! A page of search results as JSON, straight from the stored records: each record's
//! msgpack is read in place (only the fields a result shows; the raw message body is
//! skipped, not copied), its snippet made, and the items written as one JSON array. The
//! HTTP search answer is this array with a few numbers around it: no Python dict per item.

use std::borrow::Cow;

use serde::Serialize;

use super::snippet::snippet;
use super::StoredView;

/// One result item, in the order of its JSON keys.
#[derive(Serialize)]
pub struct PageItem<'a> {
    msgid: Cow<'a, str>,
    pub seq: u64,
    msgtime: i64,
    snippet: String,
    highlights: Vec<(usize, usize)>,
    msgtype: Cow<'a, str>,
    pub from: Cow<'a, str>,
    tolist: Vec<Cow<'a, str>>,
    roomid: Cow<'a, str>,
    conv: Cow<'a, str>,
    /// The sender's display name, when the caller knows names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_name: Option<String>,
}

/// The items of a page: `hits[i]` = (msgtime, seq) found by the index, `raws[i]` its stored
/// record (None: not stored, which cannot happen while the index only holds stored records;
/// such a hit is left out). A record that does not decode is an error naming its seq.
pub fn page_items<'a>(
    hits: &[(i64, u64)],
    raws: &[Option<&'a [u8]>],
    terms: &[String],
    width: usize,
) -> Result<Vec<PageItem<'a>>, String> {
    hits.iter()
        .zip(raws)
        .filter_map(|(&(msgtime, seq), raw)| raw.map(|r| (msgtime, seq, r)))
        .map(|(msgtime, seq, raw)| {
            let r: StoredView<'a> =
                rmp_serde::from_slice(raw).map_err(|e| format!("stored record of seq {seq} is unreadable: {e}"))?;
            let s = snippet(&r.text, terms, width);
            Ok(PageItem {
                msgid: r.msgid,
                seq,
                msgtime,
                snippet: s.text,
                highlights: s.highlights,
                msgtype: r.msgtype,
                from: r.from,
                tolist: r.tolist,
                roomid: r.roomid,
                conv: r.conv,
                from_name: None,
            })
        })
        .collect()
}

/// The items as a JSON array.
pub fn items_json(items: &[PageItem<'_>]) -> Vec<u8> {
    serde_json::to_vec(items).unwrap_or_else(|_| b"[]".to_vec()) // plain structs: cannot fail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Record;

    fn record(seq: u64, text: &str) -> Vec<u8> {
        let r = Record {
            seq,
            msgid: format!("m{seq}"),
            publickey_ver: 1,
            action: "send".into(),
            from: "zhangsan".into(),
            tolist: vec!["wmCustomer".into()],
            roomid: String::new(),
            msgtime: 1_700_000_000_000,
            msgtype: "text".into(),
            known: true,
            text: text.into(),
            raw: br#"{"big":"raw body"}"#.to_vec(),
            rule: "C-1".into(),
            conv: "p:wmCustomer|zhangsan".into(),
        };
        rmp_serde::to_vec_named(&r).unwrap()
    }

    #[test]
    fn items_carry_the_shown_fields_and_snippets() {
        let a = record(7, "这个产品保本吗\n\"引号\"");
        let b = record(9, "别的");
        let raws = [Some(&a[..]), None, Some(&b[..])];
        let items = page_items(&[(5, 7), (4, 8), (3, 9)], &raws, &["保本".into()], 80).unwrap();
        assert_eq!(items.len(), 2, "a hit without a stored record is left out");
        let json: serde_json::Value = serde_json::from_slice(&items_json(&items)).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"msgid": "m7", "seq": 7, "msgtime": 5, "snippet": "这个产品保本吗 \"引号\"",
                "highlights": [[4, 6]], "msgtype": "text", "from": "zhangsan", "tolist": ["wmCustomer"],
                "roomid": "", "conv": "p:wmCustomer|zhangsan"})
        );
        assert_eq!(json[1]["seq"], 9);
        assert!(json[0].get("raw").is_none() && json[0].get("from_name").is_none());
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_its_seq() {
        let bad = [0xc1u8, 0x00];
        let err = page_items(&[(1, 42)], &[Some(&bad[..])], &[], 80).err().unwrap();
        assert!(err.contains("seq 42"), "{err}");
    }
}
