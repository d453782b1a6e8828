//! Write-back: replays the journal against the server in order, one idempotency key per entry,
//! retrying with backoff while the server is away and setting aside what it refuses for good.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aether_domain::{Code, Error, Reason};
use aether_ports::local_cache::{JournalEntry, JournalOp, LocalCache, LocalName, MountClock};
use aether_ports::vfs::{FsError, FsResult};
use aether_ports::*;
use futures::FutureExt;

use crate::{Engine, errors};

/// Whole-file uploads larger than this stream from the cache instead of being read whole.
const STREAM_UPLOAD_ABOVE: u64 = 1 << 20;
/// The size of each chunk of a streamed upload.
const UPLOAD_CHUNK: u64 = 1 << 20;

fn content_gone(path: &str, e: aether_ports::local_cache::CacheError) -> Error {
    Error::precondition(format!(
        "the journaled content of {path} is gone from the local cache: {e}"
    ))
}

/// Reconnect and retry pacing (SPEC 5.1 `[bridge.reconnect_backoff]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub start: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter_percent: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            start: Duration::from_millis(1000),
            max: Duration::from_millis(60_000),
            multiplier: 2.0,
            jitter_percent: 20.0,
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures, before jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1.0)
            .powi(failures.saturating_sub(1) as i32);
        let ms = (self.start.as_millis() as f64 * factor).min(self.max.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }

    /// `delay` spread by up to ±`jitter_percent`, using `noise` in [0, 1).
    pub fn jittered(&self, failures: u32, noise: f64) -> Duration {
        let base = self.delay(failures).as_secs_f64();
        let spread = base * self.jitter_percent / 100.0 * (noise * 2.0 - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// At most this many journal entries travel in one batch.
const MAX_UNIT_ENTRIES: usize = 512;
/// Batches carry at most this much file content (base64 in JSON adds a third; the server's
/// JSON limit is 8 MiB by default).
const MAX_UNIT_BYTES: u64 = 4 << 20;
/// Files larger than this travel alone (whole or as a patch), never inside a batch.
const MAX_BATCHED_FILE: u64 = 256 << 10;

/// What an entry adds to a batch, or `None` if it must travel alone.
fn batch_bytes(op: &JournalOp) -> Option<u64> {
    match op {
        JournalOp::Write { patch: Some(_), .. } => None,
        JournalOp::Write { size, .. } if *size > MAX_BATCHED_FILE => None,
        // A batch's reply names no content: content named locally travels alone (`naming.rs`).
        JournalOp::Write { hash, .. } if LocalName::is(hash) => None,
        other => Some(other.payload_bytes() + 256),
    }
}

/// The (uid, gid) a change of owner alone sets.
fn owner_only(op: &JournalOp) -> Option<(Option<u32>, Option<u32>)> {
    match op {
        JournalOp::SetAttributes {
            mode: None,
            uid,
            gid,
            atime: None,
            mtime: None,
            ..
        } => Some((*uid, *gid)),
        _ => None,
    }
}

/// Folds the temporary-file idiom inside one batch: a new file `t` written, hard-linked as
/// `f`, then `t` deleted (how git stores objects, and how many tools publish a file) becomes one
/// write of `f`, placed where the link was. The server ends in the same state with a third of
/// the work. Only when the write created `t`, the link and the delete are the next two entries
/// naming `t` (after the change of owner that follows a file made by another user than root,
/// which moves to `f` with the write), and no rename or rmdir (which could move either path) comes in between. The
/// batch is all or nothing, so no state in between is ever visible. Echoes are expected from
/// the folded entries, so the changefeed's silence about `t` leaves nothing behind.
fn fold_temporaries(ops: Vec<JournalOp>) -> Vec<JournalOp> {
    // Where each path is named, and how many renames or rmdirs come before each entry: one
    // pass, so a batch of 512 entries costs no more than reading it.
    let mut naming: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut moves_before = Vec::with_capacity(ops.len() + 1);
    moves_before.push(0usize);
    for (k, op) in ops.iter().enumerate() {
        for p in op.paths() {
            naming.entry(p).or_default().push(k);
        }
        let moved = matches!(op, JournalOp::Rename { .. } | JournalOp::Rmdir { .. });
        moves_before.push(moves_before[k] + usize::from(moved));
    }
    let mut drop = vec![false; ops.len()];
    let mut replace: HashMap<usize, Vec<JournalOp>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let JournalOp::Write {
            path: t,
            hash,
            size,
            mode,
            patch: None,
            created: true,
            ..
        } = op
        else {
            continue;
        };
        let at = &naming[t.as_str()];
        let mut from = at.partition_point(|&k| k <= i);
        // A file made by another user than root has its owner journaled right after it.
        let owner = at
            .get(from)
            .and_then(|&o| owner_only(&ops[o]).map(|owner| (o, owner)));
        from += usize::from(owner.is_some());
        let (Some(&j), Some(&k)) = (at.get(from), at.get(from + 1)) else {
            continue;
        };
        let JournalOp::Link { existing, new: f } = &ops[j] else {
            continue;
        };
        let deletes_t = matches!(&ops[k], JournalOp::DeleteFile { path } if path == t);
        let nothing_moved = moves_before[k + 1] == moves_before[i];
        if existing != t || !deletes_t || !nothing_moved {
            continue;
        }
        drop[i] = true;
        drop[k] = true;
        let mut at_link = vec![JournalOp::Write {
            path: f.clone(),
            hash: hash.clone(),
            size: *size,
            mode: *mode,
            base_hash: None,
            patch: None,
            created: true,
        }];
        if let Some((o, (uid, gid))) = owner {
            drop[o] = true;
            at_link.push(JournalOp::SetAttributes {
                path: f.clone(),
                mode: None,
                uid,
                gid,
                atime: None,
                mtime: None,
            });
        }
        replace.insert(j, at_link);
    }
    ops.into_iter()
        .enumerate()
        .filter(|(k, _)| !drop[*k])
        .flat_map(|(k, op)| replace.remove(&k).unwrap_or_else(|| vec![op]))
        .collect()
}

/// With this many changes waiting or more, the write-back sends at once (the SPEC's
/// `journal_low_water_entries` default: backpressure starts at twice this).
const LINGER_ENOUGH: usize = 2048;
/// While changes keep arriving, the write-back waits for a pause, but never lets the oldest
/// change wait longer than this.
const MAX_DEFER: Duration = Duration::from_secs(1);

/// Marks a caller as waiting for the write-back for as long as it lives, and wakes a lingering
/// write-back.
struct Hurry<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Hurry<'a> {
    fn new<R, C, K>(engine: &'a Engine<R, C, K>) -> Self {
        engine.hurry.fetch_add(1, Ordering::AcqRel);
        engine.hurry_wake.notify_one();
        Hurry(&engine.hurry)
    }
}

impl Drop for Hurry<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How one journal entry fared at the server.
enum Applied {
    Done,
    Retry(Error),
    Refused(Error),
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// Runs until `shutdown` completes: writes journal entries back as they appear.
    pub async fn run_writeback(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut failures = 0u32;
        let mut lingered = false;
        let mut last_seen = 0u64;
        loop {
            let wake = self.writeback_wake.notified();
            if let Some(linger) = self.config.writeback_linger
                && self.worth_lingering()
                && (!lingered || self.still_busy(last_seen))
            {
                // A burst of small changes (an unpacked archive, `git add`) then travels in a
                // few large batches once it pauses: the server's cost is mostly per request,
                // not per change, and the burst keeps the CPUs to itself meanwhile.
                lingered = true;
                last_seen = self.cache.journal_stats().last_seq;
                let hurry = self.hurry_wake.notified();
                futures::select! {
                    _ = self.clock.sleep(linger).fuse() => {}
                    _ = hurry.fuse() => {}
                    _ = shutdown => return,
                }
                continue;
            }
            let unit = match self.next_unit() {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(target: "aether_mount", error = %e, "cannot read the write journal");
                    Vec::new()
                }
            };
            if unit.is_empty() {
                // Idle: the next change starts a new burst.
                lingered = false;
                futures::select! {
                    _ = wake.fuse() => continue,
                    _ = shutdown => return,
                }
            }
            let (first, last) = (unit[0].seq, unit[unit.len() - 1].seq);
            let outcome = match unit.as_slice() {
                [one] => self.apply(one).await,
                many => self.apply_batch(many).await,
            };
            match outcome {
                Applied::Done => {
                    failures = 0;
                    if let Err(e) = self.cache.journal_ack_range(first, last) {
                        tracing::error!(target: "aether_mount", error = %e, "cannot acknowledge journal entries");
                    }
                    for entry in &unit {
                        self.finished(entry, None);
                    }
                }
                // A batch is all or nothing: send its entries one by one to find the culprit.
                Applied::Refused(e) if unit.len() > 1 => {
                    tracing::info!(target: "aether_mount", first, last, error = %e.message, "a batch was refused; sending its entries one by one");
                    if let Err(e) = self.cache.journal_split_unit(first, last) {
                        tracing::error!(target: "aether_mount", error = %e, "cannot split a write-back unit");
                    }
                }
                Applied::Refused(e) => {
                    let entry = &unit[0];
                    let why = format!("{}: {}", e.code.as_str(), e.message);
                    tracing::warn!(target: "aether_mount", seq = entry.seq, error = %why, "the server refused a journaled change; it is kept in the rejected list");
                    if let Err(e) = self.cache.journal_reject(entry.seq, &why) {
                        tracing::error!(target: "aether_mount", error = %e, "cannot set a refused journal entry aside");
                    }
                    self.finished(entry, Some(why));
                }
                Applied::Retry(e) => {
                    failures += 1;
                    let wait = self.retry_delay(failures);
                    tracing::warn!(target: "aether_mount", first, last, error = %e.message, retry_in_ms = wait.as_millis() as u64, "write-back failed; will retry");
                    futures::select! {
                        _ = self.clock.sleep(wait).fuse() => {}
                        _ = shutdown => return,
                    }
                }
            }
        }
    }

    /// Whether changes arrived since the journal stood at `last_seen`, while the oldest one
    /// waiting is younger than [`MAX_DEFER`]: the burst goes on, so lingering goes on.
    fn still_busy(&self, last_seen: u64) -> bool {
        let stats = self.cache.journal_stats();
        let young = stats.oldest_appended_at.is_none_or(|t| {
            let age = self.clock.now().nanos().saturating_sub(t.nanos());
            age < MAX_DEFER.as_nanos() as i64
        });
        stats.last_seq != last_seen && young
    }

    /// Whether the changes waiting are few enough that waiting for more pays, and nobody
    /// waits for them.
    fn worth_lingering(&self) -> bool {
        let pending = self.lock().pending_by_seq.len();
        pending > 0 && pending < LINGER_ENOUGH && self.hurry.load(Ordering::Acquire) == 0
    }

    /// The next write-back unit: the oldest pending entries that can travel in one batch,
    /// fixed in the journal before they are sent (see `LocalCache::journal_unit`).
    fn next_unit(&self) -> Result<Vec<JournalEntry>, aether_ports::local_cache::CacheError> {
        let pending = self.cache.journal_pending(MAX_UNIT_ENTRIES)?;
        let Some(head) = pending.first() else {
            return Ok(pending);
        };
        let mut bytes = 0u64;
        let mut proposal = head.seq;
        for e in &pending {
            let size = batch_bytes(&e.op);
            let Some(size) = size else { break };
            if bytes + size > MAX_UNIT_BYTES && e.seq != head.seq {
                break;
            }
            bytes += size;
            proposal = e.seq;
        }
        let (_, last) = self.cache.journal_unit(head.seq, proposal)?;
        Ok(pending.into_iter().take_while(|e| e.seq <= last).collect())
    }

    /// Sends several journal entries as one atomic batch.
    async fn apply_batch(&self, unit: &[JournalEntry]) -> Applied {
        let key = format!(
            "aether:{}:{}:{}-{}",
            self.config.worker_id,
            self.config.session_id,
            unit[0].seq,
            unit[unit.len() - 1].seq
        );
        let ctx = self.ctx().with_idempotency_key(key);
        let ops: Vec<JournalOp> = unit.iter().map(|e| e.op.clone()).collect();
        let ops = fold_temporaries(ops);
        let mut operations = Vec::with_capacity(ops.len());
        for op in &ops {
            match self.batch_operation(op) {
                Ok(op) => operations.push(op),
                Err(err) => return Applied::Refused(err),
            }
        }
        self.expect_echoes(&ops);
        let result = self
            .remote
            .batch(&ctx, &self.config.session_id, BatchRequest { operations })
            .await;
        if result.is_err() {
            self.forget_echoes(&ops);
        }
        self.applied(result.map(drop))
    }

    /// How a send fared: done, worth retrying, or refused for good.
    fn applied(&self, result: aether_domain::Result<()>) -> Applied {
        match result {
            Ok(()) => {
                self.contact();
                Applied::Done
            }
            Err(e) if errors::retryable(&e) => Applied::Retry(e),
            Err(e) => {
                self.contact();
                Applied::Refused(e)
            }
        }
    }

    /// The content a `Write` entry refers to, from the local cache.
    fn journaled_content(
        &self,
        path: &str,
        hash: &str,
        size: u64,
    ) -> aether_domain::Result<Vec<u8>> {
        self.journaled_range(path, hash, 0, size)
    }

    /// `[start, end)` of the content a `Write` entry refers to.
    fn journaled_range(
        &self,
        path: &str,
        hash: &str,
        start: u64,
        end: u64,
    ) -> aether_domain::Result<Vec<u8>> {
        self.cache
            .read_blob(hash, start, (end - start) as usize)
            .map_err(|e| content_gone(path, e))
    }

    /// The content of a whole-file upload: in memory when small, else streamed from the cache
    /// in chunks, so uploading a large file never holds it whole.
    fn journaled_body(&self, path: &str, hash: &str, size: u64) -> aether_domain::Result<FileBody> {
        if size <= STREAM_UPLOAD_ABOVE {
            return Ok(self.journaled_content(path, hash, size)?.into());
        }
        let reader = self
            .cache
            .open_blob(hash)
            .map_err(|e| content_gone(path, e))?;
        let path = path.to_owned();
        let chunks = futures::stream::unfold((reader, 0u64), move |(mut reader, sent)| {
            let path = path.clone();
            async move {
                if sent >= size {
                    return None;
                }
                let want = (size - sent).min(UPLOAD_CHUNK);
                let mut buf = Vec::with_capacity(want as usize);
                let read = std::io::Read::read_to_end(
                    &mut std::io::Read::take(&mut reader, want),
                    &mut buf,
                );
                match read {
                    Ok(n) if n as u64 == want => Some((Ok(buf.into()), (reader, sent + want))),
                    // Ends the stream after the error: the server discards the partial upload.
                    Ok(n) => Some((
                        Err(Error::precondition(format!(
                            "the journaled content of {path} is shorter than its {size} bytes \
                             (ends at {})",
                            sent + n as u64
                        ))),
                        (reader, size),
                    )),
                    Err(e) => Some((
                        Err(Error::precondition(format!(
                            "the journaled content of {path} could not be read: {e}"
                        ))),
                        (reader, size),
                    )),
                }
            }
        });
        Ok(FileBody::stream(Some(size), chunks))
    }

    fn batch_operation(&self, op: &JournalOp) -> aether_domain::Result<BatchOperation> {
        Ok(match op.clone() {
            JournalOp::Mkdir { path, mode } => BatchOperation::Mkdir(MkdirRequest {
                path,
                mode: Some(mode),
                parents: false,
            }),
            JournalOp::Mknod {
                path,
                kind,
                mode,
                rdev,
            } => BatchOperation::Mknod(MknodRequest {
                path,
                kind,
                mode,
                rdev,
            }),
            JournalOp::Write {
                path,
                hash,
                size,
                mode,
                ..
            } => {
                let data = self.journaled_content(&path, &hash, size)?;
                BatchOperation::WriteFile {
                    path,
                    data,
                    mode: Some(mode),
                    parents: false,
                    expected_hash: None,
                }
            }
            JournalOp::DeleteFile { path } => BatchOperation::DeleteFile(DeleteFileRequest {
                path,
                expected_hash: None,
            }),
            JournalOp::Rmdir { path } => BatchOperation::Rmdir(RmdirRequest {
                path,
                recursive: false,
            }),
            JournalOp::Rename {
                from,
                to,
                no_replace,
                exchange,
            } => BatchOperation::Rename(RenameRequest {
                from,
                to,
                no_replace,
                exchange,
            }),
            JournalOp::Link { existing, new } => BatchOperation::Link(LinkRequest {
                existing_path: existing,
                new_path: new,
            }),
            JournalOp::Symlink { path, target } => {
                BatchOperation::Symlink(SymlinkRequest { path, target })
            }
            JournalOp::SetAttributes {
                path,
                mode,
                uid,
                gid,
                atime,
                mtime,
            } => BatchOperation::SetAttributes(SetAttributesRequest {
                path,
                mode,
                uid,
                gid,
                atime,
                mtime,
            }),
            JournalOp::SetXattr { path, name, value } => {
                BatchOperation::SetXattr(SetXattrRequest {
                    path,
                    name,
                    value,
                    mode: XattrSetMode::default(),
                })
            }
            JournalOp::RemoveXattr { path, name } => {
                BatchOperation::RemoveXattr(XattrRequest { path, name })
            }
        })
    }

    /// Waits until every journal entry up to `upto` is written back; fails if entry `check`
    /// (the caller's own change) was refused.
    pub async fn wait_written_back(&self, upto: u64, check: u64) -> FsResult<()> {
        let mut rx = self.done_through.subscribe();
        let behind = *rx.borrow() < upto;
        let _hurry = behind.then(|| Hurry::new(self));
        rx.wait_for(|done| *done >= upto)
            .await
            .map_err(|_| FsError::Io("the write-back loop stopped".into()))?;
        match self.lock().rejected.get(&check) {
            Some(why) => Err(FsError::Io(format!(
                "the server refused this change (journal entry {check}): {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Waits until every journal entry up to `upto` is written back, or fails with `ETIMEDOUT`
    /// once `limit` has passed (by the engine's clock).
    pub(crate) async fn wait_written_back_within(
        &self,
        upto: u64,
        limit: Duration,
    ) -> FsResult<()> {
        let mut rx = self.done_through.subscribe();
        let _hurry = (*rx.borrow() < upto).then(|| Hurry::new(self));
        let deadline = self.clock.elapsed() + limit;
        while *rx.borrow_and_update() < upto {
            if self.clock.elapsed() >= deadline {
                return Err(FsError::TimedOut(format!(
                    "changes up to journal entry {upto} are not written back after {limit:?}"
                )));
            }
            let left = deadline.saturating_sub(self.clock.elapsed());
            let tick = self.clock.sleep(left.min(Duration::from_millis(100)));
            futures::pin_mut!(tick);
            futures::future::select(Box::pin(rx.changed()), tick).await;
        }
        Ok(())
    }

    /// Waits until the journal is empty, or `timeout` passes; returns the entries left.
    pub async fn flush_all(&self, timeout: Duration) -> u64 {
        let last = self.cache.journal_stats().last_seq;
        let wait = self.wait_written_back(last, 0).fuse();
        let sleep = self.clock.sleep(timeout).fuse();
        futures::pin_mut!(wait, sleep);
        futures::select! {
            _ = wait => {}
            _ = sleep => {}
        }
        self.cache.journal_stats().pending_entries
    }

    fn finished(&self, entry: &JournalEntry, refused: Option<String>) {
        let mut st = self.lock();
        let tracked = st.pending_by_seq.contains_key(&entry.seq);
        if !tracked {
            // An entry journaled by an earlier run of the mount: the listings loaded since
            // predate it, so re-read the directories it touched.
            for p in entry.op.paths() {
                let dir = p
                    .rsplit_once('/')
                    .map(|(d, _)| if d.is_empty() { "/" } else { d });
                if let Some(ino) = dir.and_then(|d| st.nodes.resolve(d))
                    && let Some(l) = st.nodes.get_mut(ino).and_then(|n| n.listing.as_mut())
                {
                    l.fresh_until = Duration::ZERO;
                }
            }
            // A hard-linked file may have changed under a name whose directory this run has
            // not loaded, so the names it has loaded cannot be trusted either.
            for ino in st.nodes.link_groups() {
                st.nodes.expire(ino);
            }
        }
        self.early_release(&mut st, entry.seq);
        // Named by the server by now, or never to be (refused).
        if let JournalOp::Write { hash, .. } = &entry.op {
            st.local_names.remove(hash);
        }
        if let Some(inos) = st.pending_by_seq.remove(&entry.seq) {
            st.nodes.add_pending(&inos, -1);
            // A deleted file the kernel has forgotten waited only for this entry.
            self.reclaim_all_unreachable(&mut st, &inos);
            if refused.is_some() {
                // Our view of these objects is now wrong; re-read them from the server.
                for ino in inos {
                    if let Some(n) = st.nodes.get_mut(ino) {
                        n.attr_fresh_until = Duration::ZERO;
                        if let Some(l) = n.listing.as_mut() {
                            l.fresh_until = Duration::ZERO;
                        }
                    }
                }
            }
        }
        match refused {
            Some(why) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                st.rejected.insert(entry.seq, why);
            }
            None => {
                self.counters.written_back.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(st);
        self.done_through.send_if_modified(|d| {
            let moved = entry.seq > *d;
            *d = (*d).max(entry.seq);
            moved
        });
    }

    async fn apply(&self, entry: &JournalEntry) -> Applied {
        let key = format!(
            "aether:{}:{}:{}",
            self.config.worker_id, self.config.session_id, entry.seq
        );
        let ctx = self.ctx().with_idempotency_key(key);
        let sent = std::slice::from_ref(&entry.op);
        self.expect_echoes(sent);
        let result = self.send(&ctx, entry.seq, &entry.op).await;
        if result.is_err() {
            self.forget_echoes(sent);
        }
        self.applied(result)
    }

    /// Notes that the changefeed will show these changes as events of our own. Done before
    /// sending, not after the reply: the event can overtake the reply, and an event taken for
    /// another writer's costs the kernel its cached names and the engine a listing reload.
    fn expect_echoes(&self, ops: &[JournalOp]) {
        let mut st = self.lock();
        if st.echoes.len() > 100_000 {
            st.echoes.clear();
        }
        for p in ops.iter().flat_map(JournalOp::paths) {
            *st.echoes.entry(p.to_owned()).or_default() += 1;
        }
    }

    /// Takes back [`Self::expect_echoes`] for changes the server did not apply.
    fn forget_echoes(&self, ops: &[JournalOp]) {
        let mut st = self.lock();
        for p in ops.iter().flat_map(JournalOp::paths) {
            if let Some(n) = st.echoes.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    st.echoes.remove(p);
                }
            }
        }
    }

    async fn send(&self, ctx: &Ctx, seq: u64, op: &JournalOp) -> aether_domain::Result<()> {
        let r = &self.remote;
        let sid = self.config.session_id.as_str();
        // Outcomes that mean "already done" (a replay after the idempotency window) count as done.
        let gone = |e: Error| match e.code {
            Code::NotFound => Ok(()),
            _ => Err(e),
        };
        let there = |e: Error| match e.code {
            Code::AlreadyExists => Ok(()),
            _ => Err(e),
        };
        match op.clone() {
            JournalOp::Mkdir { path, mode } => r
                .mkdir(
                    ctx,
                    sid,
                    MkdirRequest {
                        path,
                        mode: Some(mode),
                        parents: false,
                    },
                )
                .await
                .map(drop)
                .or_else(there),
            JournalOp::Mknod {
                path,
                kind,
                mode,
                rdev,
            } => r
                .mknod(
                    ctx,
                    sid,
                    MknodRequest {
                        path,
                        kind,
                        mode,
                        rdev,
                    },
                )
                .await
                .map(drop)
                .or_else(there),
            JournalOp::Write {
                path,
                hash,
                size,
                mode,
                base_hash,
                patch,
                ..
            } => {
                // Journals written before patches were capped may hold larger ones: those go
                // whole, as a patch that big would not fit the server's request limit.
                let patch = patch.filter(|ranges| {
                    let bytes: u64 = ranges.iter().map(|(s, e)| e.saturating_sub(*s)).sum();
                    bytes <= crate::content::PATCH_MAX_BYTES
                });
                // A base known only by its local name cannot guard a patch: the whole goes.
                let base = base_hash.and_then(|b| self.server_name_of(&b));
                if let (Some(ranges), Some(base)) = (patch, base) {
                    let mut segments = Vec::with_capacity(ranges.len());
                    for &(s, e) in ranges.iter().filter(|(s, _)| *s < size) {
                        let data = self.journaled_range(&path, &hash, s, e.min(size))?;
                        segments.push(Segment { offset: s, data });
                    }
                    let req = PatchSegmentsRequest {
                        path: path.clone(),
                        segments,
                        truncate_to: Some(size),
                        expected_hash: Some(base),
                        create: false,
                    };
                    match r.patch_segments(ctx, sid, req).await {
                        Ok(entry) => {
                            self.server_named(&hash, size, &entry);
                            return Ok(());
                        }
                        // The server's copy moved on: send the whole content instead.
                        Err(e)
                            if e.code == Code::Aborted
                                || e.code == Code::NotFound
                                || e.reason == Some(Reason::HashMismatch) => {}
                        Err(e) => return Err(e),
                    }
                }
                if self.early_finish(seq, &path, &hash, size).await {
                    return Ok(());
                }
                let ctx = ctx.clone().with_idempotency_key(format!(
                    "{}:whole",
                    ctx.idempotency_key.clone().unwrap_or_default()
                ));
                let entry = r
                    .write_file(
                        &ctx,
                        sid,
                        WriteFileRequest {
                            data: self.journaled_body(&path, &hash, size)?,
                            path,
                            mode: Some(mode),
                            parents: false,
                            expected_hash: None,
                        },
                    )
                    .await?;
                self.server_named(&hash, size, &entry);
                Ok(())
            }
            JournalOp::DeleteFile { path } => r
                .delete_file(
                    ctx,
                    sid,
                    DeleteFileRequest {
                        path,
                        expected_hash: None,
                    },
                )
                .await
                .or_else(gone),
            JournalOp::Rmdir { path } => r
                .rmdir(
                    ctx,
                    sid,
                    RmdirRequest {
                        path,
                        recursive: false,
                    },
                )
                .await
                .or_else(gone),
            JournalOp::Rename {
                from,
                to,
                no_replace,
                exchange,
            } => {
                r.rename(
                    ctx,
                    sid,
                    RenameRequest {
                        from,
                        to,
                        no_replace,
                        exchange,
                    },
                )
                .await
            }
            JournalOp::Link { existing, new } => r
                .link(
                    ctx,
                    sid,
                    LinkRequest {
                        existing_path: existing,
                        new_path: new,
                    },
                )
                .await
                .map(drop),
            JournalOp::Symlink { path, target } => r
                .symlink(ctx, sid, SymlinkRequest { path, target })
                .await
                .map(drop),
            JournalOp::SetAttributes {
                path,
                mode,
                uid,
                gid,
                atime,
                mtime,
            } => r
                .set_attributes(
                    ctx,
                    sid,
                    SetAttributesRequest {
                        path,
                        mode,
                        uid,
                        gid,
                        atime,
                        mtime,
                    },
                )
                .await
                .map(drop),
            JournalOp::SetXattr { path, name, value } => {
                r.set_xattr(
                    ctx,
                    sid,
                    SetXattrRequest {
                        path,
                        name,
                        value,
                        mode: XattrSetMode::default(),
                    },
                )
                .await
            }
            JournalOp::RemoveXattr { path, name } => r
                .remove_xattr(ctx, sid, XattrRequest { path, name })
                .await
                .or_else(|e| {
                    if e.reason == Some(Reason::NoSuchAttribute) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &str, created: bool) -> JournalOp {
        JournalOp::Write {
            path: path.into(),
            hash: "h".into(),
            size: 3,
            mode: 0o444,
            base_hash: None,
            patch: None,
            created,
        }
    }

    fn link(existing: &str, new: &str) -> JournalOp {
        JournalOp::Link {
            existing: existing.into(),
            new: new.into(),
        }
    }

    fn delete(path: &str) -> JournalOp {
        JournalOp::DeleteFile { path: path.into() }
    }

    const T: &str = "/o/ab/tmp_obj_1";
    const F: &str = "/o/ab/cdef";

    #[test]
    fn a_temporary_written_linked_and_deleted_becomes_one_write() {
        let mkdir = JournalOp::Mkdir {
            path: "/o/cd".into(),
            mode: 0o755,
        };
        let ops = vec![
            write(T, true),
            mkdir.clone(),
            link(T, F),
            write("/other", true),
            delete(T),
        ];
        assert_eq!(
            fold_temporaries(ops),
            vec![mkdir, write(F, true), write("/other", true)]
        );
    }

    fn chown(path: &str) -> JournalOp {
        JournalOp::SetAttributes {
            path: path.into(),
            mode: None,
            uid: Some(1000),
            gid: Some(100),
            atime: None,
            mtime: None,
        }
    }

    #[test]
    fn a_temporary_made_by_another_user_than_root_keeps_its_owner_when_folded() {
        let ops = vec![write(T, true), chown(T), link(T, F), delete(T)];
        assert_eq!(fold_temporaries(ops), vec![write(F, true), chown(F)]);
    }

    #[test]
    fn anything_else_keeps_the_temporary_idiom_as_it_was() {
        let chmod = JournalOp::SetAttributes {
            path: T.into(),
            mode: Some(0o400),
            uid: None,
            gid: None,
            atime: None,
            mtime: None,
        };
        let rename = JournalOp::Rename {
            from: "/o".into(),
            to: "/p".into(),
            no_replace: false,
            exchange: false,
        };
        let cases = [
            // The write replaced a file that already existed: its old self must still go.
            vec![write(T, false), link(T, F), delete(T)],
            // Something else touches the temporary between.
            vec![write(T, true), chmod.clone(), link(T, F), delete(T)],
            vec![write(T, true), link(T, F), chmod, delete(T)],
            // A rename may move either path.
            vec![write(T, true), rename, link(T, F), delete(T)],
            // The temporary outlives the batch.
            vec![write(T, true), link(T, F)],
            vec![write(T, true), link(T, F), link(T, "/o/ab/more"), delete(T)],
        ];
        for ops in cases {
            assert_eq!(fold_temporaries(ops.clone()), ops);
        }
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(3), Duration::from_secs(4));
        assert_eq!(b.delay(30), Duration::from_secs(60));
        let low = b.jittered(1, 0.0);
        let high = b.jittered(1, 0.999);
        assert!(
            low >= Duration::from_millis(799) && low <= Duration::from_millis(801),
            "{low:?}"
        );
        assert!(high > Duration::from_millis(1190), "{high:?}");
    }
}
