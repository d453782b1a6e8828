//! Early uploads of large files written in order: they travel while the file is written, land
//! at their turn in the journal, and give way to the usual write-back whenever the content stops
//! being what they sent.

use std::future::Future;
use std::sync::Arc;

use aether_fakes::{FakeApi, FaultPlan, Faulty, ManualClock, MemoryCache};
use aether_mount::Engine;
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::*;

use crate::{ME, RW, World};

type Early = Engine<Faulty<FakeApi>, MemoryCache, ManualClock>;

const THRESHOLD: u64 = 1 << 20;
const PIECE: usize = 256 << 10;

/// A started engine that uploads files above `THRESHOLD` early, and the plan that counts its
/// calls to the server.
async fn mount(w: &World) -> (Arc<Early>, FaultPlan) {
    let plan = FaultPlan::default();
    let mut config = w.config();
    config.early_upload_above = Some(THRESHOLD);
    let e = Arc::new(Engine::new(
        Faulty::new(w.api.clone(), plan.clone()),
        w.cache.clone(),
        ManualClock::default(),
        config,
    ));
    e.start().await.unwrap();
    (e, plan)
}

/// Runs `body` while the early-upload loop runs beside it.
async fn with_transfers<T>(e: &Early, body: impl Future<Output = T>) -> T {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let run = async {
        let out = body.await;
        let _ = tx.send(());
        out
    };
    let ((), out) = futures::join!(
        e.run_transfers(async {
            let _ = rx.await;
        }),
        run
    );
    out
}

/// Lets the background loops catch up.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Runs `fsync` of `ino` with the write-back loop beside it.
async fn fsync(e: &Early, ino: u64, fh: u64) -> FsResult<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (_, r) = futures::join!(
        e.run_writeback(async {
            let _ = rx.await;
        }),
        async {
            let r = e.fsync(ino, Some(fh)).await;
            let _ = tx.send(());
            r
        }
    );
    r
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `data` at `from` in pieces, letting the uploader run between them.
async fn write_in_pieces(e: &Early, ino: u64, fh: u64, from: u64, data: &[u8]) {
    for (i, piece) in data.chunks(PIECE).enumerate() {
        let at = from + (i * PIECE) as u64;
        e.write(ino, fh, at, piece).await.unwrap();
        settle().await;
    }
}

#[tokio::test]
async fn a_large_file_uploads_while_written_and_lands_at_fsync() {
    let w = World::new().await;
    let (e, plan) = mount(&w).await;
    let data = content(3 << 20, 1);
    with_transfers(&e, async {
        let (entry, open) = e.create(ME, ROOT_INO, b"big.bin", 0o644, RW).await.unwrap();
        let ino = entry.attr.ino;
        write_in_pieces(&e, ino, open.fh, 0, &data).await;
        assert_eq!(
            plan.calls("write_file"),
            1,
            "the upload began during the writes"
        );
        assert_eq!(
            w.server_read("/big.bin").await,
            None,
            "nothing lands before fsync"
        );
        fsync(&e, ino, open.fh).await.unwrap();
        assert_eq!(w.server_read("/big.bin").await.as_deref(), Some(&data[..]));
        assert_eq!(plan.calls("write_file"), 1, "fsync sent nothing twice");
        e.release(ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(e.cache().journal_stats().pending_entries, 0);
}

#[tokio::test]
async fn a_file_first_closed_empty_still_uploads_early() {
    // `dd of=f` and a shell's `> f` close a duplicate descriptor before writing: the empty file
    // is journaled first, then the content follows.
    let w = World::new().await;
    let (e, plan) = mount(&w).await;
    let data = content(3 << 20, 7);
    with_transfers(&e, async {
        let (entry, open) = e.create(ME, ROOT_INO, b"out", 0o644, RW).await.unwrap();
        let ino = entry.attr.ino;
        e.flush(ino, open.fh).await.unwrap();
        write_in_pieces(&e, ino, open.fh, 0, &data).await;
        assert_eq!(
            plan.calls("write_file"),
            1,
            "the upload began during the writes"
        );
        fsync(&e, ino, open.fh).await.unwrap();
        e.release(ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(w.server_read("/out").await.as_deref(), Some(&data[..]));
    assert_eq!(
        plan.calls("write_file"),
        2,
        "the empty file's own entry, and the content once"
    );
}

#[tokio::test]
async fn an_overwrite_mid_file_falls_back_to_the_usual_upload() {
    let w = World::new().await;
    let (e, plan) = mount(&w).await;
    let mut data = content(3 << 20, 2);
    with_transfers(&e, async {
        let (entry, open) = e.create(ME, ROOT_INO, b"f", 0o644, RW).await.unwrap();
        let ino = entry.attr.ino;
        write_in_pieces(&e, ino, open.fh, 0, &data[..2 << 20]).await;
        // Rewrites bytes the upload has already sent, then goes on appending.
        e.write(ino, open.fh, 100, b"REWRITTEN").await.unwrap();
        data[100..109].copy_from_slice(b"REWRITTEN");
        write_in_pieces(&e, ino, open.fh, 2 << 20, &data[2 << 20..]).await;
        fsync(&e, ino, open.fh).await.unwrap();
        e.release(ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(w.server_read("/f").await.as_deref(), Some(&data[..]));
    assert_eq!(
        plan.calls("write_file"),
        2,
        "the abandoned early upload, then the whole file"
    );
    assert!(e.cache().journal_rejected().unwrap().is_empty());
}

#[tokio::test]
async fn emptying_the_file_restarts_its_early_upload() {
    let w = World::new().await;
    let (e, plan) = mount(&w).await;
    let data = content(2 << 20, 3);
    with_transfers(&e, async {
        let (entry, open) = e.create(ME, ROOT_INO, b"log", 0o644, RW).await.unwrap();
        let ino = entry.attr.ino;
        write_in_pieces(&e, ino, open.fh, 0, &content(2 << 20, 9)).await;
        e.setattr(
            ino,
            Some(open.fh),
            SetAttrIn {
                size: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        write_in_pieces(&e, ino, open.fh, 0, &data).await;
        fsync(&e, ino, open.fh).await.unwrap();
        e.release(ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(w.server_read("/log").await.as_deref(), Some(&data[..]));
    assert_eq!(
        plan.calls("write_file"),
        2,
        "one early upload per content, the second one landing"
    );
}

#[tokio::test]
async fn a_file_renamed_while_written_lands_under_its_new_name() {
    let w = World::new().await;
    let (e, _) = mount(&w).await;
    let data = content(2 << 20, 4);
    with_transfers(&e, async {
        let (entry, open) = e.create(ME, ROOT_INO, b"draft", 0o644, RW).await.unwrap();
        let ino = entry.attr.ino;
        write_in_pieces(&e, ino, open.fh, 0, &data).await;
        e.rename(ROOT_INO, b"draft", ROOT_INO, b"final", RenameMode::Replace)
            .await
            .unwrap();
        fsync(&e, ino, open.fh).await.unwrap();
        e.release(ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(w.server_read("/final").await.as_deref(), Some(&data[..]));
    assert_eq!(w.server_read("/draft").await, None);
}

#[tokio::test]
async fn an_early_upload_waits_for_the_changes_journaled_before_it() {
    let w = World::new().await;
    let (e, _) = mount(&w).await;
    let data = content(2 << 20, 5);
    with_transfers(&e, async {
        // `a` is written and renamed to `b`, then a new, large `a` is written: had the large
        // one landed first, the rename would have carried it to `b`.
        let (entry, open) = e.create(ME, ROOT_INO, b"a", 0o644, RW).await.unwrap();
        e.write(entry.attr.ino, open.fh, 0, b"small").await.unwrap();
        e.release(entry.attr.ino, open.fh).await.unwrap();
        e.rename(ROOT_INO, b"a", ROOT_INO, b"b", RenameMode::Replace)
            .await
            .unwrap();
        let (entry, open) = e.create(ME, ROOT_INO, b"a", 0o644, RW).await.unwrap();
        write_in_pieces(&e, entry.attr.ino, open.fh, 0, &data).await;
        fsync(&e, entry.attr.ino, open.fh).await.unwrap();
        e.release(entry.attr.ino, open.fh).await.unwrap();
    })
    .await;
    assert_eq!(w.server_read("/b").await.as_deref(), Some(&b"small"[..]));
    assert_eq!(w.server_read("/a").await.as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_crash_with_an_early_upload_open_loses_nothing() {
    let w = World::new().await;
    let data = content(3 << 20, 6);
    {
        let (e, plan) = mount(&w).await;
        with_transfers(&e, async {
            let (entry, open) = e.create(ME, ROOT_INO, b"f", 0o644, RW).await.unwrap();
            write_in_pieces(&e, entry.attr.ino, open.fh, 0, &data).await;
            e.release(entry.attr.ino, open.fh).await.unwrap();
            assert_eq!(plan.calls("write_file"), 1);
        })
        .await;
        // The runtime dies before the write-back reached the file.
    }
    w.cache.crash();
    assert_eq!(
        w.server_read("/f").await,
        None,
        "the cut upload stored nothing"
    );
    let (e, _) = mount(&w).await;
    crate::write_back(&e).await;
    assert_eq!(w.server_read("/f").await.as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_sequential_reader_finds_the_next_window_fetched_ahead() {
    let w = World::new().await;
    let big = content(12 << 20, 8);
    w.server_write("/big.bin", &big).await;
    let (e, plan) = mount(&w).await;
    let got = with_transfers(&e, async {
        let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
        let how = OpenIn {
            read: true,
            ..Default::default()
        };
        let open = e.open(ino, how).await.unwrap();
        // The first read fetches the first window (1 MiB) and nothing more.
        let mut got = e.read(ino, open.fh, 0, 128 << 10).await.unwrap();
        settle().await;
        assert_eq!(plan.calls("read_file_chunks"), 1);
        // Past its middle, the next window is fetched before the reader asks for it.
        got.extend(e.read(ino, open.fh, 128 << 10, 512 << 10).await.unwrap());
        settle().await;
        assert_eq!(
            plan.calls("read_file_chunks"),
            2,
            "the next window is fetched ahead"
        );
        let mut off = got.len() as u64;
        loop {
            let chunk = e.read(ino, open.fh, off, 128 << 10).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            off += chunk.len() as u64;
            got.extend(chunk);
            settle().await;
        }
        e.release(ino, open.fh).await.unwrap();
        got
    })
    .await;
    assert!(got == big, "the reader gets the file's bytes, in order");
    assert_eq!(e.cache().stats().blob_count, 1, "the complete blob is kept");
    // Windows double up to 32 MiB: 1 + 2 + 4 + 5 (the rest) MiB, each fetched once.
    assert_eq!(plan.calls("read_file_chunks"), 4);
}

/// Opens `ino` for reading.
async fn open_to_read(e: &Early, ino: u64) -> FsResult<OpenOut> {
    let how = OpenIn {
        read: true,
        ..Default::default()
    };
    e.open(ino, how).await
}

/// Reads all of `ino` through a new handle, `piece` bytes at a time, letting background
/// transfers run between reads.
async fn read_all(e: &Early, ino: u64, piece: u32) -> FsResult<Vec<u8>> {
    let open = open_to_read(e, ino).await?;
    let mut got = Vec::new();
    loop {
        let chunk = e.read(ino, open.fh, got.len() as u64, piece).await?;
        if chunk.is_empty() {
            break;
        }
        got.extend(chunk);
        settle().await;
    }
    e.release(ino, open.fh).await?;
    Ok(got)
}

#[tokio::test]
async fn a_reply_cut_short_after_the_bytes_asked_for_still_serves_them() {
    let w = World::new().await;
    let big = content(6 << 20, 9);
    w.server_write("/big.bin", &big).await;
    let (e, plan) = mount(&w).await;
    // The first window's reply breaks after 300 KiB; the reader asked for the first 128.
    plan.set(
        "read_file_chunks",
        aether_fakes::Fault {
            cut_stream_after: Some(300 << 10),
            times: Some(1),
            ..Default::default()
        },
    );
    let got = with_transfers(&e, async {
        let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
        read_all(&e, ino, 128 << 10).await
    })
    .await
    .expect("no read fails: the bytes lost with the reply are fetched again");
    assert!(got == big, "the reader gets the file's bytes, in order");
    assert_eq!(e.cache().stats().blob_count, 1, "the complete blob is kept");
}

#[tokio::test]
async fn a_reply_cut_short_before_the_bytes_asked_for_is_resumed_where_it_broke_off() {
    let w = World::new().await;
    let big = content(6 << 20, 10);
    w.server_write("/big.bin", &big).await;
    let (e, plan) = mount(&w).await;
    // The first reply breaks after 100 KiB: one 64 KiB chunk written, the reader's 128 not.
    plan.set(
        "read_file_chunks",
        aether_fakes::Fault {
            cut_stream_after: Some(100 << 10),
            times: Some(1),
            ..Default::default()
        },
    );
    let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    let open = open_to_read(&e, ino).await.unwrap();
    let got = e.read(ino, open.fh, 0, 128 << 10).await;
    assert!(
        got.as_deref().ok() == Some(&big[..128 << 10]),
        "the read waits out the break and gets its bytes"
    );
    assert_eq!(plan.calls("read_file_chunks"), 2, "one more request");
    assert_eq!(
        e.counters()
            .remote_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    let got = with_transfers(&e, read_all(&e, ino, 128 << 10))
        .await
        .expect("the next reads succeed");
    assert!(got == big, "the reader gets the file's bytes, in order");
}

#[tokio::test]
async fn reads_wait_out_a_short_outage_and_fail_fast_once_it_has_lasted() {
    let w = World::new().await;
    let big = content(6 << 20, 12);
    w.server_write("/big.bin", &big).await;
    w.server_write("/small.txt", b"small").await;
    let (e, plan) = mount(&w).await;
    let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    let small = e.lookup(ROOT_INO, b"small.txt").await.unwrap().attr.ino;
    let outage = |times| aether_fakes::Fault {
        error: Some(aether_domain::Error::unavailable("the server restarts")),
        times,
        ..Default::default()
    };
    // Two refusals: the read tries again after the backoff's delays and succeeds.
    plan.set("read_file_chunks", outage(Some(2)));
    let before = e.clock().elapsed();
    let got = read_all(&e, ino, 1 << 20)
        .await
        .expect("a short outage is ridden out");
    assert!(got == big);
    assert_eq!(
        e.clock().elapsed() - before,
        std::time::Duration::from_millis(30),
        "paced by the reconnect backoff (here 10 ms, then 20)"
    );
    // An outage that lasts: the read gives up with ETIMEDOUT within the patience...
    plan.set("read_file", outage(None));
    let before = e.clock().elapsed();
    let err = read_all(&e, small, 4096)
        .await
        .expect_err("the server stays away");
    assert!(matches!(err, FsError::TimedOut(_)), "{err:?}");
    let waited = e.clock().elapsed() - before;
    assert!(
        waited > std::time::Duration::from_secs(9) && waited <= std::time::Duration::from_secs(10),
        "tried for about 10 s: {waited:?}"
    );
    // ...and once the outage is older than that, a read that needs the server fails at once.
    e.clock().advance(std::time::Duration::from_secs(1));
    let before = e.clock().elapsed();
    let err = read_all(&e, small, 4096).await.expect_err("still away");
    assert!(matches!(err, FsError::TimedOut(_)), "{err:?}");
    assert_eq!(e.clock().elapsed(), before, "no second wait");
    // Once the server answers again, so does the mount.
    plan.clear();
    assert_eq!(read_all(&e, small, 4096).await.unwrap(), b"small");
}

#[tokio::test]
async fn a_reader_of_bytes_still_streaming_in_gets_them_before_the_stream_ends() {
    let w = World::new().await;
    let big = content(6 << 20, 11);
    w.server_write("/big.bin", &big).await;
    let (e, plan) = mount(&w).await;
    let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    let a = open_to_read(&e, ino).await.unwrap();
    let b = open_to_read(&e, ino).await.unwrap();
    let first_done = std::sync::atomic::AtomicBool::new(false);
    // The first reader's miss streams in the first 1 MiB window, chunk by chunk; the second
    // asks for bytes inside that window while it is still arriving.
    let first = async {
        let got = e.read(ino, a.fh, 0, 64 << 10).await.unwrap();
        first_done.store(true, std::sync::atomic::Ordering::SeqCst);
        got
    };
    let second = async {
        tokio::task::yield_now().await;
        let got = e.read(ino, b.fh, 128 << 10, 64 << 10).await.unwrap();
        let first_was_done = first_done.load(std::sync::atomic::Ordering::SeqCst);
        (got, first_was_done)
    };
    let (got_a, (got_b, first_was_done)) = futures::join!(first, second);
    assert!(got_a == big[..64 << 10] && got_b == big[128 << 10..192 << 10]);
    assert!(
        !first_was_done,
        "the second reader waited only for its bytes, not for the first reader's whole window"
    );
    assert_eq!(
        plan.calls("read_file_chunks"),
        1,
        "the second reader fetched nothing of its own"
    );
}

/// Reads `name` in the root through a new handle, whole.
async fn read_name(e: &Early, name: &str) -> Vec<u8> {
    let ino = e.lookup(ROOT_INO, name.as_bytes()).await.unwrap().attr.ino;
    read_all(e, ino, 128 << 10).await.unwrap()
}

#[tokio::test]
async fn a_directory_read_file_after_file_on_a_cold_cache_is_fetched_ahead() {
    let w = World::new().await;
    for i in 0..10 {
        w.server_write(&format!("/f{i}"), format!("file {i}").as_bytes())
            .await;
    }
    w.server_write("/zz-large", &content(1 << 20, 13)).await;
    let (e, plan) = mount(&w).await;
    with_transfers(&e, async {
        // One file alone, as an editor reads it: nothing else is fetched.
        assert_eq!(read_name(&e, "f3").await, b"file 3");
        settle().await;
        assert_eq!(plan.calls("read_file"), 1);
        // A second cold read in the same directory: a scan. The files after it come ahead.
        assert_eq!(read_name(&e, "f4").await, b"file 4");
        for _ in 0..10 {
            settle().await;
        }
        assert_eq!(
            plan.calls("read_file"),
            2 + 5,
            "f5 to f9 fetched ahead; not the large file, nor those before"
        );
        for i in 5..10 {
            assert_eq!(
                read_name(&e, &format!("f{i}")).await,
                format!("file {i}").as_bytes()
            );
        }
        assert_eq!(
            plan.calls("read_file"),
            7,
            "the scan's reads find them in the cache"
        );
    })
    .await;
}

#[tokio::test]
async fn a_file_changed_on_the_server_since_its_listing_is_not_kept_when_fetched_ahead() {
    let w = World::new().await;
    for i in 0..4 {
        w.server_write(&format!("/d/f{i}"), format!("file {i}").as_bytes())
            .await;
    }
    // Another file with f3's first content: the cache names content by its hash.
    w.server_write("/same-as-f3", b"file 3").await;
    let (e, _plan) = mount(&w).await;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let read_in_d = |name: &'static str| {
        let e = &e;
        async move {
            let ino = e.lookup(d, name.as_bytes()).await.unwrap().attr.ino;
            read_all(e, ino, 4096).await.unwrap()
        }
    };
    with_transfers(&e, async {
        assert_eq!(read_in_d("f0").await, b"file 0");
        // Changed behind the mount's back (its changefeed is not running here).
        w.server_write("/d/f3", b"changed").await;
        assert_eq!(read_in_d("f1").await, b"file 1");
        for _ in 0..10 {
            settle().await;
        }
        // Fetched ahead under the listing's (old) hash, f3's new content was not kept as it.
        assert_eq!(read_name(&e, "same-as-f3").await, b"file 3");
    })
    .await;
}
