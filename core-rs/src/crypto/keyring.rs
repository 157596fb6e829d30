//! `KeyRing`: the enterprise's RSA private keys, one per `publickey_ver`.
//!
//! Cost: one RSA-2048 private-key operation per message (~230 µs on one core here), which
//! dominates ingest. OpenSSL's RSA objects share blinding state behind a lock when used
//! from several threads, so the ring keeps one parsed copy of every key per worker thread
//! (`slots`); a thread always uses its own copy and never contends.

use std::collections::BTreeMap;
use std::path::Path;

use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};

use crate::error::{Error, ItemError, Reason, Result};

pub struct KeyRing {
    /// DER (PKCS#1) of every key, by version: the source the per-thread copies come from.
    der: BTreeMap<u32, Vec<u8>>,
    /// `slots[i]` is the key set of rayon worker `i`; the last slot serves other threads.
    slots: Vec<BTreeMap<u32, Rsa<Private>>>,
}

impl KeyRing {
    /// Reads every `<publickey_ver>.pem` in `dir` (PKCS#1 or PKCS#8).
    pub fn load_dir(dir: &Path) -> Result<KeyRing> {
        let entries = std::fs::read_dir(dir).map_err(|source| Error::KeyDirIo {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut pems = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| Error::KeyDirIo {
                path: dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let ver: u32 = stem.parse().map_err(|_| Error::KeyParse {
                path: path.clone(),
                detail: "name must be <publickey_ver>.pem with a numeric version".into(),
            })?;
            let pem = std::fs::read(&path).map_err(|source| Error::KeyDirIo {
                path: path.clone(),
                source,
            })?;
            pems.insert(ver, (path, pem));
        }
        if pems.is_empty() {
            return Err(Error::NoKeys(dir.to_path_buf()));
        }
        let mut der = BTreeMap::new();
        for (ver, (path, pem)) in pems {
            let key = parse_private_pem(&pem).map_err(|detail| Error::KeyParse {
                path: path.clone(),
                detail,
            })?;
            der.insert(ver, key);
        }
        Self::from_der(der)
    }

    /// Builds a ring from PEM texts by version.
    pub fn from_pems(pems: BTreeMap<u32, Vec<u8>>) -> Result<KeyRing> {
        let mut der = BTreeMap::new();
        for (ver, pem) in pems {
            let key = parse_private_pem(&pem).map_err(|detail| Error::KeyVersion { ver, detail })?;
            der.insert(ver, key);
        }
        Self::from_der(der)
    }

    fn from_der(der: BTreeMap<u32, Vec<u8>>) -> Result<KeyRing> {
        let n_slots = rayon::current_num_threads() + 1;
        let mut slots = Vec::with_capacity(n_slots);
        for _ in 0..n_slots {
            let mut set = BTreeMap::new();
            for (ver, d) in &der {
                let rsa = Rsa::private_key_from_der(d).map_err(|e| Error::KeyVersion {
                    ver: *ver,
                    detail: e.to_string(),
                })?;
                set.insert(*ver, rsa);
            }
            slots.push(set);
        }
        Ok(KeyRing { der, slots })
    }

    pub fn versions(&self) -> Vec<u32> {
        self.der.keys().copied().collect()
    }

    pub fn has_version(&self, ver: u32) -> bool {
        self.der.contains_key(&ver)
    }

    /// The PKCS#1 DER of a key (for making independent copies, e.g. in benchmarks).
    pub fn key_der(&self, ver: u32) -> Option<&[u8]> {
        self.der.get(&ver).map(|v| v.as_slice())
    }

    fn slot(&self) -> &BTreeMap<u32, Rsa<Private>> {
        let i = rayon::current_thread_index().unwrap_or(self.slots.len() - 1);
        &self.slots[i.min(self.slots.len() - 1)]
    }

    /// RSA PKCS#1 v1.5 private decryption of one message's random key.
    pub fn decrypt_key(&self, ver: u32, ciphertext: &[u8]) -> Result<Vec<u8>, ItemError> {
        let rsa = self.slot().get(&ver).ok_or_else(|| {
            ItemError::new(
                Reason::UnknownKeyVersion,
                format!("publickey_ver {ver} has no key; known: {}", self.known_list()),
            )
        })?;
        rsa_decrypt(rsa, ciphertext)
    }

    fn known_list(&self) -> String {
        let v: Vec<String> = self.der.keys().map(|k| k.to_string()).collect();
        v.join(", ")
    }
}

/// One PKCS#1 v1.5 private decryption with a given key object.
pub fn rsa_decrypt(rsa: &Rsa<Private>, ciphertext: &[u8]) -> Result<Vec<u8>, ItemError> {
    let size = rsa.size() as usize;
    if ciphertext.len() != size {
        return Err(ItemError::new(
            Reason::RsaFailed,
            format!("encrypt_random_key is {} bytes, key needs {size}", ciphertext.len()),
        ));
    }
    let mut out = vec![0u8; size];
    let n = rsa
        .private_decrypt(ciphertext, &mut out, Padding::PKCS1)
        .map_err(|_| ItemError::new(Reason::RsaFailed, "RSA PKCS#1 v1.5 decryption failed"))?;
    out.truncate(n);
    Ok(out)
}

/// PKCS#1 or PKCS#8 PEM → PKCS#1 DER of an RSA private key.
fn parse_private_pem(pem: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let pkey: PKey<Private> =
        PKey::private_key_from_pem(pem).map_err(|_| "not a PEM private key (PKCS#1 or PKCS#8)".to_string())?;
    let rsa = pkey.rsa().map_err(|_| "not an RSA key".to_string())?;
    rsa.check_key().map_err(|e| format!("inconsistent RSA key: {e}"))?;
    rsa.private_key_to_der().map_err(|e| e.to_string())
}

/// Measures the machine's RSA bound: PKCS#1 v1.5 private decryptions per second with
/// `threads` OS threads, each with its own copy of the key (no shared state), cycling
/// through `ciphertexts` for at least `seconds`. Returns (operations, elapsed seconds).
pub fn measure_rsa_rate(der: &[u8], ciphertexts: &[Vec<u8>], threads: usize, seconds: f64) -> Result<(u64, f64)> {
    if ciphertexts.is_empty() {
        return Err(Error::Crypto("no ciphertexts to measure with".into()));
    }
    let keys: Vec<Rsa<Private>> = (0..threads.max(1))
        .map(|_| Rsa::private_key_from_der(der).map_err(|e| Error::Crypto(e.to_string())))
        .collect::<Result<_>>()?;
    let start = std::time::Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(t, rsa)| {
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut i = t;
                    while start.elapsed().as_secs_f64() < seconds {
                        for _ in 0..16 {
                            let _ = rsa_decrypt(rsa, &ciphertexts[i % ciphertexts.len()]);
                            i += 1;
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    Ok((total, start.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::seal::{generate_key_pem, public_pem_of, Sealer};

    #[test]
    fn pkcs1_and_pkcs8_load_and_decrypt() {
        let pem8 = generate_key_pem(2048, true).unwrap();
        let pem1 = generate_key_pem(2048, false).unwrap();
        assert!(String::from_utf8_lossy(&pem8).contains("BEGIN PRIVATE KEY"));
        assert!(String::from_utf8_lossy(&pem1).contains("BEGIN RSA PRIVATE KEY"));
        let ring = KeyRing::from_pems(BTreeMap::from([(1, pem1.clone()), (2, pem8.clone())])).unwrap();
        assert_eq!(ring.versions(), vec![1, 2]);
        for (ver, pem) in [(1u32, &pem1), (2u32, &pem8)] {
            let sealer = Sealer::new(&public_pem_of(pem).unwrap()).unwrap();
            let ct = sealer.rsa_encrypt(b"0123456789abcdefghijABCDEFGHIJkl").unwrap();
            assert_eq!(ring.decrypt_key(ver, &ct).unwrap(), b"0123456789abcdefghijABCDEFGHIJkl");
        }
        let err = ring.decrypt_key(9, &[0u8; 256]).unwrap_err();
        assert_eq!(err.reason, Reason::UnknownKeyVersion);
        assert!(err.detail.contains("known: 1, 2"), "{}", err.detail);
        // A key of the wrong version fails the RSA layer instead of producing garbage.
        let sealer = Sealer::new(&public_pem_of(&pem1).unwrap()).unwrap();
        let ct = sealer.rsa_encrypt(b"k").unwrap();
        assert_eq!(ring.decrypt_key(2, &ct).unwrap_err().reason, Reason::RsaFailed);
        assert_eq!(ring.decrypt_key(1, &ct[..100]).unwrap_err().reason, Reason::RsaFailed);
    }

    #[test]
    fn load_dir_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(KeyRing::load_dir(dir.path()), Err(Error::NoKeys(_))));
        std::fs::write(dir.path().join("3.pem"), b"garbage").unwrap();
        let e = KeyRing::load_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("3.pem") && e.contains("not a PEM"), "{e}");
        std::fs::write(dir.path().join("3.pem"), generate_key_pem(2048, true).unwrap()).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        assert_eq!(KeyRing::load_dir(dir.path()).unwrap().versions(), vec![3]);
        std::fs::write(dir.path().join("new.pem"), b"x").unwrap();
        let e = KeyRing::load_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("new.pem"), "{e}");
        assert!(KeyRing::load_dir(&dir.path().join("missing")).is_err());
    }
}
