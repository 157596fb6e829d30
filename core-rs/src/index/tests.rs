use super::*;
use crate::message::Record;

fn test_key() -> TokenKey {
    TokenKey::new(&[42u8; 32]).unwrap()
}

fn record(seq: u64, msgtime: i64, from: &str, to: &[&str], room: &str, msgtype: &str, text: &str) -> Vec<u8> {
    let tolist: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    let conv = crate::message::conversation_id(from, &tolist, room, msgtype);
    let r = Record {
        seq,
        msgid: format!("m{seq}"),
        publickey_ver: 1,
        action: "send".into(),
        from: from.into(),
        tolist,
        roomid: room.into(),
        msgtime,
        msgtype: msgtype.into(),
        known: true,
        text: text.into(),
        raw: b"{}".to_vec(),
        rule: String::new(),
        conv,
    };
    rmp_serde::to_vec_named(&r).unwrap()
}

/// A tiny deterministic generator (no extra dev-dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const ALPHABET: &[char] = &[
    '保', '本', '收', '益', '的', 'a', 'A', 'Ａ', 'b', ' ', '　', '1', '！', '\n', '微', '信',
];

type Row = (u64, i64, String, String, String);

fn corpus(n: usize, seed: u64) -> (Vec<Row>, Vec<Vec<u8>>) {
    let mut g = Lcg(seed);
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for i in 0..n {
        let len = g.below(12);
        let text: String = (0..len).map(|_| ALPHABET[g.below(ALPHABET.len())]).collect();
        let seq = i as u64 + 1;
        // several messages share a msgtime, so the seq tie-break matters
        let t = 1_700_000_000_000 + (i as i64 / 3) * 1000;
        let from = ["zhangsan", "lisi", "wmCust1"][g.below(3)].to_string();
        let room = if g.below(4) == 0 {
            "wrRoom1".to_string()
        } else {
            String::new()
        };
        let to: Vec<&str> = if from == "wmCust1" {
            vec!["zhangsan"]
        } else {
            vec!["wmCust1"]
        };
        let mtype = if g.below(5) == 0 { "file" } else { "text" };
        values.push(record(seq, t, &from, &to, &room, mtype, &text));
        rows.push((seq, t, text, from, room));
    }
    (rows, values)
}

fn build(values: &[Vec<u8>], batches: usize) -> (tempfile::TempDir, ArchiveIndex) {
    let dir = tempfile::tempdir().unwrap();
    let ix = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    ix.open_writer(1, 32 << 20).unwrap();
    let per = values.len().div_ceil(batches);
    for (i, chunk) in values.chunks(per).enumerate() {
        if i % 2 == 0 {
            ix.add_stored(chunk).unwrap();
        } else {
            // every other batch as the ingest indexes one: views taken from its records
            let mut records: Vec<Record> = chunk.iter().map(|v| rmp_serde::from_slice(v).unwrap()).collect();
            let views: Vec<StoredView> = records.iter_mut().map(StoredView::of).collect();
            assert_eq!(ix.add_views(&views).unwrap(), chunk.len());
        }
        ix.commit(((i + 1) * per) as u64).unwrap();
    }
    (dir, ix)
}

fn all_hits(ix: &ArchiveIndex, mut req: SearchRequest) -> (u64, Vec<(i64, u64)>) {
    let mut out = Vec::new();
    let mut total = None;
    loop {
        let page = ix.search(&req).unwrap();
        assert!(
            total.is_none() || total == Some(page.total),
            "total changes between pages"
        );
        total = Some(page.total);
        out.extend(page.hits.iter().copied());
        match page.next {
            Some(c) => req.before = Some(c),
            None => break,
        }
    }
    (total.unwrap(), out)
}

/// `(msgtime, seq)` of the rows whose folded text the query matches, newest first: the
/// brute force, by the query's own matcher over every row (no index).
fn brute_hits(rows: &[Row], q: &str) -> Vec<(i64, u64)> {
    let node = parse_query(q).unwrap();
    let mut want: Vec<(i64, u64)> = rows
        .iter()
        .filter(|r| node.matches(&fold_text(&r.2)))
        .map(|r| (r.1, r.0))
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    want
}

#[test]
fn recall_equals_brute_force_for_random_substrings_and_boolean_queries() {
    let (rows, values) = corpus(600, 7);
    let (_d, ix) = build(&values, 4);
    assert_eq!(ix.num_docs(), 600);
    let mut g = Lcg(99);
    let mut queries: Vec<String> = Vec::new();
    for _ in 0..300 {
        // substrings of stored texts (found) and random strings (mostly not found)
        let len = 1 + g.below(4);
        let r = &rows[g.below(rows.len())].2;
        let cs: Vec<char> = r.chars().collect();
        if cs.len() >= len {
            let at = g.below(cs.len() - len + 1);
            queries.push(format!(
                "\"{}\"",
                cs[at..at + len].iter().collect::<String>().replace('"', "\\\"")
            ));
        }
        let rand: String = (0..len).map(|_| ALPHABET[g.below(ALPHABET.len())]).collect();
        queries.push(format!("\"{}\"", rand));
    }
    queries.extend(
        [
            "保本 OR 收益",
            "保本 -收益",
            "NOT 的",
            "(a OR b) 1",
            "\"a a\"",
            "ａ",
            "微信 AND 保",
        ]
        .map(String::from),
    );
    for q in &queries {
        let want = brute_hits(&rows, q);
        let (total, got) = all_hits(&ix, SearchRequest::new(q, 7));
        assert_eq!(total as usize, want.len(), "total for {q:?}");
        assert_eq!(got, want, "hits for {q:?}");
    }
}

#[test]
fn filters_narrow_exactly() {
    let (rows, values) = corpus(400, 3);
    let (_d, ix) = build(&values, 2);
    let t0 = rows[100].1;
    let t1 = rows[300].1;
    let mut req = SearchRequest::new("保", 20);
    req.parties = vec!["wmCust1".into(), "zhangsan".into()];
    req.msgtypes = Some(vec!["text".into()]);
    req.since = Some(t0);
    req.until = Some(t1);
    let (total, got) = all_hits(&ix, req);
    let mut want: Vec<(i64, u64)> = rows
        .iter()
        .filter(|r| {
            let rec: Record = rmp_serde::from_slice(&values[r.0 as usize - 1]).unwrap();
            fold_text(&r.2).contains('保')
                && (r.3 == "zhangsan" || rec.tolist.contains(&"zhangsan".to_string()))
                && rec.msgtype == "text"
                && r.1 >= t0
                && r.1 <= t1
        })
        .map(|r| (r.1, r.0))
        .collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    assert!(!want.is_empty());
    assert_eq!(total as usize, want.len());
    assert_eq!(got, want);

    let mut req = SearchRequest::new("", 1000);
    req.room = Some("wrRoom1".into());
    let page = ix.search(&req).unwrap();
    assert_eq!(page.total as usize, rows.iter().filter(|r| r.4 == "wrRoom1").count());

    // scope: only lisi's messages and the room
    let mut req = SearchRequest::new("", 1000);
    req.scope = Some(Scope {
        parties: vec!["lisi".into()],
        rooms: vec!["wrRoom1".into()],
        ..Scope::default()
    });
    let page = ix.search(&req).unwrap();
    assert_eq!(
        page.total as usize,
        rows.iter().filter(|r| r.3 == "lisi" || r.4 == "wrRoom1").count()
    );

    // inherited and handed-over chats: lisi's scope plus zhangsan's chat with the customer,
    // less that chat for zhangsan (the conversation ids the records carry)
    let recs: Vec<Record> = values.iter().map(|v| rmp_serde::from_slice(v).unwrap()).collect();
    let zc = recs
        .iter()
        .find(|r| r.from == "zhangsan" && r.roomid.is_empty())
        .map(|r| r.conv.clone())
        .unwrap();
    let mut req = SearchRequest::new("", 1000);
    req.scope = Some(Scope {
        parties: vec!["lisi".into()],
        convs: vec![zc.clone()],
        ..Scope::default()
    });
    let page = ix.search(&req).unwrap();
    let party = |r: &Record, p: &str| r.from == p || r.tolist.iter().any(|t| t == p);
    assert_eq!(
        page.total as usize,
        recs.iter().filter(|r| party(r, "lisi") || r.conv == zc).count()
    );
    let mut req = SearchRequest::new("", 1000);
    req.scope = Some(Scope {
        parties: vec!["zhangsan".into()],
        hidden: vec![zc.clone()],
        ..Scope::default()
    });
    let page = ix.search(&req).unwrap();
    let want = recs.iter().filter(|r| party(r, "zhangsan") && r.conv != zc).count();
    assert!(want > 0);
    assert_eq!(page.total as usize, want);
}

#[test]
fn commits_record_the_watermark_and_reopen_sees_them() {
    let (_rows, values) = corpus(50, 1);
    let dir = tempfile::tempdir().unwrap();
    {
        let ix = ArchiveIndex::open(dir.path(), test_key()).unwrap();
        assert_eq!(ix.committed().unwrap(), None);
        ix.open_writer(1, 32 << 20).unwrap();
        ix.add_stored(&values[..30]).unwrap();
        ix.commit(30).unwrap();
        ix.add_stored(&values[30..]).unwrap(); // never committed: a crash
    }
    let ix = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    assert_eq!(ix.committed().unwrap(), Some((LAYOUT, 30)));
    assert_eq!(ix.num_docs(), 30);
    assert_eq!(ix.seqs().unwrap(), (1..=30).collect::<Vec<u64>>());
    // a second writer on the same index is refused with a reason
    ix.open_writer(1, 32 << 20).unwrap();
    let other = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    let e = other.open_writer(1, 32 << 20).unwrap_err().to_string();
    assert!(e.contains("another ingest"), "{e}");
    ix.clear().unwrap();
    ix.add_stored(&values).unwrap();
    ix.commit(50).unwrap();
    assert_eq!(ix.num_docs(), 50);
}

#[test]
fn bad_queries_and_bad_records_are_errors() {
    let (_rows, values) = corpus(5, 1);
    let (_d, ix) = build(&values, 1);
    assert!(matches!(
        ix.search(&SearchRequest::new("(保", 10)),
        Err(Error::Query(_))
    ));
    assert!(matches!(
        ix.add_stored(&[b"not msgpack".to_vec()]),
        Err(Error::Record(_))
    ));
}

#[test]
fn single_term_fast_path_equals_the_general_path_on_many_blocks() {
    // 20k messages over several blocks; times mostly rise with seq, with late arrivals
    // (old times at high seqs) and many ties, so the backward windows must widen.
    let mut g = Lcg(17);
    let mut values = Vec::new();
    for i in 0..20_000u64 {
        let t = if g.below(50) == 0 {
            g.below(20_000) as i64
        } else {
            (i as i64 / 4) * 4
        };
        let len = 1 + g.below(6);
        let text: String = (0..len).map(|_| ALPHABET[g.below(ALPHABET.len())]).collect();
        values.push(record(
            i + 1,
            1_700_000_000_000 + t,
            "zhangsan",
            &["wmCust1"],
            "",
            "text",
            &text,
        ));
    }
    let (_d, ix) = build(&values, 3);
    for q in ["保", "a", "本收", " a", "\"1！\"", "微"] {
        for limit in [7usize, 333] {
            let fast = all_hits(
                &ix,
                SearchRequest {
                    limit,
                    ..SearchRequest::new(q, limit)
                },
            );
            let mut slow_req = SearchRequest::new(q, limit);
            slow_req.since = Some(i64::MIN); // any filter takes the general path
            let slow = all_hits(&ix, slow_req);
            assert_eq!(fast, slow, "{q} limit {limit}");
            assert!(fast.0 > 0);
        }
    }
}

#[test]
fn known_segment_counts_give_the_same_pages_as_a_full_pass() {
    // Every request's first run counts each segment in full and keeps the count; a repeat
    // (and every later page) scans only the newest windows. Both must equal brute force,
    // over many blocks with late arrivals, for phrases, boolean queries and time bounds.
    let mut g = Lcg(23);
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for i in 0..20_000u64 {
        let t = 1_700_000_000_000
            + if g.below(40) == 0 {
                g.below(20_000) as i64
            } else {
                (i as i64 / 3) * 3
            };
        let len = 2 + g.below(8);
        let text: String = (0..len).map(|_| ALPHABET[g.below(6)]).collect();
        values.push(record(i + 1, t, "zhangsan", &["wmCust1"], "", "text", &text));
        rows.push((i + 1, t, text));
    }
    let (_d, ix) = build(&values, 3);
    let alphabet: String = ALPHABET[..6].iter().collect();
    let mid = 1_700_000_000_000 + 3_000;
    let mut queries: Vec<String> = Vec::new();
    for _ in 0..12 {
        let len = 3 + g.below(3);
        let cs: Vec<char> = alphabet.chars().collect();
        queries.push((0..len).map(|_| cs[g.below(cs.len())]).collect());
    }
    queries.push(format!("{} -{}", ALPHABET[0], ALPHABET[1]));
    for q in &queries {
        let node = parse_query(q).unwrap();
        for (since, until) in [
            (None, None),
            (Some(mid), None),
            (None, Some(mid)),
            (Some(mid - 900), Some(mid)),
        ] {
            let mut want: Vec<(i64, u64)> = rows
                .iter()
                .filter(|r| node.matches(&fold_text(&r.2)))
                .filter(|r| since.is_none_or(|s| r.1 >= s) && until.is_none_or(|u| r.1 <= u))
                .map(|r| (r.1, r.0))
                .collect();
            want.sort_unstable_by(|a, b| b.cmp(a));
            for round in 0..2 {
                let mut req = SearchRequest::new(q, 50);
                req.since = since;
                req.until = until;
                let (total, got) = all_hits(&ix, req);
                assert_eq!(
                    total as usize,
                    want.len(),
                    "total for {q:?} {since:?}..{until:?} round {round}"
                );
                assert_eq!(got, want, "hits for {q:?} {since:?}..{until:?} round {round}");
            }
        }
    }
}

#[test]
fn counts_made_by_one_process_serve_another() {
    // Two server workers search the same index: what one counted, the other takes from
    // the shared files instead of counting again, and the pages are the same.
    let mut g = Lcg(5);
    let values: Vec<Vec<u8>> = (0..6_000u64)
        .map(|i| {
            let text: String = (0..2 + g.below(6)).map(|_| ALPHABET[g.below(5)]).collect();
            record(
                i + 1,
                1_700_000_000_000 + i as i64,
                "zhangsan",
                &["wmCust1"],
                "",
                "text",
                &text,
            )
        })
        .collect();
    let (dir, a) = build(&values, 3);
    let b = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    b.reload().unwrap();
    if let Some(sh) = &b.counts.shared {
        sh.lock().unwrap().me = "second".into();
    }
    let files = |tag: &str| -> u64 {
        std::fs::read_dir(dir.path().join("counts"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(tag))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let q: String = ALPHABET[..3].iter().collect();
    let first = a.search(&SearchRequest::new(&q, 20)).unwrap();
    let mine = std::process::id().to_string();
    assert!(files(&format!("{mine}-")) > 0, "the first process published its counts");
    let second = b.search(&SearchRequest::new(&q, 20)).unwrap();
    assert_eq!((second.total, &second.hits), (first.total, &first.hits));
    assert_eq!(files("second-"), 0, "the second process counted nothing itself");
    // a request the first never made is counted (and published) by the second
    let other = b
        .search(&SearchRequest::new(&ALPHABET[2..5].iter().collect::<String>(), 20))
        .unwrap();
    assert!(other.total > 0 && files("second-") > 0);
    // files of processes that are gone are removed when an index is opened
    drop(b);
    std::fs::write(
        dir.path()
            .join("counts")
            .join(format!("999999999-{}.bin", fingerprint())),
        [0u8; 40],
    )
    .unwrap();
    let _c = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    assert_eq!(files("999999999-"), 0);
    assert_eq!(files("second-"), 0, "no process `second`: stale");
}

#[test]
fn count_files_of_dead_processes_go_those_of_live_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    let counts = dir.path().join("counts");
    let stale = counts.join(format!("999999-{}.bin", fingerprint()));
    std::fs::write(&stale, [0u8; 40]).unwrap();
    let live = counts.join(format!("999998-{}.bin", fingerprint()));
    let held = std::fs::File::create(&live).unwrap();
    held.try_lock().unwrap(); // what a live process does with its own file
    let other_build = counts.join("999997-0000000000000000.bin");
    std::fs::write(&other_build, [0u8; 40]).unwrap();
    let _second = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    assert!(!stale.exists() && !other_build.exists());
    assert!(live.exists());
    drop(held);
    let _third = ArchiveIndex::open(dir.path(), test_key()).unwrap();
    assert!(!live.exists());
}

#[test]
fn an_index_of_the_earlier_schema_opens_and_finds_what_a_new_one_does() {
    let (rows, values) = corpus(200, 11);
    // an index made before `seq` lost its terms: its schema as that version wrote it
    let earlier = tempfile::tempdir().unwrap();
    Index::create_in_dir(earlier.path(), earlier_schema()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    for dir in [&earlier, &fresh] {
        let ix = ArchiveIndex::open(dir.path(), test_key()).unwrap();
        ix.open_writer(1, 32 << 20).unwrap();
        ix.add_stored(&values[..120]).unwrap();
        ix.commit(120).unwrap();
        ix.add_stored(&values[120..]).unwrap();
        ix.commit(200).unwrap();
    }
    let (a, b) = (
        ArchiveIndex::open(earlier.path(), test_key()).unwrap(),
        ArchiveIndex::open(fresh.path(), test_key()).unwrap(),
    );
    let indexed = |ix: &ArchiveIndex| ix.index.schema().get_field_entry(ix.fields.seq).is_indexed();
    assert!(indexed(&a), "the earlier index keeps its schema");
    assert!(!indexed(&b), "a new index has no seq terms");
    let mut g = Lcg(5);
    for _ in 0..60 {
        let r: Vec<char> = rows[g.below(rows.len())].2.chars().collect();
        let len = 1 + g.below(3);
        if r.len() < len {
            continue;
        }
        let at = g.below(r.len() - len + 1);
        let q = format!(
            "\"{}\"",
            r[at..at + len].iter().collect::<String>().replace('"', "\\\"")
        );
        let want = brute_hits(&rows, &q);
        for ix in [&a, &b] {
            let (total, got) = all_hits(ix, SearchRequest::new(&q, 9));
            assert_eq!((total as usize, &got), (want.len(), &want), "{q:?}");
        }
    }
    // an index of any other schema is refused, naming the remedy
    let other = tempfile::tempdir().unwrap();
    let mut sb = Schema::builder();
    sb.add_u64_field("seq", FAST);
    Index::create_in_dir(other.path(), sb.build()).unwrap();
    match ArchiveIndex::open(other.path(), test_key()) {
        Ok(_) => panic!("an index of another schema opened"),
        Err(e) => assert!(e.to_string().contains("scrm reindex"), "{e}"),
    }
}
