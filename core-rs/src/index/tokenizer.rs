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
//! Cost: two postings per character; the unigram field keeps doc ids only, the bigram
//! field keeps positions (for phrases); one SipHash of ≤ 8 bytes per token not in the
//! tokenizer's cache.

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
}

impl NgramTokenizer {
    pub fn unigrams(key: TokenKey) -> Self {
        NgramTokenizer {
            width: 1,
            key,
            cache: TokenCache::default(),
        }
    }

    pub fn bigrams(key: TokenKey) -> Self {
        NgramTokenizer {
            width: 2,
            key,
            cache: TokenCache::default(),
        }
    }
}

pub struct NgramStream<'a> {
    chars: std::str::CharIndices<'a>,
    width: usize,
    key: TokenKey,
    cache: &'a mut TokenCache,
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
        NgramStream {
            chars: text.char_indices(),
            width: self.width,
            key: self.key,
            cache: &mut self.cache,
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
        // no character shows in a token
        for (tok, _) in tokens(NgramTokenizer::unigrams(key), "保本") {
            assert!(!tok.contains('保') && !tok.contains('本'));
        }
    }
}
