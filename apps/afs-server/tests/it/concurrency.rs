//! Concurrent writers against the SQLite-backed service: group commit, the per-session write
//! lock and the read cache must lose nothing and count every generation exactly once.

use std::sync::Arc;

use aether_ports::*;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = Arc::new(afs_server::build_service(&config(dir.path())).expect("service"));
    let c = ctx(TENANT_A, "w");
    let shared = api
        .create_session(&c, CreateSessionRequest::default())
        .await
        .expect("create")
        .id;
    let doomed = api
        .create_session(&c, CreateSessionRequest::default())
        .await
        .expect("create")
        .id;
    let mut own = Vec::new();
    for _ in 0..8 {
        own.push(
            api.create_session(&c, CreateSessionRequest::default())
                .await
                .expect("create")
                .id,
        );
    }
    let mut tasks = Vec::new();
    for w in 0..16usize {
        let (api, c, shared, doomed, mine) = (
            api.clone(),
            c.clone(),
            shared.clone(),
            doomed.clone(),
            own[w % 8].clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut doomed_ok = 0;
            for i in 0..25usize {
                let data = format!("{w}-{i}");
                let put = |sid: String, path: String| {
                    let api = api.clone();
                    let c = c.clone();
                    let data = data.clone();
                    async move {
                        api.write_file(
                            &c,
                            &sid,
                            WriteFileRequest {
                                path,
                                data: data.into(),
                                mode: None,
                                parents: true,
                                expected_hash: None,
                            },
                        )
                        .await
                    }
                };
                put(shared.clone(), format!("/w{w}/f{i}"))
                    .await
                    .expect("shared write");
                put(mine.clone(), format!("/w{w}/f{i}"))
                    .await
                    .expect("own write");
                // Writes racing the deletion fail inside a commit group; they must not take others down.
                if put(doomed.clone(), format!("/w{w}/f{i}")).await.is_ok() {
                    doomed_ok += 1;
                }
            }
            doomed_ok
        }));
    }
    let deleter = {
        let (api, c, doomed) = (api.clone(), c.clone(), doomed.clone());
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            api.delete_session(&c, &doomed).await.expect("delete")
        })
    };
    for t in tasks {
        t.await.expect("writer");
    }
    deleter.await.expect("deleter");
    let s = api.get_session(&c, &shared).await.expect("shared");
    assert_eq!(
        s.generation,
        16 * 25,
        "one generation per acknowledged write"
    );
    for w in 0..16 {
        for i in 0..25 {
            let got = api
                .read_file(
                    &c,
                    &shared,
                    ReadFileRequest {
                        path: format!("/w{w}/f{i}"),
                        range: None,
                    },
                )
                .await
                .expect("read back");
            assert_eq!(&got.data[..], format!("{w}-{i}").as_bytes());
        }
    }
    for sid in &own {
        assert_eq!(
            api.get_session(&c, sid).await.expect("own").generation,
            2 * 25
        );
    }
    assert_eq!(
        api.get_session(&c, &doomed).await.unwrap_err().code,
        Code::NotFound
    );
    // A fresh service over the same files sees exactly what was acknowledged (nothing only in cache).
    drop(api);
    let reopened = afs_server::build_service(&config(dir.path())).expect("reopen");
    assert_eq!(
        reopened
            .get_session(&c, &shared)
            .await
            .expect("shared")
            .generation,
        16 * 25
    );
    let m = reopened
        .manifest(
            &c,
            &shared,
            ManifestRequest {
                page: PageRequest {
                    page_size: Some(1000),
                    page_token: None,
                },
                ..Default::default()
            },
        )
        .await
        .expect("manifest");
    assert_eq!(
        m.entries
            .items
            .iter()
            .filter(|e| e.kind == aether_domain::EntryKind::File)
            .count(),
        16 * 25
    );
}
