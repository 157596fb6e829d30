//! Stored records → JSONL: each line is the decrypted message JSON with `seq` added as its
//! first key. Cost: a msgpack decode and a copy per record; no JSON re-serialisation.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct SeqAndRaw {
    seq: u64,
    #[serde(with = "serde_bytes")]
    raw: Vec<u8>,
}

/// Appends one line for a stored record to `out`.
pub fn record_line(record_msgpack: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let r: SeqAndRaw = rmp_serde::from_slice(record_msgpack).map_err(|e| Error::Record(e.to_string()))?;
    with_seq(r.seq, &r.raw, out);
    Ok(())
}

/// `{"seq":N,` + the object's members, or `{"seq":N}` for an empty object.
pub fn with_seq(seq: u64, raw: &[u8], out: &mut Vec<u8>) {
    let body = raw.trim_ascii();
    let inner = body.strip_prefix(b"{").unwrap_or(body).trim_ascii_start();
    out.extend_from_slice(format!("{{\"seq\":{seq}").as_bytes());
    if inner != b"}" {
        out.push(b',');
    }
    out.extend_from_slice(inner);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_first() {
        let mut out = Vec::new();
        with_seq(5, br#"{"msgid":"a"}"#, &mut out);
        with_seq(6, b" {} ", &mut out);
        assert_eq!(out, b"{\"seq\":5,\"msgid\":\"a\"}\n{\"seq\":6}\n");
    }
}
