//! Small content kept in the cache index (SQLite) instead of one file per blob: for a file of
//! a few KiB, the file system's inode allocation, link and unlink cost more than the content.

use std::collections::HashSet;

use aether_ports::local_cache::{CacheError, CacheResult};
use rusqlite::{OptionalExtension, params};

use crate::journal::Journal;

/// Content up to this size lives in the index; larger content gets a file of its own.
pub const INLINE_MAX_BYTES: usize = 64 << 10;

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS inline_blobs (
    hash TEXT PRIMARY KEY,
    data BLOB NOT NULL);";

fn db_err(what: &'static str) -> impl Fn(rusqlite::Error) -> CacheError {
    move |e| CacheError::Backend(format!("{what}: {e}"))
}

impl Journal {
    /// Stores `data` as `hash` (a no-op if present); committed before it returns, so a journal
    /// entry appended afterwards never names content that is not there.
    pub(crate) fn inline_put(&self, hash: &str, data: &[u8]) -> CacheResult<()> {
        self.conn()
            .prepare_cached("INSERT OR IGNORE INTO inline_blobs (hash, data) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![hash, data]))
            .map_err(db_err("store small content in the cache index"))?;
        Ok(())
    }

    pub(crate) fn inline_get(&self, hash: &str) -> CacheResult<Option<Vec<u8>>> {
        self.conn()
            .prepare_cached("SELECT data FROM inline_blobs WHERE hash = ?1")
            .and_then(|mut s| s.query_row(params![hash], |r| r.get(0)).optional())
            .map_err(db_err("read small content from the cache index"))
    }

    pub(crate) fn inline_has(&self, hash: &str) -> bool {
        self.conn()
            .prepare_cached("SELECT 1 FROM inline_blobs WHERE hash = ?1")
            .and_then(|mut s| s.exists(params![hash]))
            .unwrap_or(false)
    }

    /// (count, bytes) of the content kept in the index.
    pub(crate) fn inline_stats(&self) -> (u64, u64) {
        self.conn()
            .query_row(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM inline_blobs",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .unwrap_or((0, 0))
    }

    /// Removes the content `needed` does not name; returns the bytes freed.
    pub(crate) fn inline_sweep(&self, needed: &HashSet<String>) -> CacheResult<u64> {
        let conn = self.conn();
        let all: Vec<(String, i64)> = conn
            .prepare("SELECT hash, length(data) FROM inline_blobs")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .map_err(db_err("list small content in the cache index"))?;
        let mut freed = 0;
        for (hash, len) in all.into_iter().filter(|(h, _)| !needed.contains(h)) {
            conn.prepare_cached("DELETE FROM inline_blobs WHERE hash = ?1")
                .and_then(|mut s| s.execute(params![hash]))
                .map_err(db_err("drop small content from the cache index"))?;
            freed += len as u64;
        }
        Ok(freed)
    }
}
