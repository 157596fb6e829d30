//! scrm-fast's engine: bulk decryption and parsing of WeCom chat-archive batches.
//!
//! Engine modules are plain Rust (tested with `cargo test`); only `py` (behind the
//! `python` feature, enabled by maturin) knows Python.

pub mod alerts;
pub mod audit;
pub mod batch;
pub mod crypto;
pub mod error;
pub mod export;
pub mod index;
pub mod loadgen;
pub mod matcher;
pub mod message;
pub mod policy;
pub mod vendor_job;

#[cfg(feature = "python")]
mod py;
