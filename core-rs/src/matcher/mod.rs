//! Sensitive-word matching (rule A-1): a word list of entries, each a word plus up to 10
//! related words, compiled with an allow list into one multi-pattern search over
//! normalized text (see [`normalize`]).
//!
//! Cost: two tight passes over the text: each character is normalized by a table lookup
//! into a reused buffer (with the original byte offset of every normalized character),
//! then a pair-filtered scan finds every pattern occurrence ([`scan`]: one multiply and one
//! bit test per character, a full comparison only where some pattern starts with that
//! pair). A character-wise double-array Aho-Corasick automaton (daachorse) did the second
//! pass before at about half the speed: for a 10,000-entry list (25,000 patterns) it is
//! megabytes, and each step missed the cache. Hits are overlapping; an allow-list phrase
//! that covers a hit suppresses it. Compile once per word list; a `WordList` is immutable
//! and shared by all threads, so swapping in a new list never blocks a batch already running.

pub mod normalize;
mod scan;

use std::collections::HashMap;

use serde::Serialize;

pub use normalize::{fold_char, normalize, normalize_str, Folded, Normalized};

/// At most this many related words per entry (rule A-1).
pub const MAX_RELATED: usize = 10;

/// Whose messages an entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppliesTo {
    Employee,
    Customer,
    Both,
}

impl AppliesTo {
    pub fn parse(s: &str) -> Option<AppliesTo> {
        match s {
            "employee" | "" => Some(AppliesTo::Employee),
            "customer" => Some(AppliesTo::Customer),
            "both" => Some(AppliesTo::Both),
            _ => None,
        }
    }

    pub fn applies(self, sender_is_customer: bool) -> bool {
        match self {
            AppliesTo::Employee => !sender_is_customer,
            AppliesTo::Customer => sender_is_customer,
            AppliesTo::Both => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u32,
    pub word: String,
    pub related: Vec<String>,
    pub category: String,
    pub severity: u8,
    pub applies_to: AppliesTo,
}

/// One occurrence of a word of an entry in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hit {
    pub entry: u32,
    /// The listed word (main or related) that matched, as written in the list.
    pub word: String,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WordListError {
    #[error("entry {id} ({word:?}): {count} related words, at most {MAX_RELATED}")]
    TooManyRelated { id: u32, word: String, count: usize },
    #[error("entry {id}: word {word:?} is empty after normalization (only spaces, punctuation or emoji)")]
    EmptyWord { id: u32, word: String },
}

enum Pattern {
    /// (entry index, index into `words`) for every entry word that normalizes to this pattern
    Words(Vec<(usize, u32)>),
    Allow,
}

/// A hit with its listed word by index ([`WordList::words`]): what batch scans collect
/// (no string copied per hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHit {
    pub entry: u32,
    pub word: u32,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
}

/// One entry word a pattern stands for, with what a hit needs to know of its entry: kept
/// flat and small (every hit reads it; reading the entry and a per-pattern `Vec` instead
/// cost two cache misses a hit on text of common words).
#[derive(Clone, Copy)]
struct PatternWord {
    entry: u32,
    word: u32,
    applies_to: AppliesTo,
}

pub struct WordList {
    entries: Vec<Entry>,
    /// every listed word (main or related) of every entry, as written
    words: Vec<String>,
    /// per pattern: its range in `pattern_words`; an allow-list phrase has none
    pattern_ranges: Vec<(u32, u32)>,
    pattern_allow: Vec<bool>,
    pattern_words: Vec<PatternWord>,
    search: scan::Patterns,
}

impl WordList {
    pub fn new(entries: Vec<Entry>, allow: &[String]) -> Result<WordList, WordListError> {
        normalize::warm_up();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut texts: Vec<String> = Vec::new();
        let mut patterns: Vec<Pattern> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        for (ei, e) in entries.iter().enumerate() {
            if e.related.len() > MAX_RELATED {
                return Err(WordListError::TooManyRelated {
                    id: e.id,
                    word: e.word.clone(),
                    count: e.related.len(),
                });
            }
            for w in std::iter::once(&e.word).chain(e.related.iter()) {
                let n = normalize_str(w);
                if n.is_empty() {
                    return Err(WordListError::EmptyWord {
                        id: e.id,
                        word: w.clone(),
                    });
                }
                let pi = *index.entry(n.clone()).or_insert_with(|| {
                    texts.push(n);
                    patterns.push(Pattern::Words(Vec::new()));
                    patterns.len() - 1
                });
                if let Pattern::Words(v) = &mut patterns[pi] {
                    if !v.iter().any(|(x, _)| *x == ei) {
                        v.push((ei, words.len() as u32));
                        words.push(w.clone());
                    }
                }
            }
        }
        for a in allow {
            let n = normalize_str(a);
            if !n.is_empty() && !index.contains_key(&n) {
                index.insert(n.clone(), texts.len());
                texts.push(n);
                patterns.push(Pattern::Allow);
            } else if let Some(&pi) = index.get(&n) {
                // a phrase that is both listed and allowed: allowing it wins
                patterns[pi] = Pattern::Allow;
            }
        }
        let mut pattern_ranges = Vec::with_capacity(patterns.len());
        let mut pattern_allow = Vec::with_capacity(patterns.len());
        let mut pattern_words = Vec::new();
        for p in &patterns {
            let start = pattern_words.len() as u32;
            if let Pattern::Words(ws) = p {
                pattern_words.extend(ws.iter().map(|&(ei, w)| PatternWord {
                    entry: ei as u32,
                    word: w,
                    applies_to: entries[ei].applies_to,
                }));
            }
            pattern_ranges.push((start, pattern_words.len() as u32));
            pattern_allow.push(matches!(p, Pattern::Allow));
        }
        Ok(WordList {
            entries,
            words,
            pattern_ranges,
            pattern_allow,
            pattern_words,
            search: scan::Patterns::new(&texts),
        })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, idx: usize) -> &Entry {
        &self.entries[idx]
    }

    /// Every listed word; [`RawHit::word`] indexes it.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Every hit in `text` of an entry that applies to the sender, in text order. Returns
    /// entry *indices* (positions in the list) in `Hit::entry`.
    pub fn find(&self, text: &str, sender_is_customer: bool) -> Vec<Hit> {
        // the per-thread buffer, as a local while in use (so it stays in registers)
        let mut buf = NORMALIZED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let hits = self.find_with(text, sender_is_customer, &mut buf);
        NORMALIZED.with(|b| *b.borrow_mut() = buf);
        hits
    }

    /// [`WordList::find`] with the caller's buffer (batch loops keep one per thread and
    /// skip the thread-local lookups).
    pub fn find_with(&self, text: &str, sender_is_customer: bool, buf: &mut FindBuffer) -> Vec<Hit> {
        let mut raw = Vec::new();
        self.find_raw(text, sender_is_customer, buf, &mut raw);
        raw.into_iter()
            .map(|h| Hit {
                entry: h.entry,
                word: self.words[h.word as usize].clone(),
                start: h.start,
                end: h.end,
            })
            .collect()
    }

    /// Appends the hits in `text` to `out` (in text order, as [`WordList::find`]), words by
    /// index: the allocation-free form for batch scans.
    pub fn find_raw(&self, text: &str, sender_is_customer: bool, buf: &mut FindBuffer, out: &mut Vec<RawHit>) {
        if self.pattern_ranges.is_empty() {
            return;
        }
        let FindBuffer { norm, ostart, raw } = buf;
        // pass 1: the normalized characters, each with its original character's byte
        // offset (a table lookup per character)
        let len = normalize::fold_into(normalize::table(), text, norm, ostart);
        let (norm, ostart) = (&norm[..len], &ostart[..len]);
        // pass 2: every pattern occurrence (see `scan`)
        raw.clear();
        self.search.find(norm, |s, e, p| {
            let last = ostart[e - 1] as usize; // the original character of the last one
            let end = last + text[last..].chars().next().map_or(0, char::len_utf8);
            raw.push(Occurrence {
                norm: (s, e),
                orig: (ostart[s] as usize, end),
                pattern: p as usize,
            });
        });
        if raw.is_empty() {
            return;
        }
        // allow-list phrases found (usually none: no allocation)
        let allows: Vec<(usize, usize)> = raw
            .iter()
            .filter(|r| self.pattern_allow[r.pattern])
            .map(|r| r.norm)
            .collect();
        let allowed = |s: usize, e: usize| allows.iter().any(|&(a, b)| a <= s && e <= b);
        let first = out.len();
        for r in raw.iter() {
            let (a, b) = self.pattern_ranges[r.pattern];
            if a == b || (!allows.is_empty() && allowed(r.norm.0, r.norm.1)) {
                continue;
            }
            for pw in &self.pattern_words[a as usize..b as usize] {
                if pw.applies_to.applies(sender_is_customer) {
                    out.push(RawHit {
                        entry: pw.entry,
                        word: pw.word,
                        start: r.orig.0,
                        end: r.orig.1,
                    });
                }
            }
        }
        out[first..].sort_by_key(|h| (h.start, h.end, h.entry));
    }
}

/// A pattern found in the normalized text: its normalized and original ranges.
struct Occurrence {
    norm: (usize, usize),
    orig: (usize, usize),
    pattern: usize,
}

/// Working memory of [`WordList::find_with`]: normalized characters (code points), the
/// original byte offset of each, the occurrences found.
#[derive(Default)]
pub struct FindBuffer {
    norm: Vec<u32>,
    ostart: Vec<u32>,
    raw: Vec<Occurrence>,
}

thread_local! {
    /// Per-thread buffer of [`WordList::find`] (reused: no allocation per message once warm).
    static NORMALIZED: std::cell::RefCell<FindBuffer> = Default::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, word: &str, related: &[&str]) -> Entry {
        Entry {
            id,
            word: word.into(),
            related: related.iter().map(|s| s.to_string()).collect(),
            category: "contact".into(),
            severity: 2,
            applies_to: AppliesTo::Employee,
        }
    }

    #[test]
    fn evasions_are_caught_and_allow_list_suppresses() {
        let wl = WordList::new(
            vec![entry(1, "微信", &["vx", "加v"]), entry(2, "保本", &[])],
            &["微信支付".into()],
        )
        .unwrap();
        for text in [
            "加我微信",
            "加我ＶＸ",
            "加 V 聊",
            "微.信",
            "微 信",
            "微\u{200B}信",
            "微😀信",
            "威信號 微信號",
            "保 本 收益",
        ] {
            assert!(!wl.find(text, false).is_empty(), "missed {text:?}");
        }
        assert!(wl.find("用微信支付就行", false).is_empty());
        assert_eq!(wl.find("微信支付还是微信转账", false).len(), 1);
        assert!(
            wl.find("加我微信", true).is_empty(),
            "customer messages: entry applies to employees"
        );
        let h = &wl.find("请加 微．信", false)[0];
        assert_eq!(&"请加 微．信"[h.start..h.end], "微．信");
        assert_eq!(h.word, "微信");
    }

    #[test]
    fn list_errors() {
        let too_many: Vec<&str> = vec!["a"; 11];
        assert!(matches!(
            WordList::new(vec![entry(1, "x", &too_many)], &[]),
            Err(WordListError::TooManyRelated { .. })
        ));
        assert!(matches!(
            WordList::new(vec![entry(1, " ！", &[])], &[]),
            Err(WordListError::EmptyWord { .. })
        ));
        assert!(WordList::new(vec![], &[]).unwrap().find("anything", false).is_empty());
    }
}
