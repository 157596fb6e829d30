//! The CJK-exact tokenizers. Every character of the folded text (letters, digits, CJK,
//! spaces, punctuation alike) is a unigram token, and every pair of neighbouring
//! characters a bigram token at the first one's position. A query of one character is
//! a unigram term, of two a bigram term, of *n* > 2 a phrase of bigrams at fixed offsets:
//! so any substring of any length is found exactly, with no word segmentation to miss it.
//!
//! Cost: two postings per character; the unigram field keeps doc ids only, the bigram
//! field keeps positions (for phrases).

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

use super::fold::fold_char;

/// Tokenizer name of the unigram field.
pub const UNIGRAM: &str = "scrm_unigram";
/// Tokenizer name of the bigram field.
pub const BIGRAM: &str = "scrm_bigram";

/// Emits folded single characters (`width` = 1) or folded character pairs (`width` = 2).
#[derive(Clone, Copy)]
pub struct NgramTokenizer {
    width: usize,
}

impl NgramTokenizer {
    pub fn unigrams() -> Self {
        NgramTokenizer { width: 1 }
    }

    pub fn bigrams() -> Self {
        NgramTokenizer { width: 2 }
    }
}

pub struct NgramStream<'a> {
    chars: std::str::CharIndices<'a>,
    width: usize,
    prev: Option<(usize, char)>,
    position: usize,
    token: Token,
}

impl Tokenizer for NgramTokenizer {
    type TokenStream<'a> = NgramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> NgramStream<'a> {
        NgramStream {
            chars: text.char_indices(),
            width: self.width,
            prev: None,
            position: 0,
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
            self.token.text.clear();
            if self.width == 1 {
                self.token.text.push(c);
                self.token.offset_from = at;
                self.token.offset_to = at + c.len_utf8();
                self.token.position = self.position;
                self.position += 1;
                return true;
            }
            let prev = self.prev.replace((at, c));
            if let Some((pat, pc)) = prev {
                self.token.text.push(pc);
                self.token.text.push(c);
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
    fn unigrams_and_bigrams_cover_every_character() {
        assert_eq!(
            tokens(NgramTokenizer::unigrams(), "保本A"),
            vec![("保".into(), 0), ("本".into(), 1), ("a".into(), 2)]
        );
        assert_eq!(
            tokens(NgramTokenizer::bigrams(), "保本 Ｘ"),
            vec![("保本".into(), 0), ("本 ".into(), 1), (" x".into(), 2)]
        );
        assert!(tokens(NgramTokenizer::bigrams(), "保").is_empty());
    }
}
