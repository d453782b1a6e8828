//! The write-back's linger: a burst of closes travels in one batch, and nobody who waits for
//! the write-back (`fsync`) waits for the linger. Runs on tokio's paused clock, so the waits
//! below are virtual time, advanced only when every task is idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aether_domain::Timestamp;
use aether_fakes::{FakeApi, FaultPlan, Faulty};
use aether_mount::Engine;
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::*;
use futures::FutureExt;

use crate::{World, write_new};

const LINGER: Duration = Duration::from_millis(50);

/// The runtime's clock on tokio's (here paused) time: sleeping really waits. Elapsed time is
/// what the engine slept, which is all these tests need of it.
#[derive(Clone, Default)]
struct TokioClock(Arc<AtomicU64>);

impl MountClock for TokioClock {
    fn now(&self) -> Timestamp {
        Timestamp(1_767_225_600_000_000_000 + self.elapsed().as_nanos() as i64)
    }

    fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
        self.0
            .fetch_add(duration.as_nanos() as u64, Ordering::Relaxed);
    }
}

type Lingering = Engine<Faulty<FakeApi>, aether_fakes::MemoryCache, TokioClock>;

async fn create(e: &Arc<Lingering>, name: &str) -> u64 {
    write_new(e, ROOT_INO, name, name.as_bytes()).await
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_closes_travels_in_one_batch_and_fsync_skips_the_linger() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let mut config = w.config();
    config.writeback_linger = Some(LINGER);
    let e: Arc<Lingering> = Arc::new(Engine::new(
        Faulty::new(w.api.clone(), plan.clone()),
        w.cache.clone(),
        TokioClock::default(),
        config,
    ));
    e.start().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let work = async {
        // Twenty closes in a burst: the write-back, woken by the first, waits for the rest.
        for i in 0..20 {
            create(&e, &format!("f{i}")).await;
            // Between closes the write-back gets to run, as it would beside a busy writer.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(LINGER * 2).await;
        assert_eq!(e.cache().journal_stats().pending_entries, 0);
        assert_eq!(plan.calls("batch"), 1, "one request for the whole burst");
        assert_eq!(plan.calls("write_file"), 0);
        let files = w.server_paths().await;
        assert_eq!(
            files.iter().filter(|p| p.starts_with("/f")).count(),
            20,
            "{files:?}"
        );

        // A lone change with someone waiting for it is sent at once, even mid-linger.
        let ino = create(&e, "urgent").await;
        for _ in 0..10 {
            tokio::task::yield_now().await; // the write-back starts lingering
        }
        futures::select! {
            done = e.fsync(ino, None).fuse() => done.unwrap(),
            _ = tokio::time::sleep(LINGER / 2).fuse() => panic!("fsync waited for the linger"),
        }
        assert_eq!(
            w.server_read("/urgent").await.as_deref(),
            Some(&b"urgent"[..])
        );
        let _ = stop.send(());
    };
    futures::join!(
        e.run_writeback(async {
            let _ = stopped.await;
        }),
        work
    );
}
