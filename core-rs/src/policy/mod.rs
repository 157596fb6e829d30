//! Consent decisions (rules C-0 … C-12, spec/rules.md §C): for every decrypted message,
//! archive or drop, with the id of the rule that decided.
//!
//! The state is owned by the Python side (persisted in the tenant's LMDB) and handed over
//! once per ingest: the enterprise switch, archived employees, groups (owner, owner
//! changes, members), customers' consent timelines and which archived employees have
//! spoken in which group. A batch is judged in one sequential pass in seq order (after
//! the parallel decryption), so verdicts equal a message-by-message reading of the
//! stream; the pass updates the state (consent events, first words in a group) and
//! reports those changes so the caller can persist them in the batch's transaction.
//!
//! Cost: a few hash lookups per message; negligible next to the RSA operation.

mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

use crate::message::Record;
pub use state::{consent_key, decode_consent_key, spoken_key, ConsentStatus};
use state::{PolicyState, Timeline};

/// A group as the directory describes it.
#[derive(Debug, Clone, Default)]
pub struct GroupInfo {
    pub owner: String,
    /// (time ms, new owner), any order; sorted on construction.
    pub owner_changes: Vec<(i64, String)>,
    pub members: Vec<String>,
}

/// An enforcement the consent rules demand (C-3: the employee is blocked from chatting
/// with the customer; C-9 / C-12: the customer is removed from the group by the owner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    pub rule: &'static str,
    pub kind: &'static str,
    pub employee: String,
    pub customer: String,
    pub roomid: String,
    /// When the customer's disagreement took effect.
    pub since: i64,
    /// The message time that triggered the event.
    pub time: i64,
    pub msgid: String,
}

impl Enforcement {
    /// One event per (rule, employee, customer, group, disagreement): re-judging the same
    /// situation never makes a second event.
    pub fn key(&self) -> Vec<u8> {
        format!(
            "{}\0{}\0{}\0{}\0{}",
            self.rule, self.employee, self.customer, self.roomid, self.since
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub keep: bool,
    pub rule: &'static str,
}

/// State changes made by judging one batch, for the caller to persist with it.
#[derive(Debug, Default)]
pub struct PolicyDelta {
    /// (customer, time, status, msgid of the agree/disagree message)
    pub consent: Vec<(String, i64, ConsentStatus, String)>,
    /// (roomid, employee, time of first message)
    pub spoken: Vec<(String, String, i64)>,
    pub events: Vec<Enforcement>,
}

pub struct ConsentPolicy {
    pub service_requires_consent: bool,
    archived: HashSet<String>,
    employees: HashSet<String>,
    groups: HashMap<String, GroupInfo>,
    state: Mutex<PolicyState>,
}

/// External contacts' ids start with `wo` or `wm` (spec §4).
pub fn is_customer(id: &str) -> bool {
    id.starts_with("wo") || id.starts_with("wm")
}

/// The rule that keeps/drops the message, by the archived employee's place in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupMode {
    /// C-4: an archived employee owns the group from the start.
    Owner,
    /// C-7 / C-12: an archived employee became owner by a transfer.
    Transferred,
    /// C-5 / C-10: an archived member has spoken.
    Spoken,
    /// C-6 / C-11: archived members exist but none has spoken.
    Silent,
    /// C-0: no archived employee in the group at all.
    Unarchived,
}

impl ConsentPolicy {
    pub fn new(
        service_requires_consent: bool,
        archived: impl IntoIterator<Item = String>,
        employees: impl IntoIterator<Item = String>,
        groups: HashMap<String, GroupInfo>,
        consent: impl IntoIterator<Item = (String, i64, ConsentStatus)>,
        spoken: impl IntoIterator<Item = (String, String, i64)>,
    ) -> ConsentPolicy {
        let mut groups = groups;
        for g in groups.values_mut() {
            g.owner_changes.sort_by_key(|(t, _)| *t);
        }
        let mut st = PolicyState::default();
        for (c, t, s) in consent {
            st.consent.entry(c).or_default().insert(t, s);
        }
        for (room, user, t) in spoken {
            let e = st.spoken.entry(room).or_default().entry(user).or_insert(t);
            *e = (*e).min(t);
        }
        ConsentPolicy {
            service_requires_consent,
            archived: archived.into_iter().collect(),
            employees: employees.into_iter().collect(),
            groups,
            state: Mutex::new(st),
        }
    }

    fn is_archived(&self, id: &str) -> bool {
        self.archived.contains(id)
    }

    fn is_employee(&self, id: &str) -> bool {
        !is_customer(id) && (self.employees.is_empty() || self.employees.contains(id) || self.archived.contains(id))
    }

    /// Judges `records` (in the given order, which must be seq order) and updates the
    /// state. Returns one verdict per record and the state changes.
    pub fn judge_batch(&self, records: &[Record]) -> (Vec<Verdict>, PolicyDelta) {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            // A panic elsewhere while holding the lock leaves the state as it was last
            // written, which is still consistent (each update is a single insert).
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut delta = PolicyDelta::default();
        let verdicts = records.iter().map(|r| self.judge(&mut st, r, &mut delta)).collect();
        (verdicts, delta)
    }

    fn judge(&self, st: &mut PolicyState, r: &Record, delta: &mut PolicyDelta) -> Verdict {
        match r.msgtype.as_str() {
            "agree" | "disagree" => {
                // Consent records are always kept, and they change the customer's status.
                let status = if r.msgtype == "agree" {
                    ConsentStatus::Agree
                } else {
                    ConsentStatus::Disagree
                };
                let (customer, time) = consent_event_fields(r);
                st.consent.entry(customer.clone()).or_default().insert(time, status);
                delta.consent.push((customer, time, status, r.msgid.clone()));
                return Verdict {
                    keep: true,
                    rule: "C-consent",
                };
            }
            // An employee switched enterprise: no customer involved.
            "switch" => {
                return Verdict {
                    keep: true,
                    rule: "C-0",
                }
            }
            _ => {}
        }
        if r.roomid.is_empty() {
            self.judge_single(st, r, delta)
        } else {
            self.judge_group(st, r, delta)
        }
    }

    fn judge_single(&self, st: &PolicyState, r: &Record, delta: &mut PolicyDelta) -> Verdict {
        let parties = std::iter::once(&r.from).chain(r.tolist.iter());
        let mut employee = None;
        let mut customer = None;
        for p in parties {
            if is_customer(p) {
                customer.get_or_insert(p);
            } else if self.is_archived(p) {
                employee.get_or_insert(p);
            }
        }
        // rule C-0: no archived employee takes part → not archived at all
        let Some(employee) = employee else {
            return Verdict {
                keep: false,
                rule: "C-0",
            };
        };
        // rule C-0: among employees only, no consent needed
        let Some(customer) = customer else {
            return Verdict {
                keep: true,
                rule: "C-0",
            };
        };
        match st.status_at(customer, r.msgtime) {
            (ConsentStatus::Agree, _) => Verdict {
                keep: true,
                rule: "C-1",
            },
            (ConsentStatus::Disagree, since) if self.service_requires_consent => {
                // rule C-3: the employee can neither send nor receive; the chat is blocked
                delta.events.push(Enforcement {
                    rule: "C-3",
                    kind: "block_chat",
                    employee: employee.clone(),
                    customer: customer.clone(),
                    roomid: String::new(),
                    since,
                    time: r.msgtime,
                    msgid: r.msgid.clone(),
                });
                Verdict {
                    keep: false,
                    rule: "C-3",
                }
            }
            // rule C-2
            (ConsentStatus::Disagree, _) => Verdict {
                keep: false,
                rule: "C-2",
            },
        }
    }

    /// The owner at `t`, and whether it differs from the group's first owner (a transfer).
    fn owner_at<'a>(&'a self, g: &'a GroupInfo, t: i64) -> (&'a str, bool) {
        let owner = g
            .owner_changes
            .iter()
            .take_while(|(ct, _)| *ct <= t)
            .last()
            .map_or(g.owner.as_str(), |(_, o)| o.as_str());
        (owner, owner != g.owner)
    }

    fn group_mode(&self, st: &PolicyState, r: &Record) -> (GroupMode, String) {
        let g = self.groups.get(&r.roomid);
        if let Some(g) = g {
            let (owner, transferred) = self.owner_at(g, r.msgtime);
            if self.is_archived(owner) {
                let mode = if transferred {
                    GroupMode::Transferred
                } else {
                    GroupMode::Owner
                };
                return (mode, owner.to_string());
            }
        }
        let spoken = st
            .spoken
            .get(&r.roomid)
            .and_then(|m| m.iter().filter(|(_, t)| **t <= r.msgtime).map(|(u, _)| u.clone()).min());
        if let Some(member) = spoken {
            return (GroupMode::Spoken, member);
        }
        let members = g.map(|g| g.members.iter()).into_iter().flatten();
        let parties = std::iter::once(&r.from).chain(r.tolist.iter());
        let any_archived = members.chain(parties).any(|m| self.is_archived(m));
        let owner = g.map(|g| g.owner.clone()).unwrap_or_default();
        if any_archived {
            (GroupMode::Silent, owner)
        } else {
            (GroupMode::Unarchived, owner)
        }
    }

    fn judge_group(&self, st: &mut PolicyState, r: &Record, delta: &mut PolicyDelta) -> Verdict {
        // rule C-5: archiving starts at an archived member's first message (inclusive)
        if self.is_archived(&r.from) && self.is_employee(&r.from) {
            let room = st.spoken.entry(r.roomid.clone()).or_default();
            if !room.contains_key(&r.from) {
                room.insert(r.from.clone(), r.msgtime);
                delta.spoken.push((r.roomid.clone(), r.from.clone(), r.msgtime));
            }
        }
        let (mode, owner) = self.group_mode(st, r);
        let disagreeing = if is_customer(&r.from) {
            match st.status_at(&r.from, r.msgtime) {
                (ConsentStatus::Disagree, since) => Some(since),
                _ => None,
            }
        } else {
            None
        };
        match (mode, disagreeing) {
            (GroupMode::Unarchived, _) => Verdict {
                keep: false,
                rule: "C-0",
            },
            (GroupMode::Silent, None) => Verdict {
                keep: false,
                rule: "C-6",
            },
            (GroupMode::Silent, Some(_)) => Verdict {
                keep: false,
                rule: "C-11",
            },
            (GroupMode::Owner, None) => Verdict {
                keep: true,
                rule: "C-4",
            },
            (GroupMode::Transferred, None) => Verdict {
                keep: true,
                rule: "C-7",
            },
            (GroupMode::Spoken, None) => Verdict {
                keep: true,
                rule: "C-5",
            },
            (GroupMode::Spoken, Some(_)) => Verdict {
                keep: false,
                rule: "C-10",
            },
            (GroupMode::Owner | GroupMode::Transferred, Some(since)) => {
                let rule = match (mode, self.service_requires_consent) {
                    (GroupMode::Transferred, _) => "C-12",
                    (_, true) => "C-9",
                    (_, false) => "C-8",
                };
                if self.service_requires_consent {
                    // rule C-9 / C-12 (switch on): the owner removes the customer
                    delta.events.push(Enforcement {
                        rule,
                        kind: "remove_from_group",
                        employee: owner,
                        customer: r.from.clone(),
                        roomid: r.roomid.clone(),
                        since,
                        time: r.msgtime,
                        msgid: r.msgid.clone(),
                    });
                }
                Verdict { keep: false, rule }
            }
        }
    }
}

/// (customer, time) of an `agree`/`disagree` message: the payload's `userid` and
/// `agree_time`/`disagree_time`, falling back to the sender and the message time.
fn consent_event_fields(r: &Record) -> (String, i64) {
    let v: Value = serde_json::from_slice(&r.raw).unwrap_or(Value::Null);
    let p = &v[r.msgtype.as_str()];
    let customer = p["userid"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or(&r.from)
        .to_string();
    let time = p[format!("{}_time", r.msgtype).as_str()]
        .as_i64()
        .filter(|t| *t > 0)
        .unwrap_or(r.msgtime);
    (customer, time)
}

impl PolicyState {
    fn status_at(&self, customer: &str, t: i64) -> (ConsentStatus, i64) {
        self.consent
            .get(customer)
            .map_or((ConsentStatus::Agree, 0), |tl: &Timeline| tl.at(t))
    }
}

#[cfg(test)]
mod tests;
