//! Runs rusqlite on dedicated threads behind channels: one writer, several readers (WAL lets
//! them proceed concurrently), so async callers never block the runtime on SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use aether_domain::{Error, Result};

use crate::backend;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) struct Db {
    writer: mpsc::Sender<Job>,
    readers: mpsc::Sender<Job>,
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| backend("open the database", e))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; \
         PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY;",
    )
    .map_err(|e| backend("configure the database", e))?;
    Ok(conn)
}

impl Db {
    pub(crate) fn open(
        path: &Path,
        readers: usize,
        init: impl FnOnce(&Connection) -> Result<()>,
    ) -> Result<Db> {
        let writer_conn = open(path)?;
        init(&writer_conn)?;
        let (writer, rx) = mpsc::channel::<Job>();
        spawn(
            "aether-sqlite-writer",
            writer_conn,
            Arc::new(Mutex::new(rx)),
        )?;
        let (readers_tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..readers.max(1) {
            let conn = open(path)?;
            conn.execute_batch("PRAGMA query_only=ON;")
                .map_err(|e| backend("configure a reader", e))?;
            spawn(&format!("aether-sqlite-reader-{i}"), conn, rx.clone())?;
        }
        Ok(Db {
            writer,
            readers: readers_tx,
        })
    }

    /// Runs `f` on the writer thread.
    pub(crate) async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        run(&self.writer, f).await
    }

    /// Runs `f` on one of the reader threads.
    pub(crate) async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        run(&self.readers, f).await
    }
}

fn spawn(name: &str, mut conn: Connection, rx: Arc<Mutex<mpsc::Receiver<Job>>>) -> Result<()> {
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

async fn run<R: Send + 'static>(
    queue: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut Connection) -> Result<R> + Send + 'static,
) -> Result<R> {
    let (tx, rx) = oneshot::channel();
    queue
        .send(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }))
        .map_err(|_| Error::unavailable("the metadata store is shut down"))?;
    rx.await
        .map_err(|_| Error::internal("a metadata store thread stopped while serving a request"))?
}
