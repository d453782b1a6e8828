//! The mount engine (domain layer): serves one session as a POSIX file tree over any
//! `SessionApi` and any `LocalCache`. Reads are answered from the local cache and fetched on
//! demand; every mutation is applied locally, appended to the write journal and written back to
//! the server in order, in the background, with idempotency keys.
//!
//! The engine implements the `Vfs` port a kernel bridge drives; it never spawns tasks or reads
//! the clock itself: the app runs [`Engine::run_writeback`], [`Engine::run_changefeed`] and
//! [`Engine::run_transfers`] and passes a `MountClock`.

mod changefeed;
mod content;
mod content_id;
mod early;
mod errors;
mod kernel_store;
mod listing;
mod namespace;
mod naming;
mod nodes;
mod prefetch;
mod reclaim;
mod writeback;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use aether_domain::Principal;
use aether_domain::cache_policy::TtlCache;
use aether_ports::Ctx;
use aether_ports::local_cache::{JournalOp, LocalCache, MountClock};
use aether_ports::vfs::{FsError, FsResult, KernelNotifier};

pub use errors::fs_error;
pub use writeback::Backoff;

use nodes::Nodes;

/// What one mount serves and how long it trusts what it has seen.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub session_id: String,
    /// Who the mount acts as (for the remote API's context).
    pub principal: Principal,
    /// This host's stable worker id; prefixes every idempotency key.
    pub worker_id: String,
    pub lookup_ttl: Duration,
    pub negative_ttl: Duration,
    pub dir_ttl: Duration,
    pub read_only: bool,
    pub backoff: Backoff,
    /// When writers are held back (SPEC 5.1 `[backpressure]`).
    pub backpressure: aether_domain::backpressure::Thresholds,
    /// The longest a writer waits for the backlog to drain before failing with `ENOSPC`.
    pub backpressure_wait: Duration,
    /// A file written in order from empty starts uploading while it is written once it is this
    /// large (with [`Engine::run_transfers`] running); `None` uploads every file at write-back.
    pub early_upload_above: Option<u64>,
    /// When a change arrives while the write-back is idle, it waits this long (once) for more
    /// to join the same batch, unless someone waits for it (`fsync`, stop); `None` sends at once.
    pub writeback_linger: Option<Duration>,
    /// The most the cache's clean content may take: past it, [`Engine::trim_cache`] drops the
    /// oldest; `None` leaves it to the disk's low-free mark.
    pub cache_max_bytes: Option<u64>,
}

/// Counters for `status` and metrics.
#[derive(Debug, Default)]
pub struct EngineCounters {
    pub ops: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub remote_errors: AtomicU64,
    pub written_back: AtomicU64,
    pub rejected: AtomicU64,
    /// Monotonic milliseconds of the last successful server reply (0 = never).
    pub last_contact_ms: AtomicU64,
    pub invalidations: AtomicU64,
    /// Bytes handed to readers and taken from writers through the mount.
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Bytes of clean content dropped from the cache: its disk ran short, or it outgrew
    /// [`MountConfig::cache_max_bytes`].
    pub evicted_bytes: AtomicU64,
}

/// A point-in-time view of the engine for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStatus {
    pub inodes: u64,
    pub open_handles: u64,
    pub ops: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub remote_errors: u64,
    pub written_back: u64,
    pub rejected: u64,
    pub last_contact_ago: Option<Duration>,
    pub invalidations: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub evicted_bytes: u64,
}

/// One open file or directory.
#[derive(Debug, Clone)]
enum Handle {
    File {
        ino: u64,
        write: bool,
        append: bool,
        /// Writes bypass the kernel's page cache ([`OpenOut::direct_io`]).
        direct: bool,
        /// Where the next sequential read would start, and the read-ahead window.
        next_read: u64,
        window: u64,
    },
    Dir {
        /// The listing as of the first `readdir` (taken then, not at `opendir`: a listing the
        /// kernel serves from its own cache is never read through the handle).
        entries: Option<std::sync::Arc<[aether_ports::vfs::DirEntryOut]>>,
    },
}

impl Handle {
    /// The file a file handle reads or writes.
    fn file_ino(&self) -> Option<u64> {
        match self {
            Handle::File { ino, .. } => Some(*ino),
            Handle::Dir { .. } => None,
        }
    }
}

struct State {
    nodes: Nodes,
    negative: TtlCache<(u64, String), ()>,
    /// Journal sequence → inodes whose `pending` count it holds.
    pending_by_seq: BTreeMap<u64, Vec<u64>>,
    /// Paths of mutations the server acknowledged, whose changefeed echo is not news.
    echoes: HashMap<String, u32>,
    /// Journal entries the server refused for good, by sequence.
    rejected: BTreeMap<u64, String>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Byte ranges held of blobs being fetched by range (merged, `[start, end)`).
    partials: HashMap<String, Vec<(u64, u64)>>,
    /// The backpressure gate and when it was last assessed (monotonic).
    gate: aether_domain::backpressure::Gate,
    gate_checked: Duration,
    /// Early uploads by inode, and those tied to the journal entry of their content.
    early: HashMap<u64, early::Early>,
    early_claims: HashMap<u64, early::Claim>,
    /// Blobs with a read-ahead queued or in flight.
    reading_ahead: std::collections::HashSet<String>,
    /// Blobs being streamed in by range, with the range the stream will have covered when it
    /// ends: readers of bytes inside it wait for them instead of fetching them again.
    streaming: HashMap<String, (u64, u64)>,
    /// The directory of the last file read cold, and the blobs queued to be fetched ahead
    /// (`prefetch.rs`).
    last_cold_dir: Option<u64>,
    prefetching: std::collections::HashSet<String>,
    /// Content committed under a local name, by name: the inode it was written to, until the
    /// server names it; then the server's names of such content, for patches journaled against
    /// it before (`naming.rs`).
    local_names: HashMap<String, u64>,
    server_names: HashMap<String, String>,
    next_local: u32,
}

/// Whether a handle may write past the kernel's page cache ([`OpenOut::direct_io`]): it is
/// write-only and starts the content over (created, or opened with `O_TRUNC`). Such a writer
/// cannot read back through its handle, and leaves no older content for a concurrent reader to
/// hold stale (the kernel drops cached pages of each range it writes, too).
fn starts_over_write_only(how: &aether_ports::vfs::OpenIn, created: bool) -> bool {
    how.write && !how.read && (created || how.truncate)
}

/// How long reads that need the server keep trying while it is away before they fail with
/// `ETIMEDOUT`: long enough to ride out a server restart, short enough that a program learns
/// of a real outage.
const READ_PATIENCE: Duration = Duration::from_secs(10);

/// The mount engine. Share it in an `Arc`: the kernel bridge and the background loops use it
/// concurrently.
pub struct Engine<R, C, K> {
    remote: R,
    cache: C,
    clock: K,
    kernel: OnceLock<std::sync::Arc<dyn KernelNotifier>>,
    config: MountConfig,
    state: Mutex<State>,
    writeback_wake: tokio::sync::Notify,
    /// Callers waiting for the write-back (`fsync`, stop): it does not linger while any do.
    hurry: std::sync::atomic::AtomicUsize,
    hurry_wake: tokio::sync::Notify,
    /// Highest journal sequence the writer has finished with (acknowledged or refused).
    done_through: tokio::sync::watch::Sender<u64>,
    counters: EngineCounters,
    /// One fetch at a time per blob, so concurrent readers share downloads.
    fetch_locks: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    /// Woken whenever a streamed fetch has written more bytes, or has ended.
    fetch_progress: tokio::sync::Notify,
    /// Since when (monotonic ms) the server has been away for the reads that need it; 0 while
    /// it answers. See [`Engine::patiently`].
    away_since_ms: AtomicU64,
    /// Small files' content on its way into the kernel's page cache.
    kernel_stores: std::sync::Arc<kernel_store::KernelStores>,
    /// The session is not active (archived, conflicted): it accepts no writes.
    session_frozen: std::sync::atomic::AtomicBool,
    /// The session's generation when the mount started, and the highest generation of any
    /// event the changefeed has delivered since (our own included).
    start_generation: AtomicU64,
    seen_generation: AtomicU64,
    /// The largest file the server stores (from the session's capabilities; `u64::MAX` when the
    /// server does not say): writes past it fail with `EFBIG` instead of at write-back.
    max_file_bytes: AtomicU64,
    /// An eviction of clean content is under way (one at a time: it walks the whole cache).
    evicting: std::sync::atomic::AtomicBool,
    /// Bytes read and written through the mount when [`Engine::trim_cache`] last measured the
    /// cache (`u64::MAX`: not yet).
    trimmed_at: AtomicU64,
    transfers: early::Transfers,
}

impl<R, C, K> Engine<R, C, K>
where
    R: aether_ports::SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    pub fn new(remote: R, cache: C, clock: K, config: MountConfig) -> Self {
        let now = clock.now();
        // Entries before the oldest pending one are done; a fresh journal has nothing pending.
        let done = match cache.journal_pending(1) {
            Ok(first) if !first.is_empty() => first[0].seq - 1,
            _ => cache.journal_stats().last_seq,
        };
        Engine {
            state: Mutex::new(State {
                nodes: Nodes::new(now),
                negative: TtlCache::negative(config.negative_ttl),
                pending_by_seq: BTreeMap::new(),
                echoes: HashMap::new(),
                rejected: BTreeMap::new(),
                handles: HashMap::new(),
                next_fh: 1,
                partials: HashMap::new(),
                gate: aether_domain::backpressure::Gate::Open,
                gate_checked: Duration::ZERO,
                early: HashMap::new(),
                early_claims: HashMap::new(),
                reading_ahead: Default::default(),
                streaming: HashMap::new(),
                last_cold_dir: None,
                prefetching: Default::default(),
                local_names: HashMap::new(),
                server_names: HashMap::new(),
                next_local: 0,
            }),
            remote,
            cache,
            clock,
            kernel: OnceLock::new(),
            config,
            writeback_wake: tokio::sync::Notify::new(),
            hurry: std::sync::atomic::AtomicUsize::new(0),
            hurry_wake: tokio::sync::Notify::new(),
            done_through: tokio::sync::watch::Sender::new(done),
            counters: EngineCounters::default(),
            fetch_locks: Mutex::new(HashMap::new()),
            fetch_progress: tokio::sync::Notify::new(),
            away_since_ms: AtomicU64::new(0),
            kernel_stores: Default::default(),
            session_frozen: std::sync::atomic::AtomicBool::new(false),
            start_generation: AtomicU64::new(0),
            seen_generation: AtomicU64::new(0),
            max_file_bytes: AtomicU64::new(u64::MAX),
            evicting: std::sync::atomic::AtomicBool::new(false),
            trimmed_at: AtomicU64::new(u64::MAX),
            transfers: early::Transfers::default(),
        }
    }

    /// Connects the engine to the kernel, once the mount exists, for invalidations and for
    /// filling its page cache.
    pub fn attach_kernel(&self, notifier: Box<dyn KernelNotifier>) {
        let _ = self.kernel.set(notifier.into());
    }

    pub fn config(&self) -> &MountConfig {
        &self.config
    }

    pub fn cache(&self) -> &C {
        &self.cache
    }

    pub fn clock(&self) -> &K {
        &self.clock
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// Checks that the session exists and is reachable, and loads the root's attributes.
    pub async fn start(&self) -> FsResult<aether_ports::Session> {
        let session = self
            .remote
            .get_session(&self.ctx(), &self.config.session_id)
            .await
            .map_err(|e| fs_error(e, &self.config.session_id))?;
        self.contact();
        let frozen = session.status != aether_domain::SessionStatus::Active;
        self.session_frozen.store(frozen, Ordering::Relaxed);
        self.start_generation
            .store(session.generation, Ordering::Relaxed);
        self.seen_generation
            .store(session.generation, Ordering::Relaxed);
        self.max_file_bytes.store(
            session.capabilities.max_file_bytes.unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // Listings saved at this very generation are still true: no directory needs reading.
        let saved = self.cache.index_take().map_err(errors::cache_error)?;
        if self.cache.journal_stats().pending_entries > 0 {
            // A runtime before this one journaled changes it did not write back (a crash).
            // They go to the server before the tree is shown; read now, the listings would
            // show the server's view from before them, and the write-back does not revise
            // them. Each directory is read when first needed, after that.
            return Ok(session);
        }
        match saved {
            Some((generation, listings)) if generation == session.generation => {
                self.restore_listings(listings);
            }
            _ => self.load_dir(aether_ports::vfs::ROOT_INO).await?,
        }
        Ok(session)
    }

    /// Saves the listings the mount knows for the next mount, if the changefeed has shown us
    /// every change up to the session's current generation (so none of them is stale).
    /// Returns the number of directories saved.
    pub async fn save_index(&self, settle: Duration) -> FsResult<usize> {
        if self.cache.journal_stats().pending_entries > 0 {
            return Ok(0);
        }
        let session = self
            .remote
            .get_session(&self.ctx(), &self.config.session_id)
            .await
            .map_err(|e| fs_error(e, &self.config.session_id))?;
        let deadline = self.clock.elapsed() + settle;
        while self.seen_generation.load(Ordering::Relaxed) < session.generation {
            if self.clock.elapsed() >= deadline {
                return Ok(0);
            }
            self.clock.sleep(Duration::from_millis(20)).await;
        }
        let listings = self.listings_snapshot();
        self.cache
            .index_save(session.generation, &listings)
            .map_err(errors::cache_error)?;
        Ok(listings.len())
    }

    pub fn status(&self) -> EngineStatus {
        let st = self.lock();
        let c = &self.counters;
        let last = c.last_contact_ms.load(Ordering::Relaxed);
        let now_ms = self.clock.elapsed().as_millis() as u64;
        EngineStatus {
            inodes: st.nodes.len() as u64,
            open_handles: st.handles.len() as u64,
            ops: c.ops.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            remote_errors: c.remote_errors.load(Ordering::Relaxed),
            written_back: c.written_back.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            last_contact_ago: (last > 0)
                .then(|| Duration::from_millis(now_ms.saturating_sub(last))),
            invalidations: c.invalidations.load(Ordering::Relaxed),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            evicted_bytes: c.evicted_bytes.load(Ordering::Relaxed),
        }
    }

    /// Open handles as (fh, inode, path, writable) for `debug handles`.
    pub fn handles(&self) -> Vec<(u64, u64, String, bool)> {
        let st = self.lock();
        let mut out: Vec<_> = st
            .handles
            .iter()
            .filter_map(|(fh, h)| match h {
                Handle::File { ino, write, .. } => Some((
                    *fh,
                    *ino,
                    st.nodes.path(*ino).unwrap_or_else(|| "(unlinked)".into()),
                    *write,
                )),
                Handle::Dir { .. } => None,
            })
            .collect();
        out.sort();
        out
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ctx(&self) -> Ctx {
        Ctx::new(self.config.principal.clone())
    }

    fn contact(&self) {
        let ms = self.clock.elapsed().as_millis().max(1) as u64;
        self.counters.last_contact_ms.store(ms, Ordering::Relaxed);
        self.away_since_ms.store(0, Ordering::Relaxed);
    }

    /// How long to wait before the next try after `failures` in a row: the reconnect backoff,
    /// jittered by the clock's low digits so that mounts restarted together spread out.
    fn retry_delay(&self, failures: u32) -> Duration {
        let noise = (self.clock.elapsed().subsec_nanos() % 1000) as f64 / 1000.0;
        self.config.backoff.jittered(failures, noise)
    }

    /// Runs `attempt`, a read that needs the server, again while it fails because the server
    /// is away (`ETIMEDOUT`: a restart, a network blip), pacing the tries with the reconnect
    /// backoff, for as long as the outage is younger than [`READ_PATIENCE`]. The outage is
    /// the engine's, not the call's: once the server has been away that long, reads fail at
    /// once instead of each waiting the whole time, until a call gets through again.
    async fn patiently<T, Fut>(&self, mut attempt: impl FnMut() -> Fut) -> FsResult<T>
    where
        Fut: std::future::Future<Output = FsResult<T>>,
    {
        let mut failures = 0;
        loop {
            match attempt().await {
                Err(FsError::TimedOut(why)) => {
                    failures += 1;
                    let now = self.clock.elapsed().as_millis().max(1) as u64;
                    let since = match self.away_since_ms.compare_exchange(
                        0,
                        now,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => now,
                        Err(since) => since,
                    };
                    let wait = self.retry_delay(failures);
                    let away = Duration::from_millis(now.saturating_sub(since));
                    if away + wait > READ_PATIENCE {
                        return Err(FsError::TimedOut(why));
                    }
                    tracing::info!(target: "aether_mount", error = %why, retry_in_ms = wait.as_millis() as u64, "the server is away; the read will try again");
                    self.clock.sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    fn op(&self) {
        self.counters.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Refuses a size the server would not store, as a file system refuses one past its
    /// largest file (`EFBIG`), so the writer learns it now rather than at write-back.
    fn within_max_size(&self, ino: u64, size: u64) -> FsResult<()> {
        if size <= self.max_file_bytes.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(self.too_big(ino, size))
    }

    fn too_big(&self, ino: u64, size: u64) -> FsError {
        let max = self.max_file_bytes.load(Ordering::Relaxed);
        let path = self.lock().nodes.path(ino).unwrap_or_default();
        FsError::TooBig(format!(
            "{path}: {size} bytes is past the server's largest file ({max} bytes)"
        ))
    }

    fn writable(&self) -> FsResult<()> {
        if self.config.read_only {
            return Err(FsError::ReadOnly("the mount is read-only".into()));
        }
        if self.session_frozen.load(Ordering::Relaxed) {
            return Err(FsError::ReadOnly(format!(
                "session {} is not active (archived?); reactivate it to write",
                self.config.session_id
            )));
        }
        Ok(())
    }

    /// The backpressure gate as last assessed.
    pub fn gate(&self) -> aether_domain::backpressure::Gate {
        self.lock().gate
    }

    /// Assesses the backlog now and returns the gate.
    fn assess(&self) -> aether_domain::backpressure::Gate {
        let j = self.cache.journal_stats();
        let now = self.clock.now();
        let oldest_age = j
            .oldest_appended_at
            .map(|t| Duration::from_nanos((now.nanos() - t.nanos()).max(0) as u64))
            .unwrap_or_default();
        let reading = aether_domain::backpressure::Reading {
            journal_bytes: j.pending_bytes,
            journal_entries: j.pending_entries,
            oldest_age,
            // Content not yet on the server is what the cache holds dirty.
            dirty_bytes: j.pending_bytes,
            disk: self.disk_space_after_eviction(),
        };
        let mut st = self.lock();
        st.gate = self.config.backpressure.next(st.gate, &reading);
        st.gate_checked = self.clock.elapsed();
        st.gate
    }

    /// The free and total bytes of the cache's disk, after making room when it is short: clean
    /// content (what the server holds) is dropped from the cache, the least recently used
    /// first, until the disk is back at its high-free mark. Without this, a cache that kept
    /// every version it ever saw would fill the disk and then hold writers back for good.
    fn disk_space_after_eviction(&self) -> Option<(u64, u64)> {
        let disk = self.cache.disk_space();
        let Some(short) = self.config.backpressure.disk_shortfall(disk) else {
            return disk;
        };
        if self.evict(short, "cache disk low").is_none() {
            return disk;
        }
        self.cache.disk_space()
    }

    /// Keeps the cache's content under [`MountConfig::cache_max_bytes`]: when it has grown past
    /// it, drops clean content, the least recently used first, down to nine tenths of it (so
    /// that the next trim is not due at once). Measuring walks the cache, so it is done only
    /// once enough has been read or written since the last time (and once at the start).
    /// Returns the bytes dropped. Called every little while by the runtime, off the async
    /// workers.
    pub fn trim_cache(&self) -> u64 {
        let Some(max) = self.config.cache_max_bytes else {
            return 0;
        };
        let moved = self.counters.bytes_read.load(Ordering::Relaxed)
            + self.counters.bytes_written.load(Ordering::Relaxed);
        let last = self.trimmed_at.load(Ordering::Relaxed);
        if last != u64::MAX && moved.saturating_sub(last) < (max / 16).clamp(1 << 20, 256 << 20) {
            return 0;
        }
        self.trimmed_at.store(moved, Ordering::Relaxed);
        let held = self.cache.stats().blob_bytes;
        if held <= max {
            return 0;
        }
        self.evict(held - max / 10 * 9, "cache over its size")
            .unwrap_or(0)
    }

    /// Drops at least `want` bytes of clean content if it can, and counts what it dropped;
    /// `None` if another eviction is under way (one at a time: each walks the whole cache).
    fn evict(&self, want: u64, why: &str) -> Option<u64> {
        if self.evicting.swap(true, Ordering::AcqRel) {
            return None;
        }
        let freed = match self.cache.evict_clean(want) {
            Ok(freed) => {
                tracing::info!(target: "aether_mount", want, freed, "{why}: dropped clean content the server holds");
                freed
            }
            Err(e) => {
                tracing::warn!(target: "aether_mount", error = %e, "{why}, and dropping clean content failed");
                0
            }
        };
        self.evicting.store(false, Ordering::Release);
        self.counters
            .evicted_bytes
            .fetch_add(freed, Ordering::Relaxed);
        Some(freed)
    }

    /// Waits while the backpressure gate holds writers back; fails with `ENOSPC` when the
    /// backlog does not drain within `backpressure_wait`.
    async fn admit(&self) -> FsResult<()> {
        use aether_domain::backpressure::Gate;
        // Assessing reads the journal's figures: at most every 50 ms while the gate is open.
        let recent = {
            let st = self.lock();
            st.gate == Gate::Open
                && self.clock.elapsed() < st.gate_checked + Duration::from_millis(50)
        };
        if recent {
            return Ok(());
        }
        let deadline = self.clock.elapsed() + self.config.backpressure_wait;
        loop {
            let pressure = match self.assess() {
                Gate::Open => return Ok(()),
                Gate::Held(p) => p,
            };
            if self.clock.elapsed() >= deadline {
                return Err(FsError::NoSpace(format!(
                    "writes are held back ({} over its high-water mark) and the server has not taken the backlog",
                    pressure.as_str()
                )));
            }
            let mut progress = self.done_through.subscribe();
            let tick = self.clock.sleep(Duration::from_millis(100));
            futures::pin_mut!(tick);
            futures::future::select(Box::pin(progress.changed()), tick).await;
        }
    }

    /// Appends `op` to the journal and marks `inos` as holding unacknowledged changes.
    fn journal(&self, st: &mut State, op: JournalOp, inos: Vec<u64>) -> FsResult<u64> {
        let seq = self
            .cache
            .journal_append(&op, self.clock.now())
            .map_err(errors::cache_error)?;
        st.nodes.add_pending(&inos, 1);
        st.pending_by_seq.insert(seq, inos);
        self.writeback_wake.notify_one();
        Ok(seq)
    }

    fn kernel(&self) -> Option<&dyn KernelNotifier> {
        self.kernel.get().map(|k| k.as_ref())
    }
}

/// Checks one name from the kernel: UTF-8, no `/` or NUL, at most 255 bytes, not `.`/`..`.
pub fn check_name(raw: &[u8]) -> FsResult<&str> {
    if raw.len() > 255 {
        return Err(FsError::NameTooLong(format!(
            "a name of {} bytes exceeds 255",
            raw.len()
        )));
    }
    let name = std::str::from_utf8(raw).map_err(|_| {
        FsError::IllegalName(format!(
            "{} is not UTF-8; session paths are UTF-8",
            String::from_utf8_lossy(raw)
        ))
    })?;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(FsError::Invalid(format!("{name:?} is not a valid name")));
    }
    Ok(name)
}
