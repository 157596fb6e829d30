//! The per-segment match counts of requests, kept per process and shared between the
//! processes that search one index.

use super::*;

/// Per-segment match counts of requests (see [`ArchiveIndex::search`]), bounded, and
/// shared between the processes that search the same index (the server's workers): each
/// appends the counts it computes to its own file in `<index>/counts/` and, before computing
/// one it lacks, reads what the others appended since it last looked. A query the other
/// worker already counted costs this one a file read, not a full pass.
pub(super) struct CountCache {
    map: Mutex<std::collections::HashMap<(u128, u128), u64>>,
    pub(super) shared: Option<Mutex<SharedCounts>>,
}

/// Entries kept before the cache starts afresh (~48 bytes each).
pub(super) const COUNT_CACHE_ENTRIES: usize = 200_000;

/// One shared count: segment id, request digest, count (little endian).
pub(super) const COUNT_RECORD: usize = 40;

/// A segment's id as a number (its uuid's 32 hex digits); None (the segment's counts are
/// not kept) should tantivy ever write it otherwise, never a shared stand-in value.
pub(super) fn seg_u128(seg: tantivy::index::SegmentId) -> Option<u128> {
    let hex = seg.uuid_string();
    (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok()).flatten()
}

/// The files of [`CountCache`]: `<pid>-<fingerprint>.bin`, each locked by its process, the fingerprint a digest made
/// with this build's hasher (a build that digests requests differently never reads them).
pub(super) struct SharedCounts {
    dir: PathBuf,
    /// this process's id in file names (tests stand in for a second process with another)
    pub(super) me: String,
    mine: Option<std::fs::File>,
    mine_len: u64,
    /// bytes of each other file already read
    seen: std::collections::HashMap<std::ffi::OsString, u64>,
}

pub(super) fn fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (LAYOUT, "scrm count digest v1").hash(&mut h);
    format!("{:016x}", h.finish())
}

impl SharedCounts {
    pub(super) fn open(index: &Path) -> Option<SharedCounts> {
        // inside the index directory (tantivy only ever deletes files it made itself); a
        // read-only data directory simply shares nothing
        let dir = index.join("counts");
        std::fs::create_dir_all(&dir).ok()?;
        let ours = format!("-{}.bin", fingerprint());
        // files of processes that are gone, or of other builds, are stale: a live process
        // holds an exclusive lock on its own file for as long as it has it open (the lock
        // goes with the process, whatever its pid is reused for)
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let alive = n.ends_with(&ours)
                && std::fs::File::open(e.path())
                    .is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
            if !alive {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Some(SharedCounts {
            dir,
            me: std::process::id().to_string(),
            mine: None,
            mine_len: 0,
            seen: Default::default(),
        })
    }

    pub(super) fn my_name(&self) -> String {
        format!("{}-{}.bin", self.me, fingerprint())
    }

    /// This process's file, made under a temporary name, locked, then moved into place (no
    /// other process ever sees it unlocked).
    fn create_locked(&self) -> Option<std::fs::File> {
        let tmp = self.dir.join(format!(".{}.tmp", self.my_name()));
        let f = std::fs::File::create(&tmp).ok()?;
        f.try_lock().ok()?;
        std::fs::rename(&tmp, self.dir.join(self.my_name())).ok()?;
        Some(f)
    }

    /// Appends `new` to this process's file (started afresh when it holds a full cache).
    pub(super) fn publish(&mut self, new: &[(u128, u128, u64)]) {
        use std::io::Write;
        if self.mine.is_none() || self.mine_len >= (COUNT_CACHE_ENTRIES * COUNT_RECORD) as u64 {
            self.mine = None; // our old handle (and its lock) first
            self.mine = self.create_locked();
            self.mine_len = 0;
        }
        let Some(f) = self.mine.as_mut() else { return };
        let mut buf = Vec::with_capacity(new.len() * COUNT_RECORD);
        for (seg, key, n) in new {
            buf.extend_from_slice(&seg.to_le_bytes());
            buf.extend_from_slice(&key.to_le_bytes());
            buf.extend_from_slice(&n.to_le_bytes());
        }
        // whole records in one write: a reader takes whole records only
        if f.write_all(&buf).is_ok() {
            self.mine_len += buf.len() as u64;
        }
    }

    /// Calls `each` with every record the other processes appended since the last call.
    pub(super) fn refresh(&mut self, mut each: impl FnMut(u128, u128, u64)) {
        use std::io::{Read, Seek, SeekFrom};
        let mine = std::ffi::OsString::from(self.my_name());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name == mine {
                continue;
            }
            let Ok(len) = e.metadata().map(|m| m.len()) else {
                continue;
            };
            let seen = self.seen.entry(name).or_insert(0);
            if len < *seen {
                *seen = 0; // started afresh
            }
            let whole = (len - *seen) / COUNT_RECORD as u64 * COUNT_RECORD as u64;
            if whole == 0 {
                continue;
            }
            let Ok(mut f) = std::fs::File::open(e.path()) else {
                continue;
            };
            let mut buf = vec![0u8; whole as usize];
            if f.seek(SeekFrom::Start(*seen)).is_err() || f.read_exact(&mut buf).is_err() {
                continue;
            }
            *seen += whole;
            for r in buf.chunks_exact(COUNT_RECORD) {
                let mut seg = [0u8; 16];
                let mut key = [0u8; 16];
                let mut n = [0u8; 8];
                seg.copy_from_slice(&r[..16]);
                key.copy_from_slice(&r[16..32]);
                n.copy_from_slice(&r[32..]);
                each(
                    u128::from_le_bytes(seg),
                    u128::from_le_bytes(key),
                    u64::from_le_bytes(n),
                );
            }
        }
    }
}

impl CountCache {
    pub(super) fn new(index: &Path) -> CountCache {
        CountCache {
            map: Default::default(),
            shared: SharedCounts::open(index).map(Mutex::new),
        }
    }

    pub(super) fn get(&self, seg: u128, key: u128) -> Option<u64> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(seg, key))
            .copied()
    }

    /// Keeps `new` counts; `publish`: made here, so appended for the other processes.
    pub(super) fn put_all(&self, new: &[(u128, u128, u64)], publish: bool) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        for &(seg, key, n) in new {
            if m.len() >= COUNT_CACHE_ENTRIES {
                m.clear(); // merged-away segments and old queries go with it
            }
            m.insert((seg, key), n);
        }
        drop(m);
        if let (true, Some(sh)) = (publish, &self.shared) {
            sh.lock().unwrap_or_else(|p| p.into_inner()).publish(new);
        }
    }

    /// Takes in what the other processes counted since the last look.
    pub(super) fn refresh(&self) {
        let Some(sh) = &self.shared else { return };
        let mut got = Vec::new();
        sh.lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(|seg, key, n| got.push((seg, key, n)));
        if !got.is_empty() {
            self.put_all(&got, false);
        }
    }
}

impl SearchRequest {
    /// What a segment's match count depends on (everything but cursor and limit), as a
    /// 128-bit digest: two SipHash runs with different prefixes, keyed with the index's
    /// token key (the shared count files show no query, not even a short one by guessing).
    pub(super) fn count_key(&self, token_key: &TokenKey) -> u128 {
        use std::hash::{Hash, Hasher};
        let digest = |salt: u8| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            token_key.bytes().hash(&mut h);
            salt.hash(&mut h);
            self.query.hash(&mut h);
            self.parties.hash(&mut h);
            self.room.hash(&mut h);
            self.conv.hash(&mut h);
            self.msgtypes.hash(&mut h);
            self.since.hash(&mut h);
            self.until.hash(&mut h);
            self.scope
                .as_ref()
                .map(|s| (&s.parties, &s.rooms, &s.convs, &s.hidden))
                .hash(&mut h);
            h.finish()
        };
        (u128::from(digest(0)) << 64) | u128::from(digest(1))
    }
}
