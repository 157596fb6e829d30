//! Cost of keyed index tokens: `cargo run --release --example token_profile`.
use std::time::Instant;

use scrm_core::crypto::TokenKey;

fn main() {
    let key = TokenKey::new(&[9u8; 32]).expect("profile set-up");
    let text: Vec<char> =
        "您好，我是您的专属客户经理，这款理财产品保本保息，年化收益稳定在百分之五左右，可以加我微信详细聊"
            .chars()
            .collect();
    let mut s = String::new();
    let n = 2_000_000;
    let t = Instant::now();
    for i in 0..n {
        let a = text[i % (text.len() - 1)];
        let b = text[(i + 1) % (text.len() - 1)];
        let mut buf = [0u8; 8];
        let l = a.encode_utf8(&mut buf).len();
        let m = b.encode_utf8(&mut buf[l..]).len();
        s.clear();
        key.token_into(b'b', &buf[..l + m], &mut s);
    }
    println!("{:.1} ns per bigram token", t.elapsed().as_secs_f64() / n as f64 * 1e9);
}
