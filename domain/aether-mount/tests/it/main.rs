//! Engine tests over the in-memory session API and cache: what a user of the mount would notice
//! (reads, writes, names, durability of the journal, write-back, invalidation).

mod early;
mod kernel_store;
mod linger;
mod model;
mod reclaim;
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use aether_domain::{Principal, TenantId};
use aether_fakes::{FakeApi, ManualClock, MemoryCache, fake_api};
use aether_mount::{Backoff, Engine, MountConfig};
use aether_ports::local_cache::LocalCache;
use aether_ports::*;

pub(crate) type TestEngine = Engine<FakeApi, MemoryCache, ManualClock>;

pub(crate) struct World {
    pub(crate) api: FakeApi,
    pub(crate) ctx: Ctx,
    pub(crate) session: String,
    pub(crate) cache: MemoryCache,
    pub(crate) clock: ManualClock,
}

impl World {
    pub(crate) async fn new() -> World {
        World::over(fake_api()).await
    }

    /// A world whose server stores files of at most `max_file_bytes`.
    pub(crate) async fn with_max_file_bytes(max_file_bytes: u64) -> World {
        World::over(aether_fakes::fake_api_with_limits(aether_fakes::Limits {
            max_file_bytes,
            ..Default::default()
        }))
        .await
    }

    async fn over(api: FakeApi) -> World {
        let ctx = Ctx::new(Principal::full_access(
            TenantId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
            "tester",
        ));
        let session = api
            .create_session(&ctx, CreateSessionRequest::default())
            .await
            .unwrap()
            .id;
        World {
            api,
            ctx,
            session,
            cache: MemoryCache::default(),
            clock: ManualClock::default(),
        }
    }

    pub(crate) fn config(&self) -> MountConfig {
        MountConfig {
            session_id: self.session.clone(),
            principal: self.ctx.principal.clone(),
            worker_id: "00000000-0000-4000-8000-0000000000aa".into(),
            lookup_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            dir_ttl: Duration::from_secs(30),
            read_only: false,
            backoff: Backoff {
                start: Duration::from_millis(10),
                max: Duration::from_millis(100),
                multiplier: 2.0,
                jitter_percent: 0.0,
            },
            backpressure: Default::default(),
            backpressure_wait: Duration::from_secs(30),
            early_upload_above: None,
            writeback_linger: None,
            cache_max_bytes: None,
        }
    }

    /// A started engine over this world's cache (a mount or a remount).
    pub(crate) async fn mount(&self) -> Arc<TestEngine> {
        self.mount_with(self.config()).await
    }

    pub(crate) async fn mount_with(&self, config: MountConfig) -> Arc<TestEngine> {
        let engine = Arc::new(Engine::new(
            self.api.clone(),
            self.cache.clone(),
            self.clock.clone(),
            config,
        ));
        engine.start().await.unwrap();
        engine
    }

    /// The server's whole tree, in path order.
    pub(crate) async fn server_entries(&self) -> Vec<aether_ports::Entry> {
        let listing = self
            .api
            .manifest(&self.ctx, &self.session, ManifestRequest::default())
            .await
            .unwrap();
        listing.entries.items
    }

    /// The paths of the server's whole tree, in order.
    pub(crate) async fn server_paths(&self) -> Vec<String> {
        self.server_entries()
            .await
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    /// The server's entry at `path`.
    pub(crate) async fn server_entry(&self, path: &str) -> Option<aether_ports::Entry> {
        self.server_entries()
            .await
            .into_iter()
            .find(|e| e.path == path)
    }

    /// Another client writes `path` on the server, whole.
    pub(crate) async fn server_write(&self, path: &str, data: &[u8]) {
        self.api
            .write_file(
                &self.ctx,
                &self.session,
                WriteFileRequest {
                    path: path.into(),
                    data: data.to_vec().into(),
                    mode: None,
                    parents: true,
                    expected_hash: None,
                },
            )
            .await
            .unwrap();
    }

    /// The server's view of one file.
    pub(crate) async fn server_read(&self, path: &str) -> Option<Vec<u8>> {
        self.api
            .read_file(
                &self.ctx,
                &self.session,
                ReadFileRequest {
                    path: path.into(),
                    range: None,
                },
            )
            .await
            .ok()
            .map(|c| c.data.to_vec())
    }
}

/// Feeds the session's whole event log to the engine, as its changefeed would.
pub(crate) async fn deliver_events(
    w: &World,
    e: &impl std::ops::Deref<Target = crate::TestEngine>,
) {
    let events = w
        .api
        .list_events(
            &w.ctx,
            &w.session,
            ListEventsRequest {
                page: PageRequest {
                    page_size: Some(1000),
                    page_token: None,
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for ev in &events.items {
        e.on_event(ev);
    }
}

/// Runs the write-back loop until the journal is empty.
pub(crate) async fn write_back<R: SessionApi + 'static>(e: &Engine<R, MemoryCache, ManualClock>) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let drained = async {
        for _ in 0..100_000 {
            if e.cache().journal_stats().pending_entries == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let _ = tx.send(());
    };
    futures::join!(
        e.run_writeback(async {
            let _ = rx.await;
        }),
        drained
    );
    assert_eq!(
        e.cache().journal_stats().pending_entries,
        0,
        "journal drained"
    );
}

/// Runs `op` while the write-back loop runs beside it.
pub(crate) async fn with_writeback<R, C, K, T>(
    e: &Engine<R, C, K>,
    op: impl std::future::Future<Output = T>,
) -> T
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: aether_ports::local_cache::MountClock,
{
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = async {
        let out = op.await;
        let _ = tx.send(());
        out
    };
    // `op` is polled first: it starts before the write-back has sent anything.
    let (out, ()) = futures::join!(
        run,
        e.run_writeback(async {
            let _ = rx.await;
        })
    );
    out
}

/// The caller of every operation in these tests (root).
pub(crate) const ME: aether_ports::vfs::Caller = aether_ports::vfs::Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};

pub(crate) const RW: aether_ports::vfs::OpenIn = aether_ports::vfs::OpenIn {
    write: true,
    read: true,
    truncate: false,
    append: false,
    exclusive: false,
};

pub(crate) const RO: aether_ports::vfs::OpenIn = aether_ports::vfs::OpenIn {
    write: false,
    read: true,
    ..RW
};

/// Creates `name` in `parent` holding `data`, through create/write/flush/release.
pub(crate) async fn write_new<V: aether_ports::vfs::Vfs>(
    e: &impl std::ops::Deref<Target = V>,
    parent: u64,
    name: &str,
    data: &[u8],
) -> u64 {
    let (entry, open) = e
        .create(ME, parent, name.as_bytes(), 0o644, RW)
        .await
        .unwrap();
    e.write(entry.attr.ino, open.fh, 0, data).await.unwrap();
    e.flush(entry.attr.ino, open.fh).await.unwrap();
    e.release(entry.attr.ino, open.fh).await.unwrap();
    entry.attr.ino
}

/// The first `limit` bytes of `ino`, through open/read/release.
pub(crate) async fn read_whole<V: aether_ports::vfs::Vfs>(e: &V, ino: u64, limit: u32) -> Vec<u8> {
    let how = aether_ports::vfs::OpenIn {
        read: true,
        ..Default::default()
    };
    let open = e.open(ino, how).await.unwrap();
    let data = e.read(ino, open.fh, 0, limit).await.unwrap();
    e.release(ino, open.fh).await.unwrap();
    data
}
