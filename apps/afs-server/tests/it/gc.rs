//! Blob garbage collection over the real stores: only unreferenced, idle blobs go.

use std::time::Duration;

use aether_ports::*;

use crate::support::*;

/// A second handle on the server's blob store, to look into it.
fn blob_store(dir: &std::path::Path) -> aether_store_sqlite::FileBlobStore {
    aether_store_sqlite::FileBlobStore::open(&dir.join("blobs"), false).expect("blob store")
}

fn blob_exists(dir: &std::path::Path, data: &[u8]) -> bool {
    let hash = sha256_hex(std::str::from_utf8(data).expect("utf8 test data"));
    blob_store(dir).contains(&hash).expect("look up a blob")
}

fn count_blobs(dir: &std::path::Path) -> u64 {
    blob_store(dir).disk_usage().expect("measure the blobs").1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collects_only_unreferenced_idle_blobs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = afs_server::build_service(&config(dir.path())).expect("service");
    let c = ctx(TENANT_A, "gc");
    let s = api
        .create_session(&c, CreateSessionRequest::default())
        .await
        .expect("create")
        .id;
    let put = |sid: String, path: &'static str, data: &'static str, parents: bool| {
        let (api, c) = (&api, &c);
        async move {
            api.write_file(
                c,
                &sid,
                WriteFileRequest {
                    path: path.into(),
                    data: data.into(),
                    mode: None,
                    parents,
                    expected_hash: None,
                },
            )
            .await
        }
    };
    put(s.clone(), "/a", "overwritten", false)
        .await
        .expect("a1");
    put(s.clone(), "/a", "current", false).await.expect("a2");
    put(s.clone(), "/b", "in the checkpoint", false)
        .await
        .expect("b1");
    let ckpt = api
        .create_checkpoint(&c, &s, CreateCheckpointRequest::default())
        .await
        .expect("ckpt");
    put(s.clone(), "/b", "after the checkpoint", false)
        .await
        .expect("b2");
    put(s.clone(), "/c", "kept by the fork", false)
        .await
        .expect("c");
    let fork = api
        .fork_session(&c, &s, ForkSessionRequest::default())
        .await
        .expect("fork")
        .id;
    api.delete_file(
        &c,
        &s,
        DeleteFileRequest {
            path: "/c".into(),
            expected_hash: None,
        },
    )
    .await
    .expect("delete c");
    put(
        s.clone(),
        "/missing/parent",
        "orphan of a failed write",
        false,
    )
    .await
    .expect_err("no parent");
    assert!(
        blob_exists(dir.path(), b"orphan of a failed write"),
        "the failed write left its blob behind"
    );

    let report = api
        .collect_garbage(Duration::from_secs(3600))
        .await
        .expect("gc");
    assert_eq!(
        report.removed, 0,
        "nothing is collected within the grace period"
    );

    let report = api.collect_garbage(Duration::ZERO).await.expect("gc");
    assert_eq!(report.removed, 2, "{report:?}");
    assert!(!blob_exists(dir.path(), b"overwritten"));
    assert!(!blob_exists(dir.path(), b"orphan of a failed write"));
    for kept in [
        &b"current"[..],
        b"in the checkpoint",
        b"after the checkpoint",
        b"kept by the fork",
    ] {
        assert!(
            blob_exists(dir.path(), kept),
            "{:?} must stay",
            std::str::from_utf8(kept)
        );
    }
    let read = |sid: String, path: &'static str| {
        let (api, c) = (&api, &c);
        async move {
            api.read_file(
                c,
                &sid,
                ReadFileRequest {
                    path: path.into(),
                    range: None,
                },
            )
            .await
            .map(|r| r.data.to_vec())
        }
    };
    assert_eq!(
        read(fork.clone(), "/c").await.expect("fork still reads"),
        b"kept by the fork"
    );
    api.restore_checkpoint(
        &c,
        &s,
        RestoreRequest {
            checkpoint_id: ckpt.id,
            paths: None,
        },
    )
    .await
    .expect("restore");
    assert_eq!(
        read(s.clone(), "/b").await.expect("checkpoint content"),
        b"in the checkpoint"
    );

    let again = put(s.clone(), "/again", "overwritten", false)
        .await
        .expect("same content as a collected blob");
    assert!(
        blob_exists(dir.path(), b"overwritten"),
        "a collected blob is written again when needed"
    );
    assert_eq!(
        read(s.clone(), "/again").await.expect("read"),
        b"overwritten"
    );
    let _ = again;

    api.delete_session(&c, &s).await.expect("delete");
    api.delete_session(&c, &fork).await.expect("delete fork");
    api.collect_garbage(Duration::ZERO).await.expect("gc");
    assert_eq!(
        count_blobs(dir.path()),
        0,
        "with no sessions left, no blob is referenced"
    );
}
