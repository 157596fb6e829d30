//! Cryptography of the chat archive: the RSA key ring (one private key per
//! `publickey_ver`), the message ciphers (the open scheme, native; the vendor SDK, through
//! dlopen), the sealing side used by the simulator, and the vault that encrypts stored
//! values at rest. Pure Rust over OpenSSL; no PyO3.

pub mod callback;
pub mod keyring;
pub mod open;
pub mod seal;
pub mod vault;
pub mod vendor;

pub use keyring::KeyRing;
pub use vault::{TokenCache, TokenKey, Vault};
pub use vendor::VendorSdk;

/// The symmetric layer chosen for a pipeline (spec §3).
pub enum MessageCipher {
    /// AES-256-CBC, key = the 32 key bytes, IV = the first 16 (the project's open scheme).
    Open,
    /// The vendor SDK's `DecryptData`.
    Vendor(std::sync::Arc<VendorSdk>),
    /// Plaintexts already produced elsewhere (the vendor SDK in a supervised worker
    /// process, see `vendor_job`), by item index of one batch; the RSA step is not redone.
    Supplied(Vec<Option<Result<Vec<u8>, crate::error::ItemError>>>),
}
