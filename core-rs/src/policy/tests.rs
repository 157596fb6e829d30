use super::*;

fn rec(seq: u64, from: &str, to: &[&str], room: &str, t: i64, msgtype: &str) -> Record {
    Record {
        seq,
        msgid: format!("m{seq}"),
        publickey_ver: 1,
        action: "send".into(),
        from: from.into(),
        tolist: to.iter().map(|s| s.to_string()).collect(),
        roomid: room.into(),
        msgtime: t,
        msgtype: msgtype.into(),
        known: true,
        text: String::new(),
        raw: format!(
            r#"{{"msgid":"m{seq}","msgtype":"{msgtype}","{msgtype}":{{"userid":"{from}","{msgtype}_time":{t}}}}}"#
        )
        .into_bytes(),
        rule: String::new(),
        conv: String::new(),
    }
}

fn policy(switch: bool, group: Option<GroupInfo>) -> ConsentPolicy {
    let groups = group
        .map(|g| HashMap::from([("wr1".to_string(), g)]))
        .unwrap_or_default();
    ConsentPolicy::new(
        switch,
        ["emp".to_string(), "boss".to_string()],
        ["emp".to_string(), "boss".to_string(), "plain".to_string()],
        groups,
        [("wmNo".to_string(), 100, ConsentStatus::Disagree)],
        Vec::new(),
    )
}

#[test]
fn consent_events_in_the_stream_change_later_verdicts() {
    let p = policy(false, None);
    let rs = vec![
        rec(1, "emp", &["wmX"], "", 10, "text"),
        rec(2, "wmX", &["emp"], "", 20, "disagree"),
        rec(3, "emp", &["wmX"], "", 30, "text"),
        rec(4, "wmX", &["emp"], "", 40, "agree"),
        rec(5, "wmX", &["emp"], "", 50, "text"),
    ];
    let (v, d) = p.judge_batch(&rs);
    let got: Vec<(bool, &str)> = v.iter().map(|v| (v.keep, v.rule)).collect();
    assert_eq!(
        got,
        vec![
            (true, "C-1"),
            (true, "C-consent"),
            (false, "C-2"),
            (true, "C-consent"),
            (true, "C-1")
        ]
    );
    assert_eq!(d.consent.len(), 2);
    assert!(d.events.is_empty());
}

#[test]
fn switch_on_blocks_and_emits_one_event_key_per_disagreement() {
    let p = policy(true, None);
    let (v, d) = p.judge_batch(&[
        rec(1, "emp", &["wmNo"], "", 200, "text"),
        rec(2, "wmNo", &["emp"], "", 300, "text"),
    ]);
    assert!(v.iter().all(|v| !v.keep && v.rule == "C-3"));
    assert_eq!(d.events.len(), 2);
    assert_eq!(d.events[0].key(), d.events[1].key());
    assert_eq!(d.events[0].since, 100);
}

#[test]
fn group_member_speaking_late_starts_archiving() {
    let g = GroupInfo {
        owner: "plain".into(),
        owner_changes: vec![],
        members: vec!["emp".into(), "wmA".into()],
    };
    let p = policy(false, Some(g));
    let (v, d) = p.judge_batch(&[
        rec(1, "wmA", &["emp", "plain"], "wr1", 10, "text"),
        rec(2, "emp", &["wmA", "plain"], "wr1", 20, "text"),
        rec(3, "wmA", &["emp", "plain"], "wr1", 30, "text"),
        rec(4, "wmNo", &["emp", "plain"], "wr1", 300, "text"),
    ]);
    let got: Vec<(bool, &str)> = v.iter().map(|v| (v.keep, v.rule)).collect();
    assert_eq!(got, vec![(false, "C-6"), (true, "C-5"), (true, "C-5"), (false, "C-10")]);
    assert_eq!(d.spoken, vec![("wr1".to_string(), "emp".to_string(), 20)]);
}

#[test]
fn owner_transfer() {
    let g = GroupInfo {
        owner: "plain".into(),
        owner_changes: vec![(50, "boss".into())],
        members: vec!["boss".into(), "wmNo".into()],
    };
    for (switch, rule) in [(false, "C-12"), (true, "C-12")] {
        let p = policy(switch, Some(g.clone()));
        let (v, d) = p.judge_batch(&[
            rec(1, "wmB", &["boss"], "wr1", 40, "text"),
            rec(2, "wmB", &["boss"], "wr1", 60, "text"),
            rec(3, "wmNo", &["boss"], "wr1", 400, "text"),
        ]);
        let got: Vec<(bool, &str)> = v.iter().map(|v| (v.keep, v.rule)).collect();
        assert_eq!(got, vec![(false, "C-6"), (true, "C-7"), (false, rule)]);
        assert_eq!(d.events.len(), usize::from(switch));
    }
}

#[test]
fn consent_keys_round_trip() {
    let k = consent_key("wmAbc", 1_700_000_000_000, ConsentStatus::Disagree);
    assert_eq!(
        decode_consent_key(&k),
        Some(("wmAbc".to_string(), 1_700_000_000_000, ConsentStatus::Disagree))
    );
    assert_eq!(decode_consent_key(b"short"), None);
}
