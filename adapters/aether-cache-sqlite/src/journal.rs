//! The write journal: an ordered SQLite table of pending mutations (JSON), a table of refused
//! ones, and the sync policy that decides when the journal reaches stable storage.
//!
//! Every append is committed before it returns, so a crash of the runtime loses nothing; the
//! policy only decides when the WAL is forced to disk (power loss): `immediate` at every append,
//! `interval` by the app's timer calling `sync`, `manual` only when asked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aether_domain::Timestamp;
use aether_ports::local_cache::*;
use rusqlite::{Connection, OptionalExtension, params};

/// When the journal is forced to stable storage (SPEC 5.1 `journal_sync_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    Immediate,
    Interval,
    Manual,
}

/// Why the journal was forced to stable storage (a label of `aether_journal_wal_flush_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushReason {
    /// The `interval` policy's timer.
    Interval,
    /// Unsynced content passed `journal_sync_backlog_bytes`.
    Backlog,
    /// Asked for: `fsync`, a stop, the `manual` policy's caller.
    Requested,
    /// The policy changed to `immediate` (SIGHUP).
    PolicyChange,
}

impl FlushReason {
    const ALL: [FlushReason; 4] = [
        FlushReason::Interval,
        FlushReason::Backlog,
        FlushReason::Requested,
        FlushReason::PolicyChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Interval => "interval",
            FlushReason::Backlog => "backlog",
            FlushReason::Requested => "requested",
            FlushReason::PolicyChange => "policy_change",
        }
    }
}

impl SyncPolicy {
    const ALL: [SyncPolicy; 3] = [
        SyncPolicy::Immediate,
        SyncPolicy::Interval,
        SyncPolicy::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Immediate => "immediate",
            SyncPolicy::Interval => "interval",
            SyncPolicy::Manual => "manual",
        }
    }
}

/// How often the journal reached stable storage, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalCounters {
    /// (reason, outcome `ok`/`error`, count) of forced WAL flushes.
    pub flushes: Vec<(&'static str, &'static str, u64)>,
    /// (policy in force, count) of syncs to stable storage, SQLite's own under `immediate`.
    pub syncs: Vec<(&'static str, u64)>,
}

pub(crate) struct Journal {
    conn: Mutex<Connection>,
    /// Forced flushes by reason and outcome (ok, error), and syncs by policy.
    flushes: [[AtomicU64; 2]; 4],
    syncs: [AtomicU64; 3],
    wal: PathBuf,
    unsynced: AtomicBool,
    policy: Mutex<SyncPolicy>,
    /// Under `interval`, content bytes appended since the last sync, and the amount that
    /// forces a sync before the timer (`journal_sync_backlog_bytes`).
    unsynced_bytes: AtomicU64,
    backlog_limit: AtomicU64,
}

fn db_err(what: &str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
    move |e| CacheError::Backend(format!("{what}: {e}"))
}

impl Journal {
    pub(crate) fn open(path: &Path, policy: SyncPolicy) -> Result<Journal, CacheError> {
        let conn = Connection::open(path).map_err(db_err("open the cache index"))?;
        let sync = if policy == SyncPolicy::Immediate {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS journal (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 appended_at INTEGER NOT NULL,
                 bytes INTEGER NOT NULL,
                 op TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS listings (
                 path TEXT PRIMARY KEY,
                 generation INTEGER NOT NULL,
                 entries TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS units (
                 first INTEGER PRIMARY KEY,
                 last INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS rejected (
                 seq INTEGER PRIMARY KEY,
                 appended_at INTEGER NOT NULL,
                 op TEXT NOT NULL,
                 error TEXT NOT NULL);
             {}",
            crate::inline::SCHEMA
        ))
        .map_err(db_err("prepare the cache index"))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Journal {
            conn: Mutex::new(conn),
            flushes: Default::default(),
            syncs: Default::default(),
            wal: PathBuf::from(wal),
            unsynced: AtomicBool::new(false),
            policy: Mutex::new(policy),
            unsynced_bytes: AtomicU64::new(0),
            backlog_limit: AtomicU64::new(2 << 20),
        })
    }

    pub(crate) fn policy(&self) -> SyncPolicy {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the sync policy of a live journal (SIGHUP).
    pub(crate) fn set_policy(&self, policy: SyncPolicy) -> CacheResult<()> {
        let sync = if policy == SyncPolicy::Immediate {
            "FULL"
        } else {
            "NORMAL"
        };
        self.conn()
            .execute_batch(&format!("PRAGMA synchronous={sync};"))
            .map_err(db_err("change the journal's sync policy"))?;
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
        if policy == SyncPolicy::Immediate {
            self.unsynced.store(true, Ordering::Relaxed);
            self.sync(FlushReason::PolicyChange)?;
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn append(&self, op: &JournalOp, now: Timestamp) -> CacheResult<u64> {
        let json = serde_json::to_string(op)
            .map_err(|e| CacheError::Backend(format!("encode a journal entry: {e}")))?;
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO journal (appended_at, bytes, op) VALUES (?1, ?2, ?3)")
            .and_then(|mut s| s.execute(params![now.nanos(), op.payload_bytes() as i64, json]))
            .map_err(db_err("append to the journal"))?;
        let seq = conn.last_insert_rowid() as u64;
        drop(conn);
        if self.policy() == SyncPolicy::Immediate {
            // synchronous=FULL: SQLite synced the commit itself.
            self.count_sync(SyncPolicy::Immediate);
        } else {
            self.unsynced.store(true, Ordering::Relaxed);
            let pending = self
                .unsynced_bytes
                .fetch_add(op.payload_bytes(), Ordering::Relaxed)
                + op.payload_bytes();
            if self.policy() == SyncPolicy::Interval
                && pending >= self.backlog_limit.load(Ordering::Relaxed)
            {
                self.sync(FlushReason::Backlog)?;
            }
        }
        Ok(seq)
    }

    pub(crate) fn pending(&self, limit: usize) -> CacheResult<Vec<JournalEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT seq, appended_at, op FROM journal ORDER BY seq LIMIT ?1")
            .map_err(db_err("read the journal"))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(db_err("read the journal"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, json) = row.map_err(db_err("read the journal"))?;
            let op = serde_json::from_str(&json).map_err(|e| {
                CacheError::Backend(format!("journal entry {seq} cannot be decoded: {e}"))
            })?;
            out.push(JournalEntry {
                seq: seq as u64,
                appended_at: Timestamp::from_nanos(at),
                op,
            });
        }
        Ok(out)
    }

    pub(crate) fn ack(&self, seq: u64) -> CacheResult<()> {
        self.ack_range(seq, seq)
    }

    pub(crate) fn ack_range(&self, first: u64, last: u64) -> CacheResult<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("acknowledge journal entries"))?;
        tx.prepare_cached("DELETE FROM journal WHERE seq BETWEEN ?1 AND ?2")
            .and_then(|mut s| s.execute(params![first as i64, last as i64]))
            .and_then(|_| {
                tx.prepare_cached("DELETE FROM units WHERE first BETWEEN ?1 AND ?2")
                    .and_then(|mut s| s.execute(params![first as i64, last as i64]))
            })
            .map_err(db_err("acknowledge journal entries"))?;
        tx.commit().map_err(db_err("acknowledge journal entries"))
    }

    pub(crate) fn unit(&self, first: u64, last: u64) -> CacheResult<(u64, u64)> {
        let conn = self.conn();
        conn.prepare_cached("INSERT OR IGNORE INTO units (first, last) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![first as i64, last as i64]))
            .map_err(db_err("fix a write-back unit"))?;
        let last: i64 = conn
            .prepare_cached("SELECT last FROM units WHERE first = ?1")
            .and_then(|mut s| s.query_row(params![first as i64], |r| r.get(0)))
            .map_err(db_err("fix a write-back unit"))?;
        Ok((first, last as u64))
    }

    pub(crate) fn split_unit(&self, first: u64, last: u64) -> CacheResult<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("split a write-back unit"))?;
        for seq in first..=last {
            tx.prepare_cached("INSERT OR REPLACE INTO units (first, last) VALUES (?1, ?1)")
                .and_then(|mut s| s.execute(params![seq as i64]))
                .map_err(db_err("split a write-back unit"))?;
        }
        tx.commit().map_err(db_err("split a write-back unit"))
    }

    pub(crate) fn reject(&self, seq: u64, error: &str) -> CacheResult<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("set a journal entry aside"))?;
        tx.execute(
            "INSERT OR REPLACE INTO rejected (seq, appended_at, op, error)
             SELECT seq, appended_at, op, ?2 FROM journal WHERE seq = ?1",
            params![seq as i64, error],
        )
        .and_then(|_| tx.execute("DELETE FROM journal WHERE seq = ?1", params![seq as i64]))
        .and_then(|_| tx.execute("DELETE FROM units WHERE first = ?1", params![seq as i64]))
        .map_err(db_err("set a journal entry aside"))?;
        tx.commit().map_err(db_err("set a journal entry aside"))
    }

    pub(crate) fn rejected(&self) -> CacheResult<Vec<RejectedEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT seq, appended_at, op, error FROM rejected ORDER BY seq")
            .map_err(db_err("read refused entries"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db_err("read refused entries"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at, json, error) = row.map_err(db_err("read refused entries"))?;
            let Ok(op) = serde_json::from_str(&json) else {
                continue;
            };
            out.push(RejectedEntry {
                entry: JournalEntry {
                    seq: seq as u64,
                    appended_at: Timestamp::from_nanos(at),
                    op,
                },
                error,
            });
        }
        Ok(out)
    }

    pub(crate) fn stats(&self) -> JournalStats {
        let conn = self.conn();
        let pending = conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(bytes), 0), min(appended_at) FROM journal",
            )
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })
            })
            .unwrap_or((0, 0, None));
        let last: i64 = conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'journal'",
                [],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten()
            .unwrap_or(0);
        JournalStats {
            pending_entries: pending.0 as u64,
            pending_bytes: pending.1 as u64,
            oldest_appended_at: pending.2.map(Timestamp::from_nanos),
            last_seq: last as u64,
        }
    }

    /// Forces appended entries to stable storage (fsync of the WAL).
    pub(crate) fn set_backlog_limit(&self, bytes: u64) {
        self.backlog_limit.store(bytes.max(1), Ordering::Relaxed);
    }

    pub(crate) fn sync(&self, reason: FlushReason) -> CacheResult<()> {
        if !self.unsynced.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.unsynced_bytes.store(0, Ordering::Relaxed);
        let result = match std::fs::File::open(&self.wal) {
            Ok(f) => f
                .sync_data()
                .map_err(|e| CacheError::Backend(format!("sync the journal: {e}"))),
            // Checkpointed and removed: the data is in the main file, synced by SQLite.
            Err(_) => Ok(()),
        };
        let reason_at = FlushReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.flushes[reason_at][usize::from(result.is_err())].fetch_add(1, Ordering::Relaxed);
        if result.is_ok() {
            self.count_sync(self.policy());
        }
        result
    }

    fn count_sync(&self, policy: SyncPolicy) {
        let at = SyncPolicy::ALL
            .iter()
            .position(|p| *p == policy)
            .unwrap_or(0);
        self.syncs[at].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> JournalCounters {
        let mut flushes = Vec::new();
        for (i, reason) in FlushReason::ALL.iter().enumerate() {
            for (j, outcome) in ["ok", "error"].iter().enumerate() {
                flushes.push((
                    reason.as_str(),
                    *outcome,
                    self.flushes[i][j].load(Ordering::Relaxed),
                ));
            }
        }
        let syncs = SyncPolicy::ALL
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), self.syncs[i].load(Ordering::Relaxed)))
            .collect();
        JournalCounters { flushes, syncs }
    }

    pub(crate) fn index_save(&self, generation: u64, listings: &Listings) -> CacheResult<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("save the listing index"))?;
        tx.execute("DELETE FROM listings", [])
            .map_err(db_err("save the listing index"))?;
        for (path, entries) in listings {
            let json = serde_json::to_string(entries)
                .map_err(|e| CacheError::Backend(format!("encode a listing: {e}")))?;
            tx.prepare_cached(
                "INSERT INTO listings (path, generation, entries) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![path, generation as i64, json]))
            .map_err(db_err("save the listing index"))?;
        }
        tx.commit().map_err(db_err("save the listing index"))
    }

    pub(crate) fn index_take(&self) -> CacheResult<Option<(u64, Listings)>> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("read the listing index"))?;
        let rows: Vec<(String, i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT path, generation, entries FROM listings ORDER BY path")
                .map_err(db_err("read the listing index"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(db_err("read the listing index"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("read the listing index"))?
        };
        tx.execute("DELETE FROM listings", [])
            .map_err(db_err("read the listing index"))?;
        tx.commit().map_err(db_err("read the listing index"))?;
        let Some(generation) = rows.first().map(|r| r.1 as u64) else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(rows.len());
        for (path, g, json) in rows {
            if g as u64 != generation {
                return Ok(None);
            }
            match serde_json::from_str(&json) {
                Ok(entries) => out.push((path, entries)),
                // An index written by another version: start from the server instead.
                Err(_) => return Ok(None),
            }
        }
        Ok(Some((generation, out)))
    }

    /// Whether a pending entry names any of `names` (as its content, or as the content it
    /// replaces): its upload may still read that content from the cache.
    pub(crate) fn mentions_any(&self, names: &[String]) -> CacheResult<bool> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM journal WHERE instr(op, ?1) > 0)")
            .map_err(db_err("look for a name in the journal"))?;
        for name in names {
            let found: bool = stmt
                .query_row(params![name], |r| r.get(0))
                .map_err(db_err("look for a name in the journal"))?;
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(crate) fn referenced_hashes(&self) -> CacheResult<HashSet<String>> {
        Ok(self
            .pending(usize::MAX >> 1)?
            .into_iter()
            .filter_map(|e| match e.op {
                JournalOp::Write { hash, .. } => Some(hash),
                _ => None,
            })
            .collect())
    }
}
