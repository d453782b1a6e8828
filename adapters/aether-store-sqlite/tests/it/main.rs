//! Store-level behaviour not visible through the API in one call: idempotency expiry.

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

#[tokio::test]
async fn recorded_replies_expire_after_a_week() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteMetadataStore::open(&dir.path().join("m.db"), 1).expect("open");
    let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111").expect("tenant");
    let now = Timestamp(1_800_000_000 * 1_000_000_000);
    let rec = SessionRecord {
        id: SessionId::parse("sess_idem").expect("id"),
        tenant: tenant.clone(),
        base_fingerprint: "0".repeat(40),
        source_ref: None,
        status: SessionStatus::Active,
        tags: Default::default(),
        generation: 0,
        created_at: now,
        last_activity_at: now,
        approval_policy: vec![Action::Commit],
    };
    store
        .insert_session(&rec, &Entry::root(now), event(now), None)
        .await
        .expect("insert");
    let commit = |generation: u64, key: &str, time: Timestamp| TreeCommit {
        tenant: tenant.clone(),
        session: rec.id.clone(),
        expected_generation: generation,
        changes: vec![],
        events: vec![],
        idempotency: Some(IdempotencyRecord {
            key: key.into(),
            outcome: Outcome::Done,
            time,
        }),
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
