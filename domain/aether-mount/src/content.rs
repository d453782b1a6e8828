//! File content: reads from the staging area or the local blob cache (fetching from the server
//! on a miss), writes into a per-file staging area, and commits staged content to the journal
//! at `close` so it survives a crash of the runtime.

use std::sync::atomic::Ordering;
use std::time::Duration;

use aether_ports::local_cache::{CacheError, JournalOp, LocalCache, LocalName, MountClock};
use aether_ports::vfs::{FileKind, FsError, FsResult, OpenIn, OpenOut};
use aether_ports::{ReadFileRequest, SessionApi};

use crate::content_id::ContentId;
use crate::naming::HASHED_MAX;
use crate::nodes::{Stage, StreamHash};
use crate::{Engine, Handle, State, errors};

/// From this size on, a file whose edits touch less than half of it is written back as a patch
/// of the changed ranges instead of whole. (The server stores the result in 64 KiB chunks and
/// writes only those the patch changed: a database of a few hundred KiB gains already.)
const PATCH_MIN_SIZE: u64 = 128 << 10;
/// A patch carries at most this many changed bytes: its segments travel in one JSON body,
/// which the server caps (8 MiB by default, and base64 adds a third); larger edits go whole.
pub(crate) const PATCH_MAX_BYTES: u64 = 4 << 20;

/// Files up to this size are fetched whole on first read; larger ones by range.
const WHOLE_FETCH_MAX: u64 = 4 << 20;
/// The first ranged fetch of a read stream, and the most a sequential stream reads ahead.
const FIRST_WINDOW: u64 = 1 << 20;
const MAX_WINDOW: u64 = 32 << 20;

/// A large file changed again right after a `close` waits for that close's write-back rather
/// than have its content copied ([`Engine::settle_before_first_change`]): from this size on,
/// for about a nanosecond a byte (a copy's speed here), within these bounds.
const SETTLE_MIN_BYTES: u64 = 1 << 20;
const SETTLE_MIN_WAIT: Duration = Duration::from_millis(2);
const SETTLE_MAX_WAIT: Duration = Duration::from_secs(2);

/// A streamed fetch makes what it has written readable in steps of this size: small enough
/// that a reader follows close behind, large enough to take the state lock rarely.
const PUBLISH_STEP: u64 = 256 << 10;

/// A streamed fetch's claim on its range ([`State::streaming`]); dropping it, however the
/// fetch ends, withdraws the claim and wakes the readers waiting on it.
struct StreamClaim<'a> {
    state: &'a std::sync::Mutex<State>,
    progress: &'a tokio::sync::Notify,
    hash: String,
}

impl<'a> StreamClaim<'a> {
    fn new<R, C, K>(engine: &'a Engine<R, C, K>, hash: &str, range: (u64, u64)) -> Self {
        let claim = StreamClaim {
            state: &engine.state,
            progress: &engine.fetch_progress,
            hash: hash.to_owned(),
        };
        claim.lock().streaming.insert(hash.to_owned(), range);
        claim
    }

    fn lock(&self) -> std::sync::MutexGuard<'a, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for StreamClaim<'_> {
    fn drop(&mut self) {
        self.lock().streaming.remove(&self.hash);
        self.progress.notify_waiters();
    }
}

/// Where the bytes of a read come from.
enum Source {
    Stage,
    Blob(String),
    Empty,
    Fetch,
    /// A large file not in the cache: fetched by range into a partial blob.
    Ranged {
        hash: String,
        size: u64,
    },
}

/// Whether the merged ranges cover `[start, end)`.
fn covers(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    start >= end || ranges.iter().any(|&(s, e)| s <= start && end <= e)
}

/// The first byte at or after `at` that the merged ranges do not hold.
fn first_missing(ranges: &[(u64, u64)], at: u64) -> u64 {
    ranges
        .iter()
        .find(|&&(s, e)| s <= at && at < e)
        .map_or(at, |&(_, e)| e)
}

/// Adds `[start, end)` to merged, sorted ranges.
fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, end: u64) {
    ranges.push((start, end));
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *ranges = merged;
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    pub(crate) async fn open_file(&self, ino: u64, how: OpenIn) -> FsResult<OpenOut> {
        if how.write || how.truncate {
            self.writable()?;
            self.admit().await?;
            self.kernel_stores_settled(ino).await;
        }
        {
            let st = self.lock();
            let n = st
                .nodes
                .get(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            if n.is_dir() && how.write {
                return Err(FsError::IsDir(st.nodes.path(ino).unwrap_or_default()));
            }
        }
        if how.truncate && how.write {
            self.truncate(ino, None, 0).await?;
        }
        let mut st = self.lock();
        let fh = st.next_fh;
        st.next_fh += 1;
        let n = st.nodes.get_mut(ino).expect("checked above");
        if how.write {
            n.writers += 1;
        }
        // The kernel's page cache is still right if the content is unchanged since it filled it.
        let keep_cache = n.stage.is_none() && n.hash.is_some() && n.kernel_hash == n.hash;
        n.kernel_hash = n.hash.clone();
        let direct = crate::starts_over_write_only(&how, false);
        st.handles.insert(
            fh,
            Handle::File {
                ino,
                write: how.write,
                append: how.append,
                direct,
                next_read: 0,
                window: 0,
            },
        );
        Ok(OpenOut {
            fh,
            keep_cache,
            cache_dir: false,
            // A read-only handle has nothing of its own to commit at close; writers commit
            // at their own flush, and every handle's release still arrives.
            no_flush: !how.write && !how.truncate,
            direct_io: direct,
        })
    }

    fn source(&self, st: &State, ino: u64) -> FsResult<Source> {
        let n = st
            .nodes
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        if n.is_dir() {
            return Err(FsError::IsDir(st.nodes.path(ino).unwrap_or_default()));
        }
        let hash = n.hash.as_ref().map(ContentId::to_string);
        Ok(match (&n.stage, hash) {
            (Some(_), _) => Source::Stage,
            (None, Some(h)) if self.cache.has_blob(&h) => Source::Blob(h),
            (None, _) if n.attr.size == 0 => Source::Empty,
            (None, Some(h)) if n.attr.size > WHOLE_FETCH_MAX => Source::Ranged {
                hash: h,
                size: n.attr.size,
            },
            (None, _) => Source::Fetch,
        })
    }

    pub(crate) async fn read_file(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> FsResult<Vec<u8>> {
        if !self.lock().handles.contains_key(&fh) {
            return Err(FsError::BadHandle(format!("file handle {fh}")));
        }
        let mut vanished = 0;
        loop {
            let source = self.source(&self.lock(), ino)?;
            let got = match source {
                Source::Stage => match self.cache.stage_read(ino, offset, size as usize) {
                    // Dropped since it was looked up: the last writer's `release`, which the
                    // kernel sends in the background after `close`, committed it first.
                    Err(CacheError::Missing(_)) if vanished < 3 => {
                        vanished += 1;
                        continue;
                    }
                    read => read,
                },
                Source::Blob(h) => {
                    self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                    match self.cache.read_blob(&h, offset, size as usize) {
                        // Taken out of the cache since it was looked up (evicted, or the
                        // local copy of content the server holds was reclaimed): look again,
                        // which fetches it.
                        Err(CacheError::Missing(_)) if vanished < 3 => {
                            vanished += 1;
                            continue;
                        }
                        read => read,
                    }
                }
                Source::Empty => Ok(Vec::new()),
                Source::Fetch => {
                    self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                    self.note_cold_read(ino);
                    self.patiently(|| self.fetch_content(ino)).await?;
                    continue;
                }
                Source::Ranged { hash, size: total } => {
                    let end = offset.saturating_add(u64::from(size)).min(total);
                    if offset >= total {
                        return Ok(Vec::new());
                    }
                    let held = self
                        .lock()
                        .partials
                        .get(&hash)
                        .is_some_and(|r| covers(r, offset, end));
                    if !held {
                        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
                        // Each try fetches only what is still missing: a reply cut short by
                        // a server restart resumes where it broke off.
                        self.patiently(|| {
                            self.fetch_range(ino, Some(fh), &hash, total, offset, end)
                        })
                        .await?;
                        continue;
                    }
                    self.read_ahead_after(fh, ino, &hash, total, end);
                    match self
                        .cache
                        .partial_read(&hash, offset, (end - offset) as usize)
                    {
                        // Completed and moved into the blobs since it was looked up.
                        Err(_) if self.cache.has_blob(&hash) => continue,
                        read => read,
                    }
                }
            };
            return got.map_err(errors::cache_error);
        }
    }

    /// The gate that lets one fetch of blob `hash` run at a time, so that concurrent readers
    /// (and fetches ahead of them) share one download.
    pub(crate) fn fetch_gate(&self, hash: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut gates = self.fetch_locks.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(hash.to_owned()).or_default().clone()
    }

    /// Forgets the gate of a blob now in the cache (a fetch still holding it finishes as is).
    pub(crate) fn drop_fetch_gate(&self, hash: &str) {
        self.fetch_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }

    /// Downloads the whole content of `ino` into the local blob cache.
    async fn fetch_content(&self, ino: u64) -> FsResult<()> {
        let large = {
            let st = self.lock();
            st.nodes
                .get(ino)
                .and_then(|n| match (&n.hash, n.attr.size) {
                    (Some(h), size) if size > WHOLE_FETCH_MAX => Some((h.to_string(), size)),
                    _ => None,
                })
        };
        if let Some((hash, size)) = large {
            let mut offset = 0;
            while offset < size && !self.cache.has_blob(&hash) {
                let end = (offset + MAX_WINDOW).min(size);
                self.fetch_range(ino, None, &hash, size, offset, end)
                    .await?;
                offset = end;
            }
            return Ok(());
        }
        let (path, known) = {
            let st = self.lock();
            let path = st
                .nodes
                .path(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name")))?;
            let known = st.nodes.get(ino).and_then(|n| n.hash.as_ref());
            (path, known.map(ContentId::to_string))
        };
        // A fetch of this content already under way (one ahead of this reader) is waited for.
        let gate = known.as_deref().map(|h| self.fetch_gate(h));
        let _one_fetch = match &gate {
            Some(g) => Some(g.lock().await),
            None => None,
        };
        if known.as_deref().is_some_and(|h| self.cache.has_blob(h)) {
            return Ok(());
        }
        let fetched = self.fetch_whole(ino, &path).await;
        if let Some(h) = &known {
            self.drop_fetch_gate(h);
        }
        fetched
    }

    /// The whole content of `path` as the server holds it now.
    pub(crate) async fn read_whole(
        &self,
        path: &str,
    ) -> aether_domain::Result<aether_ports::FileContent> {
        let req = ReadFileRequest {
            path: path.to_owned(),
            range: None,
        };
        self.remote
            .read_file(&self.ctx(), &self.config.session_id, req)
            .await
    }

    /// Downloads the content of `ino`, whole, from `path`.
    async fn fetch_whole(&self, ino: u64, path: &str) -> FsResult<()> {
        let got = self
            .read_whole(path)
            .await
            .map_err(|e| self.remote_failed(e, path))?;
        self.contact();
        let hash = got
            .entry
            .content_hash
            .clone()
            .ok_or_else(|| FsError::Io(format!("{path}: the server sent no content hash")))?;
        self.cache
            .put_blob(&hash, &got.data)
            .map_err(errors::cache_error)?;
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(ino)
            && n.stage.is_none()
            && n.pending == 0
        {
            n.hash = Some(ContentId::new(&hash));
            n.attr.size = got.entry.size;
        }
        Ok(())
    }

    /// Fetches at least `[start, end)` of blob `hash` (the content of `ino`, `total` bytes)
    /// into its partial copy, reading ahead on sequential streams of handle `fh`; promotes the
    /// copy to a blob once it is complete. Bytes another fetch is already streaming in are
    /// waited for, not fetched twice.
    async fn fetch_range(
        &self,
        ino: u64,
        fh: Option<u64>,
        hash: &str,
        total: u64,
        start: u64,
        end: u64,
    ) -> FsResult<()> {
        if self.wait_for_stream(hash, start, end).await {
            return Ok(());
        }
        let gate = self.fetch_gate(hash);
        let _one_fetch = gate.lock().await;
        let (path, start, fetch_end) = {
            let mut st = self.lock();
            if st.partials.get(hash).is_some_and(|r| covers(r, start, end))
                || self.cache.has_blob(hash)
            {
                return Ok(());
            }
            // Sequential streams read ahead in growing windows; others fetch what they need.
            let window = match fh.and_then(|fh| st.handles.get_mut(&fh)) {
                Some(Handle::File {
                    next_read, window, ..
                }) => {
                    let w = if *next_read == start && *window > 0 {
                        (*window * 2).min(MAX_WINDOW)
                    } else {
                        FIRST_WINDOW
                    };
                    *window = w;
                    *next_read = start.saturating_add(w);
                    w
                }
                _ => end - start,
            };
            let path = st
                .nodes
                .path(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name")))?;
            let fetch_end = end.max(start.saturating_add(window)).min(total);
            // What an earlier, broken-off fetch brought is not asked for again.
            let held = st.partials.get(hash).map(Vec::as_slice).unwrap_or_default();
            (path, first_missing(held, start), fetch_end)
        };
        // Claimed before asking, so that a reader arriving meanwhile waits for these bytes
        // rather than for this whole fetch to end.
        let _claim = StreamClaim::new(self, hash, (start, fetch_end));
        let got = self
            .remote
            .read_file_chunks(
                &self.ctx(),
                &self.config.session_id,
                ReadFileRequest {
                    path: path.clone(),
                    range: Some(aether_ports::ByteRange::From {
                        start,
                        end_inclusive: Some(fetch_end - 1),
                    }),
                },
            )
            .await
            .map_err(|e| self.remote_failed(e, &path))?;
        self.contact();
        if got.entry.content_hash.as_deref() != Some(hash) {
            // The file changed on the server: start over with its new content.
            let mut st = self.lock();
            st.partials.remove(hash);
            self.cache.partial_drop(hash);
            if let Some(n) = st.nodes.get_mut(ino)
                && n.stage.is_none()
                && n.pending == 0
            {
                n.hash = ContentId::of(got.entry.content_hash.as_deref());
                n.attr.size = got.entry.size;
            }
            return Ok(());
        }
        let received = self
            .receive_chunks(&path, hash, (start, fetch_end), got.chunks)
            .await;
        drop(_claim);
        if let Err(e) = received {
            // A reply cut short after the bytes asked for still serves them; the rest of the
            // window is fetched again when a reader gets there.
            let served = self
                .lock()
                .partials
                .get(hash)
                .is_some_and(|r| covers(r, start, end));
            if !served {
                return Err(e);
            }
            tracing::debug!(target: "aether_mount", path, error = %e, "a read-ahead reply was cut short");
            return Ok(());
        }
        let complete = self
            .lock()
            .partials
            .get(hash)
            .is_some_and(|r| covers(r, 0, total));
        if complete {
            // Promoted before it is forgotten: a reader meanwhile still reads the partial copy,
            // or finds the blob once it is moved (see `read_file`), never neither.
            let promoted = self.cache.partial_promote(hash);
            self.lock().partials.remove(hash);
            self.drop_fetch_gate(hash);
            match promoted {
                Ok(true) => {}
                Ok(false) => {
                    self.cache.partial_drop(hash);
                    return Err(FsError::Io(format!(
                        "{path}: the downloaded content does not match its hash"
                    )));
                }
                Err(e) => {
                    self.cache.partial_drop(hash);
                    return Err(errors::cache_error(e));
                }
            }
        }
        Ok(())
    }

    /// Waits while a streamed fetch of blob `hash` is under way whose range holds
    /// `[start, end)`; true once those bytes are in the partial copy (or the whole blob is in
    /// the cache), false when no stream will bring them and the caller must fetch them.
    async fn wait_for_stream(&self, hash: &str, start: u64, end: u64) -> bool {
        loop {
            // Armed before the check, so that progress made between the two is not missed.
            let progress = self.fetch_progress.notified();
            let mut progress = std::pin::pin!(progress);
            progress.as_mut().enable();
            {
                let st = self.lock();
                if st.partials.get(hash).is_some_and(|r| covers(r, start, end)) {
                    return true;
                }
                match st.streaming.get(hash) {
                    Some(&(s, e)) if s <= start && end <= e => {}
                    _ => return self.cache.has_blob(hash),
                }
            }
            progress.await;
        }
    }

    /// Writes the chunks of a reply holding `[start, end)` of blob `hash` into its partial
    /// copy as they arrive, making them readable every [`PUBLISH_STEP`] bytes and, however the
    /// reply ends, all that was written: a next fetch starts after it.
    async fn receive_chunks(
        &self,
        path: &str,
        hash: &str,
        (start, end): (u64, u64),
        mut chunks: aether_ports::ByteStream,
    ) -> FsResult<()> {
        use futures::StreamExt;
        let (mut at, mut published) = (start, start);
        let publish = |from: u64, to: u64| {
            if to > from {
                add_range(
                    self.lock().partials.entry(hash.to_owned()).or_default(),
                    from,
                    to,
                );
                self.fetch_progress.notify_waiters();
            }
        };
        let outcome = loop {
            let chunk = match chunks.next().await {
                Some(Ok(c)) => c,
                Some(Err(e)) => break Err(self.remote_failed(e, path)),
                None if at < end => {
                    break Err(FsError::Io(format!(
                        "{path}: the server's reply ended after {} of its {} bytes",
                        at - start,
                        end - start
                    )));
                }
                None => break Ok(()),
            };
            let len = chunk.len() as u64;
            if at + len > end {
                break Err(FsError::Io(format!(
                    "{path}: the server sent more than the {} bytes asked for",
                    end - start
                )));
            }
            if let Err(e) = self.cache.partial_write(hash, at, &chunk) {
                break Err(errors::cache_error(e));
            }
            at += len;
            if at - published >= PUBLISH_STEP {
                publish(published, at);
                published = at;
            }
        };
        publish(published, at);
        outcome
    }

    /// A sequential reader of handle `fh` read blob `hash` up to `reached`: once it is past the
    /// middle of the last window fetched, queues the next, doubled window in the background, so
    /// that the reader finds it there instead of waiting for it.
    fn read_ahead_after(&self, fh: u64, ino: u64, hash: &str, total: u64, reached: u64) {
        if !self.transfers.running() {
            return;
        }
        let mut st = self.lock();
        if st.reading_ahead.contains(hash) {
            return;
        }
        let Some(Handle::File {
            next_read, window, ..
        }) = st.handles.get_mut(&fh)
        else {
            return;
        };
        let (start, w) = (*next_read, *window);
        if w == 0 || start >= total || reached.saturating_add(w / 2) < start {
            return;
        }
        let w = (w * 2).min(MAX_WINDOW);
        let end = start.saturating_add(w).min(total);
        *next_read = end;
        *window = w;
        let queued = self.transfers.queue(crate::early::Transfer::ReadAhead {
            ino,
            hash: hash.to_owned(),
            total,
            start,
            end,
        });
        if queued {
            st.reading_ahead.insert(hash.to_owned());
        }
    }

    /// Fetches `[start, end)` of blob `hash` ahead of its reader.
    pub(crate) async fn read_ahead(&self, ino: u64, hash: &str, total: u64, start: u64, end: u64) {
        // No longer only queued: the reader may queue the next window now, which then waits
        // for this one and starts the moment it ends, before the reader gets there.
        self.lock().reading_ahead.remove(hash);
        if let Err(e) = self.fetch_range(ino, None, hash, total, start, end).await {
            // The reader fetches the range itself when it gets there.
            tracing::debug!(target: "aether_mount", hash, start, end, error = %e, "read-ahead failed");
        }
    }

    /// Opens a staging area for `ino` holding its current content, fetching it if needed.
    async fn ensure_stage(&self, ino: u64) -> FsResult<()> {
        loop {
            let source = {
                let st = self.lock();
                if st.nodes.get(ino).is_some_and(|n| n.stage.is_some()) {
                    return Ok(());
                }
                self.source(&st, ino)?
            };
            let from = match source {
                Source::Stage => return Ok(()),
                Source::Blob(h) => Some(h),
                Source::Empty => None,
                Source::Fetch | Source::Ranged { .. } => {
                    self.patiently(|| self.fetch_content(ino)).await?;
                    continue;
                }
            };
            let mut st = self.lock();
            let n = st.nodes.get_mut(ino).expect("source() found it");
            if n.stage.is_some() {
                return Ok(());
            }
            self.cache
                .stage_open(ino, from.as_deref())
                .map_err(errors::cache_error)?;
            n.stage = Some(Box::new(Stage {
                dirty: false,
                stream: from.is_none().then(StreamHash::default),
                base_hash: from,
                ranges: Vec::new(),
                shrunk: false,
                early_tried: false,
                kernel_bypassed: false,
            }));
            return Ok(());
        }
    }

    /// Before the first change of a large file's staging area opened over committed content:
    /// if the journal entry that carries that content is still on its way to the server, the
    /// cache would have to copy the whole file (the upload reads the committed bytes), so the
    /// write waits for that entry to be written back, at most about as long as the copy
    /// would take. Then the cache changes the file in place. (A log appended to by one
    /// `echo >>` after another makes one such change per line; a file cut short with
    /// `truncate` right after it was written, one in all.)
    async fn settle_before_first_change(&self, ino: u64) {
        let (upto, size) = {
            let st = self.lock();
            let Some(n) = st.nodes.get(ino) else { return };
            let fresh = n
                .stage
                .as_ref()
                .is_some_and(|s| !s.dirty && s.ranges.is_empty() && s.base_hash.is_some());
            if !fresh || n.pending == 0 || n.attr.size < SETTLE_MIN_BYTES {
                return;
            }
            (n.last_seq, n.attr.size)
        };
        // A local copy runs at about a GiB a second here; waiting longer than it would take
        // gains nothing, and an unreachable server must not hold the writer up for long.
        let limit = Duration::from_nanos(size).clamp(SETTLE_MIN_WAIT, SETTLE_MAX_WAIT);
        if self.wait_written_back_within(upto, limit).await.is_err() {
            tracing::debug!(target: "aether_mount", ino, size, "committed content still pending; the cache copies it");
        }
    }

    pub(crate) async fn write_file(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
    ) -> FsResult<u32> {
        self.writable()?;
        self.admit().await?;
        let (append, direct) = self.writing_handle(fh)?;
        self.write_staged(ino, offset, append, direct, data).await
    }

    /// Whether handle `fh` appends and writes past the kernel's cache; an error unless it is
    /// open for writing.
    pub(crate) fn writing_handle(&self, fh: u64) -> FsResult<(bool, bool)> {
        match self.lock().handles.get(&fh) {
            Some(Handle::File {
                write: true,
                append,
                direct,
                ..
            }) => Ok((*append, *direct)),
            Some(_) => Err(FsError::BadHandle(format!(
                "file handle {fh} is not open for writing"
            ))),
            None => Err(FsError::BadHandle(format!("file handle {fh}"))),
        }
    }

    /// Writes `data` into the staging area of `ino` at `offset` (at its end with `append`).
    async fn write_staged(
        &self,
        ino: u64,
        offset: u64,
        append: bool,
        direct: bool,
        data: &[u8],
    ) -> FsResult<u32> {
        self.ensure_stage(ino).await?;
        self.settle_before_first_change(ino).await;
        let mut st = self.lock();
        let now = self.clock.now();
        let n = st
            .nodes
            .get_mut(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let offset = if append { n.attr.size } else { offset };
        // As Linux does at a file system's largest size: a write that starts below it is cut
        // short there (the writer sees a short count), one that starts at it fails.
        let max = self.max_file_bytes.load(Ordering::Relaxed);
        if offset >= max && !data.is_empty() {
            drop(st);
            return Err(self.too_big(ino, offset.saturating_add(data.len() as u64)));
        }
        let data = &data[..data
            .len()
            .min(usize::try_from(max - offset).unwrap_or(usize::MAX))];
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| FsError::Invalid("write past the largest file offset".into()))?;
        self.cache
            .stage_write(ino, offset, data)
            .map_err(errors::cache_error)?;
        let stage = n.stage.as_mut().expect("ensured");
        stage.record(offset, end);
        stage.kernel_bypassed |= direct;
        StreamHash::feed(&mut stage.stream, offset, data);
        n.attr.size = n.attr.size.max(end);
        n.attr.mtime = now;
        n.attr.ctime = now;
        self.early_note_write(&mut st, ino);
        Ok(data.len() as u32)
    }

    /// Writes zeros over `[offset, end)` of `ino`, within its size: a punched hole or a zeroed
    /// range. The server stores whole contents and has no holes, so a hole is its zeros.
    /// `direct`: the handle writes past the kernel's page cache.
    pub(crate) async fn zero_range(
        &self,
        ino: u64,
        direct: bool,
        offset: u64,
        end: u64,
    ) -> FsResult<()> {
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        let size = self.lock().nodes.get(ino).map(|n| n.attr.size).unwrap_or(0);
        let end = end.min(size);
        let mut at = offset;
        while at < end {
            let n = (end - at).min(ZEROS.len() as u64) as usize;
            at += u64::from(
                self.write_staged(ino, at, false, direct, &ZEROS[..n])
                    .await?,
            );
        }
        Ok(())
    }

    /// Sets the size of `ino`; committed at once unless a writer holds the file open.
    pub(crate) async fn truncate(&self, ino: u64, _fh: Option<u64>, size: u64) -> FsResult<()> {
        self.within_max_size(ino, size)?;
        self.kernel_stores_settled(ino).await;
        {
            let st = self.lock();
            let n = st
                .nodes
                .get(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            match n.attr.kind {
                FileKind::File => {}
                FileKind::Dir => {
                    return Err(FsError::IsDir(st.nodes.path(ino).unwrap_or_default()));
                }
                _ => {
                    return Err(FsError::Invalid(
                        "only regular files have a size to set".into(),
                    ));
                }
            }
        }
        // Another handle's `release` drops an idle staging area whenever it holds the lock,
        // so the stage is made (or checked) in the same hold of the lock that truncates it.
        let mut st = loop {
            if size != 0 {
                self.ensure_stage(ino).await?;
                self.settle_before_first_change(ino).await;
            }
            let mut st = self.lock();
            let n = st
                .nodes
                .get_mut(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
            if n.stage.is_some() {
                break st;
            }
            if size == 0 {
                self.cache
                    .stage_open(ino, None)
                    .map_err(errors::cache_error)?;
                n.stage = Some(Box::new(Stage {
                    base_hash: n.hash.as_ref().map(ContentId::to_string),
                    stream: Some(StreamHash::default()),
                    ..Default::default()
                }));
                break st;
            }
        };
        let now = self.clock.now();
        self.early_abandon(&mut st, ino);
        let n = st.nodes.get_mut(ino).expect("checked above");
        self.cache
            .stage_truncate(ino, size)
            .map_err(errors::cache_error)?;
        let old = n.attr.size;
        let stage = n.stage.as_mut().expect("ensured");
        stage.dirty = true;
        // Emptied, the file may upload early again from its first byte.
        stage.early_tried &= size != 0;
        if size < old {
            stage.shrunk = true;
        } else {
            stage.record(old, size);
        }
        // Emptied, the content's hash starts over; cut or padded elsewhere, it is unknown.
        if size == 0 {
            stage.stream = Some(StreamHash::default());
        } else if stage.stream.as_ref().is_some_and(|h| h.upto != size) {
            stage.stream = None;
        }
        n.attr.size = size;
        n.attr.mtime = now;
        n.attr.ctime = now;
        if n.writers == 0 {
            self.commit_stage(&mut st, ino, false)?;
            self.release_stage_if_idle(&mut st, ino);
        }
        Ok(())
    }

    /// Journals the staged content of `ino` if it changed (or, with `force`, always).
    pub(crate) fn commit_stage(&self, st: &mut State, ino: u64, force: bool) -> FsResult<()> {
        let Some(n) = st.nodes.get(ino) else {
            return Ok(());
        };
        let Some(stage) = n.stage.clone() else {
            return Ok(());
        };
        if !(stage.dirty || force) || n.links.is_empty() {
            return Ok(());
        }
        let Some(path) = st.nodes.path(ino) else {
            return Ok(());
        };
        let in_order = StreamHash::covers(&stage.stream, n.attr.size);
        let size = n.attr.size;
        // Large content is named by the server (`naming.rs`); small content by its hash, taken
        // as it was written when it was written in order.
        let named = if size > HASHED_MAX {
            Some(self.local_name(st))
        } else {
            StreamHash::digest(&stage.stream, size)
        };
        let (hash, size) = match named {
            Some(name) => {
                self.cache
                    .stage_commit_as(ino, &name, size)
                    .map_err(errors::cache_error)?;
                (name, size)
            }
            None => self.cache.stage_commit(ino).map_err(errors::cache_error)?,
        };
        let n = st.nodes.get(ino).expect("checked above");
        let patch = match &stage.base_hash {
            Some(_)
                if n.journaled
                    && !stage.shrunk
                    && size >= PATCH_MIN_SIZE
                    && stage.dirty_bytes() * 2 < size
                    && stage.dirty_bytes() <= PATCH_MAX_BYTES =>
            {
                Some(stage.ranges.clone())
            }
            _ => None,
        };
        let whole = patch.is_none();
        let mode = n.attr.perm;
        let op = JournalOp::Write {
            path: path.clone(),
            hash: hash.clone(),
            size,
            mode,
            base_hash: patch.as_ref().and(stage.base_hash.clone()),
            patch,
            created: !n.journaled,
        };
        let created = !n.journaled;
        let inos = st.nodes.touch_set(ino);
        let seq = self.journal(st, op, inos)?;
        if LocalName::is(&hash) {
            st.local_names.insert(hash.clone(), ino);
        }
        if created {
            self.journal_owner(st, ino)?;
        }
        self.early_commit(st, ino, seq, (&path, mode, size, &hash), in_order && whole);
        let n = st.nodes.get_mut(ino).expect("checked above");
        n.journaled = true;
        n.last_seq = seq;
        // Every change to a staging area comes through the kernel, which applied it to its
        // own page cache too (unless written past it): if that cache held the stage's starting
        // content, it now holds this content, and the next open may keep it.
        let id = ContentId::new(&hash);
        if stage.kernel_bypassed {
            n.kernel_hash = None;
        } else if n.kernel_hash == ContentId::of(stage.base_hash.as_deref()) {
            n.kernel_hash = Some(id.clone());
        }
        n.hash = Some(id);
        n.attr.size = size;
        n.stage = Some(Box::new(Stage {
            dirty: false,
            base_hash: Some(hash),
            ranges: Vec::new(),
            shrunk: false,
            stream: stage.stream,
            early_tried: stage.early_tried,
            kernel_bypassed: false,
        }));
        Ok(())
    }

    /// Drops the staging area of `ino` once nobody writes it and its content is journaled, or,
    /// for a file without a name, once nobody has it open: no one can reach that content any
    /// more (a `tmpfile()`, a file deleted or replaced while it was being written), and it is
    /// never journaled.
    pub(crate) fn release_stage_if_idle(&self, st: &mut State, ino: u64) {
        let Some(nameless) = st.nodes.get(ino).map(|n| n.links.is_empty()) else {
            return;
        };
        // Only a nameless file needs the scan of the open handles.
        let unreachable = nameless && !st.handles.values().any(|h| h.file_ino() == Some(ino));
        let n = st.nodes.get_mut(ino).expect("looked up above");
        let idle = n.writers == 0 && n.stage.as_ref().is_some_and(|s| !s.dirty || unreachable);
        if idle {
            n.stage = None;
            self.cache.stage_drop(ino);
            self.early_abandon(st, ino);
        }
    }
}
