//! The host-wide shared blob store: `<shared_root>/blobs/<sha256>` hard-link targets and a
//! reference count per blob in `<shared_root>/refcounts.db`. Every failure here only logs a
//! warning: the per-session cache is the source of truth and works without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aether_ports::local_cache::CacheError;
use rusqlite::{Connection, params};

use crate::layout::ensure_private_dir;

pub struct SharedStore {
    blobs: PathBuf,
    db: Mutex<Connection>,
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
        Ok(SharedStore {
            blobs,
            db: Mutex::new(db),
        })
    }

    fn count(&self, hash: &str, delta: i64) {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let r = db.execute(
            "INSERT INTO refs (hash, count) VALUES (?1, max(?2, 0))
             ON CONFLICT(hash) DO UPDATE SET count = max(count + ?2, 0)",
            params![hash, delta],
        );
        if let Err(e) = r {
            tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot count a reference");
        }
    }

    /// Offers a session's new blob to the store (one more reference).
    pub fn adopt(&self, hash: &str, session_copy: &Path) {
        let target = self.blobs.join(hash);
        if !target.exists()
            && let Err(e) = fs::hard_link(session_copy, &target)
            && e.kind() != std::io::ErrorKind::AlreadyExists
        {
            tracing::warn!(target: "aether_cache", error = %e, "shared store: cannot link a blob");
            return;
        }
        self.count(hash, 1);
    }

    /// Links the store's copy of `hash` into a session cache at `dest`; false if it has none.
    pub fn link_into(&self, hash: &str, dest: &Path) -> bool {
        let src = self.blobs.join(hash);
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
                self.count(hash, 1);
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
        self.count(hash, -1);
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        let left: i64 = db
            .query_row(
                "SELECT count FROM refs WHERE hash = ?1",
                params![hash],
                |r| r.get(0),
            )
            .unwrap_or(1);
        if left == 0 {
            let _ = fs::remove_file(self.blobs.join(hash));
            let _ = db.execute("DELETE FROM refs WHERE hash = ?1", params![hash]);
        }
    }

    pub fn link_count(&self) -> u64 {
        let db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        db.query_row("SELECT coalesce(sum(count), 0) FROM refs", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0) as u64
    }
}
