//! Search folding: the one normalization applied to indexed text and to queries
//! (DESIGN "Search semantics": case and full/half width). It maps each character to
//! exactly one character, so positions in folded text are positions in the original.
//!
//! Cost: a table-free branch per character (ASCII and CJK take the first two branches).

/// Folds one character: full-width ASCII forms (U+FF01–U+FF5E) to ASCII, the ideographic
/// space to a space, then lower case when the lower-case form is a single character.
#[inline]
pub fn fold_char(c: char) -> char {
    let c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    if uncased(c) {
        return c;
    }
    if !c.is_alphabetic() {
        return c;
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// CJK (radicals, punctuation, kana, Hangul, the ideographs and their extensions): no
/// case, so no Unicode table lookup for the bulk of Chinese text (tested for every one).
#[inline(always)]
fn uncased(c: char) -> bool {
    matches!(c as u32, 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0x2_0000..)
}

/// Folds a whole string (same number of characters as the input).
pub fn fold_text(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uncased_ranges_have_no_lower_case() {
        for c in (0..=0x10_FFFFu32).filter_map(char::from_u32).filter(|&c| uncased(c)) {
            assert_eq!(
                c.to_lowercase().collect::<String>(),
                c.to_string(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn width_and_case_fold_to_the_same_text() {
        assert_eq!(fold_text("ＷｅＣｈａｔ　保本"), "wechat 保本");
        assert_eq!(fold_text("VX加微"), "vx加微");
        assert_eq!(fold_text("ÄÖ"), "äö");
        // İ lower-cases to two characters: kept, so positions never shift
        assert_eq!(fold_text("İx").chars().count(), 2);
    }
}
