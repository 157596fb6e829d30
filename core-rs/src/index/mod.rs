//! The archive search index (Tantivy): CJK-exact substring search over stored messages,
//! with filters on sender/receivers, group, conversation, message type and time, newest
//! first with a cursor, and a total count (rules V-2, V-5; DESIGN "Search semantics").
//!
//! - **Schema**: `uni` (folded characters, doc ids only) and `bi` (folded character pairs,
//!   with positions) — see [`tokenizer`]; raw-string fields `party` (sender and every
//!   receiver), `room`, `conv`, `msgtype`; fast fields `seq` and `msgtime`. No message body
//!   is stored: bodies stay in LMDB, the index only finds seqs.
//! - **Durability**: nothing is visible before [`ArchiveIndex::commit`]; each commit records
//!   the highest seq it covers. Documents are added only after their batch is durable in
//!   the store, so the index is always a subset of the store; the library reconciles the
//!   difference after a crash (see `scrm_fast.search`).
//! - **Cost**: indexing ≈ two postings per character; a query of *n* characters costs one
//!   posting list (n ≤ 2) or a phrase intersection of ⌈(n-1)/2⌉+1 bigram lists; the page
//!   collector reads two fast-field values per matching document.

mod fold;
mod page;
mod query;
mod snippet;
mod tokenizer;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::Deserialize;
use tantivy::collector::SegmentCollector;
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, EnableScoring, Occur, PhraseQuery, Query, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument, Term,
};

pub use fold::{fold_char, fold_text};
pub use page::{items_json, page_items, PageItem};
pub use query::{parse_query, QueryNode, MAX_TERMS, MAX_TERM_CHARS};
pub use snippet::{snippet, Snippet};

use crate::crypto::TokenKey;
use crate::error::{Error, Result};

/// Token domains of the id fields.
const PARTY: u8 = b'p';
const ROOM: u8 = b'r';
const CONV: u8 = b'c';

/// Layout version, recorded in every commit: a different one needs `scrm reindex`.
pub const LAYOUT: u32 = 2;

#[derive(Clone, Copy)]
struct Fields {
    uni: Field,
    bi: Field,
    seq: Field,
    msgtime: Field,
    party: Field,
    room: Field,
    conv: Field,
    msgtype: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |tok: &str, opt: IndexRecordOption| {
        TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer(tok).set_index_option(opt))
    };
    let uni = b.add_text_field("uni", text(tokenizer::UNIGRAM, IndexRecordOption::Basic));
    let bi = b.add_text_field("bi", text(tokenizer::BIGRAM, IndexRecordOption::WithFreqsAndPositions));
    let seq = b.add_u64_field("seq", FAST | INDEXED);
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
pub(crate) struct StoredView<'a> {
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

/// Data scope (rule R-2): a message is visible when one of `parties` takes part in it or it
/// was said in one of `rooms`.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub parties: Vec<String>,
    pub rooms: Vec<String>,
}

/// One search: the query string plus filters; every filter narrows (AND).
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    /// Each of these ids must take part (sender or receiver): employee, customer filters.
    pub parties: Vec<String>,
    pub room: Option<String>,
    pub conv: Option<String>,
    /// Any of these msgtypes (a V-2 type group); `None` is every type.
    pub msgtypes: Option<Vec<String>>,
    /// Inclusive msgtime bounds (ms).
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub scope: Option<Scope>,
    /// Only messages strictly older than this `(msgtime, seq)`: the cursor of a page.
    pub before: Option<(i64, u64)>,
    pub limit: usize,
}

impl SearchRequest {
    pub fn new(query: &str, limit: usize) -> Self {
        SearchRequest {
            query: query.to_string(),
            parties: Vec::new(),
            room: None,
            conv: None,
            msgtypes: None,
            since: None,
            until: None,
            scope: None,
            before: None,
            limit,
        }
    }
}

/// One page of results, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// Every match of the query and filters (independent of the cursor).
    pub total: u64,
    /// `(msgtime, seq)` of the page's messages.
    pub hits: Vec<(i64, u64)>,
    /// The cursor of the next page, when there is one.
    pub next: Option<(i64, u64)>,
    /// The query's highlight terms (folded).
    pub terms: Vec<String>,
}

/// An archive's search index in one directory.
pub struct ArchiveIndex {
    path: PathBuf,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter>>,
    columns: Mutex<std::collections::HashMap<tantivy::index::SegmentId, Arc<SegColumns>>>,
    counts: CountCache,
    key: TokenKey,
}

fn index_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Index(format!("{}: {e}", path.display()))
}

impl ArchiveIndex {
    /// Opens the index in `path`, creating it when the directory holds none; `key` keys
    /// every term (an index made with another key finds nothing).
    pub fn open(path: &Path, key: TokenKey) -> Result<ArchiveIndex> {
        std::fs::create_dir_all(path).map_err(|e| index_err(path, e))?;
        let (schema, fields) = schema();
        let dir = MmapDirectory::open(path).map_err(|e| index_err(path, e))?;
        let index = Index::open_or_create(dir, schema.clone())
            .map_err(|e| index_err(path, format!("{e} (an index of another layout: run `scrm reindex`)")))?;
        index.tokenizers().register(
            tokenizer::UNIGRAM,
            TextAnalyzer::from(tokenizer::NgramTokenizer::unigrams(key)),
        );
        index.tokenizers().register(
            tokenizer::BIGRAM,
            TextAnalyzer::from(tokenizer::NgramTokenizer::bigrams(key)),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e| index_err(path, e))?;
        let me = ArchiveIndex {
            path: path.to_path_buf(),
            index,
            fields,
            reader,
            writer: Mutex::new(None),
            columns: Mutex::new(Default::default()),
            counts: CountCache::new(path),
            key,
        };
        if let Some(layout) = me.committed()?.map(|c| c.0) {
            if layout != LAYOUT {
                return Err(index_err(
                    path,
                    format!("index layout {layout}, this version reads {LAYOUT}: run `scrm reindex`"),
                ));
            }
        }
        Ok(me)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `(layout, max_seq)` recorded by the last commit, if any.
    pub fn committed(&self) -> Result<Option<(u32, u64)>> {
        let metas = self.index.load_metas().map_err(|e| index_err(&self.path, e))?;
        let Some(p) = metas.payload else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&p).map_err(|e| index_err(&self.path, e))?;
        Ok(Some((
            v["layout"].as_u64().unwrap_or(0) as u32,
            v["max_seq"].as_u64().unwrap_or(0),
        )))
    }

    /// Takes the index's writer lock (one writer per index, across processes):
    /// `threads` indexing threads sharing `heap_bytes` of buffers.
    pub fn open_writer(&self, threads: usize, heap_bytes: usize) -> Result<()> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_none() {
            let writer = self
                .index
                .writer_with_num_threads(threads.max(1), heap_bytes.max((threads.max(1) * 16) << 20))
                .map_err(|e| index_err(&self.path, format!("{e} (is another ingest or reindex running?)")))?;
            *w = Some(writer);
        }
        Ok(())
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut IndexWriter) -> Result<T>) -> Result<T> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match w.as_mut() {
            Some(writer) => f(writer),
            None => Err(index_err(&self.path, "not opened for writing")),
        }
    }

    /// Adds stored records (msgpack values of the `records` table); returns how many.
    /// Parsing runs on all cores; tokenizing on the writer's threads.
    pub fn add_stored<B: AsRef<[u8]> + Sync>(&self, values: &[B]) -> Result<usize> {
        let f = self.fields;
        let docs: Vec<TantivyDocument> = values
            .par_iter()
            .map(|v| {
                let r: StoredView = rmp_serde::from_slice(v.as_ref()).map_err(|e| Error::Record(e.to_string()))?;
                let mut doc = TantivyDocument::new();
                doc.add_text(f.uni, &r.text);
                doc.add_text(f.bi, &r.text);
                doc.add_u64(f.seq, r.seq);
                doc.add_i64(f.msgtime, r.msgtime);
                doc.add_text(f.party, self.key.token(PARTY, &r.from));
                for t in &r.tolist {
                    if t.as_ref() != r.from.as_ref() {
                        doc.add_text(f.party, self.key.token(PARTY, t));
                    }
                }
                if !r.roomid.is_empty() {
                    doc.add_text(f.room, self.key.token(ROOM, &r.roomid));
                }
                doc.add_text(f.conv, self.key.token(CONV, &r.conv));
                doc.add_text(f.msgtype, &r.msgtype);
                Ok(doc)
            })
            .collect::<Result<_>>()?;
        let n = docs.len();
        self.with_writer(|w| {
            for d in docs {
                w.add_document(d)?;
            }
            Ok(n)
        })
    }

    /// Drops every document (before a rebuild); takes effect at the next commit.
    pub fn clear(&self) -> Result<()> {
        self.with_writer(|w| {
            w.delete_all_documents()?;
            Ok(())
        })
    }

    /// Makes everything added so far durable and visible, recording `max_seq`.
    pub fn commit(&self, max_seq: u64) -> Result<()> {
        self.with_writer(|w| {
            let mut prepared = w.prepare_commit()?;
            prepared.set_payload(&serde_json::json!({"layout": LAYOUT, "max_seq": max_seq}).to_string());
            prepared.commit()?;
            Ok(())
        })?;
        self.reload()
    }

    /// Releases the writer, first letting running segment merges finish.
    pub fn close_writer(&self) -> Result<()> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.wait_merging_threads()?;
        }
        self.reload()
    }

    /// Sees the latest commit now (otherwise it is seen within a second).
    pub fn reload(&self) -> Result<()> {
        self.reader.reload().map_err(|e| index_err(&self.path, e))
    }

    /// Documents in the last commit seen.
    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Segments in the last commit seen.
    pub fn num_segments(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// The seqs of every indexed message, ascending (for reconciling with the store).
    pub fn seqs(&self) -> Result<Vec<u64>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(searcher.num_docs() as usize);
        for seg in searcher.segment_readers() {
            let col = seg.fast_fields().u64("seq")?;
            for d in seg.doc_ids_alive() {
                if let Some(s) = col.first(d) {
                    out.push(s);
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn substring_query(&self, s: &str) -> Box<dyn Query> {
        let chars: Vec<char> = s.chars().collect();
        let term = |field: Field, cs: &[char]| Term::from_field_text(field, &tokenizer::ngram_token(&self.key, cs));
        match chars.len() {
            0 => Box::new(AllQuery),
            1 => Box::new(TermQuery::new(term(self.fields.uni, &chars), IndexRecordOption::Basic)),
            2 => Box::new(TermQuery::new(term(self.fields.bi, &chars), IndexRecordOption::Basic)),
            n => {
                // bigrams at offsets 0, 2, 4, … plus the last one: they cover every character
                let mut offsets: Vec<usize> = (0..n - 1).step_by(2).collect();
                if offsets.last() != Some(&(n - 2)) {
                    offsets.push(n - 2);
                }
                let terms = offsets
                    .into_iter()
                    .map(|o| (o, term(self.fields.bi, &chars[o..o + 2])))
                    .collect();
                Box::new(PhraseQuery::new_with_offset(terms))
            }
        }
    }

    fn node_query(&self, n: &QueryNode) -> Box<dyn Query> {
        match n {
            QueryNode::All => Box::new(AllQuery),
            QueryNode::Substring(s) => self.substring_query(s),
            QueryNode::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = parts
                    .iter()
                    .map(|p| match p {
                        QueryNode::Not(inner) => (Occur::MustNot, self.node_query(inner)),
                        _ => (Occur::Must, self.node_query(p)),
                    })
                    .collect();
                if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            QueryNode::Or(parts) => Box::new(BooleanQuery::new(
                parts.iter().map(|p| (Occur::Should, self.node_query(p))).collect(),
            )),
            QueryNode::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.node_query(inner)),
            ])),
        }
    }

    fn filters(&self, req: &SearchRequest) -> Vec<(Occur, Box<dyn Query>)> {
        let f = self.fields;
        let k = self.key;
        let term_q = |field: Field, kind: u8, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, &k.token(kind, v)),
                IndexRecordOption::Basic,
            ))
        };
        let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for p in &req.parties {
            out.push((Occur::Must, term_q(f.party, PARTY, p)));
        }
        if let Some(r) = &req.room {
            out.push((Occur::Must, term_q(f.room, ROOM, r)));
        }
        if let Some(c) = &req.conv {
            out.push((Occur::Must, term_q(f.conv, CONV, c)));
        }
        if let Some(types) = &req.msgtypes {
            out.push((
                Occur::Must,
                Box::new(TermSetQuery::new(
                    types.iter().map(|t| Term::from_field_text(f.msgtype, t)),
                )),
            ));
        }
        if let Some(scope) = &req.scope {
            let terms = scope
                .parties
                .iter()
                .map(|p| Term::from_field_text(f.party, &k.token(PARTY, p)))
                .chain(scope.rooms.iter().map(|r| Term::from_field_text(f.room, &k.token(ROOM, r))));
            out.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
        }
        out
    }

    /// Runs one search against the last commit seen.
    ///
    /// Segments never change once written, so a segment's number of matches for a request
    /// (query, filters, time bounds: everything but cursor and limit) is computed once and
    /// kept; a segment with a known count only needs its newest matches, found by the
    /// backward windowed scan. Paging through results (every page repeats the query) and
    /// repeated searches so cost a small part of the first, exact, full pass.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchPage> {
        let node = parse_query(&req.query)?;
        if let Some(page) = self.single_term_search(&node, req)? {
            return Ok(page);
        }
        let mut clauses = self.filters(req);
        clauses.push((Occur::Must, self.node_query(&node)));
        let q = BooleanQuery::new(clauses);
        let want = req.limit + 1; // one more than a page: is there a next page?
        let searcher = self.reader.searcher();
        let weight = q.weight(EnableScoring::disabled_from_searcher(&searcher))?;
        let key = req.count_key(&self.key);
        let segs: Vec<(&tantivy::SegmentReader, Option<u128>)> = searcher
            .segment_readers()
            .iter()
            .map(|seg| {
                (
                    seg,
                    seg.alive_bitset()
                        .is_none()
                        .then(|| seg_u128(seg.segment_id()))
                        .flatten(),
                )
            })
            .collect();
        // a count this process lacks may have been made by another one: look once
        if segs
            .iter()
            .any(|(_, id)| id.is_some_and(|id| self.counts.get(id, key).is_none()))
        {
            self.counts.refresh();
        }
        let mut total = 0u64;
        let mut top: Vec<(i64, u64)> = Vec::new();
        let mut new = Vec::new();
        for &(seg, id) in &segs {
            let cols = self.columns(seg)?;
            match id.and_then(|id| self.counts.get(id, key)) {
                Some(n) => {
                    total += n;
                    if n > 0 {
                        let open = || -> Result<Option<Box<dyn tantivy::query::Scorer>>> {
                            Ok(Some(weight.scorer(seg, 1.0)?))
                        };
                        top.extend(newest(seg.max_doc(), &cols, open, req, want)?);
                    }
                }
                None => {
                    let fruit = collect_all(seg, &cols, weight.as_ref(), req, want)?;
                    total += fruit.total;
                    top.extend(fruit.top);
                    if let Some(id) = id {
                        new.push((id, key, fruit.total));
                    }
                }
            }
        }
        if !new.is_empty() {
            self.counts.put_all(&new, true);
        }
        Ok(page_of(top, total, req.limit, node.positive_terms()))
    }
}

/// The page of `limit` newest of `top` (unsorted, from every segment).
fn page_of(mut top: Vec<(i64, u64)>, total: u64, limit: usize, terms: Vec<String>) -> SearchPage {
    top.sort_unstable_by(|a, b| b.cmp(a));
    let more = top.len() > limit;
    top.truncate(limit);
    let next = if more { top.last().copied() } else { None };
    SearchPage {
        total,
        hits: top,
        next,
        terms,
    }
}

/// The `want` newest `(msgtime, seq)` of one segment's matches that are older than the
/// request's cursor and inside its time bounds: scans the matches backwards in growing
/// windows of doc ids (`open` gives a fresh doc set standing on its first match) until no
/// older block can hold a newer message than the oldest kept (per-block time maxima).
fn newest<D: DocSet>(
    max_doc: DocId,
    cols: &SegColumns,
    mut open: impl FnMut() -> Result<Option<D>>,
    req: &SearchRequest,
    want: usize,
) -> Result<Vec<(i64, u64)>> {
    let (times, seqs, maxima) = (&cols.times, &cols.seqs, &cols.maxima);
    let since = req.since.unwrap_or(i64::MIN);
    let until = req.until.unwrap_or(i64::MAX);
    let mut heap: BinaryHeap<Reverse<(i64, u64)>> = BinaryHeap::with_capacity(want + 1);
    let mut hi = max_doc;
    let mut width = BLOCK;
    while hi > 0 {
        let lo = (hi.saturating_sub(width) / BLOCK) * BLOCK;
        let Some(mut docs) = open()? else { break };
        // a fresh set stands on its first doc; seek only forwards
        let mut doc = if docs.doc() < lo { docs.seek(lo) } else { docs.doc() };
        while doc < hi {
            let t = times.first(doc).unwrap_or(0);
            let full = heap.len() == want;
            if (since..=until).contains(&t) && (!full || heap.peek().is_some_and(|Reverse((mt, _))| t >= *mt)) {
                let sq = seqs.first(doc).unwrap_or(0);
                if req.before.is_none_or(|b| (t, sq) < b) {
                    heap.push(Reverse((t, sq)));
                    if heap.len() > want {
                        heap.pop();
                    }
                }
            }
            doc = docs.advance();
        }
        if lo == 0 {
            break;
        }
        // every doc below `lo` is at most `older_max`: done when that is older than the
        // page's oldest, or than the time bound
        let older_max = maxima[(lo / BLOCK) as usize];
        if older_max < since || (heap.len() == want && heap.peek().is_some_and(|Reverse((mt, _))| older_max < *mt)) {
            break;
        }
        hi = lo;
        width = width.saturating_mul(2);
    }
    Ok(heap.into_iter().map(|Reverse(x)| x).collect())
}

/// Per-segment match counts of requests (see [`ArchiveIndex::search`]), bounded, and
/// shared between the processes that search the same index (the server's workers): each
/// appends the counts it computes to its own file in `<index>/counts/` and, before computing
/// one it lacks, reads what the others appended since it last looked. A query the other
/// worker already counted costs this one a file read, not a full pass.
struct CountCache {
    map: Mutex<std::collections::HashMap<(u128, u128), u64>>,
    shared: Option<Mutex<SharedCounts>>,
}

/// Entries kept before the cache starts afresh (~48 bytes each).
const COUNT_CACHE_ENTRIES: usize = 200_000;

/// One shared count: segment id, request digest, count (little endian).
const COUNT_RECORD: usize = 40;

/// A segment's id as a number (its uuid's 32 hex digits); None (the segment's counts are
/// not kept) should tantivy ever write it otherwise, never a shared stand-in value.
fn seg_u128(seg: tantivy::index::SegmentId) -> Option<u128> {
    let hex = seg.uuid_string();
    (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok()).flatten()
}

/// The files of [`CountCache`]: `<pid>-<fingerprint>.bin`, the fingerprint a digest made
/// with this build's hasher (a build that digests requests differently never reads them).
struct SharedCounts {
    dir: PathBuf,
    /// this process's id in file names (tests stand in for a second process with another)
    me: String,
    mine: Option<std::fs::File>,
    mine_len: u64,
    /// bytes of each other file already read
    seen: std::collections::HashMap<std::ffi::OsString, u64>,
}

fn fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (LAYOUT, "scrm count digest v1").hash(&mut h);
    format!("{:016x}", h.finish())
}

impl SharedCounts {
    fn open(index: &Path) -> Option<SharedCounts> {
        // inside the index directory (tantivy only ever deletes files it made itself); a
        // read-only data directory simply shares nothing
        let dir = index.join("counts");
        std::fs::create_dir_all(&dir).ok()?;
        let ours = format!("-{}.bin", fingerprint());
        // files of processes that are gone, or of other builds, are stale
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let alive = n
                .strip_suffix(&ours)
                .is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Some(SharedCounts {
            dir,
            me: std::process::id().to_string(),
            mine: None,
            mine_len: 0,
            seen: Default::default(),
        })
    }

    fn my_name(&self) -> String {
        format!("{}-{}.bin", self.me, fingerprint())
    }

    /// Appends `new` to this process's file (started afresh when it holds a full cache).
    fn publish(&mut self, new: &[(u128, u128, u64)]) {
        use std::io::Write;
        if self.mine.is_none() || self.mine_len >= (COUNT_CACHE_ENTRIES * COUNT_RECORD) as u64 {
            self.mine = std::fs::File::create(self.dir.join(self.my_name())).ok();
            self.mine_len = 0;
        }
        let Some(f) = self.mine.as_mut() else { return };
        let mut buf = Vec::with_capacity(new.len() * COUNT_RECORD);
        for (seg, key, n) in new {
            buf.extend_from_slice(&seg.to_le_bytes());
            buf.extend_from_slice(&key.to_le_bytes());
            buf.extend_from_slice(&n.to_le_bytes());
        }
        // whole records in one write: a reader takes whole records only
        if f.write_all(&buf).is_ok() {
            self.mine_len += buf.len() as u64;
        }
    }

    /// Calls `each` with every record the other processes appended since the last call.
    fn refresh(&mut self, mut each: impl FnMut(u128, u128, u64)) {
        use std::io::{Read, Seek, SeekFrom};
        let mine = std::ffi::OsString::from(self.my_name());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == mine {
                continue;
            }
            let Ok(len) = e.metadata().map(|m| m.len()) else {
                continue;
            };
            let seen = self.seen.entry(name).or_insert(0);
            if len < *seen {
                *seen = 0; // started afresh
            }
            let whole = (len - *seen) / COUNT_RECORD as u64 * COUNT_RECORD as u64;
            if whole == 0 {
                continue;
            }
            let Ok(mut f) = std::fs::File::open(e.path()) else {
                continue;
            };
            let mut buf = vec![0u8; whole as usize];
            if f.seek(SeekFrom::Start(*seen)).is_err() || f.read_exact(&mut buf).is_err() {
                continue;
            }
            *seen += whole;
            for r in buf.chunks_exact(COUNT_RECORD) {
                let mut seg = [0u8; 16];
                let mut key = [0u8; 16];
                let mut n = [0u8; 8];
                seg.copy_from_slice(&r[..16]);
                key.copy_from_slice(&r[16..32]);
                n.copy_from_slice(&r[32..]);
                each(
                    u128::from_le_bytes(seg),
                    u128::from_le_bytes(key),
                    u64::from_le_bytes(n),
                );
            }
        }
    }
}

impl CountCache {
    fn new(index: &Path) -> CountCache {
        CountCache {
            map: Default::default(),
            shared: SharedCounts::open(index).map(Mutex::new),
        }
    }

    fn get(&self, seg: u128, key: u128) -> Option<u64> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(seg, key))
            .copied()
    }

    /// Keeps `new` counts; `publish`: made here, so appended for the other processes.
    fn put_all(&self, new: &[(u128, u128, u64)], publish: bool) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for &(seg, key, n) in new {
            if m.len() >= COUNT_CACHE_ENTRIES {
                m.clear(); // merged-away segments and old queries go with it
            }
            m.insert((seg, key), n);
        }
        drop(m);
        if let (true, Some(sh)) = (publish, &self.shared) {
            sh.lock().unwrap_or_else(|p| p.into_inner()).publish(new);
        }
    }

    /// Takes in what the other processes counted since the last look.
    fn refresh(&self) {
        let Some(sh) = &self.shared else { return };
        let mut got = Vec::new();
        sh.lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(|seg, key, n| got.push((seg, key, n)));
        if !got.is_empty() {
            self.put_all(&got, false);
        }
    }
}

impl SearchRequest {
    /// What a segment's match count depends on (everything but cursor and limit), as a
    /// 128-bit digest: two SipHash runs with different prefixes, keyed with the index's
    /// token key (the shared count files show no query, not even a short one by guessing).
    fn count_key(&self, token_key: &TokenKey) -> u128 {
        use std::hash::{Hash, Hasher};
        let digest = |salt: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            token_key.bytes().hash(&mut h);
            salt.hash(&mut h);
            self.query.hash(&mut h);
            self.parties.hash(&mut h);
            self.room.hash(&mut h);
            self.conv.hash(&mut h);
            self.msgtypes.hash(&mut h);
            self.since.hash(&mut h);
            self.until.hash(&mut h);
            self.scope.as_ref().map(|s| (&s.parties, &s.rooms)).hash(&mut h);
            h.finish()
        };
        (u128::from(digest(0)) << 64) | u128::from(digest(1))
    }
}

/// Docs per block of the newest-first scan (and of the per-block time maxima).
const BLOCK: u32 = 4096;

impl ArchiveIndex {
    /// The fast path of the commonest and heaviest search: one term of one or two
    /// characters with no filter. The total is the term's document frequency (exact: the
    /// index never deletes single documents), and the page is found by scanning the
    /// posting list backwards in growing windows until no older block can hold a newer
    /// message than the page's oldest (per-block time maxima, computed once per segment).
    fn single_term_search(&self, node: &QueryNode, req: &SearchRequest) -> Result<Option<SearchPage>> {
        let QueryNode::Substring(s) = node else { return Ok(None) };
        let n = s.chars().count();
        let unfiltered = req.parties.is_empty()
            && req.room.is_none()
            && req.conv.is_none()
            && req.msgtypes.is_none()
            && req.since.is_none()
            && req.until.is_none()
            && req.scope.is_none();
        if !(1..=2).contains(&n) || !unfiltered {
            return Ok(None);
        }
        let field = if n == 1 { self.fields.uni } else { self.fields.bi };
        let term = Term::from_field_text(field, &tokenizer::ngram_token(&self.key, &s.chars().collect::<Vec<_>>()));
        let searcher = self.reader.searcher();
        if searcher
            .segment_readers()
            .iter()
            .any(|seg| seg.alive_bitset().is_some())
        {
            return Ok(None);
        }
        let want = req.limit + 1; // one more than a page: is there a next page?
        let mut total = 0u64;
        let mut top: Vec<(i64, u64)> = Vec::new();
        for seg in searcher.segment_readers() {
            let inv = seg.inverted_index(field)?;
            let df = inv.doc_freq(&term).map_err(|e| Error::Index(e.to_string()))?;
            total += u64::from(df);
            if df == 0 || req.limit == 0 {
                continue;
            }
            let cols = self.columns(seg)?;
            let open = || {
                inv.read_postings(&term, IndexRecordOption::Basic)
                    .map_err(|e| Error::Index(e.to_string()))
            };
            top.extend(newest(seg.max_doc(), &cols, open, req, want)?);
        }
        Ok(Some(page_of(top, total, req.limit, node.positive_terms())))
    }

    /// A segment's `msgtime` and `seq` columns and its per-block time maxima, opened once
    /// per segment (opening a column reads its block headers: too slow to do per search).
    fn columns(&self, seg: &SegmentReader) -> Result<Arc<SegColumns>> {
        let id = seg.segment_id();
        if let Some(c) = self.columns.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(c.clone());
        }
        let times = seg.fast_fields().i64("msgtime")?;
        let seqs = seg.fast_fields().u64("seq")?;
        let max_doc = seg.max_doc();
        let mut maxima = vec![i64::MIN];
        let mut running = i64::MIN;
        let mut docs: Vec<DocId> = Vec::with_capacity(BLOCK as usize);
        let mut vals: Vec<Option<i64>> = vec![None; BLOCK as usize];
        let mut start = 0;
        while start < max_doc {
            let end = (start + BLOCK).min(max_doc);
            docs.clear();
            docs.extend(start..end);
            vals.resize(docs.len(), None);
            times.first_vals(&docs, &mut vals);
            running = vals.iter().flatten().fold(running, |m, &t| m.max(t));
            maxima.push(running);
            start = end;
        }
        let c = Arc::new(SegColumns { times, seqs, maxima });
        let mut cache = self.columns.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 256 {
            cache.clear(); // segments come and go with merges
        }
        cache.insert(id, c.clone());
        Ok(c)
    }
}

/// What the page search reads of a segment besides postings (see [`ArchiveIndex::columns`]).
struct SegColumns {
    times: Column<i64>,
    seqs: Column<u64>,
    /// `maxima[b]`: the newest msgtime among docs `[0, b·BLOCK)`.
    maxima: Vec<i64>,
}

/// One full pass over a segment's matches: counts every match inside the time bounds and
/// keeps the `want` newest older than the cursor.
fn collect_all(
    seg: &SegmentReader,
    cols: &SegColumns,
    weight: &dyn tantivy::query::Weight,
    req: &SearchRequest,
    want: usize,
) -> Result<PageFruit> {
    let mut ps = PageSegment {
        msgtime: cols.times.clone(),
        times: Vec::new(),
        seq: cols.seqs.clone(),
        heap: BinaryHeap::with_capacity(want + 1),
        total: 0,
        limit: want,
        before: req.before,
        since: req.since.unwrap_or(i64::MIN),
        until: req.until.unwrap_or(i64::MAX),
    };
    match seg.alive_bitset() {
        None => weight.for_each_no_score(seg, &mut |docs| ps.collect_block(docs))?,
        Some(alive) => weight.for_each_no_score(seg, &mut |docs| {
            for &d in docs {
                if alive.is_alive(d) {
                    ps.collect(d, 0.0);
                }
            }
        })?,
    }
    Ok(ps.harvest())
}

/// One segment's share of a page: the newest matches and the counts.
struct PageFruit {
    total: u64,
    top: Vec<(i64, u64)>,
}

struct PageSegment {
    msgtime: Column<i64>,
    times: Vec<Option<i64>>,
    seq: Column<u64>,
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    total: u64,
    limit: usize,
    before: Option<(i64, u64)>,
    since: i64,
    until: i64,
}

impl PageSegment {
    #[inline]
    fn offer(&mut self, t: i64, doc: DocId) {
        if self.limit == 0 {
            return;
        }
        if self.heap.len() == self.limit {
            if let Some(Reverse((mt, _))) = self.heap.peek() {
                if t < *mt {
                    return;
                }
            }
        }
        let s = self.seq.first(doc).unwrap_or(0);
        if let Some((bt, bs)) = self.before {
            if (t, s) >= (bt, bs) {
                return;
            }
        }
        self.heap.push(Reverse((t, s)));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }
}

impl PageSegment {
    #[inline]
    fn consider(&mut self, doc: DocId, t: i64) {
        if t < self.since || t > self.until {
            return;
        }
        self.total += 1;
        if self.before.is_some_and(|(bt, _)| t > bt) {
            return; // newer than the cursor (ties are settled by seq in `offer`)
        }
        self.offer(t, doc);
    }
}

impl SegmentCollector for PageSegment {
    type Fruit = PageFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        let t = self.msgtime.first(doc).unwrap_or(0);
        self.consider(doc, t);
    }

    /// Reads the block's times in one batched column read.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut times = std::mem::take(&mut self.times);
        times.clear();
        times.resize(docs.len(), None);
        self.msgtime.first_vals(docs, &mut times);
        for (&doc, t) in docs.iter().zip(&times) {
            self.consider(doc, t.unwrap_or(0));
        }
        self.times = times;
    }

    fn harvest(self) -> PageFruit {
        let mut top: Vec<(i64, u64)> = self.heap.into_iter().map(|Reverse(x)| x).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        PageFruit { total: self.total, top }
    }
}

#[cfg(test)]
mod tests;
