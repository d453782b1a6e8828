//! Runs rusqlite on dedicated threads behind channels: one writer, several readers (WAL lets
//! them proceed concurrently), so async callers never block the runtime on SQLite.
//!
//! The writer does group commit: it takes every queued write job, runs each inside its own
//! SAVEPOINT of one IMMEDIATE transaction (a failing job rolls back only itself), commits once,
//! and only then runs each job's after-commit step and answers it. Concurrent writers thus share
//! one WAL commit instead of paying for one each.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::Instrument;

use aether_domain::{Error, Result};

use crate::backend;

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

/// One write: `run` inside the shared transaction, then `finish` once it committed (or failed).
trait WriteJob: Send {
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, committed: Result<()>);
}

struct Typed<R, F, A> {
    work: Option<F>,
    after: Option<A>,
    result: Option<Result<R>>,
    reply: Option<oneshot::Sender<Result<R>>>,
}

impl<R, F, A> WriteJob for Typed<R, F, A>
where
    R: Send + 'static,
    F: FnOnce(&Connection) -> Result<R> + Send,
    A: FnOnce(&R) + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a write job runs once");
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(mut self: Box<Self>, committed: Result<()>) {
        let result = match (committed, self.result.take()) {
            (Ok(()), Some(Ok(r))) => {
                if let Some(after) = self.after.take() {
                    after(&r);
                }
                Ok(r)
            }
            (_, Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(Error::internal("a write job was not run")),
        };
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

pub(crate) struct Db {
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    writer_thread: Option<thread::JoinHandle<()>>,
    readers: mpsc::Sender<ReadJob>,
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.stop_checkpoints
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Closing the queue ends the writer after its last job; waiting for it means that when
        // a store is gone its writes are committed and its lock is free for a successor.
        drop(std::mem::replace(&mut self.writer, mpsc::channel().0));
        if let Some(t) = self.writer_thread.take()
            && t.thread().id() != thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// How often the checkpointer copies the WAL back into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checkpoints on their own connection and thread: PASSIVE checkpoints never block the writer,
/// so the writer's own (automatic) checkpoints find little left to copy and stall it briefly.
fn spawn_checkpointer(conn: Connection, stop: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    thread::Builder::new()
        .name("aether-sqlite-checkpointer".to_owned())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::internal(format!("could not start the SQLite checkpointer: {e}")))
}

/// Takes `<db>.lock` for this process: one database has one store at a time, because each
/// store trusts its own read cache (two would serve each other's stale rows). The lock file
/// names the holder's pid for the message a second server prints.
fn lock_exclusively(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = std::path::PathBuf::from(lock_path);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| backend("open the database lock file", e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
            let holder = match holder.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(Error::unavailable(format!(
                "{} is in use by another server process{holder}; stop it or use another data directory",
                path.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(backend("lock the database", e));
        }
    }
    use std::io::Write;
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(|e| backend("write the database lock file", e))?;
    Ok(file)
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| backend("open the database", e))?;
    // No mmap: as the file grows during a write load, every connection re-maps it, and each
    // munmap's TLB shootdown stalled all threads (measured: about 10 % more PUTs/s without).
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; \
         PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; PRAGMA journal_size_limit=67108864; \
         PRAGMA mmap_size=0;",
    )
    .map_err(|e| backend("configure the database", e))?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// How many queued writes share one commit at most.
const MAX_GROUP: usize = 128;

impl Db {
    pub(crate) fn open(
        path: &Path,
        readers: usize,
        init: impl FnOnce(&Connection) -> Result<()>,
    ) -> Result<Db> {
        let lock = lock_exclusively(path)?;
        let writer_conn = open(path)?;
        init(&writer_conn)?;
        // The checkpointer thread copies most of the WAL in the background, but a passive
        // checkpoint beside a busy writer never reaches the WAL's end, so the WAL could never
        // restart and would grow without bound (seen: 2.7 GB). The writer's own checkpoint at
        // 32 MiB finishes the job cheaply, since the background pass left little to copy.
        writer_conn
            .execute_batch("PRAGMA wal_autocheckpoint=8192;")
            .map_err(|e| backend("configure the writer", e))?;
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        spawn_checkpointer(open(path)?, stop_checkpoints.clone())?;
        let (writer, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let writer_thread = thread::Builder::new()
            .name("aether-sqlite-writer".to_owned())
            .spawn(move || {
                write_loop(writer_conn, rx);
                // Released only after the last write: a successor never overlaps this store.
                drop(lock);
            })
            .map_err(|e| Error::internal(format!("could not start the SQLite writer: {e}")))?;
        let (readers_tx, rx) = mpsc::channel::<ReadJob>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..readers.max(1) {
            let conn = open(path)?;
            conn.execute_batch("PRAGMA query_only=ON;")
                .map_err(|e| backend("configure a reader", e))?;
            spawn_reader(&format!("aether-sqlite-reader-{i}"), conn, rx.clone())?;
        }
        Ok(Db {
            writer,
            writer_thread: Some(writer_thread),
            readers: readers_tx,
            stop_checkpoints,
        })
    }

    /// Runs `work` in the writer's transaction; after the commit, runs `after` on the writer
    /// thread (before any later write can begin) and answers.
    pub(crate) async fn write<R, F, A>(&self, work: F, after: A) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Typed {
            work: Some(work),
            after: Some(after),
            result: None,
            reply: Some(tx),
        };
        self.writer
            .send(Box::new(job))
            .map_err(|_| Error::unavailable("the metadata store is shut down"))?;
        // A span per job (waiting for the group commit included), so a request's trace shows
        // its time in the store.
        rx.instrument(tracing::info_span!("sqlite.write"))
            .await
            .map_err(|_| Error::internal("the SQLite writer stopped while serving a request"))?
    }

    /// Runs `f` on one of the reader threads.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.readers
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| Error::unavailable("the metadata store is shut down"))?;
        rx.instrument(tracing::info_span!("sqlite.read"))
            .await
            .map_err(|_| {
                Error::internal("a metadata store thread stopped while serving a request")
            })?
    }
}

fn write_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = run_group(&conn, &mut group);
        for job in group {
            job.finish(committed.clone());
        }
    }
}

fn run_group(conn: &Connection, group: &mut [Box<dyn WriteJob>]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| backend("begin a transaction", e))?;
    // Prepared once and reused: these three run for every job of every group.
    let run = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
    };
    for job in group.iter_mut() {
        let step = run("SAVEPOINT job")
            .map_err(|e| backend("open a savepoint", e))
            .map(|_| job.run(conn))
            .and_then(|ok| {
                let closed = if ok {
                    run("RELEASE job")
                } else {
                    run("ROLLBACK TO job").and_then(|_| run("RELEASE job"))
                };
                closed.map_err(|e| backend("close a savepoint", e))
            });
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        backend("commit a transaction", e)
    })
}

fn spawn_reader(
    name: &str,
    mut conn: Connection,
    rx: Arc<Mutex<mpsc::Receiver<ReadJob>>>,
) -> Result<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            loop {
                let job = {
                    let Ok(guard) = rx.lock() else { return };
                    match guard.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                };
                job(&mut conn);
            }
        })
        .map(|_| ())
        .map_err(|e| Error::internal(format!("could not start a SQLite thread: {e}")))
}
