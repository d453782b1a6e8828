//! A write-through read cache of session records, layer chains and per-layer path lookups.
//! Sound because this store is the only writer of its database: every write updates the cache
//! on the writer thread after its commit, and a reader may fill the cache only if no write
//! happened since it began reading (the epoch check), so a racing reader never caches stale rows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aether_domain::{Entry, SessionId, SessionPath};
use aether_ports::store::SessionRecord;

/// What one layer says about one path.
#[derive(Debug, Clone)]
pub(crate) enum Mention {
    Nothing,
    Whiteout,
    Entry(Entry),
}

const MAX_ROWS: usize = 256 * 1024;
const MAX_SESSIONS: usize = 64 * 1024;

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) sessions: HashMap<SessionId, (SessionRecord, Vec<i64>)>,
    pub(crate) rows: HashMap<(i64, SessionPath), Mention>,
}

impl Inner {
    /// Bounds memory crudely but safely: dropping everything only costs re-reads.
    fn trim(&mut self) {
        if self.rows.len() > MAX_ROWS {
            self.rows.clear();
        }
        if self.sessions.len() > MAX_SESSIONS {
            self.sessions.clear();
        }
    }
}

#[derive(Default)]
pub(crate) struct ReadCache {
    epoch: AtomicU64,
    inner: Mutex<Inner>,
}

impl ReadCache {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn session(&self, id: &SessionId) -> Option<(SessionRecord, Vec<i64>)> {
        self.lock().sessions.get(id).cloned()
    }

    /// Resolves `path` through `chain` from cached mentions; `None` when a layer is unknown.
    pub(crate) fn resolve(&self, chain: &[i64], path: &SessionPath) -> Option<Option<Entry>> {
        let inner = self.lock();
        for layer in chain {
            match inner.rows.get(&(*layer, path.clone()))? {
                Mention::Nothing => continue,
                Mention::Whiteout => return Some(None),
                Mention::Entry(e) => return Some(Some(e.clone())),
            }
        }
        Some(None)
    }

    /// Adds what a reader learned, unless a write happened since `epoch`.
    pub(crate) fn fill(&self, epoch: u64, f: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        if self.epoch.load(Ordering::Acquire) == epoch {
            f(&mut inner);
            inner.trim();
        }
    }

    /// Applies a committed write; called on the writer thread after the commit.
    pub(crate) fn write(&self, f: impl FnOnce(&mut Inner)) {
        let mut inner = self.lock();
        f(&mut inner);
        inner.trim();
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}
