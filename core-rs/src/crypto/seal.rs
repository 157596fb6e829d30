//! The sealing side of the open scheme, for the simulator and tests: key generation and
//! encryption of whole GetChatData responses. Public-key RSA is ~15× cheaper than the
//! private side, so the simulator spends little time here.

use openssl::pkey::{PKey, Public};
use openssl::rand::rand_bytes;
use openssl::rsa::{Padding, Rsa};

use super::open::{open_encrypt, KEY_LEN};
use crate::error::{Error, Result};

/// A new RSA private key as PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1.
pub fn generate_key_pem(bits: u32, pkcs8: bool) -> Result<Vec<u8>> {
    let rsa = Rsa::generate(bits).map_err(|e| Error::Crypto(e.to_string()))?;
    if pkcs8 {
        let pkey = PKey::from_rsa(rsa).map_err(|e| Error::Crypto(e.to_string()))?;
        pkey.private_key_to_pem_pkcs8()
            .map_err(|e| Error::Crypto(e.to_string()))
    } else {
        rsa.private_key_to_pem().map_err(|e| Error::Crypto(e.to_string()))
    }
}

/// The public half (SubjectPublicKeyInfo PEM) of a private PEM.
pub fn public_pem_of(private_pem: &[u8]) -> Result<Vec<u8>> {
    let pkey = PKey::private_key_from_pem(private_pem).map_err(|e| Error::Crypto(e.to_string()))?;
    pkey.public_key_to_pem().map_err(|e| Error::Crypto(e.to_string()))
}

/// Encrypts messages for one public key.
pub struct Sealer {
    rsa: Rsa<Public>,
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl Sealer {
    pub fn new(public_pem: &[u8]) -> Result<Sealer> {
        let rsa = Rsa::public_key_from_pem(public_pem)
            .or_else(|_| Rsa::public_key_from_pem_pkcs1(public_pem))
            .map_err(|e| Error::Crypto(format!("public key: {e}")))?;
        Ok(Sealer { rsa })
    }

    pub fn rsa_encrypt(&self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.rsa.size() as usize];
        let n = self
            .rsa
            .public_encrypt(data, &mut out, Padding::PKCS1)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        out.truncate(n);
        Ok(out)
    }

    /// A fresh 32-character alphanumeric random key (spec §3).
    pub fn random_key() -> Result<[u8; KEY_LEN]> {
        let mut raw = [0u8; KEY_LEN];
        rand_bytes(&mut raw).map_err(|e| Error::Crypto(e.to_string()))?;
        let mut key = [0u8; KEY_LEN];
        for (k, r) in key.iter_mut().zip(raw) {
            // 62 symbols; the slight modulo bias is irrelevant for a simulator key.
            *k = ALNUM[(r as usize) % ALNUM.len()];
        }
        Ok(key)
    }

    /// (RSA ciphertext of a fresh random key, AES ciphertext of `plaintext`).
    pub fn seal(&self, plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        let key = Self::random_key()?;
        let ek = self.rsa_encrypt(&key)?;
        let em = open_encrypt(&key, plaintext).map_err(Error::Crypto)?;
        Ok((ek, em))
    }
}

/// One message to seal: (seq, msgid, publickey_ver, plaintext JSON).
pub type PlainItem = (u64, String, u32, Vec<u8>);

/// Seals `items` (in parallel) into one GetChatData response document, the way WeCom
/// hands it out. `sealers` maps publickey_ver to its public key.
pub fn seal_response(sealers: &std::collections::BTreeMap<u32, Sealer>, items: &[PlainItem]) -> Result<Vec<u8>> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use rayon::prelude::*;
    let parts: Vec<String> = items
        .par_iter()
        .map(|(seq, msgid, ver, plain)| {
            let sealer = sealers.get(ver).ok_or_else(|| Error::Crypto(format!("seq {seq}: no public key for version {ver}")))?;
            let (ek, em) = sealer.seal(plain)?;
            let msgid_json = serde_json::to_string(msgid).map_err(|e| Error::Crypto(e.to_string()))?;
            Ok(format!(
                r#"{{"seq":{seq},"msgid":{msgid_json},"publickey_ver":{ver},"encrypt_random_key":"{}","encrypt_chat_msg":"{}"}}"#,
                STANDARD.encode(ek),
                STANDARD.encode(em)
            ))
        })
        .collect::<Result<_>>()?;
    let mut doc = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 48);
    doc.push_str(r#"{"errcode":0,"errmsg":"ok","chatdata":["#);
    doc.push_str(&parts.join(","));
    doc.push_str("]}");
    Ok(doc.into_bytes())
}
