//! Background transfers: the loop that runs read-ahead of large files being read in order
//! (see `content.rs`) and early uploads.
//!
//! Early uploads: a large file written in order from empty streams to the server while it is
//! still being written, so that `fsync` and the write-back wait only for its last bytes rather
//! than for the whole file.
//!
//! The upload is an ordinary whole-file `PUT` whose body stays open: the uploader sends what the
//! writer has appended so far and waits for more. The server stores nothing until the body ends,
//! so the upload ends only when the write-back reaches the journal entry of that very content
//! (every earlier entry then applied): journal order is kept. Anything else — an overwrite, a
//! truncation, a rename, the transport's request timeout, a crash — abandons it: the body ends in an error, the
//! server discards what it received, and the write-back sends the entry the usual way.
//!
//! Why the sent bytes are the journaled content: the uploader reads the staging area only below
//! what it was told had grown, and keeps what it read only if, under the engine lock after the
//! read, the upload is still `Growing`; every write that is not an append abandons the upload
//! under that same lock, and appends land above. Once the content is journaled the uploader
//! reads the rest from the journaled blob, which never changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aether_domain::{Code, Error, Result};
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::{Entry, FileBody, SessionApi, WriteFileRequest};
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Engine, State};

/// The most bytes one chunk of an early upload carries.
const CHUNK: u64 = 1 << 20;
/// While the file grows, the uploader waits until at least this much is new before sending.
const MIN_CHUNK: u64 = 256 << 10;
/// At most this many early uploads are open at once; other files upload at write-back.
const MAX_OPEN: usize = 4;

/// Where an early upload stands, as the engine tells its uploader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The first `n` bytes are written, in order, and may be read from the staging area.
    Growing(u64),
    /// The content is journaled: `size` bytes of blob `hash`. With `go`, the write-back has
    /// reached its entry, so the upload may end.
    Committed { size: u64, hash: String, go: bool },
    /// The content stopped being what the upload has sent: give up.
    Abandoned,
}

/// The engine's side of an early upload.
pub(crate) struct Early {
    path: String,
    mode: u32,
    progress: watch::Sender<Progress>,
    outcome: oneshot::Receiver<Result<Entry>>,
}

/// An early upload tied to the journal entry of its content.
pub(crate) struct Claim {
    progress: watch::Sender<Progress>,
    outcome: oneshot::Receiver<Result<Entry>>,
}

/// What the transfer loop runs: an early upload, the read-ahead of a range of a large file, or
/// small files fetched ahead of a reader scanning their directory.
pub(crate) enum Transfer {
    Upload(Job),
    Prefetch(Vec<crate::prefetch::Ahead>),
    ReadAhead {
        ino: u64,
        hash: String,
        total: u64,
        start: u64,
        end: u64,
    },
}

/// What the transfer loop receives for each new early upload.
pub(crate) struct Job {
    ino: u64,
    path: String,
    mode: u32,
    progress: watch::Receiver<Progress>,
    outcome: oneshot::Sender<Result<Entry>>,
}

/// The engine's background transfers: new ones travel to [`Engine::run_transfers`].
pub(crate) struct Transfers {
    jobs: mpsc::UnboundedSender<Transfer>,
    inbox: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Transfer>>>,
    /// The transfer loop runs: without it, nothing is uploaded early or read ahead.
    running: AtomicBool,
}

impl Transfers {
    /// Queues `t` if the transfer loop runs; returns whether it did.
    pub(crate) fn queue(&self, t: Transfer) -> bool {
        self.running.load(Ordering::Acquire) && self.jobs.send(t).is_ok()
    }

    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

impl Default for Transfers {
    fn default() -> Self {
        let (jobs, inbox) = mpsc::unbounded_channel();
        Transfers {
            jobs,
            inbox: std::sync::Mutex::new(Some(inbox)),
            running: AtomicBool::new(false),
        }
    }
}

/// What the uploader does next.
enum Step {
    Send(Vec<u8>),
    Wait,
    Fail(String),
}

/// The body of an early upload: the chunks the uploader feeds, ending cleanly only when the
/// uploader marked the content complete — a feeder that stops early fails the upload instead
/// of leaving the server a cut file.
fn body(
    rx: mpsc::Receiver<Result<Bytes>>,
    complete: Arc<AtomicBool>,
    path: String,
) -> impl futures::Stream<Item = Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some(rx), move |rx| {
        let complete = complete.clone();
        let path = path.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((
                    Err(Error::new(
                        Code::Aborted,
                        format!(
                            "the early upload of {path} stopped before its content was complete"
                        ),
                    )),
                    None,
                )),
            }
        }
    })
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// Runs until `shutdown` completes: drives the early uploads of large files being written
    /// and the read-ahead of large files being read in order. Without this loop the engine
    /// uploads every file at write-back and fetches ranges only when a reader misses them.
    pub async fn run_transfers(&self, shutdown: impl std::future::Future<Output = ()>) {
        let taken = self
            .transfers
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut inbox) = taken else {
            tracing::error!(target: "aether_mount", "the transfer loop is already running");
            return;
        };
        self.transfers.running.store(true, Ordering::Release);
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut open = FuturesUnordered::new();
        loop {
            futures::select! {
                job = inbox.recv().fuse() => match job {
                    Some(t) => open.push(self.transfer(t)),
                    None => break,
                },
                () = open.select_next_some() => {}
                () = shutdown => break,
            }
        }
        self.transfers.running.store(false, Ordering::Release);
        // Uploads not yet ended fail with their body; the write-back sends their entries.
        // Readers fetch what was not read ahead.
        drop(open);
        while inbox.try_recv().is_ok() {}
        {
            let mut st = self.lock();
            st.reading_ahead.clear();
            st.prefetching.clear();
        }
        *self
            .transfers
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(inbox);
    }

    async fn transfer(&self, t: Transfer) {
        match t {
            Transfer::Upload(job) => self.early_upload(job).await,
            Transfer::ReadAhead {
                ino,
                hash,
                total,
                start,
                end,
            } => self.read_ahead(ino, &hash, total, start, end).await,
            Transfer::Prefetch(files) => self.prefetch(files).await,
        }
    }

    /// Called after each write to `ino` under the engine lock: feeds its early upload, abandons
    /// it if the write was not an append, or starts one once an in-order file is large enough.
    pub(crate) fn early_note_write(&self, st: &mut State, ino: u64) {
        let State {
            nodes,
            early,
            early_claims,
            ..
        } = st;
        let Some(n) = nodes.get_mut(ino) else { return };
        let Some(stage) = n.stage.as_mut() else {
            return;
        };
        let upto = stage.stream.as_ref().map(|h| h.upto);
        if let Some(e) = early.get(&ino) {
            let live = match upto {
                Some(w) => e.progress.send(Progress::Growing(w)).is_ok(),
                None => false,
            };
            if !live {
                Self::abandon(early.remove(&ino));
            }
            return;
        }
        let Some(threshold) = self.config.early_upload_above else {
            return;
        };
        let Some(upto) = upto.filter(|w| *w >= threshold) else {
            return;
        };
        // Only content the write-back will send whole: new, emptied, or mostly written since
        // its last commit (a shell's `> file` commits the empty file at the first close).
        let whole = stage.base_hash.is_none() || stage.shrunk || stage.dirty_bytes() * 2 >= upto;
        if !whole
            || stage.early_tried
            || !self.transfers.running()
            || early.len() + early_claims.len() >= MAX_OPEN
        {
            return;
        }
        let mode = n.attr.perm;
        let Some(path) = nodes.path(ino) else { return };
        let (progress, progress_rx) = watch::channel(Progress::Growing(upto));
        let (outcome_tx, outcome) = oneshot::channel();
        let job = Job {
            ino,
            path: path.clone(),
            mode,
            progress: progress_rx,
            outcome: outcome_tx,
        };
        if !self.transfers.queue(Transfer::Upload(job)) {
            return;
        }
        if let Some(stage) = nodes.get_mut(ino).and_then(|n| n.stage.as_mut()) {
            stage.early_tried = true;
        }
        early.insert(
            ino,
            Early {
                path,
                mode,
                progress,
                outcome,
            },
        );
    }

    /// Gives up the early upload of `ino`, if any (its content is about to change otherwise
    /// than by appending, or its staging area goes away).
    pub(crate) fn early_abandon(&self, st: &mut State, ino: u64) {
        Self::abandon(st.early.remove(&ino));
    }

    fn abandon(early: Option<Early>) {
        if let Some(e) = early {
            let _ = e.progress.send(Progress::Abandoned);
        }
    }

    /// Called when the content of `ino` is journaled as entry `seq` (`size` bytes of `hash`,
    /// to be written whole at `path` with `mode`): ties its early upload to that entry if the
    /// upload is of exactly this, else abandons it.
    pub(crate) fn early_commit(
        &self,
        st: &mut State,
        ino: u64,
        seq: u64,
        what: (&str, u32, u64, &str),
        in_order: bool,
    ) {
        let Some(e) = st.early.remove(&ino) else {
            return;
        };
        let (path, mode, size, hash) = what;
        if !in_order || e.path != path || e.mode != mode {
            Self::abandon(Some(e));
            return;
        }
        let committed = Progress::Committed {
            size,
            hash: hash.to_owned(),
            go: false,
        };
        if e.progress.send(committed).is_ok() {
            st.early_claims.insert(
                seq,
                Claim {
                    progress: e.progress,
                    outcome: e.outcome,
                },
            );
        }
    }

    /// Drops the early upload tied to entry `seq` (the entry went another way).
    pub(crate) fn early_release(&self, st: &mut State, seq: u64) {
        if let Some(c) = st.early_claims.remove(&seq) {
            let _ = c.progress.send(Progress::Abandoned);
        }
    }

    /// The write-back reached entry `seq`, a whole-file write of `size` bytes named `hash` at
    /// `path`: if an early upload carries it, lets it end and reports whether the server now
    /// holds that content (which, named locally, then takes the server's name).
    pub(crate) async fn early_finish(&self, seq: u64, path: &str, hash: &str, size: u64) -> bool {
        let Some(claim) = self.lock().early_claims.remove(&seq) else {
            return false;
        };
        claim.progress.send_modify(|p| {
            if let Progress::Committed { go, .. } = p {
                *go = true;
            }
        });
        match claim.outcome.await {
            // A mismatch cannot happen while the reasoning at the top of this module holds; the
            // whole-file send that follows puts the right content back.
            Ok(Ok(entry)) => self.server_named(hash, size, &entry),
            Ok(Err(e)) => {
                tracing::debug!(target: "aether_mount", path, error = %e.message, "the early upload failed; sending the file at write-back");
                false
            }
            Err(_) => false,
        }
    }

    /// One early upload, from its first byte to the server's reply.
    async fn early_upload(&self, job: Job) {
        let Job {
            ino,
            path,
            mode,
            mut progress,
            outcome,
        } = job;
        let (tx, rx) = mpsc::channel(4);
        let complete = Arc::new(AtomicBool::new(false));
        let request = WriteFileRequest {
            path: path.clone(),
            data: FileBody::stream(None, body(rx, complete.clone(), path.clone())),
            mode: Some(mode),
            parents: false,
            expected_hash: None,
        };
        let ctx = self.ctx();
        let upload = self
            .remote
            .write_file(&ctx, &self.config.session_id, request);
        let feed = self.early_feed(ino, &mut progress, tx, &complete);
        let (result, failed) = futures::join!(upload, feed);
        if let Some(why) = failed {
            tracing::debug!(target: "aether_mount", path, why, "early upload abandoned");
        }
        if result.is_ok() {
            self.contact();
        }
        let _ = outcome.send(result);
    }

    /// Feeds the body of `ino`'s early upload until its content is complete and the write-back
    /// says go (returns `None`), or until it must give up (returns why, after failing the body).
    async fn early_feed(
        &self,
        ino: u64,
        progress: &mut watch::Receiver<Progress>,
        tx: mpsc::Sender<Result<Bytes>>,
        complete: &AtomicBool,
    ) -> Option<String> {
        let mut sent = 0u64;
        loop {
            let now = progress.borrow_and_update().clone();
            let step = match now {
                Progress::Abandoned => Step::Fail("its content changed".into()),
                Progress::Growing(w) if w >= sent + MIN_CHUNK => {
                    match self.early_read_stage(ino, sent, (w - sent).min(CHUNK), progress) {
                        Some(Ok(chunk)) => Step::Send(chunk),
                        Some(Err(why)) => Step::Fail(why),
                        None => continue, // it moved on meanwhile: look again
                    }
                }
                Progress::Growing(_) => Step::Wait,
                Progress::Committed { size, .. } if sent > size => {
                    Step::Fail("the journaled content is shorter than what was sent".into())
                }
                Progress::Committed { size, hash, .. } if sent < size => {
                    let len = (size - sent).min(CHUNK) as usize;
                    match self.cache.read_blob(&hash, sent, len) {
                        Ok(chunk) if chunk.len() == len => Step::Send(chunk),
                        Ok(_) => Step::Fail("the journaled content is cut short".into()),
                        Err(e) => Step::Fail(format!("cannot read the journaled content: {e}")),
                    }
                }
                Progress::Committed { go: true, .. } => {
                    complete.store(true, Ordering::Release);
                    return None; // dropping `tx` ends the body
                }
                Progress::Committed { .. } => Step::Wait,
            };
            match step {
                Step::Send(chunk) => {
                    sent += chunk.len() as u64;
                    if tx.send(Ok(chunk.into())).await.is_err() {
                        return Some("the server ended the upload".into());
                    }
                }
                // An idle writer keeps the request open; the transport's request timeout ends
                // it (the write-back then sends the file as usual).
                Step::Wait => {
                    if progress.changed().await.is_err() {
                        let why = "the engine let it go".to_owned();
                        let _ = tx.send(Err(Error::new(Code::Aborted, why.clone()))).await;
                        return Some(why);
                    }
                }
                Step::Fail(why) => {
                    let _ = tx.send(Err(Error::new(Code::Aborted, why.clone()))).await;
                    return Some(why);
                }
            }
        }
    }

    /// `len` bytes at `offset` of `ino`'s staging area, below what the upload was told had
    /// grown; `None` if the upload no longer grows.
    ///
    /// Read without the engine lock, which the writer's next `write` waits for, and checked
    /// under it afterwards: every write that is not an append abandons the upload under that
    /// lock, and appends land past `offset + len`. So if the upload still grows after the read,
    /// no write touched the bytes read.
    fn early_read_stage(
        &self,
        ino: u64,
        offset: u64,
        len: u64,
        progress: &watch::Receiver<Progress>,
    ) -> Option<std::result::Result<Vec<u8>, String>> {
        let read = self.cache.stage_read(ino, offset, len as usize);
        let st = self.lock();
        if !matches!(*progress.borrow(), Progress::Growing(_)) {
            return None;
        }
        if st.nodes.get(ino).is_none_or(|n| n.stage.is_none()) {
            return Some(Err("its staging area is gone".into()));
        }
        drop(st);
        Some(
            read.map_err(|e| format!("cannot read its staging area: {e}"))
                .and_then(|chunk| {
                    if chunk.len() as u64 == len {
                        Ok(chunk)
                    } else {
                        Err("its staging area is shorter than written".into())
                    }
                }),
        )
    }
}
