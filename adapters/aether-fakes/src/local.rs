//! An in-memory `LocalCache` (blobs, staging areas, journal) and a hand-driven `MountClock`,
//! so the mount engine can be tested without disk or real time. Clones share state, which is
//! how tests simulate a remount over the same cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_domain::Timestamp;
use aether_ports::local_cache::*;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Inner {
    blobs: HashMap<String, Vec<u8>>,
    stages: HashMap<u64, Vec<u8>>,
    partials: HashMap<String, Vec<u8>>,
    index: Option<(u64, Listings)>,
    journal: BTreeMap<u64, JournalEntry>,
    rejected: Vec<RejectedEntry>,
    last_seq: u64,
    /// Fixed write-back units: first → last.
    units: BTreeMap<u64, u64>,
    /// Blobs that vanish at their next read, as one taken out of the cache between a reader's
    /// lookup and its read would.
    vanishing: Vec<String>,
}

#[derive(Clone, Default)]
pub struct MemoryCache {
    inner: Arc<Mutex<Inner>>,
    /// What `disk_space` reports (tests set it to simulate a full disk).
    disk: Arc<Mutex<Option<(u64, u64)>>>,
    /// Run by the next `stage_read` before it looks (see [`MemoryCache::before_next_stage_read`]).
    before_stage_read: Arc<Mutex<Option<Interleave>>>,
}

/// Something a test runs in the middle of a cache operation.
type Interleave = Box<dyn FnOnce() + Send>;

impl MemoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("memory cache lock")
    }

    /// Makes `disk_space` report `free` of `total` bytes.
    pub fn set_disk_space(&self, space: Option<(u64, u64)>) {
        *self.disk.lock().expect("disk lock") = space;
    }

    /// Removes blob `hash` at its next read, which then finds it missing.
    pub fn vanish_at_next_read(&self, hash: &str) {
        self.lock().vanishing.push(hash.to_owned());
    }

    /// Runs `interleave` inside the next `stage_read`, before it looks for its staging area:
    /// whatever another thread could do while a reader sits between the engine's lookup and
    /// its read.
    pub fn before_next_stage_read(&self, interleave: impl FnOnce() + Send + 'static) {
        *self.before_stage_read.lock().expect("hook lock") = Some(Box::new(interleave));
    }

    /// Forgets staging areas, as a crash of the runtime would (journal and blobs survive).
    pub fn crash(&self) {
        self.lock().stages.clear();
    }
}

fn slice(data: &[u8], offset: u64, len: usize) -> Vec<u8> {
    let start = (offset as usize).min(data.len());
    let end = start.saturating_add(len).min(data.len());
    data[start..end].to_vec()
}

/// A copy of staging area `stage`'s content.
fn staged(g: &Inner, stage: u64) -> CacheResult<Vec<u8>> {
    g.stages
        .get(&stage)
        .cloned()
        .ok_or_else(|| CacheError::Missing(format!("stage {stage}")))
}

impl LocalCache for MemoryCache {
    fn has_blob(&self, hash: &str) -> bool {
        self.lock().blobs.contains_key(hash)
    }

    fn read_blob(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        let mut g = self.lock();
        if let Some(i) = g.vanishing.iter().position(|h| h == hash) {
            g.vanishing.remove(i);
            g.blobs.remove(hash);
        }
        let b = g
            .blobs
            .get(hash)
            .ok_or_else(|| CacheError::Missing(format!("blob {hash}")))?;
        Ok(slice(b, offset, len))
    }

    fn open_blob(&self, hash: &str) -> CacheResult<Box<dyn std::io::Read + Send>> {
        let data = self.read_blob(hash, 0, usize::MAX)?;
        Ok(Box::new(std::io::Cursor::new(data)))
    }

    fn put_blob(&self, hash: &str, data: &[u8]) -> CacheResult<()> {
        self.lock().blobs.insert(hash.to_owned(), data.to_vec());
        Ok(())
    }

    fn partial_write(&self, hash: &str, offset: u64, data: &[u8]) -> CacheResult<()> {
        let mut g = self.lock();
        let p = g.partials.entry(hash.to_owned()).or_default();
        let end = offset as usize + data.len();
        if p.len() < end {
            p.resize(end, 0);
        }
        p[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn partial_read(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        let g = self.lock();
        let p = g
            .partials
            .get(hash)
            .ok_or_else(|| CacheError::Missing(format!("partial {hash}")))?;
        Ok(slice(p, offset, len))
    }

    fn partial_promote(&self, hash: &str) -> CacheResult<bool> {
        let mut g = self.lock();
        let Some(data) = g.partials.remove(hash) else {
            return Ok(false);
        };
        if hex::encode(Sha256::digest(&data)) != hash {
            return Ok(false);
        }
        g.blobs.insert(hash.to_owned(), data);
        Ok(true)
    }

    fn partial_drop(&self, hash: &str) {
        self.lock().partials.remove(hash);
    }

    fn stage_open(&self, stage: u64, from: Option<&str>) -> CacheResult<()> {
        let mut g = self.lock();
        let data = match from {
            Some(h) => g
                .blobs
                .get(h)
                .cloned()
                .ok_or_else(|| CacheError::Missing(format!("blob {h}")))?,
            None => Vec::new(),
        };
        g.stages.insert(stage, data);
        Ok(())
    }

    fn stage_write(&self, stage: u64, offset: u64, data: &[u8]) -> CacheResult<()> {
        let mut g = self.lock();
        let s = g
            .stages
            .get_mut(&stage)
            .ok_or_else(|| CacheError::Missing(format!("stage {stage}")))?;
        let end = offset as usize + data.len();
        if s.len() < end {
            s.resize(end, 0);
        }
        s[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    fn stage_read(&self, stage: u64, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        let hook = self.before_stage_read.lock().expect("hook lock").take();
        if let Some(interleave) = hook {
            interleave();
        }
        let g = self.lock();
        let s = g
            .stages
            .get(&stage)
            .ok_or_else(|| CacheError::Missing(format!("stage {stage}")))?;
        Ok(slice(s, offset, len))
    }

    fn stage_truncate(&self, stage: u64, size: u64) -> CacheResult<()> {
        let mut g = self.lock();
        let s = g
            .stages
            .get_mut(&stage)
            .ok_or_else(|| CacheError::Missing(format!("stage {stage}")))?;
        s.resize(size as usize, 0);
        Ok(())
    }

    fn stage_commit(&self, stage: u64) -> CacheResult<(String, u64)> {
        let mut g = self.lock();
        let data = staged(&g, stage)?;
        let hash = hex::encode(Sha256::digest(&data));
        let size = data.len() as u64;
        g.blobs.insert(hash.clone(), data);
        Ok((hash, size))
    }

    fn stage_commit_as(&self, stage: u64, hash: &str, size: u64) -> CacheResult<()> {
        if LocalName::is(hash) {
            // Kept under the local name alone, so a test notices a read by the server's name
            // before the server named it.
            let mut g = self.lock();
            let data = staged(&g, stage)?;
            if data.len() as u64 != size {
                return Err(CacheError::Backend(format!(
                    "stage {stage} holds {} bytes, not {size}",
                    data.len()
                )));
            }
            g.blobs.insert(hash.to_owned(), data);
            return Ok(());
        }
        // The fake checks what the disk cache trusts, so engine tests catch a wrong hash.
        let (real, real_size) = self.stage_commit(stage)?;
        if real != hash || real_size != size {
            return Err(CacheError::Backend(format!(
                "stage {stage} holds {real} ({real_size} bytes), not {hash} ({size} bytes)"
            )));
        }
        Ok(())
    }

    fn blob_name(&self, local: &str, hash: &str) -> CacheResult<()> {
        let mut g = self.lock();
        let data = g
            .blobs
            .get(local)
            .cloned()
            .ok_or_else(|| CacheError::Missing(format!("blob {local}")))?;
        // What the disk cache trusts: the server's name is the content's hash.
        let real = hex::encode(Sha256::digest(&data));
        if !LocalName::is(local) || real != hash {
            return Err(CacheError::Backend(format!(
                "blob {local} holds {real}, which the server named {hash}"
            )));
        }
        g.blobs.insert(hash.to_owned(), data);
        Ok(())
    }

    fn stage_drop(&self, stage: u64) {
        self.lock().stages.remove(&stage);
    }

    fn journal_append(&self, op: &JournalOp, now: Timestamp) -> CacheResult<u64> {
        let mut g = self.lock();
        g.last_seq += 1;
        let seq = g.last_seq;
        g.journal.insert(
            seq,
            JournalEntry {
                seq,
                appended_at: now,
                op: op.clone(),
            },
        );
        Ok(seq)
    }

    fn journal_pending(&self, limit: usize) -> CacheResult<Vec<JournalEntry>> {
        Ok(self.lock().journal.values().take(limit).cloned().collect())
    }

    fn journal_ack(&self, seq: u64) -> CacheResult<()> {
        let mut g = self.lock();
        g.journal.remove(&seq);
        g.units.remove(&seq);
        Ok(())
    }

    fn journal_unit(&self, first: u64, last: u64) -> CacheResult<(u64, u64)> {
        let mut g = self.lock();
        let last = *g.units.entry(first).or_insert(last);
        Ok((first, last))
    }

    fn journal_split_unit(&self, first: u64, last: u64) -> CacheResult<()> {
        let mut g = self.lock();
        for seq in first..=last {
            g.units.insert(seq, seq);
        }
        Ok(())
    }

    fn journal_ack_range(&self, first: u64, last: u64) -> CacheResult<()> {
        let mut g = self.lock();
        let doomed: Vec<u64> = g.journal.range(first..=last).map(|(s, _)| *s).collect();
        for seq in doomed {
            g.journal.remove(&seq);
        }
        g.units.retain(|f, _| !(first..=last).contains(f));
        Ok(())
    }

    fn journal_reject(&self, seq: u64, error: &str) -> CacheResult<()> {
        let mut g = self.lock();
        g.units.remove(&seq);
        if let Some(entry) = g.journal.remove(&seq) {
            g.rejected.push(RejectedEntry {
                entry,
                error: error.to_owned(),
            });
        }
        Ok(())
    }

    fn journal_rejected(&self) -> CacheResult<Vec<RejectedEntry>> {
        Ok(self.lock().rejected.clone())
    }

    fn journal_stats(&self) -> JournalStats {
        let g = self.lock();
        JournalStats {
            pending_entries: g.journal.len() as u64,
            pending_bytes: g.journal.values().map(|e| e.op.payload_bytes()).sum(),
            oldest_appended_at: g.journal.values().next().map(|e| e.appended_at),
            last_seq: g.last_seq,
        }
    }

    fn journal_sync(&self) -> CacheResult<()> {
        Ok(())
    }

    fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats {
            blob_count: g.blobs.len() as u64,
            blob_bytes: g.blobs.values().map(|b| b.len() as u64).sum(),
            staging_bytes: g.stages.values().map(|b| b.len() as u64).sum(),
            shared_links: 0,
        }
    }

    fn index_save(&self, generation: u64, listings: &Listings) -> CacheResult<()> {
        self.lock().index = Some((generation, listings.clone()));
        Ok(())
    }

    fn index_take(&self) -> CacheResult<Option<(u64, Listings)>> {
        Ok(self.lock().index.take())
    }

    fn disk_space(&self) -> Option<(u64, u64)> {
        *self.disk.lock().expect("disk lock")
    }

    fn evict_clean(&self, bytes: u64) -> CacheResult<u64> {
        let mut g = self.lock();
        let needed: std::collections::HashSet<String> = g
            .journal
            .values()
            .filter_map(|e| match &e.op {
                JournalOp::Write { hash, .. } => Some(hash.clone()),
                _ => None,
            })
            .collect();
        let mut freed = 0u64;
        let names: Vec<String> = g
            .blobs
            .keys()
            .filter(|h| !needed.contains(*h))
            .cloned()
            .collect();
        for name in names {
            if freed >= bytes {
                break;
            }
            freed += g.blobs.remove(&name).map_or(0, |b| b.len() as u64);
        }
        drop(g);
        // The simulated disk gets the bytes back.
        if let Some((free, total)) = self.disk.lock().expect("disk lock").as_mut() {
            *free = (*free + freed).min(*total);
        }
        Ok(freed)
    }

    fn clear_clean(&self) -> CacheResult<u64> {
        self.evict_clean(u64::MAX)
    }
}

/// A clock that moves only when told to (wall time follows the monotonic reading).
#[derive(Clone, Default)]
pub struct ManualClock {
    elapsed_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.elapsed_nanos
            .fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl MountClock for ManualClock {
    fn now(&self) -> Timestamp {
        // 2026-01-01T00:00:00Z plus the elapsed time.
        Timestamp(1_767_225_600_000_000_000 + self.elapsed_nanos.load(Ordering::Relaxed) as i64)
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_nanos.load(Ordering::Relaxed))
    }

    async fn sleep(&self, duration: Duration) {
        // Sleeping advances the clock and yields, so retry loops make progress in tests.
        self.advance(duration);
        tokio::task::yield_now().await;
    }
}
