//! Text normalization for sensitive-word matching: Unicode compatibility folding (NFKC:
//! full width → half width, ①/⒈ → digits, 𝐀 → A), case folding, traditional →
//! simplified Chinese, and removal of everything that is not a letter or a digit (spaces,
//! punctuation, symbols, zero-width characters, emoji). The same function normalizes the
//! word list and the text, and every normalized byte remembers the original character it
//! came from, so hits are reported at positions in the original text.
//!
//! Cost: one table lookup per character for the Basic Multilingual Plane and plane 1
//! (emoji, mathematical letters: two 128 KiB tables built once per process, ~40 ms); the
//! rest (rare CJK extensions, plane-1 letters that stay outside the BMP) takes the slow
//! path through NFKC. (Emoji on the slow path cost ~900 instructions each, a tenth of all
//! matching time on chat text.)

use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

/// One u16 per BMP character (128 KiB, half the cache footprint of u32): the folded
/// character itself, or `SKIP16`, or, in the surrogate range (which no folded character
/// can be), an index into `expansions` or `SLOW16` for the rare rest. So one mask test
/// (`is_special`) sends a value off the hot path.
pub struct Table {
    bmp: Vec<u16>,
    /// The same for plane 1 (U+10000…U+1FFFF: emoji, mathematical letters, enclosed
    /// alphanumerics): a folded character of the BMP, `SKIP16`, or `SLOW16`.
    smp: Vec<u16>,
    expansions: Vec<String>,
}

const SKIP16: u16 = 0xFFFF;
const SLOW16: u16 = 0xDFFF;
const EXP_BASE: u16 = 0xD800;
const EXP_SLOTS: usize = 0x7FF;

/// An expansion index or `SLOW16`: a value the hot loop hands to [`fold_char_in`].
#[inline(always)]
fn is_special(v: u16) -> bool {
    v & 0xF800 == 0xD800
}

fn fold_slow(c: char, out: &mut String) {
    let nfkc: String = std::iter::once(c).nfkc().collect();
    for d in nfkc.chars() {
        for l in d.to_lowercase() {
            if !l.is_alphanumeric() {
                continue;
            }
            if ('\u{3400}'..='\u{9FFF}').contains(&l) || ('\u{F900}'..='\u{FAFF}').contains(&l) {
                let mut buf = [0u8; 4];
                out.push_str(&fast2s::convert(l.encode_utf8(&mut buf)));
            } else {
                out.push(l);
            }
        }
    }
}

pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut bmp = vec![SKIP16; 0x1_0000];
        let mut expansions = Vec::new();
        let mut s = String::new();
        for (cp, slot) in bmp.iter_mut().enumerate() {
            let Some(c) = char::from_u32(cp as u32) else { continue };
            s.clear();
            fold_slow(c, &mut s);
            let mut chars = s.chars();
            *slot = match (chars.next(), chars.next()) {
                (None, _) => SKIP16,
                (Some(one), None) if (one as u32) < 0xD800 || (0xE000..0xFFFE).contains(&(one as u32)) => one as u16,
                _ if expansions.len() < EXP_SLOTS => {
                    expansions.push(s.clone());
                    EXP_BASE + (expansions.len() - 1) as u16
                }
                _ => SLOW16,
            };
        }
        let mut smp = vec![SKIP16; 0x1_0000];
        for (off, slot) in smp.iter_mut().enumerate() {
            let Some(c) = char::from_u32(0x1_0000 + off as u32) else {
                continue;
            };
            s.clear();
            fold_slow(c, &mut s);
            let mut chars = s.chars();
            *slot = match (chars.next(), chars.next()) {
                (None, _) => SKIP16,
                (Some(one), None) if (one as u32) < 0xD800 || (0xE000..0xFFFE).contains(&(one as u32)) => one as u16,
                _ => SLOW16,
            };
        }
        Table { bmp, smp, expansions }
    })
}

/// The normalized form of one character, without allocating in the common cases.
pub enum Folded {
    Skip,
    One(char),
    Many(&'static str),
    Slow(String),
}

/// Folds one character (word lists, references, and [`fold_into`]'s rare characters; the
/// matching loop itself is [`fold_into`]).
#[inline(always)]
pub fn fold_char(c: char) -> Folded {
    fold_char_in(table(), c)
}

/// [`fold_char`] with the table looked up once by the caller.
#[inline(always)]
pub fn fold_char_in(t: &'static Table, c: char) -> Folded {
    if c.is_ascii() {
        return if c.is_ascii_alphanumeric() {
            Folded::One(c.to_ascii_lowercase())
        } else {
            Folded::Skip
        };
    }
    if (c as u32) < 0x1_0000 {
        match t.bmp[c as usize] {
            SKIP16 => return Folded::Skip,
            v if (EXP_BASE..EXP_BASE + EXP_SLOTS as u16).contains(&v) => {
                return Folded::Many(t.expansions[(v - EXP_BASE) as usize].as_str())
            }
            SLOW16 => {}
            // a u16 outside the surrogate range is always a valid char
            v => return Folded::One(char::from_u32(v as u32).unwrap_or(' ')),
        }
    } else if (c as u32) < 0x2_0000 {
        match t.smp[c as usize - 0x1_0000] {
            SKIP16 => return Folded::Skip,
            SLOW16 => {}
            v => return Folded::One(char::from_u32(v as u32).unwrap_or(' ')),
        }
    }
    let mut slow = String::new();
    fold_slow(c, &mut slow);
    Folded::Slow(slow)
}

/// Normalizes `text` into `norm` (code points) with every normalized character's original
/// byte offset in `ostart`, and returns the normalized length: `norm[..len]`, `ostart[..len]`
/// (the buffers are reused between calls and only ever grow; what lies past `len` is stale).
/// The same result as [`normalize`] (tested), in one tight loop: a hand-rolled UTF-8 decode,
/// one table load per character, both slots written unconditionally and the length bumped
/// only for a kept character (a skipped one is overwritten by the next), so separators,
/// punctuation and script changes cost no mispredicted branch on the fold. Expansions and
/// the slow path leave the loop.
pub fn fold_into(t: &'static Table, text: &str, norm: &mut Vec<u32>, ostart: &mut Vec<u32>) -> usize {
    let b = text.as_bytes();
    let n = b.len();
    // invariant at the top of the loop: both buffers hold at least k + (n - i) slots (a
    // character of the table writes one slot and consumes at least one byte)
    if norm.len() < n {
        norm.resize(n, 0);
        ostart.resize(n, 0);
    }
    let (mut i, mut k) = (0usize, 0usize);
    while i < n {
        // the hot loop works on plain slices (so the vectors' headers are not reloaded
        // after every store); a special character leaves it to grow the buffers
        let (ns, os) = (&mut norm[..], &mut ostart[..]);
        let mut special = None;
        while i < n {
            let b0 = u32::from(b[i]);
            let (cp, len) = if b0 < 0x80 {
                (b0, 1)
            } else if b0 < 0xE0 {
                (((b0 & 0x1F) << 6) | (u32::from(b[i + 1]) & 0x3F), 2)
            } else if b0 < 0xF0 {
                let c = ((b0 & 0x0F) << 12) | ((u32::from(b[i + 1]) & 0x3F) << 6) | (u32::from(b[i + 2]) & 0x3F);
                (c, 3)
            } else {
                let c = ((b0 & 0x07) << 18)
                    | ((u32::from(b[i + 1]) & 0x3F) << 12)
                    | ((u32::from(b[i + 2]) & 0x3F) << 6)
                    | (u32::from(b[i + 3]) & 0x3F);
                (c, 4)
            };
            let v = if cp < 0x1_0000 {
                t.bmp[cp as usize]
            } else if cp < 0x2_0000 {
                t.smp[cp as usize - 0x1_0000]
            } else {
                SLOW16
            };
            if is_special(v) {
                special = Some((cp, len));
                break;
            }
            ns[k] = u32::from(v);
            os[k] = i as u32;
            k += usize::from(v != SKIP16);
            i += len;
        }
        if let Some((cp, len)) = special {
            k = fold_rare(t, cp, i, n - i - len, norm, ostart, k);
            i += len;
        }
    }
    k
}

/// [`fold_into`]'s way out for expansions and the slow path: writes the character's folded
/// form at `k`, keeps the buffers' invariant for the `rest` bytes after it, returns the new k.
#[cold]
#[inline(never)]
fn fold_rare(
    t: &'static Table,
    cp: u32,
    at: usize,
    rest: usize,
    norm: &mut Vec<u32>,
    ostart: &mut Vec<u32>,
    k: usize,
) -> usize {
    let Some(c) = char::from_u32(cp) else { return k }; // not reachable from a &str
    let mut put = |k: &mut usize, nc: char| {
        if norm.len() <= *k + rest {
            norm.resize(*k + rest + 1, 0);
            ostart.resize(*k + rest + 1, 0);
        }
        norm[*k] = nc as u32;
        ostart[*k] = at as u32;
        *k += 1;
    };
    let mut k = k;
    match fold_char_in(t, c) {
        Folded::Skip => {}
        Folded::One(nc) => put(&mut k, nc),
        Folded::Many(s) => s.chars().for_each(|nc| put(&mut k, nc)),
        Folded::Slow(s) => s.chars().for_each(|nc| put(&mut k, nc)),
    }
    k
}

/// Builds the lookup table now (otherwise the first call pays for it).
pub fn warm_up() {
    let _ = table();
}

/// A normalized text and, for every byte of it, the original character's byte range.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    pub text: String,
    pub origin: Vec<(u32, u32)>,
}

impl Normalized {
    /// The original byte range of a normalized byte range.
    pub fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        (self.origin[start].0 as usize, self.origin[end - 1].1 as usize)
    }
}

/// Normalizes `text`, keeping the position map.
pub fn normalize(text: &str) -> Normalized {
    let mut out = Normalized {
        text: String::with_capacity(text.len()),
        origin: Vec::with_capacity(text.len()),
    };
    for (i, c) in text.char_indices() {
        let span = (i as u32, (i + c.len_utf8()) as u32);
        let before = out.text.len();
        match fold_char(c) {
            Folded::Skip => {}
            Folded::One(n) => out.text.push(n),
            Folded::Many(s) => out.text.push_str(s),
            Folded::Slow(s) => out.text.push_str(&s),
        }
        for _ in before..out.text.len() {
            out.origin.push(span);
        }
    }
    out
}

/// The normalized form alone (for word lists and references).
pub fn normalize_str(text: &str) -> String {
    normalize(text).text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_case_traditional_and_noise() {
        assert_eq!(normalize_str("ＶＸ"), "vx");
        assert_eq!(normalize_str("加 V"), "加v");
        assert_eq!(normalize_str("微.信"), "微信");
        assert_eq!(normalize_str("微\u{200B}信"), "微信");
        assert_eq!(normalize_str("微😀信"), "微信");
        assert_eq!(normalize_str("微信號碼"), "微信号码");
        assert_eq!(normalize_str("保本①②"), "保本12");
        assert_eq!(normalize_str("⒈返點"), "1返点");
        assert_eq!(normalize_str("𝐖𝐞𝐂𝐡𝐚𝐭"), "wechat");
        assert_eq!(normalize_str("Ｗｅ-Ｃｈａｔ!"), "wechat");
    }

    #[test]
    fn the_tables_agree_with_the_slow_path_on_planes_0_and_1() {
        let t = table();
        let (mut fast, mut want) = (String::new(), String::new());
        for cp in 0..0x2_0000u32 {
            let Some(c) = char::from_u32(cp) else { continue };
            fast.clear();
            want.clear();
            match fold_char_in(t, c) {
                Folded::Skip => {}
                Folded::One(n) => fast.push(n),
                Folded::Many(m) => fast.push_str(m),
                Folded::Slow(m) => fast.push_str(&m),
            }
            fold_slow(c, &mut want);
            assert_eq!(fast, want, "U+{cp:04X}");
        }
        // emoji and mathematical letters take the table, not the slow path
        for c in ['😀', '✅', '𝐖', '🄰'] {
            assert!(!matches!(fold_char_in(t, c), Folded::Slow(_)), "{c}");
        }
    }

    #[test]
    fn the_fast_loop_agrees_with_normalize() {
        // every kind of character: ASCII, CJK (changed and not), full width, expansions
        // (ﷺ, ㍿), plane 1 (emoji, math letters), plane 2, zero width, combining marks
        let alphabet: Vec<char> = "aZ9 ,微信號碼保本ＶＸ①⒈ﷺ㍿😀𝐖🄰𠀀\u{200B}\u{0301}é，。"
            .chars()
            .collect();
        let t = table();
        let (mut norm, mut ostart) = (Vec::new(), Vec::new());
        let mut seed = 7u64;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for round in 0..3000 {
            let text: String = (0..next(40)).map(|_| alphabet[next(alphabet.len())]).collect();
            let k = fold_into(t, &text, &mut norm, &mut ostart);
            let want = normalize(&text);
            let got: String = norm[..k].iter().map(|&c| char::from_u32(c).unwrap()).collect();
            assert_eq!(got, want.text, "round {round}: {text:?}");
            // every normalized character's original byte offset
            let want_starts: Vec<u32> = want.text.char_indices().map(|(bi, _)| want.origin[bi].0).collect();
            assert_eq!(&ostart[..k], &want_starts[..], "round {round}: {text:?}");
        }
    }

    #[test]
    fn expansions_fit_their_slots() {
        let t = table();
        assert!(
            !t.expansions.is_empty() && t.expansions.len() < EXP_SLOTS,
            "{}",
            t.expansions.len()
        );
    }

    #[test]
    fn positions_map_back_to_the_original() {
        let src = "请加 微．信 abc";
        let n = normalize(src);
        let s = n.text.find("微信").unwrap();
        let (a, b) = n.original_span(s, s + "微信".len());
        assert_eq!(&src[a..b], "微．信");
    }
}
