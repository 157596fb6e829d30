//! WeCom callback crypto (spec `wecom-api.md` §2): the EncodingAESKey is 43 characters,
//! AES key = base64(key + "="), 32 bytes; AES-256-CBC with IV = the key's first 16 bytes;
//! PKCS#7 padding to a multiple of 32 (pad byte 1…32, checked); plaintext = random(16) ‖
//! msg_len (4 bytes, big-endian) ‖ msg ‖ receiveid (checked against the expected one).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::Engine;
use openssl::symm::{Cipher, Crypter, Mode};

const BLOCK: usize = 32;

/// Why a callback body was refused (each a clear reason, never a panic).
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackError {
    Key,
    Base64,
    Length,
    Padding,
    Frame,
    ReceiveId,
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CallbackError::Key => "the EncodingAESKey is not 43 base64 characters",
            CallbackError::Base64 => "the encrypted text is not base64",
            CallbackError::Length => "the encrypted text is not a whole number of AES blocks",
            CallbackError::Padding => "bad padding (a wrong EncodingAESKey?)",
            CallbackError::Frame => "the decrypted message is not framed as WeCom frames it",
            CallbackError::ReceiveId => "the message is for another corp (receiveid differs)",
        })
    }
}

fn aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CallbackError> {
    if encoding_aes_key.len() != 43 {
        return Err(CallbackError::Key);
    }
    // WeCom's keys end in a symbol whose last bits are not zero: allow them
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let raw = LENIENT
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CallbackError::Key)?;
    raw.try_into().map_err(|_| CallbackError::Key)
}

fn crypt(mode: Mode, key: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, CallbackError> {
    let mut c = Crypter::new(Cipher::aes_256_cbc(), mode, key, Some(&key[..16])).map_err(|_| CallbackError::Key)?;
    c.pad(false);
    let mut out = vec![0u8; data.len() + 32];
    let n = c.update(data, &mut out).map_err(|_| CallbackError::Length)?;
    let m = c.finalize(&mut out[n..]).map_err(|_| CallbackError::Length)?;
    out.truncate(n + m);
    Ok(out)
}

/// The message inside a callback's `Encrypt` (or the URL check's `echostr`).
pub fn decrypt(encoding_aes_key: &str, encrypted_b64: &str, receive_id: &str) -> Result<Vec<u8>, CallbackError> {
    let key = aes_key(encoding_aes_key)?;
    let data = STANDARD
        .decode(encrypted_b64.trim())
        .map_err(|_| CallbackError::Base64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(CallbackError::Length);
    }
    let plain = crypt(Mode::Decrypt, &key, &data)?;
    let pad = *plain.last().ok_or(CallbackError::Padding)? as usize;
    if pad == 0 || pad > BLOCK || pad > plain.len() || plain[plain.len() - pad..].iter().any(|&b| b as usize != pad) {
        return Err(CallbackError::Padding);
    }
    let body = &plain[..plain.len() - pad];
    if body.len() < 20 {
        return Err(CallbackError::Frame);
    }
    let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
    if 20 + len > body.len() {
        return Err(CallbackError::Frame);
    }
    let (msg, rid) = (&body[20..20 + len], &body[20 + len..]);
    if rid != receive_id.as_bytes() {
        return Err(CallbackError::ReceiveId);
    }
    Ok(msg.to_vec())
}

/// A message framed and encrypted as WeCom does (the fake WeCom's events and replies).
pub fn encrypt(
    encoding_aes_key: &str,
    msg: &[u8],
    receive_id: &str,
    random16: &[u8; 16],
) -> Result<String, CallbackError> {
    let key = aes_key(encoding_aes_key)?;
    let mut plain = Vec::with_capacity(msg.len() + receive_id.len() + 52);
    plain.extend_from_slice(random16);
    plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    plain.extend_from_slice(msg);
    plain.extend_from_slice(receive_id.as_bytes());
    let pad = BLOCK - plain.len() % BLOCK;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    Ok(STANDARD.encode(crypt(Mode::Encrypt, &key, &plain)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const CORP: &str = "wx5823bf96d3bd56c7";

    #[test]
    fn the_official_url_check_vector() {
        let echo = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";
        assert_eq!(decrypt(KEY, echo, CORP).unwrap(), b"1616140317555161061");
    }

    #[test]
    fn round_trip_and_refusals() {
        let enc = encrypt(KEY, b"<xml>hello</xml>", CORP, &[7u8; 16]).unwrap();
        assert_eq!(decrypt(KEY, &enc, CORP).unwrap(), b"<xml>hello</xml>");
        assert_eq!(decrypt(KEY, &enc, "wwother"), Err(CallbackError::ReceiveId));
        let other = "kWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
        assert!(decrypt(other, &enc, CORP).is_err());
        assert_eq!(decrypt("short", &enc, CORP), Err(CallbackError::Key));
        assert_eq!(decrypt(KEY, "***", CORP), Err(CallbackError::Base64));
        assert_eq!(decrypt(KEY, "AAAA", CORP), Err(CallbackError::Length));
    }
}
