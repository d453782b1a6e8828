//! The host-wide shared blob store: `<shared_root>/blobs/<sha256>` hard-link targets and a
//! reference count per blob in `<shared_root>/refcounts.db`. Every failure here only logs a
//! warning: the per-session cache is the source of truth and works without it.
//!
//! Offering a new blob (`adopt`) happens at every `close` of a changed file, so it only queues
//! the offer: a background thread links the queued blobs and counts them in one transaction.
//! Everything that reads or changes the counts otherwise first waits for that queue to empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use aether_ports::local_cache::CacheError;
use rusqlite::{Connection, params};

use crate::layout::ensure_private_dir;

pub struct SharedStore {
    inner: Arc<Inner>,
    adopter: Option<std::thread::JoinHandle<()>>,
}

struct Inner {
    blobs: PathBuf,
    db: Mutex<Connection>,
    offers: Mutex<Offers>,
    /// Signalled when offers arrive, when a round of them is done, and at shutdown.
    changed: Condvar,
}

/// Blobs offered by sessions and not yet linked into the store.
#[derive(Default)]
struct Offers {
    queued: Vec<(String, PathBuf)>,
    /// Offers taken by the adopter and still being linked.
    in_flight: usize,
    closing: bool,
}

impl SharedStore {
    pub fn open(root: &Path) -> Result<SharedStore, CacheError> {
        ensure_private_dir(root)?;
        let blobs = root.join("blobs");
        ensure_private_dir(&blobs)?;
        let db = Connection::open(root.join("refcounts.db"))
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;
                     CREATE TABLE IF NOT EXISTS refs (hash TEXT PRIMARY KEY, count INTEGER NOT NULL);",
                )?;
                Ok(c)
            })
            .map_err(|e| CacheError::Backend(format!("open the shared store's refcounts.db: {e}")))?;
        let inner = Arc::new(Inner {
            blobs,
            db: Mutex::new(db),
            offers: Mutex::new(Offers::default()),
            changed: Condvar::new(),
        });
        let adopter = std::thread::Builder::new()
            .name("aether-shared".into())
            .spawn({
                let inner = inner.clone();
                move || inner.adopt_offers()
            })
            .map_err(|e| CacheError::Backend(format!("start the shared store's thread: {e}")))?;
        Ok(SharedStore {
            inner,
            adopter: Some(adopter),
        })
    }

    /// Offers a session's new blob to the store (one more reference), in the background.
    pub fn adopt(&self, hash: &str, session_copy: &Path) {
        let mut offers = self.inner.lock_offers();
        offers
            .queued
            .push((hash.to_owned(), session_copy.to_owned()));
        self.inner.changed.notify_all();
    }

    /// Waits until every blob offered so far is linked and counted.
    fn settle(&self) {
        let mut offers = self.inner.lock_offers();
        while !offers.queued.is_empty() || offers.in_flight > 0 {
            offers = self
                .inner
                .changed
                .wait(offers)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Links the store's copy of `hash` into a session cache at `dest`; false if it has none.
    pub fn link_into(&self, hash: &str, dest: &Path) -> bool {
        self.settle();
        let src = self.inner.blobs.join(hash);
        if !src.exists() {
            return false;
        }
        if let Some(dir) = dest.parent()
            && ensure_private_dir(dir).is_err()
        {
            return false;
        }
        match fs::hard_link(&src, dest) {
            Ok(()) => {
                self.inner.count(hash, 1);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
            Err(e) => {
                tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot link a blob in");
                false
            }
        }
    }

    /// A session dropped its copy; the store's copy goes when nobody references it.
    pub fn release(&self, hash: &str) {
        self.settle();
        self.inner.count(hash, -1);
        let db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
        let left: i64 = db
            .query_row(
                "SELECT count FROM refs WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .unwrap_or(1);
        if left == 0 {
            let _ = fs::remove_file(self.inner.blobs.join(hash));
            let _ = db.execute("DELETE FROM refs WHERE hash = ?1", params![hash]);
        }
    }

    pub fn link_count(&self) -> u64 {
        self.settle();
        let db = self.inner.db.lock().unwrap_or_else(|p| p.into_inner());
        db.query_row("SELECT coalesce(sum(count), 0) FROM refs", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0) as u64
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        self.inner.lock_offers().closing = true;
        self.inner.changed.notify_all();
        if let Some(adopter) = self.adopter.take() {
            let _ = adopter.join();
        }
    }
}

impl Inner {
    fn lock_offers(&self) -> std::sync::MutexGuard<'_, Offers> {
        self.offers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The adopter thread: links what sessions offer, a round at a time, until the store
    /// closes with nothing left queued.
    fn adopt_offers(&self) {
        loop {
            let round = {
                let mut offers = self.lock_offers();
                while offers.queued.is_empty() && !offers.closing {
                    offers = self.changed.wait(offers).unwrap_or_else(|p| p.into_inner());
                }
                if offers.queued.is_empty() {
                    return;
                }
                let round = std::mem::take(&mut offers.queued);
                offers.in_flight = round.len();
                round
            };
            let linked: Vec<&str> = round
                .iter()
                .filter(|(hash, copy)| self.link(hash, copy))
                .map(|(hash, _)| hash.as_str())
                .collect();
            self.count_all(&linked);
            self.lock_offers().in_flight = 0;
            self.changed.notify_all();
        }
    }

    /// Links a session's copy of `hash` into the store unless it holds one already.
    fn link(&self, hash: &str, session_copy: &Path) -> bool {
        let target = self.blobs.join(hash);
        match fs::hard_link(session_copy, &target) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => true,
            Err(e) => {
                tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot link a blob");
                false
            }
        }
    }

    fn count(&self, hash: &str, delta: i64) {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = db.execute(COUNT, params![hash, delta]) {
            tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot count a reference");
        }
    }

    /// One more reference to each of `hashes`, in one transaction.
    fn count_all(&self, hashes: &[&str]) {
        if hashes.is_empty() {
            return;
        }
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let result = db.transaction().and_then(|tx| {
            {
                let mut add = tx.prepare_cached(COUNT)?;
                for hash in hashes {
                    add.execute(params![hash, 1])?;
                }
            }
            tx.commit()
        });
        if let Err(e) = result {
            tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot count references");
        }
    }
}

/// Adds a (possibly negative) delta to a blob's reference count, never below zero.
const COUNT: &str = "INSERT INTO refs (hash, count) VALUES (?1, max(?2, 0))
     ON CONFLICT(hash) DO UPDATE SET count = max(count + ?2, 0)";
