//! Scenarios a user of the mount would notice, through the engine's `Vfs` port.

use aether_fakes::{Fault, FaultPlan, Faulty, ManualClock};
use aether_mount::Engine;
use aether_ports::local_cache::LocalCache;
use aether_ports::vfs::*;
use aether_ports::*;

use crate::{ME, RO, RW, World, deliver_events, read_whole, with_writeback, write_back, write_new};

/// A started engine over the world's cache whose server calls go through `plan`, with a clock
/// of its own (a mount, or a remount).
async fn mount_through(
    w: &World,
    plan: &FaultPlan,
) -> Engine<Faulty<aether_fakes::FakeApi>, aether_fakes::MemoryCache, ManualClock> {
    let e = Engine::new(
        Faulty::new(w.api.clone(), plan.clone()),
        w.cache.clone(),
        ManualClock::default(),
        w.config(),
    );
    e.start().await.unwrap();
    e
}

/// Makes the server's `op` route fail, to prove the mount does not call it.
fn refuse(plan: &FaultPlan, op: &str) {
    plan.set(
        op,
        Fault {
            error: Some(aether_domain::Error::unavailable("not asked")),
            ..Default::default()
        },
    );
}

async fn read_all(e: &crate::TestEngine, ino: u64) -> Vec<u8> {
    crate::read_whole(e, ino, 1 << 20).await
}

#[tokio::test]
async fn a_closed_file_reaches_the_server_after_write_back() {
    let w = World::new().await;
    let e = w.mount().await;
    let dir = e.mkdir(ME, ROOT_INO, b"src", 0o755).await.unwrap().attr.ino;
    let f = write_new(&e, dir, "main.rs", b"fn main() {}\n").await;
    assert_eq!(read_all(&e, f).await, b"fn main() {}\n");
    // Acknowledged locally, not yet on the server.
    assert_eq!(w.server_read("/src/main.rs").await, None);
    assert_eq!(e.cache().journal_stats().pending_entries, 2);
    write_back(&e).await;
    assert_eq!(
        w.server_read("/src/main.rs").await.as_deref(),
        Some(&b"fn main() {}\n"[..])
    );
}

#[tokio::test]
async fn fsync_returns_once_the_server_holds_the_data() {
    let w = World::new().await;
    let e = w.mount().await;
    let (entry, open) = e.create(ME, ROOT_INO, b"f", 0o644, RW).await.unwrap();
    let ino = entry.attr.ino;
    e.write(ino, open.fh, 0, b"durable").await.unwrap();
    with_writeback(&e, e.fsync(ino, Some(open.fh)))
        .await
        .unwrap();
    assert_eq!(w.server_read("/f").await.as_deref(), Some(&b"durable"[..]));
}

#[tokio::test]
async fn a_crash_after_close_loses_nothing() {
    let w = World::new().await;
    {
        let e = w.mount().await;
        write_new(&e, ROOT_INO, "notes.txt", b"written before the crash").await;
        // The runtime dies here: no write-back ran.
    }
    w.cache.crash();
    let e = w.mount().await;
    write_back(&e).await;
    assert_eq!(
        w.server_read("/notes.txt").await.as_deref(),
        Some(&b"written before the crash"[..])
    );
    let ino = e.lookup(ROOT_INO, b"notes.txt").await.unwrap().attr.ino;
    assert_eq!(read_all(&e, ino).await, b"written before the crash");
}

/// The journal names a hard-linked file by one of its paths; after a crash the new mount may
/// know the file only under another, whose directory it has loaded.
#[tokio::test]
async fn a_write_replayed_after_a_crash_shows_under_every_hard_link() {
    let w = World::new().await;
    {
        let e = w.mount().await;
        let dir = e.mkdir(ME, ROOT_INO, b"a", 0o755).await.unwrap().attr.ino;
        let f = write_new(&e, dir, "first", b"").await;
        e.link(f, ROOT_INO, b"second").await.unwrap();
        write_back(&e).await;
        let open = e.open(f, RW).await.unwrap();
        e.write(f, open.fh, 0, b"new").await.unwrap();
        e.flush(f, open.fh).await.unwrap();
        e.release(f, open.fh).await.unwrap();
    }
    w.cache.crash();
    let e = w.mount().await;
    write_back(&e).await;
    let second = e.lookup(ROOT_INO, b"second").await.unwrap();
    assert_eq!(second.attr.size, 3);
    assert_eq!(read_all(&e, second.attr.ino).await, b"new");
}

#[tokio::test]
async fn names_round_trip_to_the_server() {
    let w = World::new().await;
    let e = w.mount().await;
    let a = e.mkdir(ME, ROOT_INO, b"a", 0o755).await.unwrap().attr.ino;
    let b = e.mkdir(ME, ROOT_INO, b"b", 0o755).await.unwrap().attr.ino;
    let f = write_new(&e, a, "f", b"1").await;
    e.rename(a, b"f", b, b"g", RenameMode::Replace)
        .await
        .unwrap();
    e.symlink(ME, b, b"link", b"g").await.unwrap();
    e.link(f, a, b"hard").await.unwrap();
    e.rmdir(ROOT_INO, b"a")
        .await
        .expect_err("a holds a hard link");
    e.unlink(a, b"hard").await.unwrap();
    e.rmdir(ROOT_INO, b"a").await.unwrap();
    write_back(&e).await;
    let paths = w.server_paths().await;
    assert_eq!(paths, ["/", "/b", "/b/g", "/b/link"]);
    assert_eq!(w.server_read("/b/g").await.as_deref(), Some(&b"1"[..]));
    // The inode keeps its number under its new name.
    assert_eq!(e.lookup(b, b"g").await.unwrap().attr.ino, f);
}

#[tokio::test]
async fn errors_carry_their_posix_meaning() {
    let w = World::new().await;
    let e = w.mount().await;
    let d = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    write_new(&e, d, "x", b"").await;
    assert!(matches!(
        e.lookup(ROOT_INO, b"nope").await,
        Err(FsError::NotFound(_))
    ));
    assert!(matches!(
        e.mkdir(ME, ROOT_INO, b"d", 0o755).await,
        Err(FsError::Exists(_))
    ));
    assert!(matches!(
        e.rmdir(ROOT_INO, b"d").await,
        Err(FsError::NotEmpty(_))
    ));
    assert!(matches!(
        e.unlink(ROOT_INO, b"d").await,
        Err(FsError::IsDir(_))
    ));
    assert!(matches!(
        e.lookup(ROOT_INO, &[b'a'; 256]).await,
        Err(FsError::NameTooLong(_))
    ));
    assert!(matches!(
        e.lookup(ROOT_INO, b"\xff\xfe").await,
        Err(FsError::IllegalName(_))
    ));
    assert!(matches!(
        e.rename(ROOT_INO, b"d", d, b"inside", RenameMode::Replace)
            .await,
        Err(FsError::Invalid(_))
    ));
    assert!(matches!(
        e.rename(ROOT_INO, b"d", ROOT_INO, b"d2", RenameMode::Exchange)
            .await,
        Err(FsError::NotFound(_))
    ));
}

#[tokio::test]
async fn another_writers_change_shows_after_its_event() {
    let w = World::new().await;
    let e = w.mount().await;
    w.server_write("/shared.txt", b"v1").await;
    // The root listing is fresh: the new file is not seen until the changefeed says so.
    assert!(e.lookup(ROOT_INO, b"shared.txt").await.is_err());
    let events = w
        .api
        .list_events(&w.ctx, &w.session, ListEventsRequest::default())
        .await
        .unwrap();
    for ev in &events.items {
        e.on_event(ev);
    }
    let ino = e.lookup(ROOT_INO, b"shared.txt").await.unwrap().attr.ino;
    assert_eq!(read_all(&e, ino).await, b"v1");
}

#[tokio::test]
async fn a_partial_edit_of_a_large_file_is_sent_as_a_patch() {
    let w = World::new().await;
    let e = w.mount().await;
    let big = vec![7u8; 3 << 20];
    let f = write_new(&e, ROOT_INO, "big.bin", &big).await;
    write_back(&e).await;
    let open = e.open(f, RW).await.unwrap();
    e.write(f, open.fh, 1 << 20, b"PATCHED").await.unwrap();
    e.flush(f, open.fh).await.unwrap();
    e.release(f, open.fh).await.unwrap();
    let pending = e.cache().journal_pending(10).unwrap();
    match &pending[0].op {
        local_cache::JournalOp::Write {
            patch: Some(ranges),
            ..
        } => {
            assert_eq!(ranges, &[(1 << 20, (1 << 20) + 7)]);
        }
        other => panic!("expected a patch, got {other:?}"),
    }
    write_back(&e).await;
    let got = w.server_read("/big.bin").await.unwrap();
    assert_eq!(got.len(), 3 << 20);
    assert_eq!(&got[(1 << 20)..(1 << 20) + 7], b"PATCHED");
    assert_eq!(got[0], 7);
}

/// A large edit of a larger file (a writer whose handle another process closed mid-way, as a
/// forked child's `exec` does, sends `flush` and so commits mid-write) goes whole: its patch
/// would not fit in one request.
#[tokio::test]
async fn a_large_edit_of_a_large_file_is_sent_whole() {
    let w = World::new().await;
    let e = w.mount().await;
    let f = write_new(&e, ROOT_INO, "big.bin", &vec![7u8; 12 << 20]).await;
    write_back(&e).await;
    let open = e.open(f, RW).await.unwrap();
    let edit = vec![9u8; 5 << 20];
    e.write(f, open.fh, 1 << 20, &edit).await.unwrap();
    e.flush(f, open.fh).await.unwrap();
    e.release(f, open.fh).await.unwrap();
    let pending = e.cache().journal_pending(10).unwrap();
    match &pending[0].op {
        local_cache::JournalOp::Write { patch: None, .. } => {}
        other => panic!("expected the whole file, got {other:?}"),
    }
    write_back(&e).await;
    let got = w.server_read("/big.bin").await.unwrap();
    assert_eq!(got.len(), 12 << 20);
    assert!(got[(1 << 20)..(6 << 20)].iter().all(|b| *b == 9));
    assert_eq!(got[0], 7);
    assert_eq!(got[6 << 20], 7);
}

/// The pending journal's writes: each one's content name, and whether it is a patch.
fn pending_write(cache: &aether_fakes::MemoryCache) -> Vec<(String, bool)> {
    let pending = cache.journal_pending(100).unwrap();
    pending
        .into_iter()
        .filter_map(|e| match e.op {
            local_cache::JournalOp::Write { hash, patch, .. } => Some((hash, patch.is_some())),
            _ => None,
        })
        .collect()
}

/// Large content written through the mount is not hashed there: it is journaled under a local
/// name, and the server's reply names it. Under that name it stays cached (a remount reads it
/// without a download), and a later small edit still travels as a patch.
#[tokio::test]
async fn large_content_written_here_takes_the_servers_name_and_stays_cached() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let e = mount_through(&w, &plan).await;
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    let f = write_new(&&e, ROOT_INO, "big.bin", &big).await;
    let names = pending_write(&w.cache);
    assert!(
        matches!(&names[..], [(name, false)] if local_cache::LocalName::is(name)),
        "journaled under a local name: {names:?}"
    );
    write_back(&e).await;
    let stored = w.server_entry("/big.bin").await.unwrap();
    let hash = stored.content_hash.clone().unwrap();
    assert!(w.cache.has_blob(&hash), "kept under the server's name");

    // An edit journaled now is a patch guarded by the server's name, and is sent as one.
    let open = e.open(f, RW).await.unwrap();
    e.write(f, open.fh, 5, b"EDIT").await.unwrap();
    e.release(f, open.fh).await.unwrap();
    let names = pending_write(&w.cache);
    assert!(matches!(&names[..], [(_, true)]), "a patch: {names:?}");
    write_back(&e).await;
    assert_eq!(plan.calls("patch_segments"), 1);
    let mut want = big.clone();
    want[5..9].copy_from_slice(b"EDIT");
    assert!(w.server_read("/big.bin").await.unwrap() == want);
    e.save_index(std::time::Duration::ZERO).await.unwrap();
    drop(e);

    // A remount reads it from the cache: the server's read route fails to prove it.
    refuse(&plan, "read_file");
    let e2 = mount_through(&w, &plan).await;
    let ino = e2.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    assert!(read_whole(&e2, ino, 4 << 20).await == want);
}

/// A patch journaled before the server named the content it edits is guarded by the name the
/// server gave that content once the write-back reaches it.
#[tokio::test]
async fn an_edit_journaled_before_the_server_named_its_base_is_still_a_patch() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let e = mount_through(&w, &plan).await;
    let big = vec![3u8; 2 << 20];
    let f = write_new(&&e, ROOT_INO, "big.bin", &big).await;
    let open = e.open(f, RW).await.unwrap();
    e.write(f, open.fh, 1 << 20, b"LATER").await.unwrap();
    e.release(f, open.fh).await.unwrap();
    let names = pending_write(&w.cache);
    assert!(
        matches!(&names[..], [(a, false), (_, true)] if local_cache::LocalName::is(a)),
        "a whole write under a local name, then a patch: {names:?}"
    );
    write_back(&e).await;
    assert_eq!(plan.calls("patch_segments"), 1);
    let got = w.server_read("/big.bin").await.unwrap();
    assert_eq!(got.len(), 2 << 20);
    assert_eq!(&got[(1 << 20)..(1 << 20) + 5], b"LATER");
    assert_eq!(got[0], 3);
}

/// A crash before the write-back leaves large content journaled under its local name: the
/// next mount sends it, and reads it back.
#[tokio::test]
async fn large_content_journaled_under_a_local_name_survives_a_crash() {
    let w = World::new().await;
    let e = w.mount().await;
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 241) as u8).collect();
    write_new(&e, ROOT_INO, "big.bin", &big).await;
    drop(e);
    let e2 = w.mount().await;
    write_back(&e2).await;
    assert!(w.server_read("/big.bin").await.unwrap() == big);
    let ino = e2.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    assert!(read_whole(&*e2, ino, 2 << 20).await == big);
}

/// Runs `fsync` of `ino` with the write-back loop beside it.
async fn fsync_with_writeback<R: aether_ports::SessionApi + 'static>(
    e: &Engine<R, aether_fakes::MemoryCache, ManualClock>,
    ino: u64,
    fh: u64,
) -> Result<(), FsError> {
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

#[tokio::test]
async fn write_back_retries_through_outages_and_sets_refusals_aside() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let api = Faulty::new(w.api.clone(), plan.clone());
    let e = std::sync::Arc::new(Engine::new(
        api,
        w.cache.clone(),
        ManualClock::default(),
        w.config(),
    ));
    e.start().await.unwrap();
    let unavailable = |times| Fault {
        error: Some(aether_domain::Error::unavailable("server restarting")),
        times: Some(times),
        ..Default::default()
    };

    // An outage: the batch is retried with backoff until the server answers.
    plan.set("batch", unavailable(3));
    e.mkdir(ME, ROOT_INO, b"dir", 0o755).await.unwrap();
    let (entry, open) = e.create(ME, ROOT_INO, b"f", 0o644, RW).await.unwrap();
    e.write(entry.attr.ino, open.fh, 0, b"eventually")
        .await
        .unwrap();
    fsync_with_writeback(&e, entry.attr.ino, open.fh)
        .await
        .unwrap();
    assert_eq!(
        w.server_read("/f").await.as_deref(),
        Some(&b"eventually"[..])
    );

    // A lost reply: the resend carries the same idempotency key and is applied once. A batch
    // refused as a whole: it is split, and the entries the server accepts still land.
    let phases = [
        (
            "once",
            b"EVENTUALLY",
            Fault {
                drop_reply: true,
                times: Some(1),
                ..Default::default()
            },
        ),
        (
            "split",
            b"split-up!!",
            Fault {
                error: Some(aether_domain::Error::invalid("synthetic refusal")),
                times: Some(1),
                ..Default::default()
            },
        ),
    ];
    for (dir, content, fault) in phases {
        plan.set("batch", fault);
        e.mkdir(ME, ROOT_INO, dir.as_bytes(), 0o755).await.unwrap();
        e.write(entry.attr.ino, open.fh, 0, content).await.unwrap();
        fsync_with_writeback(&e, entry.attr.ino, open.fh)
            .await
            .unwrap();
        assert_eq!(
            w.server_read("/f").await.as_deref(),
            Some(&content[..]),
            "{dir}"
        );
        assert!(
            e.cache().journal_rejected().unwrap().is_empty(),
            "{dir}: nothing refused"
        );
    }

    // A refusal for good (the session was archived) is kept aside and fsync says so.
    w.api.archive_session(&w.ctx, &w.session).await.unwrap();
    let (entry, open) = e.create(ME, ROOT_INO, b"g", 0o644, RW).await.unwrap();
    e.write(entry.attr.ino, open.fh, 0, b"refused")
        .await
        .unwrap();
    let r = fsync_with_writeback(&e, entry.attr.ino, open.fh).await;
    assert!(matches!(r, Err(FsError::Io(_))), "{r:?}");
    let rejected = e.cache().journal_rejected().unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0].error.contains("FAILED_PRECONDITION"),
        "{}",
        rejected[0].error
    );
    let paths = w.server_paths().await;
    assert_eq!(paths, ["/", "/dir", "/f", "/once", "/split"]);
}

#[tokio::test]
async fn large_files_are_read_by_range_and_cached_once_complete() {
    let w = World::new().await;
    let big: Vec<u8> = (0..(10u32 << 20)).map(|i| (i % 251) as u8).collect();
    w.server_write("/big.bin", &big).await;
    let e = w.mount().await;
    let ino = e.lookup(ROOT_INO, b"big.bin").await.unwrap().attr.ino;
    let open = e
        .open(
            ino,
            OpenIn {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A read near the end first fetches only what it needs.
    let tail = e.read(ino, open.fh, (10 << 20) - 100, 4096).await.unwrap();
    assert_eq!(tail, &big[(10 << 20) - 100..]);
    assert_eq!(e.cache().stats().blob_count, 0, "not yet complete");
    // A sequential pass reads everything (in growing windows) and keeps the whole blob.
    let mut got = Vec::new();
    let mut off = 0u64;
    loop {
        let chunk = e.read(ino, open.fh, off, 128 << 10).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        off += chunk.len() as u64;
        got.extend(chunk);
    }
    assert!(got == big, "sequential read returns the file");
    assert_eq!(
        e.cache().stats().blob_count,
        1,
        "the complete blob is cached"
    );
    e.release(ino, open.fh).await.unwrap();
    // Editing it now starts from the cached blob.
    let open = e.open(ino, RW).await.unwrap();
    e.write(ino, open.fh, 5, b"EDIT").await.unwrap();
    e.release(ino, open.fh).await.unwrap();
    write_back(&e).await;
    let server = w.server_read("/big.bin").await.unwrap();
    assert_eq!(&server[5..9], b"EDIT");
    assert_eq!(server.len(), big.len());
}

#[tokio::test]
async fn writers_wait_at_high_water_and_fail_clearly_when_the_server_stays_away() {
    let w = World::new().await;
    let plan = FaultPlan::default();
    let mut config = w.config();
    config.backpressure.journal_high_entries = 4;
    config.backpressure.journal_low_entries = 1;
    config.backpressure_wait = std::time::Duration::from_secs(5);
    let e = Engine::new(
        Faulty::new(w.api.clone(), plan.clone()),
        w.cache.clone(),
        w.clock.clone(),
        config,
    );
    e.start().await.unwrap();
    plan.set(
        "*",
        Fault {
            error: Some(aether_domain::Error::unavailable("server away")),
            ..Default::default()
        },
    );
    for i in 0..4 {
        e.mkdir(ME, ROOT_INO, format!("d{i}").as_bytes(), 0o755)
            .await
            .unwrap();
        w.clock.advance(std::time::Duration::from_millis(60));
    }
    // Over the high-water mark with nobody draining: held, then refused with ENOSPC.
    let held = e.mkdir(ME, ROOT_INO, b"d4", 0o755).await;
    assert!(matches!(held, Err(FsError::NoSpace(_))), "{held:?}");
    assert!(matches!(
        e.gate(),
        aether_domain::backpressure::Gate::Held(_)
    ));
    // The server is back: the write-back drains the backlog and writers go on.
    plan.clear();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (_, made) = futures::join!(
        e.run_writeback(async {
            let _ = rx.await;
        }),
        async {
            let r = e.mkdir(ME, ROOT_INO, b"d4", 0o755).await;
            let _ = tx.send(());
            r
        }
    );
    made.unwrap();
    assert_eq!(e.gate(), aether_domain::backpressure::Gate::Open);
}

#[tokio::test]
async fn a_remount_of_an_unchanged_session_reads_no_directory_again() {
    let w = World::new().await;
    let e = w.mount().await;
    let src = e.mkdir(ME, ROOT_INO, b"src", 0o755).await.unwrap().attr.ino;
    write_new(&e, src, "lib.rs", b"pub fn f() {}").await;
    write_new(&e, ROOT_INO, "README", b"hi").await;
    write_back(&e).await;
    deliver_events(&w, &e).await;
    assert_eq!(e.save_index(std::time::Duration::ZERO).await.unwrap(), 2);
    drop(e);

    // The session did not change: the remount answers from the saved listings, with the
    // server's listing route failing to prove it is not asked.
    let plan = FaultPlan::default();
    refuse(&plan, "manifest");
    let e2 = mount_through(&w, &plan).await;
    let src = e2.lookup(ROOT_INO, b"src").await.unwrap().attr.ino;
    let lib = e2.lookup(src, b"lib.rs").await.unwrap();
    assert_eq!(lib.attr.size, 13);
    let open = e2
        .open(
            lib.attr.ino,
            OpenIn {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e2.read(lib.attr.ino, open.fh, 0, 100).await.unwrap(),
        b"pub fn f() {}"
    );
    drop(e2);

    // The save is used once; after a change elsewhere, listings are read again.
    w.server_write("/new", b"x").await;
    let e3 = w.mount().await;
    assert!(e3.lookup(ROOT_INO, b"new").await.is_ok());
}

/// Hard links made in this mount are still one file after a remount: a change through one
/// name shows under the other, and replacing one name leaves the other with one link.
#[tokio::test]
async fn hard_links_made_before_a_remount_stay_one_file_after_it() {
    let w = World::new().await;
    let e = w.mount().await;
    let d = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    let a = write_new(&e, d, "a", b"x").await;
    e.link(a, d, b"b").await.unwrap();
    write_new(&e, ROOT_INO, "other", b"y").await;
    write_back(&e).await;
    deliver_events(&w, &e).await;
    e.save_index(std::time::Duration::ZERO).await.unwrap();
    drop(e);

    let e = w.mount().await;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let a = e.lookup(d, b"a").await.unwrap().attr;
    let b = e.lookup(d, b"b").await.unwrap().attr;
    assert_eq!((a.ino, a.nlink), (b.ino, 2), "one file under two names");
    let grow = SetAttrIn {
        size: Some(1000),
        ..Default::default()
    };
    e.setattr(a.ino, None, grow).await.unwrap();
    assert_eq!(e.getattr(b.ino).await.unwrap().0.size, 1000);
    let other = e.lookup(ROOT_INO, b"other").await.unwrap().attr.ino;
    e.rename(ROOT_INO, b"other", d, b"a", RenameMode::Replace)
        .await
        .unwrap();
    assert_eq!(e.getattr(b.ino).await.unwrap().0.nlink, 1);
    assert_eq!(e.lookup(d, b"a").await.unwrap().attr.ino, other);
}

/// Extended attributes are read from the server by path: a file renamed, or moved with its
/// directory, since the mount started is asked for under its new path only once the server
/// has it there.
#[tokio::test]
async fn extended_attributes_of_a_renamed_file_are_found_under_its_new_name() {
    let w = World::new().await;
    let e = w.mount().await;
    let d = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    let f = write_new(&e, d, "f", b"x").await;
    e.setxattr(f, b"user.k", b"v", XattrMode::Upsert)
        .await
        .unwrap();
    e.mkdir(ME, ROOT_INO, b"e", 0o755).await.unwrap();
    write_back(&e).await;
    drop(e);

    let e = w.mount().await;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let f = e.lookup(d, b"f").await.unwrap().attr.ino;
    e.rename(d, b"f", d, b"g", RenameMode::Replace)
        .await
        .unwrap();
    let got = with_writeback(&e, e.getxattr(f, b"user.k")).await;
    assert_eq!(got.unwrap(), b"v");
    write_back(&e).await;
    drop(e);

    // Moved with its directory: the same again.
    let e = w.mount().await;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let g = e.lookup(d, b"g").await.unwrap().attr.ino;
    let into = e.lookup(ROOT_INO, b"e").await.unwrap().attr.ino;
    e.rename(ROOT_INO, b"d", into, b"d2", RenameMode::Replace)
        .await
        .unwrap();
    let names = with_writeback(&e, e.listxattr(g)).await;
    assert_eq!(names.unwrap(), vec!["user.k".to_owned()]);
}

/// A directory's link count is 2 + its subdirectories through every kind of rename: one that
/// replaces an empty directory, one that moves between parents, one that exchanges a
/// directory with a file; the server counts the same.
#[tokio::test]
async fn directory_link_counts_follow_renames_that_replace_move_or_exchange() {
    let w = World::new().await;
    let e = w.mount().await;
    let top = e.mkdir(ME, ROOT_INO, b"top", 0o755).await.unwrap().attr.ino;
    let other = e
        .mkdir(ME, ROOT_INO, b"other", 0o755)
        .await
        .unwrap()
        .attr
        .ino;
    for name in [&b"a"[..], b"b"] {
        e.mkdir(ME, top, name, 0o755).await.unwrap();
    }
    write_new(&e, other, "file", b"x").await;
    async fn nlink(e: &crate::TestEngine, ino: u64) -> u32 {
        e.getattr(ino).await.unwrap().0.nlink
    }
    assert_eq!(nlink(&e, top).await, 4);
    // `a` replaces the empty `b`: one subdirectory fewer.
    e.rename(top, b"a", top, b"b", RenameMode::Replace)
        .await
        .unwrap();
    assert_eq!(nlink(&e, top).await, 3);
    // `b` and `other/file` change places: `top` holds a file instead, `other` a directory.
    e.rename(top, b"b", other, b"file", RenameMode::Exchange)
        .await
        .unwrap();
    assert_eq!((nlink(&e, top).await, nlink(&e, other).await), (2, 3));
    // Moved back up: `other` loses it, the root gains it.
    e.rename(other, b"file", ROOT_INO, b"up", RenameMode::Replace)
        .await
        .unwrap();
    assert_eq!((nlink(&e, other).await, nlink(&e, ROOT_INO).await), (2, 5));
    write_back(&e).await;
    drop(e);

    let e = w.mount().await;
    let mut counts = Vec::new();
    for name in [&b"top"[..], b"other", b"up"] {
        counts.push(e.lookup(ROOT_INO, name).await.unwrap().attr.nlink);
    }
    assert_eq!(counts, [2, 2, 2], "the server counts the same");
    assert_eq!(nlink(&e, ROOT_INO).await, 5);
}

/// A runtime that crashed left a write, a rename over one name of a hard-linked file and a
/// delete in its journal: the next one writes them back before showing the tree, which then
/// shows them, the file's other name untouched.
#[tokio::test]
async fn changes_left_by_a_crashed_runtime_show_once_written_back() {
    let w = World::new().await;
    let e = w.mount().await;
    let d = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    let a = write_new(&e, d, "a", b"").await;
    e.link(a, ROOT_INO, b"b").await.unwrap();
    write_new(&e, ROOT_INO, "gone", b"x").await;
    write_back(&e).await;
    write_new(&e, ROOT_INO, "new", b"fresh content").await;
    e.rename(ROOT_INO, b"new", ROOT_INO, b"b", RenameMode::Replace)
        .await
        .unwrap();
    e.unlink(ROOT_INO, b"gone").await.unwrap();
    drop(e); // the crash: these changes are only in the journal

    let e = w.mount().await;
    write_back(&e).await; // what the runtime does before mounting
    assert!(
        e.lookup(ROOT_INO, b"gone").await.is_err(),
        "deleted before the crash"
    );
    let b = e.lookup(ROOT_INO, b"b").await.unwrap().attr;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let a = e.lookup(d, b"a").await.unwrap().attr;
    assert_ne!(a.ino, b.ino, "two files now");
    assert_eq!((b.size, b.nlink), (13, 1));
    assert_eq!((a.size, a.nlink), (0, 1));
    assert_eq!(read_whole(&*e, b.ino, 100).await, b"fresh content");
}

/// Another client replaces one name of a hard-linked file: that name becomes the new file,
/// and the old file keeps its content under its other name.
#[tokio::test]
async fn a_hard_linked_name_replaced_by_another_client_leaves_the_other_name_alone() {
    let w = World::new().await;
    let e = w.mount().await;
    let d = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    let a = write_new(&e, d, "a", b"old").await;
    e.link(a, ROOT_INO, b"b").await.unwrap();
    write_back(&e).await;
    drop(e);

    let e = w.mount().await;
    let d = e.lookup(ROOT_INO, b"d").await.unwrap().attr.ino;
    let a = e.lookup(d, b"a").await.unwrap().attr.ino;
    assert_eq!(e.lookup(ROOT_INO, b"b").await.unwrap().attr.ino, a);
    w.server_write("/other", b"another file").await;
    w.api
        .rename(
            &w.ctx,
            &w.session,
            RenameRequest {
                from: "/other".into(),
                to: "/b".into(),
                no_replace: false,
                exchange: false,
            },
        )
        .await
        .unwrap();
    deliver_events(&w, &e).await;
    let b = e.lookup(ROOT_INO, b"b").await.unwrap().attr;
    assert_ne!(b.ino, a, "the name now holds another file");
    assert_eq!(read_whole(&*e, b.ino, 100).await, b"another file");
    assert_eq!(read_whole(&*e, a, 100).await, b"old");
    assert_eq!(e.lookup(d, b"a").await.unwrap().attr.ino, a);
}

#[tokio::test]
async fn content_written_through_the_mount_keeps_the_kernel_cache_until_someone_else_changes_it() {
    let w = World::new().await;
    let e = w.mount().await;
    // Created, written and closed through the kernel: its page cache holds exactly this.
    let f = write_new(&e, ROOT_INO, "notes.txt", b"mine").await;
    let first = e.open(f, RO).await.unwrap();
    assert!(first.keep_cache, "the kernel wrote these bytes itself");
    assert!(first.no_flush, "a reader has nothing to commit at close");
    e.release(f, first.fh).await.unwrap();
    // Rewritten through the kernel: still its own bytes.
    let w1 = e.open(f, RW).await.unwrap();
    assert!(!w1.no_flush, "a writer's close commits its content");
    e.write(f, w1.fh, 0, b"MINE").await.unwrap();
    e.flush(f, w1.fh).await.unwrap();
    e.release(f, w1.fh).await.unwrap();
    let second = e.open(f, RO).await.unwrap();
    assert!(second.keep_cache);
    e.release(f, second.fh).await.unwrap();
    assert_eq!(read_all(&e, f).await, b"MINE");
    write_back(&e).await;
    // Another writer changes it on the server: the kernel's copy must go.
    w.server_write("/notes.txt", b"theirs").await;
    deliver_events(&w, &e).await;
    // The kernel, told the name changed, looks it up again before opening.
    assert_eq!(e.lookup(ROOT_INO, b"notes.txt").await.unwrap().attr.ino, f);
    let third = e.open(f, RO).await.unwrap();
    assert!(
        !third.keep_cache,
        "the server's new content replaces the kernel's copy"
    );
    e.release(f, third.fh).await.unwrap();
    assert_eq!(read_all(&e, f).await, b"theirs");
}

#[tokio::test]
async fn a_write_only_writer_starting_over_bypasses_the_kernel_cache() {
    let w = World::new().await;
    let e = w.mount().await;
    let wo = OpenIn {
        write: true,
        read: false,
        ..RW
    };
    let trunc = OpenIn {
        truncate: true,
        ..wo
    };
    // Created write-only, or opened write-only with O_TRUNC: nothing older to keep, and the
    // writer cannot read back.
    let (entry, created) = e.create(ME, ROOT_INO, b"out.bin", 0o644, wo).await.unwrap();
    let f = entry.attr.ino;
    assert!(created.direct_io, "a write-only create");
    e.write(f, created.fh, 0, b"first").await.unwrap();
    e.flush(f, created.fh).await.unwrap();
    e.release(f, created.fh).await.unwrap();
    // Written past the kernel's cache: the next open must not keep what the kernel holds.
    let r = e.open(f, RO).await.unwrap();
    assert!(!r.keep_cache, "the kernel's cache never saw these bytes");
    assert!(!r.direct_io, "a reader uses the cache");
    e.release(f, r.fh).await.unwrap();
    assert_eq!(read_all(&e, f).await, b"first");
    // Having read it, the kernel holds it: kept from then on.
    let again = e.open(f, RO).await.unwrap();
    assert!(again.keep_cache);
    e.release(f, again.fh).await.unwrap();
    let t = e.open(f, trunc).await.unwrap();
    assert!(t.direct_io, "write-only O_TRUNC");
    e.release(f, t.fh).await.unwrap();
    for (how, what) in [(wo, "an in-place edit"), (RW, "a handle that reads back")] {
        let h = e.open(f, how).await.unwrap();
        assert!(!h.direct_io, "{what}");
        e.release(f, h.fh).await.unwrap();
    }
}

#[tokio::test]
async fn set_id_bits_go_as_linux_clears_them() {
    let w = World::new().await;
    let e = w.mount().await;
    async fn perm(e: &crate::TestEngine, ino: u64) -> u32 {
        e.getattr(ino).await.unwrap().0.perm
    }
    let chmod = |ino, p| {
        e.setattr(
            ino,
            None,
            SetAttrIn {
                perm: Some(p),
                ..Default::default()
            },
        )
    };
    let both = write_new(&e, ROOT_INO, "both", b"x").await;
    let no_gx = write_new(&e, ROOT_INO, "no-gx", b"x").await;
    let trunc = write_new(&e, ROOT_INO, "trunc", b"x").await;
    let owned = write_new(&e, ROOT_INO, "owned", b"x").await;
    let dir = e.mkdir(ME, ROOT_INO, b"d", 0o755).await.unwrap().attr.ino;
    for (ino, p) in [
        (both, 0o6775),
        (no_gx, 0o6764),
        (trunc, 0o4755),
        (owned, 0o4755),
        (dir, 0o2775),
    ] {
        chmod(ino, p).await.unwrap();
    }
    e.drop_setid(both).await.unwrap();
    e.drop_setid(no_gx).await.unwrap();
    e.drop_setid(dir).await.unwrap();
    assert_eq!(perm(&e, both).await, 0o775);
    assert_eq!(
        perm(&e, no_gx).await,
        0o2764,
        "set-group-ID without group execute stays"
    );
    assert_eq!(
        perm(&e, dir).await,
        0o2775,
        "a directory keeps its set-group-ID"
    );
    // A privileged truncation keeps the bits; an unprivileged one clears them.
    let truncate = |drop_setid| SetAttrIn {
        size: Some(0),
        drop_setid,
        ..Default::default()
    };
    e.setattr(trunc, None, truncate(false)).await.unwrap();
    assert_eq!(perm(&e, trunc).await, 0o4755);
    let (attr, _) = e.setattr(trunc, None, truncate(true)).await.unwrap();
    assert_eq!((attr.perm, attr.size), (0o755, 0));
    let chown = SetAttrIn {
        uid: Some(7),
        ..Default::default()
    };
    e.setattr(owned, None, chown).await.unwrap();
    assert_eq!(
        perm(&e, owned).await,
        0o755,
        "a change of owner clears set-user-ID"
    );
    write_back(&e).await;
    let mode_of = |p: &'static str| {
        let w = &w;
        async move { w.server_entry(p).await.map(|x| x.mode & 0o7777) }
    };
    assert_eq!(
        mode_of("/both").await,
        Some(0o775),
        "the server holds the cleared mode"
    );
    assert_eq!(mode_of("/owned").await, Some(0o755));
}

/// What another user than root makes belongs to that user, on the server too; in a
/// set-group-ID directory it belongs to the directory's group, as on Linux.
#[tokio::test]
async fn new_objects_keep_their_owner_and_inherit_a_set_group_id_directorys_group() {
    let w = World::new().await;
    let e = w.mount().await;
    let user = aether_ports::vfs::Caller {
        uid: 1000,
        gid: 1000,
        pid: 2,
    };
    let shared = e
        .mkdir(ME, ROOT_INO, b"shared", 0o755)
        .await
        .unwrap()
        .attr
        .ino;
    let set = SetAttrIn {
        perm: Some(0o2777),
        gid: Some(50),
        ..Default::default()
    };
    e.setattr(shared, None, set).await.unwrap();
    let (file, h) = e.create(user, ROOT_INO, b"mine", 0o644, RW).await.unwrap();
    e.write(file.attr.ino, h.fh, 0, b"x").await.unwrap();
    e.release(file.attr.ino, h.fh).await.unwrap();
    e.symlink(user, ROOT_INO, b"link", b"mine").await.unwrap();
    let sub = e.mkdir(user, shared, b"sub", 0o755).await.unwrap().attr;
    assert_eq!((sub.uid, sub.gid, sub.perm), (1000, 50, 0o2755));
    let (inner, h) = e.create(user, shared, b"f", 0o2775, RW).await.unwrap();
    e.release(inner.attr.ino, h.fh).await.unwrap();
    assert_eq!(
        (inner.attr.gid, inner.attr.perm),
        (50, 0o775),
        "not a member of the group: its set-group-ID goes"
    );
    let (by_root, h) = e.create(ME, shared, b"r", 0o2775, RW).await.unwrap();
    e.release(by_root.attr.ino, h.fh).await.unwrap();
    assert_eq!((by_root.attr.gid, by_root.attr.perm), (50, 0o2775));
    write_back(&e).await;
    let owner_of = |p: &'static str| {
        let w = &w;
        async move {
            w.server_entry(p)
                .await
                .map(|x| (x.uid, x.gid, x.mode & 0o7777))
        }
    };
    assert_eq!(owner_of("/mine").await, Some((1000, 1000, 0o644)));
    assert_eq!(
        owner_of("/link").await.map(|o| (o.0, o.1)),
        Some((1000, 1000))
    );
    assert_eq!(owner_of("/shared/sub").await, Some((1000, 50, 0o2755)));
    assert_eq!(owner_of("/shared/f").await, Some((1000, 50, 0o775)));
    assert_eq!(owner_of("/shared/r").await, Some((0, 50, 0o2775)));
}

/// git stores each object as a temporary file, hard-linked under its name, then deleted: the
/// server receives one write per object, and never sees the temporary.
#[tokio::test]
async fn a_temporary_file_published_by_link_reaches_the_server_as_one_write() {
    let w = World::new().await;
    let e = w.mount().await;
    let dir = e.mkdir(ME, ROOT_INO, b"ab", 0o755).await.unwrap().attr.ino;
    write_back(&e).await;
    let tmp = write_new(&e, dir, "tmp_obj_1", b"object").await;
    e.link(tmp, dir, b"cdef").await.unwrap();
    e.unlink(dir, b"tmp_obj_1").await.unwrap();
    write_back(&e).await;
    assert_eq!(w.server_paths().await, ["/", "/ab", "/ab/cdef"]);
    assert_eq!(
        w.server_read("/ab/cdef").await.as_deref(),
        Some(&b"object"[..])
    );
    let events = w
        .api
        .list_events(&w.ctx, &w.session, ListEventsRequest::default())
        .await
        .unwrap();
    let named: Vec<String> = events
        .items
        .iter()
        .filter_map(|ev| ev.path.clone())
        .collect();
    assert!(
        !named.iter().any(|p| p.contains("tmp_obj")),
        "the server saw the temporary: {named:?}"
    );
    let cdef = e.lookup(dir, b"cdef").await.unwrap();
    assert_eq!(read_all(&e, cdef.attr.ino).await, b"object");
}

#[tokio::test]
async fn a_file_cannot_grow_past_the_servers_largest_and_keeps_what_fits() {
    let w = World::with_max_file_bytes(1000).await;
    let e = w.mount().await;
    let (entry, open) = e.create(ME, ROOT_INO, b"big", 0o644, RW).await.unwrap();
    let ino = entry.attr.ino;
    assert_eq!(e.write(ino, open.fh, 0, &[b'a'; 600]).await.unwrap(), 600);
    // Cut short at the limit, as Linux does at a file system's largest file size...
    assert_eq!(e.write(ino, open.fh, 600, &[b'b'; 600]).await.unwrap(), 400);
    // ...and refused from there on, with the limit named.
    match e.write(ino, open.fh, 1000, b"c").await {
        Err(FsError::TooBig(m)) => assert!(m.contains("1000 bytes"), "{m}"),
        other => panic!("expected TooBig, got {other:?}"),
    }
    let grow = SetAttrIn {
        size: Some(1001),
        ..Default::default()
    };
    let r = e.setattr(ino, Some(open.fh), grow).await;
    assert!(matches!(r, Err(FsError::TooBig(_))), "{r:?}");
    let r = e.fallocate(ino, open.fh, 0, 4096, 0).await;
    assert!(matches!(r, Err(FsError::TooBig(_))), "{r:?}");
    // What fits is kept, reaches the server, and nothing is set aside.
    with_writeback(&e, e.fsync(ino, Some(open.fh)))
        .await
        .unwrap();
    let mut want = vec![b'a'; 600];
    want.extend([b'b'; 400]);
    assert_eq!(w.server_read("/big").await, Some(want));
    assert!(e.cache().journal_rejected().unwrap().is_empty());
}

#[tokio::test]
async fn fallocate_punches_holes_zeroes_ranges_and_keeps_the_size_when_asked() {
    const KEEP_SIZE: i32 = 0x01;
    const PUNCH_HOLE: i32 = 0x02;
    const COLLAPSE_RANGE: i32 = 0x08;
    const ZERO_RANGE: i32 = 0x10;
    let w = World::new().await;
    let e = w.mount().await;
    let ino = write_new(&e, ROOT_INO, "f", &[b'x'; 100]).await;
    // An appending handle too: a hole goes where it is asked, not at the end.
    let how = OpenIn { append: true, ..RW };
    let open = e.open(ino, how).await.unwrap();
    e.fallocate(ino, open.fh, 10, 20, PUNCH_HOLE | KEEP_SIZE)
        .await
        .unwrap();
    // A zeroed range reaching past the end grows the file, unless the size is kept.
    e.fallocate(ino, open.fh, 90, 20, ZERO_RANGE | KEEP_SIZE)
        .await
        .unwrap();
    assert_eq!(e.getattr(ino).await.unwrap().0.size, 100);
    e.fallocate(ino, open.fh, 95, 15, ZERO_RANGE).await.unwrap();
    assert_eq!(e.getattr(ino).await.unwrap().0.size, 110);
    // Space reserved past the end with the size kept changes nothing a reader sees.
    e.fallocate(ino, open.fh, 0, 4096, KEEP_SIZE).await.unwrap();
    assert_eq!(e.getattr(ino).await.unwrap().0.size, 110);
    match e.fallocate(ino, open.fh, 0, 10, COLLAPSE_RANGE).await {
        Err(FsError::Unsupported(m)) => assert!(m.contains("0x8"), "{m}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let mut want = vec![b'x'; 100];
    want[10..30].fill(0);
    want[90..].fill(0);
    want.resize(110, 0);
    assert_eq!(read_all(&e, ino).await, want);
    with_writeback(&e, e.fsync(ino, Some(open.fh)))
        .await
        .unwrap();
    e.release(ino, open.fh).await.unwrap();
    assert_eq!(w.server_read("/f").await, Some(want));
    // A handle open for reading only may not change the file.
    let ro = e.open(ino, RO).await.unwrap();
    let r = e.fallocate(ino, ro.fh, 0, 10, PUNCH_HOLE | KEEP_SIZE).await;
    assert!(matches!(r, Err(FsError::BadHandle(_))), "{r:?}");
}

#[tokio::test]
async fn a_directory_read_page_by_page_keeps_the_listing_of_its_first_page() {
    let w = World::new().await;
    let e = w.mount().await;
    for name in ["a", "b", "c", "d", "e"] {
        write_new(&e, ROOT_INO, name, b"x").await;
    }
    let names =
        |entries: &DirEntries| -> Vec<String> { entries.iter().map(|d| d.name.clone()).collect() };
    let open = e.opendir(ROOT_INO).await.unwrap();
    let first = e.readdir(ROOT_INO, open.fh, 0).await.unwrap();
    assert_eq!(names(&first), [".", "..", "a", "b", "c", "d", "e"]);
    // A name added between two pages neither shifts the next page nor shows up in it.
    write_new(&e, ROOT_INO, "0", b"x").await;
    let rest = e.readdir(ROOT_INO, open.fh, 4).await.unwrap();
    assert_eq!(names(&rest), ["c", "d", "e"]);
    assert_eq!(rest.iter().map(|d| d.offset).collect::<Vec<_>>(), [5, 6, 7]);
    assert!(e.readdir(ROOT_INO, open.fh, 99).await.unwrap().is_empty());
    e.releasedir(ROOT_INO, open.fh);
    let again = e.opendir(ROOT_INO).await.unwrap();
    let now = e.readdir(ROOT_INO, again.fh, 0).await.unwrap();
    assert_eq!(
        now.len(),
        8,
        "a new handle lists the new name: {:?}",
        names(&now)
    );
    e.releasedir(ROOT_INO, again.fh);
}

/// Content taken out of the local cache between a reader's lookup and its read (an eviction,
/// or the local copy of content the server holds reclaimed for a write in place) is fetched
/// again: the reader gets its bytes, not an error.
#[tokio::test]
async fn a_blob_gone_between_lookup_and_read_is_fetched_again() {
    let w = World::new().await;
    w.server_write("/f", b"held by the server").await;
    let e = w.mount().await;
    let f = e.lookup(ROOT_INO, b"f").await.unwrap().attr.ino;
    assert_eq!(read_all(&e, f).await, b"held by the server");
    let hash = w.server_entry("/f").await.unwrap().content_hash.unwrap();
    assert!(w.cache.has_blob(&hash), "the first read kept it");
    w.cache.vanish_at_next_read(&hash);
    assert_eq!(read_all(&e, f).await, b"held by the server");
    assert!(w.cache.has_blob(&hash), "fetched again");
}

/// A reader that looked up a file while its writer still held it open, and reads only after
/// that writer's `release` dropped the staging area, reads the committed content. The kernel
/// sends `release` in the background after `close` returns, so a program run right after
/// being written (`cp`, then exec) reads while that release is on its way. An error here is a
/// failed page fault in the program, which then dies at once.
#[tokio::test]
async fn a_reader_overtaken_by_the_writers_release_reads_the_committed_content() {
    let w = World::new().await;
    let e = w.mount().await;
    let (entry, writer) = e.create(ME, ROOT_INO, b"tool", 0o755, RW).await.unwrap();
    let ino = entry.attr.ino;
    e.write(ino, writer.fh, 0, b"#!/bin/sh\necho written\n")
        .await
        .unwrap();
    e.flush(ino, writer.fh).await.unwrap();
    let reader = e.open(ino, RO).await.unwrap();
    let racer = e.clone();
    w.cache.before_next_stage_read(move || {
        futures::executor::block_on(racer.release(ino, writer.fh)).unwrap();
    });
    assert_eq!(
        e.read(ino, reader.fh, 0, 4096).await.unwrap(),
        b"#!/bin/sh\necho written\n",
        "the reader gets the content, not an error"
    );
    e.release(ino, reader.fh).await.unwrap();
}

/// A file deleted while it is being written (`tmpfile()`, or a file replaced under its
/// writer) holds content nobody can reach once its last handle closes: its staging area is
/// dropped then, not kept on the cache's disk for the life of the mount, and nothing of it is
/// written back.
#[tokio::test]
async fn a_file_deleted_while_being_written_leaves_no_staging_area_once_closed() {
    let w = World::new().await;
    let e = w.mount().await;
    let (entry, writer) = e.create(ME, ROOT_INO, b"scratch", 0o600, RW).await.unwrap();
    let ino = entry.attr.ino;
    e.unlink(ROOT_INO, b"scratch").await.unwrap();
    e.write(ino, writer.fh, 0, &[7u8; 300_000]).await.unwrap();
    e.flush(ino, writer.fh).await.unwrap();
    assert_eq!(
        e.read(ino, writer.fh, 299_990, 100).await.unwrap(),
        [7u8; 10],
        "still readable through the open handle"
    );
    e.release(ino, writer.fh).await.unwrap();
    assert!(
        matches!(
            w.cache.stage_read(ino, 0, 1),
            Err(aether_ports::local_cache::CacheError::Missing(_))
        ),
        "the staging area is gone"
    );
    write_back(&e).await;
    assert_eq!(w.server_read("/scratch").await, None);
    assert_eq!(e.cache().journal_stats().pending_entries, 0);
}

/// A reader that still has the deleted file open keeps its staging area, and reads what the
/// writer wrote after the delete, until it closes too.
#[tokio::test]
async fn a_deleted_file_stays_readable_until_its_last_handle_closes() {
    let w = World::new().await;
    let e = w.mount().await;
    let (entry, writer) = e.create(ME, ROOT_INO, b"log", 0o644, RW).await.unwrap();
    let ino = entry.attr.ino;
    e.write(ino, writer.fh, 0, b"before ").await.unwrap();
    e.flush(ino, writer.fh).await.unwrap();
    let reader = e.open(ino, RO).await.unwrap();
    e.unlink(ROOT_INO, b"log").await.unwrap();
    e.write(ino, writer.fh, 7, b"after").await.unwrap();
    e.release(ino, writer.fh).await.unwrap();
    assert_eq!(
        e.read(ino, reader.fh, 0, 100).await.unwrap(),
        b"before after"
    );
    e.release(ino, reader.fh).await.unwrap();
    assert!(matches!(
        w.cache.stage_read(ino, 0, 1),
        Err(aether_ports::local_cache::CacheError::Missing(_))
    ));
}

/// When the cache's disk runs short, the next write makes room by dropping clean content (what
/// the server holds), instead of being held back until it fails with `ENOSPC`. Content the
/// server does not hold yet stays, and dropped content is fetched again when read.
#[tokio::test]
async fn a_short_cache_disk_drops_clean_content_instead_of_refusing_writes() {
    let w = World::new().await;
    let old: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    w.server_write("/old", &old).await;
    let mut config = w.config();
    config.backpressure = aether_domain::backpressure::Thresholds {
        disk_low_free_bytes: 1 << 20,
        disk_high_free_bytes: 3 << 19,
        disk_low_free_percent: 0.0,
        ..Default::default()
    };
    config.backpressure_wait = std::time::Duration::ZERO;
    let e = w.mount_with(config).await;
    let f = e.lookup(ROOT_INO, b"old").await.unwrap().attr.ino;
    assert!(read_all(&e, f).await == old);
    let old_hash = w.server_entry("/old").await.unwrap().content_hash.unwrap();
    assert!(w.cache.has_blob(&old_hash), "the read kept it");
    // Written here, not yet on the server: the journal needs its content.
    let fresh = vec![5u8; 700_000];
    let mine = write_new(&e, ROOT_INO, "mine", &fresh).await;

    w.cache.set_disk_space(Some((900 << 10, 1 << 30)));
    // Past the gate's 50 ms between assessments.
    w.clock.advance(std::time::Duration::from_secs(1));
    write_new(&e, ROOT_INO, "more", b"a write while the disk is short").await;
    assert!(!w.cache.has_blob(&old_hash), "clean content was dropped");
    let (free, _) = w.cache.disk_space().unwrap();
    assert!(free >= 3 << 19, "back at the high-free mark: {free}");
    assert!(read_all(&e, mine).await == fresh, "pending content stayed");
    assert!(
        read_all(&e, f).await == old,
        "dropped content is fetched again"
    );
    write_back(&e).await;
    assert!(w.server_read("/mine").await.as_deref() == Some(&fresh[..]));
    assert_eq!(e.status().evicted_bytes, old.len() as u64);
}

/// A cache over its size drops clean content, the oldest first, down to nine tenths of it;
/// content the server does not hold yet stays whatever the size.
#[tokio::test]
async fn a_cache_over_its_size_drops_clean_content_down_to_nine_tenths() {
    let w = World::new().await;
    for i in 0..4u8 {
        w.server_write(&format!("/f{i}"), &vec![i; 400_000]).await;
    }
    let mut config = w.config();
    config.cache_max_bytes = Some(1_000_000);
    let e = w.mount_with(config).await;
    for i in 0..4u8 {
        let f = e
            .lookup(ROOT_INO, format!("f{i}").as_bytes())
            .await
            .unwrap()
            .attr
            .ino;
        assert!(read_all(&e, f).await == vec![i; 400_000]);
    }
    let pending = vec![9u8; 700_000];
    let mine = write_new(&e, ROOT_INO, "pending", &pending).await;
    let held = w.cache.stats().blob_bytes;
    assert_eq!(held, 4 * 400_000 + 700_000);
    let freed = e.trim_cache();
    let left = w.cache.stats().blob_bytes;
    assert!(
        left <= 900_000,
        "down to nine tenths of the bound: {left} left"
    );
    assert_eq!(freed, held - left);
    // Not on the server yet: only the cache can answer this read.
    assert!(read_all(&e, mine).await == pending, "pending content stays");
    assert_eq!(e.status().evicted_bytes, freed);
    assert_eq!(e.trim_cache(), 0, "nothing moved since: not measured again");
    write_back(&e).await;
    assert!(w.server_read("/pending").await.as_deref() == Some(&pending[..]));
}
