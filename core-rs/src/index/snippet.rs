//! Highlighted snippets: a window of the message text around the first occurrence of a
//! query term, with every term occurrence inside it marked. Offsets are in characters
//! (Unicode scalar values) of the snippet text, so callers escape and mark safely.
//!
//! Cost: one folded copy of the text and a naive scan per term; texts are chat-sized
//! and only a page of results is rendered.

use super::fold::fold_char;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub text: String,
    /// `[start, end)` character ranges of `text` to highlight, ascending, not overlapping.
    pub highlights: Vec<(usize, usize)>,
}

/// The snippet of `text` for the folded `terms`, at most `width` characters of the text
/// (plus an ellipsis at a cut end). Line breaks become spaces.
pub fn snippet(text: &str, terms: &[String], width: usize) -> Snippet {
    let chars: Vec<char> = text.chars().collect();
    let folded: Vec<char> = chars.iter().map(|&c| fold_char(c)).collect();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for t in terms {
        let t: Vec<char> = t.chars().collect();
        if t.is_empty() || t.len() > folded.len() {
            continue;
        }
        let mut i = 0;
        while i + t.len() <= folded.len() {
            if folded[i..i + t.len()] == t[..] {
                ranges.push((i, i + t.len()));
            }
            i += 1;
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => merged.push(r),
        }
    }
    let width = width.max(1);
    let first = merged.first().map(|r| r.0).unwrap_or(0);
    let mut start = first.saturating_sub(width / 4);
    let end = (start + width).min(chars.len());
    if end - start < width {
        start = end.saturating_sub(width);
    }
    let lead = usize::from(start > 0);
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(
        chars[start..end]
            .iter()
            .map(|&c| if c == '\n' || c == '\r' { ' ' } else { c }),
    );
    if end < chars.len() {
        out.push('…');
    }
    let highlights = merged
        .into_iter()
        .filter(|&(a, b)| b > start && a < end)
        .map(|(a, b)| (a.max(start) - start + lead, b.min(end) - start + lead))
        .collect();
    Snippet { text: out, highlights }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_every_occurrence_in_the_window() {
        let s = snippet("这个产品保本吗？\nＡＢＣ保本", &["保本".into(), "abc".into()], 40);
        assert_eq!(s.text, "这个产品保本吗？ ＡＢＣ保本");
        assert_eq!(s.highlights, vec![(4, 6), (9, 14)]);
    }

    #[test]
    fn long_texts_are_cut_around_the_first_hit() {
        let text = "甲".repeat(100) + "保本" + &"乙".repeat(100);
        let s = snippet(&text, &["保本".into()], 20);
        let chars: Vec<char> = s.text.chars().collect();
        assert_eq!(chars[0], '…');
        assert_eq!(*chars.last().unwrap(), '…');
        let (a, b) = s.highlights[0];
        assert_eq!(chars[a..b].iter().collect::<String>(), "保本");
        assert_eq!(chars.len(), 22);
    }

    #[test]
    fn no_terms_gives_the_start() {
        let s = snippet("你好", &[], 10);
        assert_eq!(
            s,
            Snippet {
                text: "你好".into(),
                highlights: vec![]
            }
        );
    }
}
