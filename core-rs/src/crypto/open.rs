//! The open message scheme (spec §3): AES-256-CBC with key = the 32 random-key bytes,
//! IV = its first 16 bytes, PKCS#7 padding.
//!
//! Decryption (every archived message, on all cores) uses the `aes` crate (AES-NI detected
//! at run time) with `cbc`: one key schedule a message and nothing else. OpenSSL 3.0's EVP
//! spent ~8 µs a message here on setting a context up (each init queries the provider's
//! key and IV lengths through `OSSL_PARAM` lookups), ~20× the AES itself. Encryption (the
//! simulator's, and the tests' oracle) stays OpenSSL's: the two implementations check each
//! other.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use openssl::symm::{encrypt, Cipher};

use crate::error::{ItemError, Reason};

pub const KEY_LEN: usize = 32;

pub fn open_decrypt(random_key: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, ItemError> {
    if random_key.len() != KEY_LEN {
        return Err(ItemError::new(
            Reason::AesFailed,
            format!(
                "random key is {} bytes, the open scheme needs {KEY_LEN}",
                random_key.len()
            ),
        ));
    }
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(16) {
        return Err(ItemError::new(
            Reason::BadBase64Msg,
            format!(
                "encrypt_chat_msg is {} bytes, not a whole number of AES blocks",
                ciphertext.len()
            ),
        ));
    }
    cbc_decrypt(random_key, ciphertext).map_err(|_| {
        ItemError::new(
            Reason::AesFailed,
            "AES-256-CBC: bad padding (wrong key or corrupted ciphertext)",
        )
    })
}

fn cbc_decrypt(key: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, ()> {
    let dec = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, &key[..16]).map_err(|_| ())?;
    let mut out = ciphertext.to_vec();
    let n = dec.decrypt_padded_mut::<Pkcs7>(&mut out).map_err(|_| ())?.len();
    out.truncate(n);
    Ok(out)
}

pub fn open_encrypt(random_key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, String> {
    if random_key.len() != KEY_LEN {
        return Err(format!("random key must be {KEY_LEN} bytes"));
    }
    encrypt(Cipher::aes_256_cbc(), random_key, Some(&random_key[..16]), plaintext).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_failures() {
        let key = b"abcdefghijklmnopqrstuvwxyz012345";
        let msg = "{\"msgid\":\"1\",\"content\":\"你好 world\"}".as_bytes();
        let ct = open_encrypt(key, msg).unwrap();
        assert_eq!(ct.len() % 16, 0);
        assert_eq!(open_decrypt(key, &ct).unwrap(), msg);
        let wrong = b"Abcdefghijklmnopqrstuvwxyz012345";
        // A wrong key almost always breaks the padding; when it does not, the JSON
        // layer catches it. Either way no panic.
        let _ = open_decrypt(wrong, &ct);
        assert_eq!(
            open_decrypt(key, &ct[..ct.len() - 1]).unwrap_err().reason,
            Reason::BadBase64Msg
        );
        assert_eq!(open_decrypt(&key[..16], &ct).unwrap_err().reason, Reason::AesFailed);
        let mut flipped = ct.clone();
        let n = flipped.len();
        flipped[n - 1] ^= 0x5a;
        assert!(open_decrypt(key, &flipped).is_err());
    }

    /// OpenSSL encrypts, the `aes`/`cbc` decryption must give the plaintext back, for every
    /// length around the block boundaries (each padding length 1..=16) and random keys;
    /// and every padding OpenSSL would refuse is refused.
    #[test]
    fn decryption_agrees_with_openssl_for_every_padding_length() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in 0..80usize {
            let key: Vec<u8> = (0..KEY_LEN).map(|_| next() as u8).collect();
            let msg: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let ct = open_encrypt(&key, &msg).unwrap();
            assert_eq!(open_decrypt(&key, &ct).unwrap(), msg, "length {len}");
            // the last block decrypted with OpenSSL and no padding check: re-pad it wrongly
            let plain_padded = openssl::symm::Crypter::new(
                Cipher::aes_256_cbc(),
                openssl::symm::Mode::Decrypt,
                &key,
                Some(&key[..16]),
            )
            .map(|mut c| {
                c.pad(false);
                let mut out = vec![0u8; ct.len() + 16];
                let n = c.update(&ct, &mut out).unwrap();
                let m = c.finalize(&mut out[n..]).unwrap();
                out.truncate(n + m);
                out
            })
            .unwrap();
            let pad = *plain_padded.last().unwrap() as usize;
            assert_eq!(pad, 16 - len % 16);
            for bad in [0u8, 17, 255] {
                let mut p = plain_padded.clone();
                let last = p.len() - 1;
                p[last] = bad;
                let ct2 = raw_cbc_encrypt(&key, &p);
                assert_eq!(open_decrypt(&key, &ct2).unwrap_err().reason, Reason::AesFailed);
            }
            if pad > 1 {
                // one padding byte of the run differs from the count
                let mut p = plain_padded.clone();
                let at = p.len() - pad;
                p[at] ^= 1;
                let ct2 = raw_cbc_encrypt(&key, &p);
                assert_eq!(open_decrypt(&key, &ct2).unwrap_err().reason, Reason::AesFailed);
            }
        }
    }

    fn raw_cbc_encrypt(key: &[u8], padded: &[u8]) -> Vec<u8> {
        let mut c = openssl::symm::Crypter::new(
            Cipher::aes_256_cbc(),
            openssl::symm::Mode::Encrypt,
            key,
            Some(&key[..16]),
        )
        .unwrap();
        c.pad(false);
        let mut out = vec![0u8; padded.len() + 16];
        let n = c.update(padded, &mut out).unwrap();
        let m = c.finalize(&mut out[n..]).unwrap();
        out.truncate(n + m);
        out
    }
}
