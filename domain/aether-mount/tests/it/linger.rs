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

use crate::{World, with_writeback, write_new};

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

/// A started engine over `w` whose write-back lingers, its remote faulted by `plan`.
async fn lingering(w: &World, plan: &FaultPlan) -> Arc<Lingering> {
    let mut config = w.config();
    config.writeback_linger = Some(LINGER);
    let e: Arc<Lingering> = Arc::new(Engine::new(
        Faulty::new(w.api.clone(), plan.clone()),
        w.cache.clone(),
        TokioClock::default(),
        config,
    ));
    e.start().await.unwrap();
    e
}

async fn create(e: &Arc<Lingering>, name: &str) -> u64 {
    write_new(e, ROOT_INO, name, name.as_bytes()).await
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_closes_travels_in_one_batch_and_fsync_skips_the_linger() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let e = lingering(&w, &plan).await;
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

/// A large file changed again right after its `close` (a log appended to line by line): the
/// change waits for that close's write-back, hurrying it past the linger, so that the cache can
/// change the file in place instead of copying all of it. An unreachable server holds the
/// change up only about as long as the copy would take.
#[tokio::test(start_paused = true)]
async fn a_large_file_changed_right_after_its_close_waits_for_that_write_back_briefly() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let e = lingering(&w, &plan).await;
    let append = |ino: u64, line: &'static [u8]| {
        let e = e.clone();
        async move {
            let how = OpenIn {
                write: true,
                append: true,
                ..Default::default()
            };
            let open = e.open(ino, how).await.unwrap();
            e.write(ino, open.fh, 0, line).await.unwrap();
            (open.fh, e)
        }
    };
    let work = async {
        let big: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 253) as u8).collect();
        let ino = write_new(&e, ROOT_INO, "log", &big).await;
        let (fh, e2) = append(ino, b"one more line\n").await;
        assert_eq!(
            w.server_read("/log").await.as_deref(),
            Some(&big[..]),
            "the append waited until the server held what was closed before it"
        );
        e2.flush(ino, fh).await.unwrap();
        e2.release(ino, fh).await.unwrap();
        e.fsync(ino, None).await.unwrap();

        // The server stops answering: the next append waits a little, then goes on.
        plan.set(
            "*",
            aether_fakes::Fault {
                latency: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        );
        let ino2 = write_new(&e, ROOT_INO, "stalled", &big).await;
        futures::select! {
            (fh, e2) = append(ino2, b"tail\n").fuse() => {
                e2.flush(ino2, fh).await.unwrap();
                e2.release(ino2, fh).await.unwrap();
            }
            _ = tokio::time::sleep(Duration::from_secs(1)).fuse() => {
                panic!("an append waited for a server that does not answer")
            }
        }
        plan.clear();
        e.fsync(ino2, None).await.unwrap();
        let mut want = big.clone();
        want.extend_from_slice(b"tail\n");
        assert_eq!(w.server_read("/stalled").await.as_deref(), Some(&want[..]));
    };
    with_writeback(&*e, work).await;
}

/// A large file cut short right after its `close` waits for that close's write-back too, so
/// that the cache cuts the file in place instead of copying all of it first.
#[tokio::test(start_paused = true)]
async fn a_large_file_cut_short_right_after_its_close_waits_for_that_write_back() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let e = lingering(&w, &plan).await;
    let work = async {
        let big: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        let ino = write_new(&e, ROOT_INO, "data", &big).await;
        let cut = SetAttrIn {
            size: Some(1 << 20),
            ..Default::default()
        };
        let (attr, _) = e.setattr(ino, None, cut).await.unwrap();
        assert_eq!(attr.size, 1 << 20);
        assert_eq!(
            w.server_read("/data").await.as_deref(),
            Some(&big[..]),
            "the truncation waited until the server held what was closed before it"
        );
        e.fsync(ino, None).await.unwrap();
        assert_eq!(
            w.server_read("/data").await.as_deref(),
            Some(&big[..1 << 20])
        );
    };
    with_writeback(&*e, work).await;
}
