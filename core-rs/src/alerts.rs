//! Timeout-reply alerts (rule A-6): in a one-to-one conversation, a customer message that
//! the employee leaves unanswered beyond a threshold raises an alert at that level (e.g.
//! 5 min, 30 min, 1 h), escalating up the chain.
//!
//! Computed from a conversation's whole stored timeline (ordered by message time, then
//! seq), so the result does not depend on batch boundaries or arrival order: re-computing
//! after late messages arrive gives the alerts of the complete stream. A message still
//! unanswered is measured against the stream's own "now" (the newest message time seen).
//!
//! Cost: one pass over the conversation index entries of the conversations asked for.

use std::collections::{BTreeMap, HashSet};

/// One entry of the conversation index: (conversation, seq, msgtime, sender role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Employee,
    Customer,
    Other,
}

impl Role {
    pub fn as_byte(self) -> u8 {
        match self {
            Role::Employee => b'E',
            Role::Customer => b'C',
            Role::Other => b'O',
        }
    }

    pub fn from_byte(b: u8) -> Role {
        match b {
            b'E' => Role::Employee,
            b'C' => Role::Customer,
            _ => Role::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutAlert {
    pub conv: String,
    /// The customer message that waited.
    pub seq: u64,
    /// 1-based level: the index of the threshold exceeded.
    pub level: usize,
    pub threshold_ms: i64,
    pub since: i64,
    /// When the employee answered, if they did.
    pub answered_at: Option<i64>,
    pub delay_ms: i64,
}

/// `timeline`: (conversation, seq, msgtime, role) in any order. Only one-to-one
/// conversations (`p:` ids) are considered.
pub fn reply_timeouts(
    timeline: &[(String, u64, i64, Role)],
    only: Option<&HashSet<String>>,
    thresholds_ms: &[i64],
    stream_now: i64,
) -> Vec<TimeoutAlert> {
    reply_timeouts_waiting(timeline, only, thresholds_ms, stream_now).0
}

/// [`reply_timeouts`], and the conversations whose customer still waits without having
/// passed every threshold: the ones whose alerts can change as the stream's "now" moves
/// on with no new message of their own.
pub fn reply_timeouts_waiting(
    timeline: &[(String, u64, i64, Role)],
    only: Option<&HashSet<String>>,
    thresholds_ms: &[i64],
    stream_now: i64,
) -> (Vec<TimeoutAlert>, Vec<String>) {
    let last_threshold = thresholds_ms.iter().copied().max().unwrap_or(0);
    let mut waiting = Vec::new();
    let mut by_conv: BTreeMap<&str, Vec<(i64, u64, Role)>> = BTreeMap::new();
    for (c, seq, t, role) in timeline {
        if !c.starts_with("p:") || only.is_some_and(|o| !o.contains(c)) {
            continue;
        }
        by_conv.entry(c.as_str()).or_default().push((*t, *seq, *role));
    }
    let mut out = Vec::new();
    for (conv, mut msgs) in by_conv {
        msgs.sort_unstable();
        let mut pending: Option<(u64, i64)> = None;
        let mut emit = |seq: u64, since: i64, answered_at: Option<i64>, until: i64| {
            let delay = until - since;
            for (i, th) in thresholds_ms.iter().enumerate() {
                if delay > *th {
                    out.push(TimeoutAlert {
                        conv: conv.to_string(),
                        seq,
                        level: i + 1,
                        threshold_ms: *th,
                        since,
                        answered_at,
                        delay_ms: delay,
                    });
                }
            }
        };
        for (t, seq, role) in msgs {
            match role {
                Role::Customer if pending.is_none() => pending = Some((seq, t)),
                Role::Employee => {
                    if let Some((s0, t0)) = pending.take() {
                        emit(s0, t0, Some(t), t);
                    }
                }
                _ => {}
            }
        }
        if let Some((s0, t0)) = pending {
            emit(s0, t0, None, stream_now);
            if stream_now - t0 <= last_threshold {
                waiting.push(conv.to_string());
            }
        }
    }
    (out, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn tl(entries: &[(u64, i64, Role)]) -> Vec<(String, u64, i64, Role)> {
        entries
            .iter()
            .map(|(s, t, r)| ("p:emp|wmA".to_string(), *s, *t, *r))
            .collect()
    }

    #[test]
    fn waiting_until_the_last_threshold_passes() {
        let th = [5 * MIN, 30 * MIN];
        let t = tl(&[(1, 0, Role::Customer), (2, MIN, Role::Other)]);
        let (a, w) = reply_timeouts_waiting(&t, None, &th, 10 * MIN);
        assert_eq!((a.len(), w), (1, vec!["p:emp|wmA".to_string()]));
        let (a, w) = reply_timeouts_waiting(&t, None, &th, 31 * MIN);
        assert_eq!((a.len(), w.len()), (2, 0));
        let answered = tl(&[(1, 0, Role::Customer), (2, MIN, Role::Employee)]);
        assert!(reply_timeouts_waiting(&answered, None, &th, 2 * MIN).1.is_empty());
    }

    #[test]
    fn levels_and_unanswered() {
        let th = [5 * MIN, 30 * MIN, 60 * MIN];
        let t = tl(&[
            (1, 0, Role::Customer),
            (2, 2 * MIN, Role::Customer), // the clock runs from the first unanswered message
            (3, 40 * MIN, Role::Employee),
            (4, 50 * MIN, Role::Customer),
            (5, 52 * MIN, Role::Employee),
            (6, 100 * MIN, Role::Customer),
        ]);
        let a = reply_timeouts(&t, None, &th, 170 * MIN);
        let got: Vec<(u64, usize, Option<i64>)> = a.iter().map(|x| (x.seq, x.level, x.answered_at)).collect();
        assert_eq!(
            got,
            vec![
                (1, 1, Some(40 * MIN)),
                (1, 2, Some(40 * MIN)),
                (6, 1, None),
                (6, 2, None),
                (6, 3, None)
            ]
        );
    }

    #[test]
    fn arrival_order_does_not_matter() {
        let th = [5 * MIN];
        let mut t = tl(&[
            (1, 0, Role::Customer),
            (2, 3 * MIN, Role::Employee),
            (3, 10 * MIN, Role::Customer),
        ]);
        let a1 = reply_timeouts(&t, None, &th, 30 * MIN);
        t.reverse();
        assert_eq!(reply_timeouts(&t, None, &th, 30 * MIN), a1);
        assert_eq!(a1.len(), 1);
        // groups are not one-to-one conversations
        let g = vec![("g:wr1".to_string(), 1, 0, Role::Customer)];
        assert!(reply_timeouts(&g, None, &th, 99 * MIN).is_empty());
    }
}
