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

mod collect;
mod counts;
mod fold;
mod page;
mod query;
mod schema;
mod search;
mod snippet;
mod tokenizer;
mod writer;

use collect::*;
use counts::*;
pub use schema::StoredView;
use schema::*;

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
    DocId, DocSet, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term,
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

/// Data scope (rule R-2): a message is visible when one of `parties` takes part in it, it
/// was said in one of `rooms` or it belongs to one of `convs` (chats inherited from another
/// employee, rule I-1) — and it is in none of `hidden` (chats handed over to someone else).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub parties: Vec<String>,
    pub rooms: Vec<String>,
    pub convs: Vec<String>,
    pub hidden: Vec<String>,
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

/// Docs per block of the newest-first scan (and of the per-block time maxima).
const BLOCK: u32 = 4096;

#[cfg(test)]
mod tests;
