//! The disk cache in a temporary directory: layout and permissions, journal durability across
//! reopen, staging and hashing, and the host-wide shared store.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use aether_cache_sqlite::{DiskCache, INLINE_MAX_BYTES, SharedStore, SyncPolicy};
use aether_domain::Timestamp;
use aether_ports::local_cache::*;

const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Content one byte past what the index keeps: it gets a blob file of its own.
fn large(tag: &str) -> Vec<u8> {
    let mut data = tag.as_bytes().to_vec();
    data.resize(INLINE_MAX_BYTES + 1, b'.');
    data
}

fn open(dir: &std::path::Path, session: &str) -> DiskCache {
    let shared = SharedStore::open(&dir.join("shared")).unwrap();
    DiskCache::open(dir, session, SyncPolicy::Interval, Some(shared)).unwrap()
}

#[test]
fn layout_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let l = cache.layout();
    for d in [
        &l.blobs, &l.staging, &l.dirty, &l.index, &l.shared, &l.locks,
    ] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    assert!(l.index.join("index.db").exists());
}

#[test]
fn journal_survives_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ops = [
        JournalOp::Mkdir {
            path: "/a".into(),
            mode: 0o755,
        },
        JournalOp::Symlink {
            path: "/a/l".into(),
            target: "x".into(),
        },
        JournalOp::DeleteFile { path: "/b".into() },
    ];
    {
        let cache = open(dir.path(), "sess_a");
        for op in &ops {
            cache.journal_append(op, Timestamp::from_nanos(5)).unwrap();
        }
        cache.journal_ack(1).unwrap();
        cache
            .journal_reject(2, "FAILED_PRECONDITION: archived")
            .unwrap();
        cache.journal_sync().unwrap();
    }
    let cache = open(dir.path(), "sess_a");
    let pending = cache.journal_pending(10).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].seq, 3);
    assert_eq!(pending[0].op, ops[2]);
    let rejected = cache.journal_rejected().unwrap();
    assert_eq!(rejected[0].entry.op, ops[1]);
    assert!(rejected[0].error.contains("archived"));
    let stats = cache.journal_stats();
    assert_eq!((stats.pending_entries, stats.last_seq), (1, 3));
    // Sequence numbers are never reused, even after the journal empties.
    cache.journal_ack(3).unwrap();
    let next = cache
        .journal_append(&ops[0], Timestamp::from_nanos(6))
        .unwrap();
    assert_eq!(next, 4);
}

#[test]
fn staging_commits_content_by_hash() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    cache.stage_open(7, None).unwrap();
    assert_eq!(cache.stage_commit(7).unwrap(), (EMPTY.to_owned(), 0));
    cache.stage_write(7, 0, b"hello world").unwrap();
    cache.stage_write(7, 6, b"there").unwrap();
    cache.stage_truncate(7, 9).unwrap();
    assert_eq!(cache.stage_read(7, 0, 100).unwrap(), b"hello the");
    let (hash, size) = cache.stage_commit(7).unwrap();
    assert_eq!(size, 9);
    assert_eq!(cache.read_blob(&hash, 6, 100).unwrap(), b"the");
    // A new staging area from that blob starts with its content.
    cache.stage_open(8, Some(&hash)).unwrap();
    cache.stage_write(8, 0, b"J").unwrap();
    assert_eq!(
        cache.read_blob(&hash, 0, 1).unwrap(),
        b"h",
        "blobs never change"
    );
    cache.stage_drop(7);
    assert!(matches!(
        cache.stage_read(7, 0, 1),
        Err(CacheError::Missing(_))
    ));
    assert!(matches!(
        cache.read_blob("not-a-hash", 0, 1),
        Err(CacheError::Backend(_))
    ));
}

#[test]
fn a_blob_shard_removed_under_the_cache_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let data = large("first");
    cache.stage_open(1, None).unwrap();
    cache.stage_write(1, 0, &data).unwrap();
    let (first, _) = cache.stage_commit(1).unwrap();
    // Someone (a cleanup script, `rm -rf`) removes the shard the cache already made.
    std::fs::remove_dir_all(cache.layout().blobs.join(&first[..2])).unwrap();
    // The same shard again: a committed file and a downloaded blob both land.
    cache.stage_open(2, None).unwrap();
    cache.stage_write(2, 0, &data).unwrap();
    assert_eq!(cache.stage_commit(2).unwrap().0, first);
    assert_eq!(cache.read_blob(&first, 0, 5).unwrap(), b"first");
    std::fs::remove_dir_all(cache.layout().blobs.join(&first[..2])).unwrap();
    cache.put_blob(&first, &data).unwrap();
    assert_eq!(cache.read_blob(&first, 0, 5).unwrap(), b"first");
    let mode = std::fs::metadata(cache.layout().blobs.join(&first[..2]))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "shard directories stay private");
}

#[test]
fn blobs_offered_to_the_shared_store_right_before_closing_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    {
        let cache = open(dir.path(), "sess_a");
        for i in 0..50u64 {
            cache.stage_open(i, None).unwrap();
            cache
                .stage_write(i, 0, &large(&format!("file {i}")))
                .unwrap();
            hashes.push(cache.stage_commit(i).unwrap().0);
        }
        // Closed at once: the queued offers must still be linked and counted.
    }
    let shared = SharedStore::open(&dir.path().join("shared")).unwrap();
    assert_eq!(shared.link_count(), 50);
    for hash in &hashes {
        assert!(
            dir.path().join("shared/blobs").join(hash).exists(),
            "{hash}"
        );
    }
}

#[test]
fn two_sessions_share_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "sess_a");
    let b = open(dir.path(), "sess_b");
    a.stage_open(1, None).unwrap();
    a.stage_write(1, 0, &[42u8; 100_000]).unwrap();
    let (hash, _) = a.stage_commit(1).unwrap();
    // The offer to the shared store is linked in the background; counting waits for it.
    assert_eq!(a.stats().shared_links, 1, "offered to the shared store");
    assert!(b.has_blob(&hash), "linked in from the shared store");
    let ino_a = std::fs::metadata(a.layout().blobs.join(&hash[..2]).join(&hash))
        .unwrap()
        .ino();
    let ino_b = std::fs::metadata(b.layout().blobs.join(&hash[..2]).join(&hash))
        .unwrap()
        .ino();
    assert_eq!(ino_a, ino_b, "one copy on disk");
    assert_eq!(b.read_blob(&hash, 0, 3).unwrap(), [42, 42, 42]);
    assert_eq!(a.stats().shared_links, 2);
    // Clearing clean entries drops the unreferenced blob from one session only.
    assert_eq!(a.clear_clean().unwrap(), 100_000);
    assert!(!a.layout().blobs.join(&hash[..2]).join(&hash).exists());
    assert_eq!(b.read_blob(&hash, 0, 1).unwrap(), [42]);
}

/// Large content the mount did not hash is kept under a local name, which stays private to the
/// session, until the server names it; then it is kept under both names, counted once, and
/// offered to the shared store under the server's.
#[test]
fn content_named_locally_takes_the_servers_name() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "sess_a");
    let b = open(dir.path(), "sess_b");
    let data = large("local");
    let local = LocalName::make(7, 1);
    a.stage_open(1, None).unwrap();
    a.stage_write(1, 0, &data).unwrap();
    a.stage_commit_as(1, &local, data.len() as u64).unwrap();
    assert_eq!(a.read_blob(&local, 0, 5).unwrap(), b"local");
    assert_eq!(
        a.stats().shared_links,
        0,
        "a local name is not offered to other sessions"
    );
    assert!(!b.has_blob(&local));

    let hash = hex::encode(sha2::Sha256::digest(&data));
    a.blob_name(&local, &hash).unwrap();
    assert_eq!(a.read_blob(&hash, 0, 5).unwrap(), b"local");
    assert_eq!(
        a.read_blob(&local, 0, 5).unwrap(),
        b"local",
        "still readable under the old name"
    );
    let stats = a.stats();
    assert_eq!((stats.blob_count, stats.blob_bytes), (1, data.len() as u64));
    assert!(
        b.has_blob(&hash),
        "offered to the shared store under the server's name"
    );

    // Names that are neither are refused; clearing drops the local name once nothing needs it.
    assert!(a.blob_name(&hash, &hash).is_err());
    assert!(a.blob_name(&local, "local-not-a-digest").is_err());
    assert!(a.read_blob("local-zz", 0, 1).is_err());
    assert_eq!(
        a.clear_clean().unwrap(),
        data.len() as u64,
        "one file freed, once"
    );
    assert!(!a.has_blob(&local));
}

#[test]
fn blobs_needed_by_the_journal_survive_clear() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let data = b"pending content";
    cache.stage_open(1, None).unwrap();
    cache.stage_write(1, 0, data).unwrap();
    let (hash, size) = cache.stage_commit(1).unwrap();
    cache
        .journal_append(
            &JournalOp::Write {
                path: "/f".into(),
                hash: hash.clone(),
                size,
                mode: 0o644,
                base_hash: None,
                patch: None,
                created: true,
            },
            Timestamp::from_nanos(1),
        )
        .unwrap();
    cache.clear_clean().unwrap();
    assert_eq!(cache.read_blob(&hash, 0, 100).unwrap(), data);
}

/// Committed content never changes, whether the staging area is in memory or a file (which
/// the blob shares by hard link until the next write).
fn a_later_write_never_changes_the_committed_blob(large: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    cache.stage_open(3, None).unwrap();
    cache.stage_write(3, 0, b"first version").unwrap();
    if large {
        cache.stage_write(3, INLINE_MAX_BYTES as u64, b"!").unwrap();
    }
    let (first, size) = cache.stage_commit(3).unwrap();
    // Its journal entry is not written back yet: the write-back still reads it from here.
    cache
        .journal_append(&write_of(&first, size), Timestamp::from_nanos(1))
        .unwrap();
    // Written again after the commit (the file stayed open), and truncated.
    cache.stage_write(3, 0, b"FIRST").unwrap();
    assert_eq!(cache.read_blob(&first, 0, 13).unwrap(), b"first version");
    cache.stage_truncate(3, 2).unwrap();
    assert_eq!(cache.read_blob(&first, 0, 13).unwrap(), b"first version");
    let (second, size) = cache.stage_commit(3).unwrap();
    assert_eq!(
        (size, cache.read_blob(&second, 0, 100).unwrap()),
        (2, b"FI".to_vec())
    );
    // Re-opening the staging area from a blob does not touch the blob either.
    cache.stage_open(3, Some(&first)).unwrap();
    cache.stage_write(3, 0, b"x").unwrap();
    assert_eq!(cache.read_blob(&first, 0, 13).unwrap(), b"first version");
    cache.stage_open(3, None).unwrap();
    assert_eq!(cache.read_blob(&second, 0, 100).unwrap(), b"FI");
}

fn write_of(hash: &str, size: u64) -> JournalOp {
    JournalOp::Write {
        path: "/f".into(),
        hash: hash.to_owned(),
        size,
        mode: 0o644,
        base_hash: None,
        patch: None,
        created: true,
    }
}

fn staging_inode(dir: &std::path::Path, session: &str, stage: u64) -> u64 {
    std::fs::metadata(
        dir.join(session)
            .join("content/staging")
            .join(stage.to_string()),
    )
    .unwrap()
    .ino()
}

/// A large file written again after a commit that nothing needs any more (its entry written
/// back): the staging file is changed in place, not copied, and the old content's local name
/// is gone (the server holds it).
#[test]
fn a_write_after_a_commit_nothing_needs_changes_the_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let data = large("first");
    cache.stage_open(3, None).unwrap();
    cache.stage_write(3, 0, &data).unwrap();
    let (first, _) = cache.stage_commit(3).unwrap();
    let before = staging_inode(dir.path(), "sess_a", 3);
    cache.stage_write(3, 0, b"FIRST").unwrap();
    assert_eq!(
        staging_inode(dir.path(), "sess_a", 3),
        before,
        "written in place"
    );
    assert!(!cache.has_blob(&first), "the old content's name is gone");
    let (second, size) = cache.stage_commit(3).unwrap();
    let mut expected = data.clone();
    expected[..5].copy_from_slice(b"FIRST");
    assert_eq!(size, expected.len() as u64);
    assert_eq!(
        cache.read_blob(&second, 0, expected.len()).unwrap(),
        expected
    );
}

/// While anything may still read the committed content, a write after the commit copies the
/// staging file first, and what is read is the committed content, whole.
#[test]
fn a_write_after_a_commit_copies_while_the_content_may_be_read() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path(), "sess_a");
    let b = open(dir.path(), "sess_b");
    let data = large("first");
    a.stage_open(3, None).unwrap();
    a.stage_write(3, 0, &data).unwrap();
    let (first, _) = a.stage_commit(3).unwrap();

    // A reader holds the blob (an upload streaming it).
    let mut reader = a.open_blob(&first).unwrap();
    let before = staging_inode(dir.path(), "sess_a", 3);
    a.stage_write(3, 0, b"FIRST").unwrap();
    assert_ne!(staging_inode(dir.path(), "sess_a", 3), before, "copied");
    let mut read = Vec::new();
    reader.read_to_end(&mut read).unwrap();
    assert!(read == data, "the reader got the committed content");
    drop(reader);

    // Another session took the content from the host-wide store: it keeps it.
    a.stage_open(5, None).unwrap();
    let other = large("other");
    a.stage_write(5, 0, &other).unwrap();
    let (third, _) = a.stage_commit(5).unwrap();
    // Counting waits for the background offer to the shared store.
    assert_eq!(a.stats().shared_links, 1);
    assert!(b.has_blob(&third), "linked into the other session");
    let before = staging_inode(dir.path(), "sess_a", 5);
    a.stage_write(5, 0, b"OTHER").unwrap();
    assert_ne!(staging_inode(dir.path(), "sess_a", 5), before, "copied");
    assert_eq!(b.read_blob(&third, 0, other.len()).unwrap(), other);
}

/// A staging area opened again over stored content starts as another name of its blob (no
/// copy), and its first change takes the blob's names away when nothing needs them, the
/// server's digest as well as the local name: a file appended to by one `open`, `write`,
/// `close` after another is not copied each time.
#[test]
fn a_staging_area_opened_over_a_blob_nothing_needs_is_changed_in_place() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let data = large("log");
    cache.stage_open(3, None).unwrap();
    cache.stage_write(3, 0, &data).unwrap();
    // Committed under a local name, which the server's reply then names by its digest.
    let local = LocalName::make(1, 1);
    cache.stage_commit_as(3, &local, data.len() as u64).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&data));
    cache.blob_name(&local, &digest).unwrap();
    cache.stage_drop(3); // its last writer closed it

    cache.stage_open(4, Some(&digest)).unwrap();
    let blob = dir
        .path()
        .join("sess_a/content/blobs")
        .join(&digest[..2])
        .join(&digest);
    let blob_inode = std::fs::metadata(&blob).unwrap().ino();
    assert_eq!(
        staging_inode(dir.path(), "sess_a", 4),
        blob_inode,
        "opened without a copy"
    );
    cache
        .stage_write(4, data.len() as u64, b"one more line\n")
        .unwrap();
    assert_eq!(
        staging_inode(dir.path(), "sess_a", 4),
        blob_inode,
        "changed in place"
    );
    assert!(
        !cache.has_blob(&digest) && !cache.has_blob(&local),
        "both of the old content's names are gone"
    );
    let (hash, size) = cache.stage_commit(4).unwrap();
    let mut expected = data.clone();
    expected.extend_from_slice(b"one more line\n");
    assert_eq!(size, expected.len() as u64);
    assert_eq!(cache.read_blob(&hash, 0, expected.len()).unwrap(), expected);
}

#[test]
fn a_later_write_never_changes_small_committed_content() {
    a_later_write_never_changes_the_committed_blob(false);
}

#[test]
fn committing_links_and_a_later_write_never_changes_the_blob() {
    a_later_write_never_changes_the_committed_blob(true);
}

#[test]
fn small_content_stays_in_the_index_and_outgrows_it_into_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let staged_files = |c: &DiskCache| std::fs::read_dir(&c.layout().staging).unwrap().count();
    let blob_files = |c: &DiskCache| {
        std::fs::read_dir(&c.layout().blobs)
            .unwrap()
            .flatten()
            .map(|shard| std::fs::read_dir(shard.path()).unwrap().count())
            .sum::<usize>()
    };
    let small;
    {
        let cache = open(dir.path(), "sess_a");
        cache.stage_open(1, None).unwrap();
        cache.stage_write(1, 4, b"tail").unwrap();
        cache.stage_write(1, 0, b"head").unwrap();
        assert_eq!(staged_files(&cache), 0, "small content is staged in memory");
        assert_eq!(cache.stage_read(1, 2, 4).unwrap(), b"adta");
        let (hash, size) = cache.stage_commit(1).unwrap();
        assert_eq!(size, 8);
        assert_eq!(blob_files(&cache), 0, "and committed to the index");
        assert!(cache.has_blob(&hash));
        let mut streamed = Vec::new();
        std::io::Read::read_to_end(&mut cache.open_blob(&hash).unwrap(), &mut streamed).unwrap();
        assert_eq!(streamed, b"headtail");
        // Writing on after the commit leaves the committed content alone.
        cache.stage_write(1, 0, b"HEAD").unwrap();
        assert_eq!(cache.read_blob(&hash, 0, 100).unwrap(), b"headtail");
        // Past the limit the staging area moves to a file, content and all.
        cache.stage_write(1, INLINE_MAX_BYTES as u64, b"!").unwrap();
        assert_eq!(staged_files(&cache), 1);
        assert_eq!(cache.stage_read(1, 0, 8).unwrap(), b"HEADtail");
        let (big, size) = cache.stage_commit(1).unwrap();
        assert_eq!(size, INLINE_MAX_BYTES as u64 + 1);
        assert_eq!(blob_files(&cache), 1);
        assert_eq!(
            cache.read_blob(&big, INLINE_MAX_BYTES as u64, 10).unwrap(),
            b"!"
        );
        // A staging area opened from small content starts with it, in memory.
        cache.stage_open(2, Some(&hash)).unwrap();
        cache.stage_truncate(2, 4).unwrap();
        assert_eq!(cache.stage_read(2, 0, 100).unwrap(), b"head");
        cache.stage_drop(1);
        cache.stage_drop(2);
        assert_eq!(staged_files(&cache), 0);
        small = hash;
    }
    // The index is on disk: the content survives a restart, and goes with `clear_clean`
    // unless the journal still needs it.
    let cache = open(dir.path(), "sess_a");
    assert_eq!(cache.read_blob(&small, 0, 4).unwrap(), b"head");
    let stats = cache.stats();
    assert_eq!((stats.blob_count, stats.staging_bytes), (2, 0));
    let freed = cache.clear_clean().unwrap();
    assert_eq!(freed, 8 + INLINE_MAX_BYTES as u64 + 1);
    assert!(!cache.has_blob(&small));
    assert!(matches!(
        cache.read_blob(&small, 0, 1),
        Err(CacheError::Missing(_))
    ));
}

#[test]
fn downloaded_small_content_is_kept_in_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    cache.put_blob(EMPTY, b"").unwrap();
    let hash = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    cache.put_blob(hash, b"hello\n").unwrap();
    assert_eq!(cache.read_blob(hash, 0, 100).unwrap(), b"hello\n");
    assert_eq!(cache.read_blob(EMPTY, 0, 100).unwrap(), b"");
    assert_eq!(cache.stats().blob_count, 2);
}

/// Making room on a short disk drops clean blobs the least recently stored or read first, only
/// as many as asked for, and never one a pending journal entry needs.
#[test]
fn eviction_drops_the_least_recently_used_clean_blobs_first_and_keeps_pending_content() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), "sess_a");
    let put = |tag: &str, age_secs: u64| {
        let data = large(tag);
        let hash = hex::encode(sha2::Sha256::digest(&data));
        cache.put_blob(&hash, &data).unwrap();
        let path = cache.layout().blobs.join(&hash[..2]).join(&hash);
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(when)
            .unwrap();
        (hash, data.len() as u64)
    };
    let (oldest, size) = put("oldest", 300);
    let (pending, _) = put("pending", 400);
    let (newer, _) = put("newer", 100);
    cache
        .journal_append(&write_of(&pending, size), Timestamp::from_nanos(1))
        .unwrap();
    // Read long ago and read again now: it counts as recently used.
    let (reread, _) = put("reread", 3600);
    assert_eq!(cache.read_blob(&reread, 0, 6).unwrap(), b"reread");
    assert_eq!(cache.evict_clean(1).unwrap(), size, "one blob is enough");
    assert!(!cache.has_blob(&oldest), "the oldest clean blob went first");
    assert!(cache.has_blob(&newer));
    assert!(
        cache.has_blob(&reread),
        "a blob just read is not the oldest"
    );
    assert_eq!(cache.evict_clean(u64::MAX).unwrap(), 2 * size);
    assert!(!cache.has_blob(&newer));
    assert!(!cache.has_blob(&reread));
    assert!(cache.has_blob(&pending), "pending content is never dropped");
}
