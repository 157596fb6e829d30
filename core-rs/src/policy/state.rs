//! The consent state: customers' consent timelines and first words of archived members
//! in groups, plus the byte keys under which the caller persists them.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Agree,
    Disagree,
}

impl ConsentStatus {
    /// WeCom's `agree_status` values: `Agree`, `Disagree`, `Default_Agree`.
    pub fn parse(s: &str) -> Option<ConsentStatus> {
        match s {
            "Agree" | "Default_Agree" | "agree" => Some(ConsentStatus::Agree),
            "Disagree" | "disagree" => Some(ConsentStatus::Disagree),
            _ => None,
        }
    }

    pub fn as_byte(self) -> u8 {
        match self {
            ConsentStatus::Agree => b'A',
            ConsentStatus::Disagree => b'D',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Agree => "Agree",
            ConsentStatus::Disagree => "Disagree",
        }
    }
}

/// A customer's consent over time; several changes at the same millisecond keep the
/// last one inserted.
#[derive(Debug, Default, Clone)]
pub struct Timeline(BTreeMap<i64, ConsentStatus>);

impl Timeline {
    pub fn insert(&mut self, t: i64, s: ConsentStatus) {
        self.0.insert(t, s);
    }

    /// Status at `t` and since when; never pressed "disagree" → agree (default).
    pub fn at(&self, t: i64) -> (ConsentStatus, i64) {
        self.0
            .range(..=t)
            .next_back()
            .map_or((ConsentStatus::Agree, 0), |(k, v)| (*v, *k))
    }
}

#[derive(Debug, Default)]
pub struct PolicyState {
    pub consent: HashMap<String, Timeline>,
    /// roomid → archived employee → time of their first message in the group
    pub spoken: HashMap<String, HashMap<String, i64>>,
}

/// `customer \0 time(8 bytes BE) status` → one consent change.
pub fn consent_key(customer: &str, time: i64, status: ConsentStatus) -> Vec<u8> {
    let mut k = Vec::with_capacity(customer.len() + 10);
    k.extend_from_slice(customer.as_bytes());
    k.push(0);
    k.extend_from_slice(&(time.max(0) as u64).to_be_bytes());
    k.push(status.as_byte());
    k
}

pub fn decode_consent_key(k: &[u8]) -> Option<(String, i64, ConsentStatus)> {
    if k.len() < 10 {
        return None;
    }
    let (head, tail) = k.split_at(k.len() - 9);
    let customer = std::str::from_utf8(head.strip_suffix(b"\0")?).ok()?.to_string();
    let time = u64::from_be_bytes(tail[..8].try_into().ok()?) as i64;
    let status = match tail[8] {
        b'A' => ConsentStatus::Agree,
        b'D' => ConsentStatus::Disagree,
        _ => return None,
    };
    Some((customer, time, status))
}

/// `roomid \0 userid` → first message time.
pub fn spoken_key(roomid: &str, userid: &str) -> Vec<u8> {
    format!("{roomid}\0{userid}").into_bytes()
}
