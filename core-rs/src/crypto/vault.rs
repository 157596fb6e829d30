//! Encryption at rest (rule V-5, DESIGN principle 4): the data keys of one data directory
//! and the AEAD that seals every stored value holding customer content.
//!
//! - **Sealed value**: `0xC1 | key id (u32 BE) | nonce (12) | AES-256-GCM ciphertext | tag
//!   (16)`. `0xC1` is the one byte msgpack never uses, so a sealed value can never be taken
//!   for a plaintext record of the earlier format (and the reverse). The associated data
//!   binds a value to its table and key, so a value moved to another record does not open.
//! - **Keys**: data keys are 32 random bytes with a numeric id; new values are sealed with
//!   the current one, every listed one opens. They are stored only wrapped by the master key
//!   ([`wrap_key`]): the same AEAD with the master key, bound to the key id.
//! - **Keyed tokens** ([`TokenKey`]): the search index stores a keyed MAC (SipHash-2-4,
//!   128-bit, cut to 96) of each term instead of its text; equal terms stay equal, their
//!   content does not show.
//!
//! Cost: one AES-GCM pass (the `aes-gcm` crate: AES-NI and carry-less multiplication
//! detected at run time) and nothing else per value; 33 bytes more per value. (OpenSSL
//! 3.0's EVP cost ~2 µs of `OSSL_PARAM` look-ups per value before any AES; its GCM is
//! kept as the tests' oracle.)

use std::cell::RefCell;
use std::collections::HashMap;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use blake2::digest::consts::U16;
use blake2::digest::Mac;
use blake2::Blake2bMac;
use openssl::rand::rand_bytes;
use siphasher::sip128::{Hasher128, SipHasher24};

use crate::error::{Error, Result};

/// First byte of every sealed value (never used by msgpack).
pub const SEALED: u8 = 0xC1;
/// Bytes a sealed value adds to its plaintext.
pub const OVERHEAD: usize = 1 + 4 + NONCE + TAG;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Length of a data key, a master key and a token key's source.
pub const KEY_LEN: usize = 32;

fn crypto(e: impl std::fmt::Display) -> Error {
    Error::Crypto(e.to_string())
}

/// `len` random bytes from OpenSSL's DRBG.
pub fn random_bytes(len: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    rand_bytes(&mut out).map_err(crypto)?;
    Ok(out)
}

/// A thread's keyed AEAD and the key it holds.
type KeyedAead = RefCell<Option<([u8; KEY_LEN], Box<Aes256Gcm>)>>;

thread_local! {
    // The AES key schedule and the GHASH key of the last key used, one for each direction:
    // re-keying per value cost half of a 1.5 KB value's open (a new nonce does not need it),
    // and a re-encryption (`scrm keys rotate`, `rewrap`) opens under one key and seals under
    // another, value after value.
    //
    // The `Box` is required: an inline `Aes256Gcm` (~1 KB of round keys and GHASH tables)
    // in a `const` thread-local lives in glibc's static TLS surplus, which a dlopen'd
    // extension shares with every other library, and the module then fails to load with
    // "cannot allocate memory in static TLS block".
    static SEAL_AEAD: KeyedAead = const { RefCell::new(None) };
    static OPEN_AEAD: KeyedAead = const { RefCell::new(None) };
}

/// Runs `f` with this thread's AEAD in `slot` for `key` (keyed again when the key differs
/// from the one it holds).
fn with_aead<T>(
    slot: &'static std::thread::LocalKey<KeyedAead>,
    key: &[u8; KEY_LEN],
    f: impl FnOnce(&Aes256Gcm) -> T,
) -> T {
    slot.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(k, _)| k != key) {
            *c = Some((*key, Box::new(Aes256Gcm::new(key.into()))));
        }
        let (_, aead) = c.as_ref().expect("set just above");
        f(aead)
    })
}

/// A thread's nonce source: a random fixed field and a counter starting at a random value,
/// drawn again in a new process (a forked child never continues its parent's sequence).
struct NonceSeq {
    pid: u32,
    fixed: [u8; 4],
    next: u64,
}

thread_local! {
    static NONCES: RefCell<Option<NonceSeq>> = const { RefCell::new(None) };
}

/// A fresh 96-bit GCM nonce: NIST SP 800-38D's deterministic construction (§8.2.1), a
/// 32-bit fixed field random per thread and process, then a 64-bit invocation counter
/// (from a random start). Within a thread nonces never repeat; two threads or processes
/// collide only if both 96-bit draws put their sequences over each other (far less likely
/// than the 2^-32 bound of one random nonce per value). OpenSSL's DRBG is asked once per
/// thread instead of once per value (about 0.6 µs each).
fn next_nonce() -> Result<[u8; NONCE]> {
    NONCES.with(|slot| {
        let mut slot = slot.borrow_mut();
        let pid = std::process::id();
        if slot.as_ref().is_none_or(|s| s.pid != pid) {
            let mut seed = [0u8; 12];
            rand_bytes(&mut seed).map_err(crypto)?;
            let mut fixed = [0u8; 4];
            fixed.copy_from_slice(&seed[..4]);
            let mut start = [0u8; 8];
            start.copy_from_slice(&seed[4..]);
            *slot = Some(NonceSeq {
                pid,
                fixed,
                next: u64::from_be_bytes(start),
            });
        }
        let s = slot.as_mut().expect("set just above");
        let mut nonce = [0u8; NONCE];
        nonce[..4].copy_from_slice(&s.fixed);
        nonce[4..].copy_from_slice(&s.next.to_be_bytes());
        s.next = s.next.wrapping_add(1);
        Ok(nonce)
    })
}

fn seal_with(key: &[u8; KEY_LEN], id: u32, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
    let nonce = next_nonce()?;
    let mut out = Vec::with_capacity(OVERHEAD + plain.len());
    out.push(SEALED);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = with_aead(&SEAL_AEAD, key, |a| {
        a.encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[5 + NONCE..])
    })
    .map_err(|_| {
        crypto(format!(
            "AES-256-GCM: a value of {} bytes cannot be sealed",
            plain.len()
        ))
    })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The key id a sealed value names, or None when `value` is not sealed.
pub fn key_id_of(value: &[u8]) -> Option<u32> {
    if value.len() < OVERHEAD || value[0] != SEALED {
        return None;
    }
    Some(u32::from_be_bytes([value[1], value[2], value[3], value[4]]))
}

fn open_with(key: &[u8; KEY_LEN], aad: &[u8], value: &[u8]) -> Option<Vec<u8>> {
    let nonce = &value[5..5 + NONCE];
    let (ct, tag) = value[5 + NONCE..].split_at(value.len() - OVERHEAD);
    let mut out = ct.to_vec();
    with_aead(&OPEN_AEAD, key, |a| {
        a.decrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut out, Tag::from_slice(tag))
    })
    .ok()?;
    Some(out)
}

fn key_array(raw: &[u8], what: &str) -> Result<[u8; KEY_LEN]> {
    raw.try_into()
        .map_err(|_| Error::Crypto(format!("{what}: {} bytes, a key has {KEY_LEN}", raw.len())))
}

/// Wraps data key `id` under the master key (stored in the data directory's key file).
pub fn wrap_key(master: &[u8], id: u32, key: &[u8]) -> Result<Vec<u8>> {
    let master = key_array(master, "master key")?;
    seal_with(&master, id, &wrap_aad(id), key)
}

/// Unwraps data key `id`; an error when `master` is not the key it was wrapped with.
pub fn unwrap_key(master: &[u8], id: u32, wrapped: &[u8]) -> Result<Vec<u8>> {
    let master = key_array(master, "master key")?;
    if key_id_of(wrapped) != Some(id) {
        return Err(Error::Seal(format!("data key {id}: not a wrapped key")));
    }
    open_with(&master, &wrap_aad(id), wrapped).ok_or_else(|| {
        Error::Seal(format!(
            "data key {id}: the master key does not open it (wrong master key?)"
        ))
    })
}

fn wrap_aad(id: u32) -> Vec<u8> {
    let mut aad = b"scrm data key ".to_vec();
    aad.extend_from_slice(&id.to_be_bytes());
    aad
}

/// The data keys of one data directory: seals with the current key, opens with any.
#[derive(Clone)]
pub struct Vault {
    keys: HashMap<u32, [u8; KEY_LEN]>,
    current: u32,
}

impl Vault {
    /// `keys` (id → 32 bytes) must hold `current`.
    pub fn new(keys: impl IntoIterator<Item = (u32, Vec<u8>)>, current: u32) -> Result<Vault> {
        let mut map = HashMap::new();
        for (id, k) in keys {
            map.insert(id, key_array(&k, &format!("data key {id}"))?);
        }
        if !map.contains_key(&current) {
            return Err(Error::Crypto(format!(
                "current data key {current} is not among the keys"
            )));
        }
        Ok(Vault { keys: map, current })
    }

    pub fn current(&self) -> u32 {
        self.current
    }

    /// Seals `plain` for the record `key` of `table` with the current key.
    pub fn seal(&self, table: &[u8], key: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.keys[&self.current], self.current, &aad(table, key), plain)
    }

    /// Opens a value sealed by [`Vault::seal`] for the same table and key.
    pub fn open(&self, table: &[u8], key: &[u8], value: &[u8]) -> Result<Vec<u8>> {
        let id = key_id_of(value).ok_or_else(|| {
            Error::Seal(format!(
                "{}: a value that is not sealed (a data directory of the earlier, plaintext format: run `scrm migrate`)",
                String::from_utf8_lossy(table)
            ))
        })?;
        let k = self.keys.get(&id).ok_or_else(|| {
            let mut known: Vec<_> = self.keys.keys().collect();
            known.sort();
            Error::Seal(format!(
                "{}: value sealed with data key {id}, which this key file lacks; known: {known:?}",
                String::from_utf8_lossy(table)
            ))
        })?;
        open_with(k, &aad(table, key), value).ok_or_else(|| {
            Error::Seal(format!(
                "{}: a sealed value does not open (damaged, or moved from another record)",
                String::from_utf8_lossy(table)
            ))
        })
    }
}

/// The keyed 16-byte digest the store puts in the keys of its SCRM tables in place of a
/// personal value (`ArchiveStore.app_digest`): BLAKE2b-128 keyed with `mac_key`,
/// personalised with `person` (≤ 16 bytes, zero-padded as Python's `hashlib` does), over
/// `kind \0 value`.
pub fn app_digest(mac_key: &[u8], person: &[u8], kind: &str, value: &str) -> Result<[u8; 16]> {
    if person.len() > 16 || mac_key.len() > 64 {
        return Err(Error::Crypto("digest key or personalisation too long".into()));
    }
    let mut h = Blake2bMac::<U16>::new_with_salt_and_personal(mac_key, &[], person)
        .map_err(|e| Error::Crypto(format!("digest key: {e}")))?;
    h.update(kind.as_bytes());
    h.update(&[0]);
    h.update(value.as_bytes());
    Ok(h.finalize().into_bytes().into())
}

fn aad(table: &[u8], key: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(table.len() + 1 + key.len());
    a.extend_from_slice(table);
    a.push(0);
    a.extend_from_slice(key);
    a
}

/// The key of the index's keyed tokens (see the module doc).
#[derive(Clone, Copy)]
pub struct TokenKey([u8; 16]);

/// Characters of one keyed token (96 bits, base64url).
pub const TOKEN_CHARS: usize = 16;

const TOKEN_CACHE_BITS: u32 = 14;
const TOKEN_CACHE_SLOTS: usize = 1 << TOKEN_CACHE_BITS;

/// A token cache of one token key (512 KiB once used): packed n-gram (never 0: its kind
/// byte is set) → its token, direct-mapped. n-grams repeat heavily (a few thousand
/// characters, their common pairs), so most tokens are answered without hashing. An
/// indexing tokenizer owns one (no thread-local look-up per token); other callers share
/// one per thread.
#[derive(Default)]
pub struct TokenCache {
    owner: [u8; 16],
    slots: Vec<(u128, [u8; TOKEN_CHARS])>,
}

impl Clone for TokenCache {
    /// A new, empty cache: a copy would cost 512 KiB for entries that are cheap to redo.
    fn clone(&self) -> Self {
        TokenCache::default()
    }
}

thread_local! {
    static TOKEN_CACHE: RefCell<TokenCache> = const { RefCell::new(TokenCache { owner: [0; 16], slots: Vec::new() }) };
}

impl TokenKey {
    pub fn new(raw: &[u8]) -> Result<TokenKey> {
        let k: [u8; KEY_LEN] = key_array(raw, "token key")?;
        // SipHash takes 128 bits: derived from all 256 (domain-separated)
        let mut h = openssl::sha::Sha256::new();
        h.update(b"scrm token key\0");
        h.update(&k);
        let d = h.finish();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        Ok(TokenKey(out))
    }

    /// The token of `text` in the domain `kind` (one byte per field kind), appended to `out`
    /// (through this thread's cache).
    pub fn token_into(&self, kind: u8, text: &[u8], out: &mut String) {
        TOKEN_CACHE.with(|c| self.token_cached(&mut c.borrow_mut(), kind, text, out))
    }

    /// [`TokenKey::token_into`] through a given cache. Hot: two per indexed character. One
    /// hash call over one buffer (the common n-gram fits 16 bytes on the stack) and a table
    /// base64 of the 12 bytes kept, unless the cache has it.
    pub fn token_cached(&self, c: &mut TokenCache, kind: u8, text: &[u8], out: &mut String) {
        if text.len() > 14 {
            let enc = self.encode(kind, text);
            out.push_str(std::str::from_utf8(&enc).unwrap_or_default());
            return;
        }
        let mut packed = [0u8; 16];
        packed[0] = kind;
        packed[1] = text.len() as u8;
        packed[2..2 + text.len()].copy_from_slice(text);
        let packed = u128::from_le_bytes(packed);
        if c.slots.is_empty() || c.owner != self.0 {
            c.owner = self.0;
            c.slots.clear();
            c.slots.resize(TOKEN_CACHE_SLOTS, (0, [0; TOKEN_CHARS]));
        }
        let at = (packed.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) >> (128 - TOKEN_CACHE_BITS)) as usize;
        let slot = &mut c.slots[at];
        if slot.0 != packed {
            *slot = (packed, self.encode(kind, text));
        }
        out.push_str(std::str::from_utf8(&slot.1).unwrap_or_default());
    }

    fn encode(&self, kind: u8, text: &[u8]) -> [u8; TOKEN_CHARS] {
        use std::hash::Hasher;
        let mut h = SipHasher24::new_with_key(&self.0);
        let mut small = [0u8; 16];
        if text.len() < small.len() {
            small[0] = kind;
            small[1..=text.len()].copy_from_slice(text);
            h.write(&small[..=text.len()]);
        } else {
            h.write_u8(kind);
            h.write(text);
        }
        let d = h.finish128().as_bytes();
        const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut enc = [0u8; TOKEN_CHARS];
        for (i, c) in d[..12].chunks_exact(3).enumerate() {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            enc[i * 4] = B64[(n >> 18) as usize & 63];
            enc[i * 4 + 1] = B64[(n >> 12) as usize & 63];
            enc[i * 4 + 2] = B64[(n >> 6) as usize & 63];
            enc[i * 4 + 3] = B64[n as usize & 63];
        }
        enc
    }

    pub fn token(&self, kind: u8, text: &str) -> String {
        let mut s = String::with_capacity(TOKEN_CHARS);
        self.token_into(kind, text.as_bytes(), &mut s);
        s
    }

    /// Raw key bytes, for digests that must be keyed too (shared count files).
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new([(1, vec![7u8; 32]), (2, vec![9u8; 32])], 2).unwrap()
    }

    #[test]
    fn seals_and_opens_bound_to_table_and_key() {
        let v = vault();
        let s = v.seal(b"records", b"k1", b"hello").unwrap();
        assert_eq!(s[0], SEALED);
        assert_eq!(key_id_of(&s), Some(2));
        assert_eq!(s.len(), 5 + OVERHEAD);
        assert!(!s.windows(5).any(|w| w == b"hello"));
        assert_eq!(v.open(b"records", b"k1", &s).unwrap(), b"hello");
        assert!(v.open(b"records", b"k2", &s).is_err());
        assert!(v.open(b"audits", b"k1", &s).is_err());
        let mut bad = s.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(v.open(b"records", b"k1", &bad).is_err());
        // two seals of one value differ (fresh nonces)
        assert_ne!(v.seal(b"records", b"k1", b"hello").unwrap(), s);
    }

    /// The stored format is AES-256-GCM as OpenSSL makes it: a value sealed here opens with
    /// OpenSSL's GCM (and OpenSSL's output opens here), for lengths around the block size;
    /// a changed tag, nonce or associated data opens with neither.
    #[test]
    fn sealed_values_are_openssl_gcm_both_ways() {
        use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
        let key = [0x5au8; KEY_LEN];
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 1000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let aad = format!("table\0key{len}");
            let sealed = seal_with(&key, 3, aad.as_bytes(), &plain).unwrap();
            assert_eq!(sealed.len(), OVERHEAD + len);
            let (nonce, rest) = sealed[5..].split_at(NONCE);
            let (ct, tag) = rest.split_at(len);
            let theirs = decrypt_aead(Cipher::aes_256_gcm(), &key, Some(nonce), aad.as_bytes(), ct, tag).unwrap();
            assert_eq!(theirs, plain);
            assert!(decrypt_aead(Cipher::aes_256_gcm(), &key, Some(nonce), b"other", ct, tag).is_err());
            // OpenSSL seals, this opens
            let mut tag2 = [0u8; TAG];
            let ct2 = encrypt_aead(
                Cipher::aes_256_gcm(),
                &key,
                Some(nonce),
                aad.as_bytes(),
                &plain,
                &mut tag2,
            )
            .unwrap();
            let value = [&[SEALED][..], &3u32.to_be_bytes(), nonce, &ct2, &tag2].concat();
            assert_eq!(value, sealed, "same key, nonce and data: the same bytes");
            assert_eq!(open_with(&key, aad.as_bytes(), &value).unwrap(), plain);
            let mut bad = value.clone();
            bad[5] ^= 1; // the nonce
            assert!(open_with(&key, aad.as_bytes(), &bad).is_none());
            assert!(open_with(&[0x5bu8; KEY_LEN], aad.as_bytes(), &value).is_none());
        }
    }

    #[test]
    fn nonces_never_repeat_within_or_across_threads() {
        let v = vault();
        let nonces = |n: usize| -> Vec<[u8; NONCE]> {
            (0..n)
                .map(|_| {
                    let s = v.seal(b"t", b"k", b"x").unwrap();
                    s[5..5 + NONCE].try_into().unwrap()
                })
                .collect()
        };
        let mut all: Vec<[u8; NONCE]> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4).map(|_| sc.spawn(|| nonces(5_000))).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        // within a thread: a fixed field and consecutive counters
        for w in all[..5_000].windows(2) {
            assert_eq!(w[0][..4], w[1][..4]);
            let (a, b) = (
                u64::from_be_bytes(w[0][4..].try_into().unwrap()),
                u64::from_be_bytes(w[1][4..].try_into().unwrap()),
            );
            assert_eq!(b, a.wrapping_add(1));
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a nonce was used twice");
        // four threads drew four fixed fields (equal ones: 2^-32 a pair)
        let mut fixed: Vec<[u8; 4]> = all.iter().map(|x| x[..4].try_into().unwrap()).collect();
        fixed.dedup();
        assert_eq!(fixed.len(), 4);
    }

    #[test]
    fn old_keys_open_missing_keys_are_named() {
        let old = Vault::new([(1, vec![7u8; 32])], 1).unwrap();
        let s = old.seal(b"t", b"k", b"x").unwrap();
        assert_eq!(vault().open(b"t", b"k", &s).unwrap(), b"x");
        let newer = Vault::new([(2, vec![9u8; 32])], 2).unwrap();
        let e = newer.open(b"t", b"k", &s).unwrap_err().to_string();
        assert!(e.contains("data key 1"), "{e}");
        let e = newer.open(b"t", b"k", b"\x83plain").unwrap_err().to_string();
        assert!(e.contains("scrm migrate"), "{e}");
    }

    #[test]
    fn wrapped_keys_open_only_with_their_master() {
        let w = wrap_key(&[1u8; 32], 3, &[5u8; 32]).unwrap();
        assert_eq!(unwrap_key(&[1u8; 32], 3, &w).unwrap(), vec![5u8; 32]);
        assert!(unwrap_key(&[2u8; 32], 3, &w).is_err());
        assert!(unwrap_key(&[1u8; 32], 4, &w).is_err());
        assert!(wrap_key(&[1u8; 16], 3, &[5u8; 32]).is_err());
    }

    #[test]
    fn token_encoding_is_base64url_of_the_first_96_bits() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use std::hash::Hasher;
        let k = TokenKey::new(&[4u8; 32]).unwrap();
        for text in ["a", "保本", "x😀", &"长".repeat(20)] {
            let mut h = SipHasher24::new_with_key(&k.0);
            h.write_u8(b'b');
            h.write(text.as_bytes());
            let want = URL_SAFE_NO_PAD.encode(&h.finish128().as_bytes()[..12]);
            assert_eq!(k.token(b'b', text), want, "{text}");
        }
    }

    #[test]
    fn a_shared_cache_answers_what_hashing_does_across_keys_and_evictions() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        use std::hash::Hasher;
        let reference = |k: &TokenKey, kind: u8, text: &str| {
            let mut h = SipHasher24::new_with_key(&k.0);
            h.write_u8(kind);
            h.write(text.as_bytes());
            URL_SAFE_NO_PAD.encode(&h.finish128().as_bytes()[..12])
        };
        let keys = [TokenKey::new(&[7u8; 32]).unwrap(), TokenKey::new(&[8u8; 32]).unwrap()];
        // more distinct n-grams than the cache has slots: entries are evicted and redone
        let grams: Vec<String> = (0..(TOKEN_CACHE_SLOTS as u32 * 2))
            .map(|i| {
                let a = char::from_u32(0x4e00 + i % 2000).unwrap();
                let b = char::from_u32(0x4e00 + i / 2000).unwrap();
                format!("{a}{b}")
            })
            .collect();
        let mut cache = TokenCache::default();
        for round in 0..3 {
            // key 0, then key 1 (the cache is another key's: emptied), then key 0 again
            let k = &keys[round % 2];
            for g in &grams {
                let mut out = String::new();
                k.token_cached(&mut cache, b'b', g.as_bytes(), &mut out);
                assert_eq!(out, reference(k, b'b', g), "round {round}: {g}");
            }
        }
        // a clone starts empty and answers the same
        let mut out = String::new();
        keys[0].token_cached(&mut cache.clone(), b'u', "保".as_bytes(), &mut out);
        assert_eq!(out, reference(&keys[0], b'u', "保"));
    }

    #[test]
    fn tokens_are_keyed_and_stable() {
        let a = TokenKey::new(&[1u8; 32]).unwrap();
        let b = TokenKey::new(&[2u8; 32]).unwrap();
        assert_eq!(a.token(b'b', "保本"), a.token(b'b', "保本"));
        assert_ne!(a.token(b'b', "保本"), b.token(b'b', "保本"));
        assert_ne!(a.token(b'b', "保本"), a.token(b'u', "保本"));
        assert_eq!(a.token(b'u', "x").len(), TOKEN_CHARS);
    }

    #[test]
    fn app_digest_is_python_hashlib_blake2b() {
        // hashlib.blake2b(key=bytes(range(32)), digest_size=16, person=b"scrm-app-keys"),
        // .update(b"conv\0p:wm1|zhang"): computed by CPython's hashlib, not by this code
        let key: Vec<u8> = (0u8..32).collect();
        let d = app_digest(&key, b"scrm-app-keys", "conv", "p:wm1|zhang").unwrap();
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "ad4a026d3bb141b0217f61f140e7d347");
        assert_ne!(app_digest(&key, b"scrm-app-keys", "conv", "p:wm2|zhang").unwrap(), d);
        assert!(app_digest(&key, &[0u8; 17], "conv", "x").is_err());
    }
}
