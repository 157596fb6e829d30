//! The multi-pattern search behind [`super::WordList::find`]: every occurrence of every
//! pattern (overlapping) in a normalized text.
//!
//! A word list is tens of thousands of patterns; an Aho-Corasick automaton that large is
//! megabytes, and walking it costs a cache miss or two per character. Here instead: every
//! pattern of two or more characters starts with a character pair, and a 128 KiB bit set
//! (in L2) says which pairs (hashed) start some pattern. At each position one multiply and
//! one bit test decide whether anything can start there; only at the few positions that
//! pass are the patterns with that first pair looked up and compared. One-character patterns
//! (rare in word lists) have their own bit set. Exact: the bit sets only skip positions
//! where no pattern can start, and every candidate is compared in full.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Bits of the pair filter: 2^20 bits = 128 KiB; a 50,000-pattern list sets ~5% of them.
const FILTER_BITS: u32 = 20;
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// A multiplicative hasher for the small integer keys here (pairs of chars, chars).
#[derive(Default)]
struct MulHash(u64);

impl Hasher for MulHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(MIX);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type Map<K> = HashMap<K, Vec<u32>, BuildHasherDefault<MulHash>>;

#[inline(always)]
fn pair(a: u32, b: u32) -> u64 {
    (u64::from(a) << 32) | u64::from(b)
}

#[inline(always)]
fn pair_bit(key: u64) -> usize {
    (key.wrapping_mul(MIX) >> (64 - FILTER_BITS)) as usize
}

/// The patterns of each first pair, as one flat open-addressing table: a lookup is one
/// probe into `slots` (usually) and a slice of `ids`, no pointer to chase (a `HashMap` of
/// `Vec`s cost two cache misses a candidate, and on text of common words candidates are
/// at a third of all positions).
struct PairTable {
    /// (pair, first index into `cands`, count); count 0: an empty slot
    slots: Vec<(u64, u32, u32)>,
    /// the patterns of every pair, each with what comparing it needs (no second lookup)
    cands: Vec<Cand>,
    mask: usize,
}

/// A pattern that starts with a given pair: where the rest of its characters are in
/// `Patterns::chars` and how long it is (a two-character pattern is a hit at once).
#[derive(Clone, Copy)]
struct Cand {
    rest: u32,
    len: u32,
    pattern: u32,
}

impl PairTable {
    fn new(by_pair: Map<u64>, spans: &[(u32, u32)]) -> PairTable {
        let cap = (by_pair.len() * 2).next_power_of_two().max(16);
        let mut t = PairTable {
            slots: vec![(0, 0, 0); cap],
            cands: Vec::new(),
            mask: cap - 1,
        };
        let mut keys: Vec<_> = by_pair.into_iter().collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        for (key, ps) in keys {
            let mut i = pair_bit(key) & t.mask;
            while t.slots[i].2 != 0 {
                i = (i + 1) & t.mask;
            }
            t.slots[i] = (key, t.cands.len() as u32, ps.len() as u32);
            t.cands.extend(ps.iter().map(|&p| {
                let (s, e) = spans[p as usize];
                Cand {
                    rest: s + 2,
                    len: e - s,
                    pattern: p,
                }
            }));
        }
        t
    }

    #[inline(always)]
    fn get(&self, key: u64, bit: usize) -> &[Cand] {
        let mut i = bit & self.mask;
        loop {
            let (k, start, n) = self.slots[i];
            if n == 0 {
                return &[];
            }
            if k == key {
                return &self.cands[start as usize..(start + n) as usize];
            }
            i = (i + 1) & self.mask;
        }
    }
}

pub(crate) struct Patterns {
    /// Every pattern's characters (code points), end to end; `spans[p]` is pattern `p`'s range.
    chars: Vec<u32>,
    spans: Vec<(u32, u32)>,
    pair_filter: Vec<u64>,
    by_pair: PairTable,
    single_filter: Vec<u64>,
    singles: Map<u32>,
}

impl Patterns {
    /// `texts[p]` is pattern `p` (normalized, not empty).
    pub(crate) fn new(texts: &[String]) -> Patterns {
        let mut by_pair: Map<u64> = Map::default();
        let mut me = Patterns {
            chars: Vec::new(),
            spans: Vec::with_capacity(texts.len()),
            pair_filter: vec![0; (1 << FILTER_BITS) / 64],
            by_pair: PairTable::new(Map::default(), &[]),
            single_filter: vec![0; (1 << 16) / 64],
            singles: Map::default(),
        };
        for (p, t) in texts.iter().enumerate() {
            let start = me.chars.len();
            me.chars.extend(t.chars().map(u32::from));
            let span = &me.chars[start..];
            match span {
                [] => {}
                [c] => {
                    let bit = (*c & 0xFFFF) as usize;
                    me.single_filter[bit >> 6] |= 1 << (bit & 63);
                    me.singles.entry(*c).or_default().push(p as u32);
                }
                [a, b, ..] => {
                    let key = pair(*a, *b);
                    let bit = pair_bit(key);
                    me.pair_filter[bit >> 6] |= 1 << (bit & 63);
                    by_pair.entry(key).or_default().push(p as u32);
                }
            }
            me.spans.push((start as u32, me.chars.len() as u32));
        }
        me.by_pair = PairTable::new(by_pair, &me.spans);
        me
    }

    /// Calls `hit(start, end, pattern)` (character positions in `text`) for every
    /// occurrence of every pattern (one-character patterns first, then the longer ones,
    /// each in order of start).
    #[inline]
    pub(crate) fn find(&self, text: &[u32], mut hit: impl FnMut(usize, usize, u32)) {
        if !self.singles.is_empty() {
            for (i, &c) in text.iter().enumerate() {
                let bit = (c & 0xFFFF) as usize;
                if self.single_filter[bit >> 6] & (1 << (bit & 63)) != 0 {
                    if let Some(ps) = self.singles.get(&c) {
                        for &p in ps {
                            hit(i, i + 1, p);
                        }
                    }
                }
            }
        }
        for (i, w) in text.windows(2).enumerate() {
            let key = pair(w[0], w[1]);
            let bit = pair_bit(key);
            if self.pair_filter[bit >> 6] & (1 << (bit & 63)) == 0 {
                continue;
            }
            // the pair itself is equal (the key is exact): compare the rest only
            for c in self.by_pair.get(key, bit) {
                let len = c.len as usize;
                if len == 2 {
                    hit(i, i + 2, c.pattern);
                } else if i + len <= text.len() {
                    // a few characters: compared inline (a call to memcmp cost more)
                    let rest = &self.chars[c.rest as usize..c.rest as usize + len - 2];
                    if text[i + 2..i + len].iter().zip(rest).all(|(a, b)| a == b) {
                        hit(i, i + len, c.pattern);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: every pattern at every position.
    fn naive(pats: &[String], text: &[u32]) -> Vec<(usize, usize, u32)> {
        let mut out = Vec::new();
        for i in 0..text.len() {
            for (p, t) in pats.iter().enumerate() {
                let cs: Vec<u32> = t.chars().map(u32::from).collect();
                if text.get(i..i + cs.len()) == Some(&cs[..]) {
                    out.push((i, i + cs.len(), p as u32));
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_exactly_what_brute_force_finds() {
        // a tiny alphabet so that patterns overlap, nest and share first pairs
        let alphabet: Vec<char> = "ab微信保本1".chars().collect();
        let mut seed = 12345u64;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        for round in 0..200 {
            let pats: Vec<String> = (0..1 + next(12))
                .map(|_| (0..1 + next(4)).map(|_| alphabet[next(alphabet.len())]).collect())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let text: Vec<u32> = (0..next(60)).map(|_| alphabet[next(alphabet.len())] as u32).collect();
            let ps = Patterns::new(&pats);
            let mut got = Vec::new();
            ps.find(&text, |s, e, p| got.push((s, e, p)));
            got.sort_unstable();
            assert_eq!(got, naive(&pats, &text), "round {round}: {pats:?} in {text:?}");
        }
    }
}
