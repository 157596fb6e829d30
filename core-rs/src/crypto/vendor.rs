//! The vendor symmetric layer: `DecryptData` of WeCom's `libWeWorkFinanceSdk_C.so`,
//! loaded with dlopen.
//!
//! The vendor library aborts the whole process on some malformed inputs (spec §1: a short
//! `encrypt_chat_msg` throws an uncaught C++ exception), so every input is validated here
//! before it reaches the library: the key must be a NUL-free string and the message must
//! be base64 of a whole number (≥ 1) of 16-byte cipher blocks. Cost: one FFI call and two
//! copies per message; the library's own decryption time is its own.

use std::ffi::{c_char, c_int, c_void, CString};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libloading::Library;
use rayon::prelude::*;

use crate::error::{Error, ItemError, Reason, Result};
use crate::vendor_job::frames;

type NewSliceFn = unsafe extern "C" fn() -> *mut c_void;
type FreeSliceFn = unsafe extern "C" fn(*mut c_void);
type ContentFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type LenFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type DecryptFn = unsafe extern "C" fn(*const c_char, *const c_char, *mut c_void) -> c_int;

pub struct VendorSdk {
    path: String,
    new_slice: NewSliceFn,
    free_slice: FreeSliceFn,
    content: ContentFn,
    len: LenFn,
    decrypt: DecryptFn,
    // Keeps the function pointers above valid; dropped last.
    _lib: Library,
}

/// What a vendor return code means (spec §1).
pub fn vendor_code_meaning(code: i32) -> &'static str {
    match code {
        10000 => "bad parameter",
        10001 => "network error",
        10002 => "data parse failure",
        10003 => "system failure",
        10004 => "encryption failed because of a key error",
        10005 => "bad fileid",
        10006 => "decryption failed",
        10007 => "no private key for the message's encryption version",
        10008 => "cannot parse encrypt_key",
        10009 => "IP not allowed",
        10010 => "data expired",
        10011 => "certificate error",
        _ => "unknown vendor error",
    }
}

impl VendorSdk {
    pub fn load(path: &str) -> Result<VendorSdk> {
        let load_err = |detail: String| Error::VendorLoad {
            path: path.to_string(),
            detail,
        };
        // SAFETY: loading a shared library runs its initialisers; the vendor SDK's are
        // plain C++ static constructors. The path is the operator's explicit choice.
        let lib = unsafe { Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
        // SAFETY: the signatures are those of the vendor's C header (spec §1).
        unsafe {
            let new_slice = *lib
                .get::<NewSliceFn>(b"NewSlice\0")
                .map_err(|e| load_err(e.to_string()))?;
            let free_slice = *lib
                .get::<FreeSliceFn>(b"FreeSlice\0")
                .map_err(|e| load_err(e.to_string()))?;
            let content = *lib
                .get::<ContentFn>(b"GetContentFromSlice\0")
                .map_err(|e| load_err(e.to_string()))?;
            let len = *lib
                .get::<LenFn>(b"GetSliceLen\0")
                .map_err(|e| load_err(e.to_string()))?;
            let decrypt = *lib
                .get::<DecryptFn>(b"DecryptData\0")
                .map_err(|e| load_err(e.to_string()))?;
            Ok(VendorSdk {
                path: path.to_string(),
                new_slice,
                free_slice,
                content,
                len,
                decrypt,
                _lib: lib,
            })
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Validates then decrypts one message. `msg_b64` is `encrypt_chat_msg` as received and
    /// `decoded_len` the length of its base64 decoding (already checked by the caller).
    pub fn decrypt(&self, random_key: &[u8], msg_b64: &str, decoded_len: usize) -> Result<Vec<u8>, ItemError> {
        precheck(random_key, decoded_len)?;
        match self.call_decrypt(random_key, msg_b64)? {
            (0, plain) => Ok(plain),
            (rc, _) => Err(ItemError::new(
                Reason::VendorError,
                format!("DecryptData returned {rc} ({})", vendor_code_meaning(rc)),
            )),
        }
    }

    /// Answers one request of the supervised worker (see `vendor_job`): every
    /// (random key, `encrypt_chat_msg`) pair decrypted in parallel, re-validated here so
    /// that nothing malformed reaches the library even from a faulty caller.
    pub fn decrypt_request(&self, request: &[u8]) -> Result<Vec<u8>> {
        let pairs = frames::decode_pairs(request)?;
        let answers: Vec<(i32, Vec<u8>)> = pairs
            .par_iter()
            .map(|(key, msg)| {
                let checked = std::str::from_utf8(msg)
                    .map_err(|_| ItemError::new(Reason::BadBase64Msg, "encrypt_chat_msg is not ASCII"))
                    .and_then(|m| {
                        let len = STANDARD
                            .decode(m.trim())
                            .map_err(|e| ItemError::new(Reason::BadBase64Msg, format!("encrypt_chat_msg: {e}")))?
                            .len();
                        precheck(key, len)?;
                        Ok(m)
                    });
                match checked.and_then(|m| self.call_decrypt(key, m.trim())) {
                    Ok(answer) => answer,
                    Err(e) => (frames::REFUSED, e.detail.into_bytes()),
                }
            })
            .collect();
        Ok(frames::encode_answers(&answers))
    }

    /// One `DecryptData` call: its return code and, on 0, the plaintext.
    fn call_decrypt(&self, random_key: &[u8], msg_b64: &str) -> Result<(i32, Vec<u8>), ItemError> {
        let key = CString::new(random_key).map_err(|_| ItemError::new(Reason::RsaFailed, "random key contains NUL"))?;
        let msg =
            CString::new(msg_b64).map_err(|_| ItemError::new(Reason::BadBase64Msg, "encrypt_chat_msg contains NUL"))?;
        // SAFETY: the slice is created and freed by the library's own helpers; the
        // inputs are NUL-terminated and validated by the callers.
        unsafe {
            let slice = (self.new_slice)();
            if slice.is_null() {
                return Err(ItemError::new(Reason::VendorError, "NewSlice returned NULL"));
            }
            let rc = (self.decrypt)(key.as_ptr(), msg.as_ptr(), slice);
            let result = if rc != 0 {
                Ok((rc, Vec::new()))
            } else {
                let n = (self.len)(slice);
                let p = (self.content)(slice);
                if n < 0 || (p.is_null() && n > 0) {
                    Err(ItemError::new(
                        Reason::VendorError,
                        format!("DecryptData gave a bad slice (len {n})"),
                    ))
                } else if n == 0 {
                    Ok((0, Vec::new()))
                } else {
                    Ok((0, std::slice::from_raw_parts(p as *const u8, n as usize).to_vec()))
                }
            };
            (self.free_slice)(slice);
            result
        }
    }
}

/// What must hold before anything reaches the vendor library (spec §1: a short message
/// aborts the process): a NUL-free, non-empty key and a whole number (≥ 1) of 16-byte blocks.
pub fn precheck(random_key: &[u8], decoded_len: usize) -> Result<(), ItemError> {
    if random_key.is_empty() || random_key.contains(&0) {
        return Err(ItemError::new(
            Reason::RsaFailed,
            "decrypted random key is empty or contains NUL",
        ));
    }
    if decoded_len < 16 || !decoded_len.is_multiple_of(16) {
        return Err(ItemError::new(
            Reason::BadBase64Msg,
            format!("encrypt_chat_msg decodes to {decoded_len} bytes, not whole 16-byte blocks; not passed to the vendor SDK"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_clear_error() {
        let e = VendorSdk::load("/nonexistent/libWeWorkFinanceSdk_C.so")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("/nonexistent/libWeWorkFinanceSdk_C.so"), "{e}");
    }

    #[test]
    fn codes_have_meanings() {
        assert_eq!(vendor_code_meaning(10008), "cannot parse encrypt_key");
        assert_eq!(vendor_code_meaning(42), "unknown vendor error");
    }
}
