//! Profiles the sensitive-word matcher alone (no Python): `cargo run --release --example
//! match_profile -- CORPUS.txt WORDS.txt`, one text a line, one `word,related…` a line.
use scrm_core::matcher::{AppliesTo, Entry, WordList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let corpus = std::fs::read_to_string(&args[1]).expect("corpus");
    let words = std::fs::read_to_string(&args[2]).expect("words");
    let texts: Vec<&str> = corpus.lines().collect();
    let entries: Vec<Entry> = words
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut ws = l.split(',').map(str::to_string);
            Entry {
                id: i as u32 + 1,
                word: ws.next().unwrap_or_default(),
                related: ws.collect(),
                category: String::new(),
                severity: 1,
                applies_to: AppliesTo::Employee,
            }
        })
        .collect();
    let wl = WordList::new(entries, &[]).expect("list");
    let mb = corpus.len() as f64 / 1e6;
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    for _ in 0..rounds {
        let t = std::time::Instant::now();
        let hits: usize = texts.iter().map(|t| wl.find(t, false).len()).sum();
        let el = t.elapsed().as_secs_f64();
        println!("{hits} hits, {:.1} MB/s", mb / el);
    }
}
