//! Cost of opening sealed values (1.5 KB, like a stored record): `cargo run --release --example vault_profile`.
use std::time::Instant;

use scrm_core::crypto::Vault;

fn main() {
    let v = Vault::new([(1, vec![7u8; 32])], 1).expect("profile set-up");
    let plain = vec![b'x'; 1500];
    let sealed: Vec<Vec<u8>> = (0..20_000u32)
        .map(|i| v.seal(b"records", &i.to_be_bytes(), &plain).expect("profile set-up"))
        .collect();
    for _ in 0..3 {
        let t = Instant::now();
        for (i, s) in sealed.iter().enumerate() {
            v.open(b"records", &(i as u32).to_be_bytes(), s)
                .expect("profile set-up");
        }
        let open = t.elapsed().as_secs_f64() / sealed.len() as f64 * 1e6;
        let t = Instant::now();
        for i in 0..sealed.len() {
            v.seal(b"records", &(i as u32).to_be_bytes(), &plain)
                .expect("profile set-up");
        }
        let seal = t.elapsed().as_secs_f64() / sealed.len() as f64 * 1e6;
        println!("open {open:.2} µs, seal {seal:.2} µs per 1.5 KB value");
    }
}
