//! The search query language: substrings combined with `AND` (or juxtaposition), `OR`,
//! `NOT` / a leading `-`, parentheses, and `"quoted phrases"` (a substring that may
//! hold spaces). Every term means "occurs as a substring of the folded message text".
//!
//! Bounded against hostile input: at most [`MAX_TERMS`] terms, [`MAX_DEPTH`] levels of
//! nesting and [`MAX_TERM_CHARS`] characters per term.

use super::fold::fold_text;
use crate::error::{Error, Result};

pub const MAX_TERMS: usize = 32;
pub const MAX_DEPTH: usize = 16;
pub const MAX_TERM_CHARS: usize = 1000;

/// A parsed query. `Substring` holds folded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryNode {
    All,
    Substring(String),
    And(Vec<QueryNode>),
    Or(Vec<QueryNode>),
    Not(Box<QueryNode>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Or,
    And,
    Not,
    Term(String),
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '(' {
            it.next();
            out.push(Tok::LParen);
        } else if c == ')' {
            it.next();
            out.push(Tok::RParen);
        } else if c == '"' {
            it.next();
            let mut term = String::new();
            let mut closed = false;
            while let Some(c) = it.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => {
                        if let Some(n) = it.next() {
                            term.push(n)
                        }
                    }
                    _ => term.push(c),
                }
            }
            if !closed {
                return Err(Error::Query("unclosed quote".into()));
            }
            out.push(Tok::Term(term));
        } else {
            let mut word = String::new();
            while let Some(&c) = it.peek() {
                if c.is_whitespace() || c == '(' || c == ')' || c == '"' {
                    break;
                }
                word.push(c);
                it.next();
            }
            match word.as_str() {
                "OR" => out.push(Tok::Or),
                "AND" => out.push(Tok::And),
                "NOT" => out.push(Tok::Not),
                w if w.len() > 1 && w.starts_with('-') => {
                    out.push(Tok::Not);
                    out.push(Tok::Term(w[1..].to_string()));
                }
                _ => out.push(Tok::Term(word)),
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn or(&mut self, depth: usize) -> Result<QueryNode> {
        if depth > MAX_DEPTH {
            return Err(Error::Query(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let mut alts = vec![self.and(depth)?];
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            if matches!(self.peek(), None | Some(Tok::RParen) | Some(Tok::Or)) {
                return Err(Error::Query("OR needs a term on both sides".into()));
            }
            alts.push(self.and(depth)?);
        }
        Ok(match alts.len() {
            1 => alts.swap_remove(0),
            _ => QueryNode::Or(alts),
        })
    }

    fn and(&mut self, depth: usize) -> Result<QueryNode> {
        let mut parts = Vec::new();
        loop {
            match self.peek() {
                None | Some(Tok::RParen) | Some(Tok::Or) => break,
                Some(Tok::And) => {
                    if parts.is_empty() {
                        return Err(Error::Query("AND needs a term on both sides".into()));
                    }
                    self.at += 1;
                    if matches!(self.peek(), None | Some(Tok::RParen) | Some(Tok::Or) | Some(Tok::And)) {
                        return Err(Error::Query("AND needs a term on both sides".into()));
                    }
                }
                _ => parts.push(self.unary(depth)?),
            }
        }
        if parts.is_empty() {
            return Err(Error::Query("expected a term".into()));
        }
        Ok(match parts.len() {
            1 => parts.swap_remove(0),
            _ => QueryNode::And(parts),
        })
    }

    fn unary(&mut self, depth: usize) -> Result<QueryNode> {
        match self.peek().cloned() {
            Some(Tok::Not) => {
                self.at += 1;
                if matches!(self.peek(), None | Some(Tok::RParen) | Some(Tok::Or) | Some(Tok::And)) {
                    return Err(Error::Query("NOT needs a term after it".into()));
                }
                Ok(QueryNode::Not(Box::new(self.unary(depth + 1)?)))
            }
            Some(Tok::LParen) => {
                self.at += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(Error::Query("missing closing parenthesis".into()));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Tok::Term(t)) => {
                self.at += 1;
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(Error::Query(format!("more than {MAX_TERMS} terms")));
                }
                if t.chars().count() > MAX_TERM_CHARS {
                    return Err(Error::Query(format!(
                        "a term is longer than {MAX_TERM_CHARS} characters"
                    )));
                }
                let folded = fold_text(&t);
                Ok(if folded.is_empty() {
                    QueryNode::All
                } else {
                    QueryNode::Substring(folded)
                })
            }
            Some(Tok::RParen) => Err(Error::Query("unexpected closing parenthesis".into())),
            _ => Err(Error::Query("expected a term".into())),
        }
    }
}

/// Parses a query string; an empty (or all-space) string is [`QueryNode::All`].
pub fn parse_query(s: &str) -> Result<QueryNode> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Ok(QueryNode::All);
    }
    let mut p = Parser { toks, at: 0, terms: 0 };
    let node = p.or(0)?;
    if p.at != p.toks.len() {
        return Err(Error::Query("unexpected closing parenthesis".into()));
    }
    Ok(node)
}

impl QueryNode {
    /// Brute-force evaluation against folded text: the reference the index must agree with.
    pub fn matches(&self, folded: &str) -> bool {
        match self {
            QueryNode::All => true,
            QueryNode::Substring(s) => folded.contains(s.as_str()),
            QueryNode::And(v) => v.iter().all(|n| n.matches(folded)),
            QueryNode::Or(v) => v.iter().any(|n| n.matches(folded)),
            QueryNode::Not(n) => !n.matches(folded),
        }
    }

    /// The substrings a matching message contains (terms not under a `NOT`): what to highlight.
    pub fn positive_terms(&self) -> Vec<String> {
        fn walk(n: &QueryNode, negated: bool, out: &mut Vec<String>) {
            match n {
                QueryNode::All => {}
                QueryNode::Substring(s) => {
                    if !negated && !out.contains(s) {
                        out.push(s.clone())
                    }
                }
                QueryNode::And(v) | QueryNode::Or(v) => v.iter().for_each(|c| walk(c, negated, out)),
                QueryNode::Not(c) => walk(c, !negated, out),
            }
        }
        let mut out = Vec::new();
        walk(self, false, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use QueryNode::*;

    fn sub(s: &str) -> QueryNode {
        Substring(s.into())
    }

    #[test]
    fn grammar() {
        assert_eq!(parse_query("").unwrap(), All);
        assert_eq!(parse_query("保本").unwrap(), sub("保本"));
        assert_eq!(parse_query("保本 收益").unwrap(), And(vec![sub("保本"), sub("收益")]));
        assert_eq!(
            parse_query("保本 AND 收益").unwrap(),
            And(vec![sub("保本"), sub("收益")])
        );
        assert_eq!(
            parse_query("a OR b c").unwrap(),
            Or(vec![sub("a"), And(vec![sub("b"), sub("c")])])
        );
        assert_eq!(
            parse_query("(a OR b) c").unwrap(),
            And(vec![Or(vec![sub("a"), sub("b")]), sub("c")])
        );
        assert_eq!(
            parse_query("a -b").unwrap(),
            And(vec![sub("a"), Not(Box::new(sub("b")))])
        );
        assert_eq!(parse_query("NOT Ｂ").unwrap(), Not(Box::new(sub("b"))));
        assert_eq!(
            parse_query("\"加 微信\" x").unwrap(),
            And(vec![sub("加 微信"), sub("x")])
        );
        assert_eq!(parse_query("\"a\\\"b\"").unwrap(), sub("a\"b"));
        assert_eq!(parse_query("a-b -").unwrap(), And(vec![sub("a-b"), sub("-")]));
    }

    #[test]
    fn malformed_queries_are_errors_with_a_reason() {
        for q in [
            "\"open",
            "a OR",
            "OR a",
            "(a",
            "a)",
            "NOT",
            "a AND",
            "AND a",
            "()",
            "a AND OR b",
        ] {
            let e = parse_query(q).unwrap_err().to_string();
            assert!(e.starts_with("search query:"), "{q}: {e}");
        }
        let many = vec!["x"; MAX_TERMS + 1].join(" ");
        assert!(parse_query(&many).is_err());
        let deep = "(".repeat(40) + "a" + &")".repeat(40);
        assert!(parse_query(&deep).is_err());
    }

    #[test]
    fn reference_evaluation() {
        let q = parse_query("(保本 OR 收益) -风险").unwrap();
        assert!(q.matches("保本理财"));
        assert!(!q.matches("保本有风险"));
        assert!(!q.matches("你好"));
        assert_eq!(q.positive_terms(), vec!["保本".to_string(), "收益".to_string()]);
    }
}
