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

/// mimalloc for every Rust allocation (Python keeps its own): the decrypt workers, the
/// index's threads and the committing thread allocate small buffers per message (parsed
/// JSON, tokens, documents): glibc's malloc and free were ~3% of an ingest's CPU samples,
/// and mimalloc runs the ingest's non-RSA work in ~8% fewer instructions.
///
/// Tuned for a flat resident set ([`heap::return_freed_memory`]): freed pages go back to
/// the system after 50 ms (mimalloc's default waits 1 s: +15 MiB of peak at 100k messages;
/// purging at once costs half again the ingest's system time in `madvise`) and arenas
/// commit on use, so the ingest's peak stays near glibc's (`scrm bench memory`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod heap {
    use std::ffi::{c_int, c_long};

    extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
        fn mi_option_get(option: c_int) -> c_long;
    }

    // `mi_option_t` of the bundled mimalloc 3 (`mimalloc.h`)
    const ARENA_EAGER_COMMIT: c_int = 4;
    const PURGE_DELAY: c_int = 15;
    const PURGE_MS: c_long = 50;

    /// Sets the allocator to purge freed memory soon (50 ms) and to commit arena memory
    /// only as it is used (call once, early: before the threads start). Returns the two
    /// option values as the allocator reads them back.
    pub fn return_freed_memory() -> (c_long, c_long) {
        // SAFETY: plain setters and getters of mimalloc's global options, valid indices.
        unsafe {
            mi_option_set(PURGE_DELAY, PURGE_MS);
            mi_option_set(ARENA_EAGER_COMMIT, 0);
            (mi_option_get(PURGE_DELAY), mi_option_get(ARENA_EAGER_COMMIT))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_option_indices_are_mimallocs() {
            // mimalloc's own defaults (`options.c`) identify the two entries: purging after
            // 1000 ms, eager arena commit 2 (on overcommitting systems); nothing set them yet
            // (no other test does, and no MIMALLOC_* variable is set for the tests)
            if std::env::vars().any(|(k, _)| k.starts_with("MIMALLOC_")) {
                return;
            }
            // SAFETY: getters of mimalloc's global options, valid indices.
            let defaults = unsafe { (mi_option_get(PURGE_DELAY), mi_option_get(ARENA_EAGER_COMMIT)) };
            assert_eq!(defaults, (1000, 2));
            assert_eq!(return_freed_memory(), (PURGE_MS, 0));
        }
    }
}
