//! Store-level behaviour not visible through the API in one call: idempotency expiry and
//! atomic key checks, one store per database.

mod chunked;
mod small;

use aether_domain::{Action, Entry, SessionId, SessionStatus, TenantId, Timestamp};
use aether_ports::Outcome;
use aether_ports::store::*;
use aether_store_sqlite::SqliteMetadataStore;

const DAY: i64 = 24 * 3600 * 1_000_000_000;

fn event(time: Timestamp) -> NewEvent {
    NewEvent {
        kind: "TEST".into(),
        path: None,
        to_path: None,
        related_id: None,
        principal: "t".into(),
        generation: 0,
        time,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteMetadataStore,
    tenant: TenantId,
    rec: SessionRecord,
}

const NOW: Timestamp = Timestamp(1_800_000_000 * 1_000_000_000);

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteMetadataStore::open(&dir.path().join("m.db"), 1).expect("open");
    let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111").expect("tenant");
    let rec = SessionRecord {
        id: SessionId::parse("sess_idem").expect("id"),
        tenant: tenant.clone(),
        base_fingerprint: "0".repeat(40),
        source_ref: None,
        status: SessionStatus::Active,
        tags: Default::default(),
        generation: 0,
        created_at: NOW,
        last_activity_at: NOW,
        approval_policy: vec![Action::Commit],
    };
    store
        .insert_session(&rec, &Entry::root(NOW), event(NOW), None)
        .await
        .expect("insert");
    Fixture {
        _dir: dir,
        store,
        tenant,
        rec,
    }
}

#[tokio::test]
async fn recorded_replies_expire_after_a_week() {
    let Fixture {
        _dir,
        store,
        tenant,
        rec,
    } = fixture().await;
    let now = NOW;
    let commit = |generation: u64, key: &str, time: Timestamp| TreeCommit {
        tenant: tenant.clone(),
        session: rec.id.clone(),
        expected_generation: generation,
        generation: generation + 1,
        changes: vec![],
        events: vec![],
        idempotency: vec![IdempotencyRecord {
            key: key.into(),
            outcome: Outcome::Done,
            time,
        }],
        time,
        bytes_written: 0,
    };
    store
        .commit(commit(0, "old", Timestamp(now.nanos() - 8 * DAY)))
        .await
        .expect("old commit");
    store
        .commit(commit(1, "recent", Timestamp(now.nanos() - DAY)))
        .await
        .expect("recent commit");
    assert_eq!(
        store
            .idempotent_outcome(&tenant, "sess_idem", "old")
            .await
            .expect("read"),
        Some(Outcome::Done),
        "kept until swept"
    );
    for g in 2..1100u64 {
        store
            .commit(commit(g, &format!("k{g}"), now))
            .await
            .expect("commit");
    }
    assert_eq!(
        store
            .idempotent_outcome(&tenant, "sess_idem", "old")
            .await
            .expect("read"),
        None,
        "older than a week: swept"
    );
    assert_eq!(
        store
            .idempotent_outcome(&tenant, "sess_idem", "recent")
            .await
            .expect("read"),
        Some(Outcome::Done),
        "a day old: kept"
    );
}

#[tokio::test]
async fn a_commit_with_a_recorded_key_changes_nothing() {
    let f = fixture().await;
    let commit = |generation: u64| TreeCommit {
        tenant: f.tenant.clone(),
        session: f.rec.id.clone(),
        expected_generation: generation,
        generation: generation + 1,
        changes: vec![],
        events: vec![event(NOW)],
        idempotency: vec![IdempotencyRecord {
            key: "once".into(),
            outcome: Outcome::Done,
            time: NOW,
        }],
        time: NOW,
        bytes_written: 0,
    };
    assert_eq!(
        f.store.commit(commit(0)).await.expect("first"),
        CommitOutcome::Committed { generation: 1 }
    );
    // A second copy planned against the new generation: refused, whatever its generation.
    for generation in [1, 0] {
        assert_eq!(
            f.store.commit(commit(generation)).await.expect("copy"),
            CommitOutcome::KeyRecorded
        );
    }
    let rec = f
        .store
        .session(&f.tenant, &f.rec.id)
        .await
        .expect("read")
        .expect("session");
    assert_eq!(rec.generation, 1, "the copies advanced nothing");
}

#[tokio::test]
async fn one_database_has_one_store_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("metadata.db");
    let first = SqliteMetadataStore::open(&path, 1).expect("open");
    let second = SqliteMetadataStore::open(&path, 1)
        .err()
        .expect("a second store on one database is refused");
    let pid = std::process::id();
    assert!(
        second
            .message
            .contains(&format!("is in use by another server process (pid {pid})")),
        "{}",
        second.message
    );
    assert!(second.message.contains("metadata.db"), "{}", second.message);
    drop(first);
    SqliteMetadataStore::open(&path, 1).expect("free again once the first store is gone");
}

/// Clients that stop reading a streamed blob part-way hold no blocking thread: other reads of
/// the store, which need one, still run. (With a thread per stream, sixteen stalled streams
/// would take every thread of this runtime's blocking pool.)
#[test]
fn stalled_blob_streams_hold_no_thread() {
    use futures::StreamExt;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let blobs = aether_store_sqlite::FileBlobStore::open(dir.path(), false).unwrap();
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        let hash = blobs.put(data.clone().into()).await.unwrap();
        let (mut stalled, other) =
            tokio::time::timeout(std::time::Duration::from_secs(30), async {
                let mut stalled = Vec::new();
                for _ in 0..16 {
                    let mut s = blobs.get_chunks(&hash, None).await.unwrap();
                    let first = s.next().await.unwrap().unwrap();
                    assert_eq!(first[..], data[..first.len()]);
                    stalled.push(s);
                }
                let other = blobs.get(&hash, Some((1 << 20, 2 << 20))).await.unwrap();
                (stalled, other)
            })
            .await
            .expect("reads needing a blocking thread are not starved by stalled streams");
        assert_eq!(other[..], data[1 << 20..2 << 20]);
        // A stalled stream still reads on when its client does.
        let rest: Vec<u8> = stalled
            .pop()
            .unwrap()
            .map(|c| c.unwrap().to_vec())
            .concat()
            .await;
        assert_eq!(rest.len(), data.len() - (512 << 10));
    });
}
