//! The engine's error type. Batch calls never fail for one bad item (those become
//! quarantine records with a [`Reason`]); `Error` is for whole-call failures: unreadable
//! key directories, malformed batch documents, a vendor SDK that will not load.

use std::path::PathBuf;

/// Whole-call failures of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key directory {path}: {source}")]
    KeyDirIo { path: PathBuf, source: std::io::Error },
    #[error("key file {path}: {detail}")]
    KeyParse { path: PathBuf, detail: String },
    #[error("key directory {0}: no <publickey_ver>.pem files found")]
    NoKeys(PathBuf),
    #[error("publickey_ver {ver}: {detail}")]
    KeyVersion { ver: u32, detail: String },
    #[error("batch document: {0}")]
    BatchFormat(String),
    #[error("vendor SDK {path}: {detail}")]
    VendorLoad { path: String, detail: String },
    #[error("record: {0}")]
    Record(String),
    #[error("crypto: {0}")]
    Crypto(String),
    /// A stored value or data key does not open: wrong key, damage, or plaintext.
    #[error("at rest: {0}")]
    Seal(String),
    #[error("search index: {0}")]
    Index(String),
    #[error("search query: {0}")]
    Query(String),
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Index(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why one archive item could not be stored. Stable strings: they are persisted in the
/// quarantine table and counted in ingest summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The chatdata item lacks `seq`, `encrypt_random_key` or similar, or has wrong types.
    BadItem,
    /// `encrypt_random_key` is not valid base64.
    BadBase64Key,
    /// `encrypt_chat_msg` is not valid base64 (or too short to be a ciphertext).
    BadBase64Msg,
    /// No private key is installed for the item's `publickey_ver`.
    UnknownKeyVersion,
    /// The RSA private-key operation failed (wrong key or corrupted ciphertext).
    RsaFailed,
    /// The symmetric layer failed: bad padding or wrong key (open scheme).
    AesFailed,
    /// The vendor SDK's `DecryptData` returned a non-zero code (detail carries it).
    VendorError,
    /// The plaintext is not a JSON object.
    BadJson,
    /// The plaintext lacks `msgid`, or the message lacks `msgtype`/`action`.
    BadMessage,
    /// The decrypted `msgid` differs from the envelope's.
    MsgidMismatch,
    /// The vendor SDK's process died on this item (twice, alone): it is kept raw and the
    /// rest of its batch is stored.
    SdkCrash,
    /// An id of the message (`msgid`, `from`, `roomid`, a `tolist` entry, a consent event's
    /// `userid`) is longer than ids can be or holds a NUL: ids become parts of storage keys.
    BadIds,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadItem => "bad_item",
            Reason::BadBase64Key => "bad_base64_key",
            Reason::BadBase64Msg => "bad_base64_msg",
            Reason::UnknownKeyVersion => "unknown_key_version",
            Reason::RsaFailed => "rsa_failed",
            Reason::AesFailed => "aes_failed",
            Reason::VendorError => "vendor_error",
            Reason::BadJson => "bad_json",
            Reason::BadMessage => "bad_message",
            Reason::MsgidMismatch => "msgid_mismatch",
            Reason::SdkCrash => "sdk_crash",
            Reason::BadIds => "bad_ids",
        }
    }
}

/// One item's failure: a reason code and a human-readable detail naming the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub reason: Reason,
    pub detail: String,
}

impl ItemError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        ItemError {
            reason,
            detail: detail.into(),
        }
    }
}
