//! The mount's local store port: content blobs by hash, per-file staging areas for dirty data,
//! the write journal (mutations not yet acknowledged by the server), and the clock/sleep the
//! engine may not take from the system itself.
//!
//! A blob's name is its SHA-256 hex digest, or a *local name* (see [`LocalName`]) that the
//! mount gives large content it wrote and did not hash, until the server names it.
//!
//! Calls are synchronous: they are local disk and SQLite operations measured in microseconds,
//! made from the runtime's worker threads (ARCHITECTURE.md, "The mount's local I/O").

use std::future::Future;
use std::time::Duration;

use aether_domain::{EntryKind, Timestamp};
use serde::{Deserialize, Serialize};

use crate::serde_helpers as h;

pub type CacheResult<T> = std::result::Result<T, CacheError>;

/// Directory listings by directory path, each as the manifest shows it (the directory first).
pub type Listings = Vec<(String, Vec<crate::Entry>)>;

/// A name the mount gives content it wrote without hashing it: `local-` and 24 hex digits. The
/// server hashes every upload anyway, so large content is named by the server's reply instead
/// of a second SHA-256 pass in the mount (docs/mount.md, "Content the server names"). A local
/// name never leaves the mount: it is neither sent to the server nor offered to the host-wide
/// shared store.
pub struct LocalName;

impl LocalName {
    pub const PREFIX: &'static str = "local-";

    /// The local name made of a time stamp (nanoseconds) and a counter: unique across mounts of
    /// one cache unless the clock runs back to the same nanosecond.
    pub fn make(nanos: u64, counter: u32) -> String {
        format!("{}{nanos:016x}{counter:08x}", Self::PREFIX)
    }

    /// Whether `name` is a well-formed local name.
    pub fn is(name: &str) -> bool {
        name.strip_prefix(Self::PREFIX)
            .is_some_and(|rest| rest.len() == 24 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

/// A failure of the local cache (disk full, permissions, corrupt index).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the cache disk is full: {0}")]
    NoSpace(String),
    #[error("not in the cache: {0}")]
    Missing(String),
    #[error("local cache failure: {0}")]
    Backend(String),
}

/// One mutation waiting to be written back, in the order the mount applied it. Paths are the
/// session paths at the moment the mutation was made; replaying the journal in order against
/// the server reproduces the mount's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum JournalOp {
    Mkdir {
        path: String,
        mode: u32,
    },
    Mknod {
        path: String,
        #[serde(with = "h::entry_kind")]
        kind: EntryKind,
        mode: u32,
        rdev: u64,
    },
    /// The file's whole content is the local blob `hash`. `patch` names the byte ranges that
    /// differ from `base_hash` when only part of a large file changed.
    #[serde(rename_all = "camelCase")]
    Write {
        path: String,
        hash: String,
        size: u64,
        mode: u32,
        base_hash: Option<String>,
        patch: Option<Vec<(u64, u64)>>,
        /// The path did not exist before this entry: the first content of a file created
        /// through the mount. (Entries journaled before the field existed read as `false`.)
        #[serde(default)]
        created: bool,
    },
    DeleteFile {
        path: String,
    },
    Rmdir {
        path: String,
    },
    #[serde(rename_all = "camelCase")]
    Rename {
        from: String,
        to: String,
        no_replace: bool,
        exchange: bool,
    },
    Link {
        existing: String,
        new: String,
    },
    Symlink {
        path: String,
        target: String,
    },
    SetAttributes {
        path: String,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        #[serde(with = "h::opt_timestamp")]
        atime: Option<Timestamp>,
        #[serde(with = "h::opt_timestamp")]
        mtime: Option<Timestamp>,
    },
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
}

impl JournalOp {
    /// The paths this mutation names (for echo suppression and diagnostics).
    pub fn paths(&self) -> Vec<&str> {
        use JournalOp::*;
        match self {
            Mkdir { path, .. }
            | Mknod { path, .. }
            | Write { path, .. }
            | DeleteFile { path }
            | Rmdir { path }
            | Symlink { path, .. }
            | SetAttributes { path, .. }
            | SetXattr { path, .. }
            | RemoveXattr { path, .. } => vec![path],
            Rename { from, to, .. } => vec![from, to],
            Link { existing, new } => vec![existing, new],
        }
    }

    /// Payload bytes this entry will send (for the backlog figures).
    pub fn payload_bytes(&self) -> u64 {
        match self {
            JournalOp::Write { size, .. } => *size,
            JournalOp::SetXattr { value, .. } => value.len() as u64,
            _ => 0,
        }
    }
}

/// A journal entry as stored: its position and when it was appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub appended_at: Timestamp,
    pub op: JournalOp,
}

/// Backlog figures for status, metrics and backpressure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    pub pending_entries: u64,
    pub pending_bytes: u64,
    pub oldest_appended_at: Option<Timestamp>,
    /// The highest sequence number ever appended.
    pub last_seq: u64,
}

/// A mutation the server refused for good, kept so nothing acknowledged disappears silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEntry {
    pub entry: JournalEntry,
    pub error: String,
}

/// Cache-wide figures for `cache inspect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub blob_count: u64,
    pub blob_bytes: u64,
    pub staging_bytes: u64,
    pub shared_links: u64,
}

/// The local content cache, staging areas and journal of one mounted session.
pub trait LocalCache: Send + Sync + 'static {
    fn has_blob(&self, hash: &str) -> bool;
    /// Up to `len` bytes of blob `hash` from `offset` (fewer at the end).
    fn read_blob(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>>;
    /// Blob `hash` opened for reading from its start, for streaming a large upload from it.
    fn open_blob(&self, hash: &str) -> CacheResult<Box<dyn std::io::Read + Send>>;
    /// Stores `data` as blob `hash` (the caller computed the hash).
    fn put_blob(&self, hash: &str, data: &[u8]) -> CacheResult<()>;

    /// Stores bytes `offset..` of blob `hash`, fetched by range, in a partial copy.
    fn partial_write(&self, hash: &str, offset: u64, data: &[u8]) -> CacheResult<()>;
    /// Bytes of the partial copy of `hash` (the caller knows which ranges it holds).
    fn partial_read(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>>;
    /// The partial copy of `hash` is complete: keep it as blob `hash`. Returns false (and
    /// drops it) if the implementation checks the bytes and they do not hash to `hash`.
    fn partial_promote(&self, hash: &str) -> CacheResult<bool>;
    fn partial_drop(&self, hash: &str);

    /// Creates staging area `stage` holding a copy of blob `from` (or empty).
    fn stage_open(&self, stage: u64, from: Option<&str>) -> CacheResult<()>;
    fn stage_write(&self, stage: u64, offset: u64, data: &[u8]) -> CacheResult<()>;
    fn stage_read(&self, stage: u64, offset: u64, len: usize) -> CacheResult<Vec<u8>>;
    fn stage_truncate(&self, stage: u64, size: u64) -> CacheResult<()>;
    /// Hashes the staging area and keeps its content as a blob; returns (hash, size). The
    /// staging area stays open for further writes.
    fn stage_commit(&self, stage: u64) -> CacheResult<(String, u64)>;
    /// Like `stage_commit`, for a caller that already knows the content's hash and size, or
    /// that names it with a [`LocalName`] (the cache cannot check such a name).
    fn stage_commit_as(&self, stage: u64, hash: &str, size: u64) -> CacheResult<()>;
    /// The server stored the blob named `local` (a [`LocalName`]) under `hash`: keep it under
    /// `hash` too. The local name stays readable (a reader may hold it) until `clear_clean`.
    fn blob_name(&self, local: &str, hash: &str) -> CacheResult<()>;
    fn stage_drop(&self, stage: u64);

    /// Appends a mutation; it is durable against a crash of this process when this returns.
    fn journal_append(&self, op: &JournalOp, now: Timestamp) -> CacheResult<u64>;
    /// The oldest pending entries, in order.
    fn journal_pending(&self, limit: usize) -> CacheResult<Vec<JournalEntry>>;
    /// The server holds the effect of entry `seq`.
    fn journal_ack(&self, seq: u64) -> CacheResult<()>;
    /// Fixes the next write-back unit: the entries `first..=last` go to the server together,
    /// under one idempotency key. If a unit starting at `first` was fixed before (by a runtime
    /// that then crashed), that one is returned instead of the proposal, so a resend carries
    /// the same entries and key. Durable when this returns.
    fn journal_unit(&self, first: u64, last: u64) -> CacheResult<(u64, u64)>;
    /// The unit `first..=last` is to be sent entry by entry (the server refused it as a whole).
    fn journal_split_unit(&self, first: u64, last: u64) -> CacheResult<()>;
    /// The server holds the effect of entries `first..=last` (and their unit is done).
    fn journal_ack_range(&self, first: u64, last: u64) -> CacheResult<()>;
    /// The server refused entry `seq` for good: move it aside with the reason.
    fn journal_reject(&self, seq: u64, error: &str) -> CacheResult<()>;
    fn journal_rejected(&self) -> CacheResult<Vec<RejectedEntry>>;
    fn journal_stats(&self) -> JournalStats;
    /// Forces the journal to stable storage (power-loss durability).
    fn journal_sync(&self) -> CacheResult<()>;

    /// Saves the directory listings the mount knows, valid at session generation `generation`
    /// (replacing any earlier save).
    fn index_save(&self, generation: u64, listings: &Listings) -> CacheResult<()>;
    /// The saved listings and their generation, if any; the save is consumed (a later crash
    /// must not bring back listings that changed since).
    fn index_take(&self) -> CacheResult<Option<(u64, Listings)>>;

    fn stats(&self) -> CacheStats;
    /// Free and total bytes of the disk holding the cache, when the platform tells.
    fn disk_space(&self) -> Option<(u64, u64)>;
    /// Drops every blob no pending journal entry or open stage needs; returns bytes freed.
    fn clear_clean(&self) -> CacheResult<u64>;
    /// Drops blobs no pending journal entry needs, the least recently used first, until at
    /// least `bytes` are freed or none is left to drop; returns the bytes freed. What a later
    /// read needs again is fetched from the server.
    fn evict_clean(&self, bytes: u64) -> CacheResult<u64>;
}

/// Time and sleeping for the engine (the domain reads no clock of its own).
pub trait MountClock: Send + Sync + 'static {
    /// Wall-clock time for file timestamps.
    fn now(&self) -> Timestamp;
    /// Monotonic time since an arbitrary start, for TTLs and backoff.
    fn elapsed(&self) -> Duration;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}
