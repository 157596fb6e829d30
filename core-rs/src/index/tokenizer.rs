//! The CJK-exact tokenizers. Every character of the folded text (letters, digits, CJK,
//! spaces, punctuation alike) is a unigram token, and every pair of neighbouring
//! characters a bigram token at the first one's position. A query of one character is
//! a unigram term, of two a bigram term, of *n* > 2 a phrase of bigrams at fixed offsets:
//! so any substring of any length is found exactly, with no word segmentation to miss it.
//!
//! **Keyed**: a token's text is not the characters but their keyed MAC
//! ([`TokenKey::token_into`], 16 characters), so the index files hold no character of any
//! message; a query's terms are keyed the same way ([`ngram_token`]).
//!
//! Cost: a posting per distinct character and one per character pair; the unigram field
//! keeps doc ids only (so a character already seen in the text is not emitted again: it
//! could add nothing), the bigram field keeps positions (for phrases); one SipHash of
//! ≤ 8 bytes per token not in the tokenizer's cache.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use super::fold::fold_char;
use crate::crypto::{TokenCache, TokenKey};

/// Token domain of the unigram field.
pub const UNI: u8 = b'u';
/// Token domain of the bigram field.
pub const BI: u8 = b'b';

/// The keyed token of folded characters `cs` (one: a unigram, two: a bigram).
pub fn ngram_token(key: &TokenKey, cs: &[char]) -> String {
    let mut plain = String::with_capacity(8);
    plain.extend(cs.iter());
    key.token(if cs.len() == 1 { UNI } else { BI }, &plain)
}

/// Tokenizer name of the unigram field.
pub const UNIGRAM: &str = "scrm_unigram";
/// Tokenizer name of the bigram field.
pub const BIGRAM: &str = "scrm_bigram";

/// Emits folded single characters (`width` = 1) or folded character pairs (`width` = 2).
/// Each tokenizer (tantivy clones one per field and segment writer) has its own token
/// cache: no thread-local look-up per token.
#[derive(Clone)]
pub struct NgramTokenizer {
    width: usize,
    key: TokenKey,
    cache: TokenCache,
    seen: SeenChars,
}

/// The characters a unigram stream has emitted for the current text: a bit per BMP
/// character (8 KiB once used, cleared by the bits set, not wholesale), a short list for
/// the rest (emoji and other supplementary-plane characters are few per text; past
/// [`ASTRAL_REMEMBERED`] of them a repeat is emitted again, which changes nothing: a text
/// of many distinct ones costs no quadratic scan).
#[derive(Default)]
struct SeenChars {
    bmp: Vec<u64>,
    set: Vec<u32>,
    astral: Vec<char>,
}

impl Clone for SeenChars {
    /// Empty: a stream's state, not the tokenizer's.
    fn clone(&self) -> Self {
        SeenChars::default()
    }
}

/// Supplementary-plane characters a unigram stream remembers per text.
const ASTRAL_REMEMBERED: usize = 64;

impl SeenChars {
    /// Whether `c` is to be emitted: new to the current text (and now recorded), or past
    /// what the stream remembers.
    fn first(&mut self, c: char) -> bool {
        let u = c as u32;
        if u >= 0x1_0000 {
            if self.astral.contains(&c) {
                return false;
            }
            if self.astral.len() < ASTRAL_REMEMBERED {
                self.astral.push(c);
            }
            return true;
        }
        if self.bmp.is_empty() {
            self.bmp.resize(0x1_0000 / 64, 0);
        }
        let (word, bit) = ((u >> 6) as usize, 1u64 << (u & 63));
        if self.bmp[word] & bit != 0 {
            return false;
        }
        self.bmp[word] |= bit;
        self.set.push(u);
        true
    }

    fn clear(&mut self) {
        for u in self.set.drain(..) {
            self.bmp[(u >> 6) as usize] = 0;
        }
        self.astral.clear();
    }
}

impl NgramTokenizer {
    pub fn unigrams(key: TokenKey) -> Self {
        NgramTokenizer {
            width: 1,
            key,
            cache: TokenCache::default(),
            seen: SeenChars::default(),
        }
    }

    pub fn bigrams(key: TokenKey) -> Self {
        NgramTokenizer {
            width: 2,
            key,
            cache: TokenCache::default(),
            seen: SeenChars::default(),
        }
    }
}

pub struct NgramStream<'a> {
    chars: std::str::CharIndices<'a>,
    width: usize,
    key: TokenKey,
    cache: &'a mut TokenCache,
    seen: &'a mut SeenChars,
    prev: Option<(usize, char)>,
    position: usize,
    plain: [u8; 8],
    token: Token,
}

impl NgramStream<'_> {
    fn emit(&mut self, len: usize) {
        self.token.text.clear();
        let kind = if self.width == 1 { UNI } else { BI };
        self.key
            .token_cached(&mut *self.cache, kind, &self.plain[..len], &mut self.token.text);
    }
}

impl Tokenizer for NgramTokenizer {
    type TokenStream<'a> = NgramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> NgramStream<'a> {
        self.seen.clear();
        NgramStream {
            chars: text.char_indices(),
            width: self.width,
            key: self.key,
            cache: &mut self.cache,
            seen: &mut self.seen,
            prev: None,
            position: 0,
            plain: [0; 8],
            token: Token::default(),
        }
    }
}

impl TokenStream for NgramStream<'_> {
    fn advance(&mut self) -> bool {
        loop {
            let Some((at, c)) = self.chars.next() else {
                return false;
            };
            let c = fold_char(c);
            if self.width == 1 {
                if !self.seen.first(c) {
                    continue;
                }
                let n = c.encode_utf8(&mut self.plain).len();
                self.emit(n);
                self.token.offset_from = at;
                self.token.offset_to = at + c.len_utf8();
                self.token.position = self.position;
                self.position += 1;
                return true;
            }
            let prev = self.prev.replace((at, c));
            if let Some((pat, pc)) = prev {
                let n = pc.encode_utf8(&mut self.plain).len();
                let m = c.encode_utf8(&mut self.plain[n..]).len();
                self.emit(n + m);
                self.token.offset_from = pat;
                self.token.offset_to = at + c.len_utf8();
                self.token.position = self.position;
                self.position += 1;
                return true;
            }
        }
    }

    fn token(&self) -> &Token {
        &self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(mut t: NgramTokenizer, s: &str) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        let mut st = t.token_stream(s);
        while st.advance() {
            out.push((st.token().text.clone(), st.token().position));
        }
        out
    }

    #[test]
    fn unigrams_and_bigrams_cover_every_character_keyed() {
        let key = TokenKey::new(&[3u8; 32]).unwrap();
        let t = |s: &str| ngram_token(&key, &s.chars().collect::<Vec<_>>());
        assert_eq!(
            tokens(NgramTokenizer::unigrams(key), "保本A"),
            vec![(t("保"), 0), (t("本"), 1), (t("a"), 2)]
        );
        assert_eq!(
            tokens(NgramTokenizer::bigrams(key), "保本 Ｘ"),
            vec![(t("保本"), 0), (t("本 "), 1), (t(" x"), 2)]
        );
        assert!(tokens(NgramTokenizer::bigrams(key), "保").is_empty());
        // bigrams keep every occurrence (their positions make phrases)
        assert_eq!(
            tokens(NgramTokenizer::bigrams(key), "保本保本"),
            vec![(t("保本"), 0), (t("本保"), 1), (t("保本"), 2)]
        );
        // no character shows in a token
        for (tok, _) in tokens(NgramTokenizer::unigrams(key), "保本") {
            assert!(!tok.contains('保') && !tok.contains('本'));
        }
    }

    #[test]
    fn unigrams_emit_each_distinct_character_of_a_text_once() {
        let key = TokenKey::new(&[3u8; 32]).unwrap();
        let t = |s: &str| ngram_token(&key, &s.chars().collect::<Vec<_>>());
        let texts: Vec<(String, usize)> = tokens(NgramTokenizer::unigrams(key), "保本保Aa本😀x😀");
        let got: Vec<String> = texts.into_iter().map(|(s, _)| s).collect();
        // first occurrences in order; "A" and "a" fold to one; the emoji twice is once
        assert_eq!(got, vec![t("保"), t("本"), t("a"), t("😀"), t("x")]);
        // oracle: every distinct folded character, whatever the text
        let mut tok = NgramTokenizer::unigrams(key);
        // past 64 distinct emoji in a text, repeats come again: each distinct one at least once
        let many: String = (0..100u32)
            .chain(0..100)
            .filter_map(|i| char::from_u32(0x1F300 + i))
            .collect();
        let mut st = tok.token_stream(&many);
        let mut got = Vec::new();
        while st.advance() {
            got.push(st.token().text.clone());
        }
        let distinct: std::collections::BTreeSet<&String> = got.iter().collect();
        assert_eq!(distinct.len(), 100);
        assert_eq!(got.len(), 100 + 36); // the first 64 are remembered, the other 36 come twice
        for text in ["", "aaaa", "保本保本保本", "😀🙂😀🙂", "一二三一二三四", "ＡaＢb"] {
            let mut want: Vec<String> = Vec::new();
            for c in text.chars().map(super::fold_char) {
                let s = t(&c.to_string());
                if !want.contains(&s) {
                    want.push(s);
                }
            }
            // the same tokenizer text after text: what one text saw does not hide another's
            let mut st = tok.token_stream(text);
            let mut got = Vec::new();
            while st.advance() {
                got.push(st.token().text.clone());
            }
            assert_eq!(got, want, "{text}");
        }
    }
}
