//! The index's schema: its fields and the view of a stored record it reads.

use super::*;

/// The schema of a new index. `seq` is a fast field only: it is read per hit (the page's
/// cursor, the order), never searched, so it adds no term per document.
pub(super) fn schema() -> (Schema, Fields) {
    schema_with(FAST.into())
}

/// The schema of indexes made before `seq` lost its terms (it was `FAST | INDEXED`): the
/// same fields in the same order, so they open and take documents as they are.
pub(super) fn earlier_schema() -> Schema {
    schema_with((FAST | INDEXED).into()).0
}

fn schema_with(seq_options: tantivy::schema::NumericOptions) -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |tok: &str, opt: IndexRecordOption| {
        TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer(tok).set_index_option(opt))
    };
    let uni = b.add_text_field("uni", text(tokenizer::UNIGRAM, IndexRecordOption::Basic));
    let bi = b.add_text_field("bi", text(tokenizer::BIGRAM, IndexRecordOption::WithFreqsAndPositions));
    let seq = b.add_u64_field("seq", seq_options);
    let msgtime = b.add_i64_field("msgtime", FAST);
    let party = b.add_text_field("party", text("raw", IndexRecordOption::Basic));
    let room = b.add_text_field("room", text("raw", IndexRecordOption::Basic));
    let conv = b.add_text_field("conv", text("raw", IndexRecordOption::Basic));
    let msgtype = b.add_text_field("msgtype", text("raw", IndexRecordOption::Basic));
    (
        b.build(),
        Fields {
            uni,
            bi,
            seq,
            msgtime,
            party,
            room,
            conv,
            msgtype,
        },
    )
}

/// The fields of a stored record (msgpack, see `message::Record`) the index and a result
/// page need; the rest (notably `raw`) is skipped without copying.
#[derive(Deserialize)]
pub struct StoredView<'a> {
    pub(crate) seq: u64,
    #[serde(borrow, default)]
    pub(crate) msgid: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) from: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) tolist: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub(crate) roomid: Cow<'a, str>,
    pub(crate) msgtime: i64,
    #[serde(borrow)]
    pub(crate) msgtype: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) text: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) conv: Cow<'a, str>,
}

impl StoredView<'static> {
    /// The view of a record in hand, taking its fields (what the index needs, without a
    /// msgpack round trip); `msgid` is left empty (the index does not keep it).
    pub fn of(r: &mut crate::message::Record) -> StoredView<'static> {
        use std::mem::take;
        StoredView {
            seq: r.seq,
            msgid: Cow::Borrowed(""),
            from: Cow::Owned(take(&mut r.from)),
            tolist: take(&mut r.tolist).into_iter().map(Cow::Owned).collect(),
            roomid: Cow::Owned(take(&mut r.roomid)),
            msgtime: r.msgtime,
            msgtype: Cow::Owned(take(&mut r.msgtype)),
            text: Cow::Owned(take(&mut r.text)),
            conv: Cow::Owned(take(&mut r.conv)),
        }
    }
}
