//! Session lifecycle clauses: create, get, list, delete, archive, fork, checkpoints, scopes.

use std::collections::BTreeMap;

use aether_domain::SessionStatus;
use aether_ports::*;

use crate::harness::*;

pub async fn check_create_empty_session<A: SessionApi>(h: &Harness<A>) {
    let tags = BTreeMap::from([("team".to_owned(), "infra".to_owned())]);
    let s = h
        .api
        .create_session(
            &h.owner,
            CreateSessionRequest {
                empty: Some(Empty {}),
                initial_tags: tags.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    assert!(s.id.starts_with("sess_"), "id {}", s.id);
    assert_eq!(s.tenant_id, h.owner.principal.tenant.as_str());
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.generation, 0);
    assert_eq!(s.tags, tags);
    assert_eq!(s.base_fingerprint.len(), 40);
    assert!(s.base_fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(s.approval_policy, vec!["COMMIT", "PROMOTE"]);
    assert!(s.created_at <= s.last_activity_at);
    let got = h.api.get_session(&h.owner, &s.id).await.expect("get");
    assert_eq!(got, s);
    let root = stat(h, &s, "/").await.expect("stat /");
    assert_eq!(root.kind, aether_domain::EntryKind::Directory);
    assert_eq!(paths(h, &s).await, vec!["/"]);
}

pub async fn check_create_session_rejects_bad_input<A: SessionApi>(h: &Harness<A>) {
    let both = CreateSessionRequest {
        empty: Some(Empty {}),
        source_ref: Some(SourceRef {
            source_id: "src_x".into(),
            revision_id: None,
        }),
        ..Default::default()
    };
    expect_err(
        h.api.create_session(&h.owner, both).await,
        Code::InvalidArgument,
        None,
    );
    let bad_tag = CreateSessionRequest {
        initial_tags: BTreeMap::from([("Bad Key".into(), "v".into())]),
        ..Default::default()
    };
    let e = expect_err(
        h.api.create_session(&h.owner, bad_tag).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("Bad Key"), "{e}");
    let bad_policy = CreateSessionRequest {
        approval_policy: Some(vec!["MERGE".into()]),
        ..Default::default()
    };
    let e = expect_err(
        h.api.create_session(&h.owner, bad_policy).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("MERGE"), "{e}");
    let policy = CreateSessionRequest {
        approval_policy: Some(vec![]),
        ..Default::default()
    };
    let s = h
        .api
        .create_session(&h.owner, policy)
        .await
        .expect("empty policy");
    assert!(s.approval_policy.is_empty());
}

pub async fn check_get_unknown_session<A: SessionApi>(h: &Harness<A>) {
    let e = expect_err(
        h.api.get_session(&h.owner, "sess_doesnotexist0").await,
        Code::NotFound,
        None,
    );
    assert!(e.message.contains("sess_doesnotexist0"), "{e}");
    expect_err(
        h.api.get_session(&h.owner, "not-an-id").await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_tenant_isolation<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/secret.txt", b"mine").await;
    expect_err(
        h.api.get_session(&h.stranger, &s.id).await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .read_file(
                &h.stranger,
                &s.id,
                ReadFileRequest {
                    path: "/secret.txt".into(),
                    range: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .write_file(
                &h.stranger,
                &s.id,
                WriteFileRequest {
                    path: "/x".into(),
                    data: "x".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.delete_session(&h.stranger, &s.id).await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .fork_session(&h.stranger, &s.id, ForkSessionRequest::default())
            .await,
        Code::NotFound,
        None,
    );
    let mut token = None;
    loop {
        let page = h
            .api
            .list_sessions(
                &h.stranger,
                ListSessionsRequest {
                    page: PageRequest {
                        page_size: Some(1000),
                        page_token: token,
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("stranger lists");
        assert!(
            page.items
                .iter()
                .all(|x| x.id != s.id && x.tenant_id == h.stranger.principal.tenant.as_str())
        );
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        read(h, &s, "/secret.txt").await.expect("owner still reads"),
        b"mine"
    );
}

fn unique_tag(h_label: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{h_label}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn tagged<A: SessionApi>(h: &Harness<A>, run: &str) -> Session {
    h.api
        .create_session(
            &h.owner,
            CreateSessionRequest {
                initial_tags: BTreeMap::from([("run".into(), run.into())]),
                ..Default::default()
            },
        )
        .await
        .expect("create tagged")
}

pub async fn check_list_sessions_paginates<A: SessionApi>(h: &Harness<A>) {
    let run = unique_tag("page");
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(tagged(h, &run).await.id);
    }
    let mut seen = Vec::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let page = h
            .api
            .list_sessions(
                &h.owner,
                ListSessionsRequest {
                    tag: Some(format!("run:{run}")),
                    page: PageRequest {
                        page_size: Some(2),
                        page_token: token,
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|s| s.id));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3, "5 sessions in pages of 2");
    assert_eq!(seen, created, "every session once, in creation order");
    let e = expect_err(
        h.api
            .list_sessions(
                &h.owner,
                ListSessionsRequest {
                    page: PageRequest {
                        page_size: Some(1001),
                        page_token: None,
                    },
                    ..Default::default()
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("1000"), "{e}");
    expect_err(
        h.api
            .list_sessions(
                &h.owner,
                ListSessionsRequest {
                    page: PageRequest {
                        page_size: None,
                        page_token: Some("garbage!".into()),
                    },
                    ..Default::default()
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_list_sessions_filters<A: SessionApi>(h: &Harness<A>) {
    let run = unique_tag("filter");
    let a = tagged(h, &run).await;
    let b = tagged(h, &run).await;
    h.api
        .archive_session(&h.owner, &b.id)
        .await
        .expect("archive");
    let list = |status| {
        h.api.list_sessions(
            &h.owner,
            ListSessionsRequest {
                status,
                tag: Some(format!("run:{run}")),
                ..Default::default()
            },
        )
    };
    let archived: Vec<_> = list(Some(SessionStatus::Archived))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(archived, vec![b.id.clone()]);
    let active: Vec<_> = list(Some(SessionStatus::Active))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(active, vec![a.id.clone()]);
    let none = h
        .api
        .list_sessions(
            &h.owner,
            ListSessionsRequest {
                tag: Some(format!("run:{run}-other")),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert!(none.items.is_empty() && none.next_page_token.is_none());
    expect_err(
        h.api
            .list_sessions(
                &h.owner,
                ListSessionsRequest {
                    tag: Some("no-colon".into()),
                    ..Default::default()
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_delete_session<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/a", b"1").await;
    let ckpt = h
        .api
        .create_checkpoint(&h.owner, &s.id, CreateCheckpointRequest::default())
        .await
        .expect("checkpoint");
    let fork = h
        .api
        .fork_session(&h.owner, &s.id, ForkSessionRequest::default())
        .await
        .expect("fork");
    h.api.delete_session(&h.owner, &s.id).await.expect("delete");
    expect_err(
        h.api.get_session(&h.owner, &s.id).await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.delete_session(&h.owner, &s.id).await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .restore_checkpoint(
                &h.owner,
                &s.id,
                RestoreRequest {
                    checkpoint_id: ckpt.id,
                    paths: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    assert_eq!(
        read(h, &fork, "/a")
            .await
            .expect("the fork keeps shared content"),
        b"1"
    );
}

pub async fn check_archive_and_reactivate<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/kept.txt", b"kept").await;
    let archived = h
        .api
        .archive_session(&h.owner, &s.id)
        .await
        .expect("archive");
    assert_eq!(archived.status, SessionStatus::Archived);
    let e = expect_err(
        h.api
            .write_file(
                &h.owner,
                &s.id,
                WriteFileRequest {
                    path: "/new".into(),
                    data: "x".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::InvalidState),
    );
    assert!(e.message.contains("SESSION_STATUS_ARCHIVED"), "{e}");
    expect_err(mkdir(h, &s, "/d").await, Code::FailedPrecondition, None);
    expect_err(
        h.api.archive_session(&h.owner, &s.id).await,
        Code::FailedPrecondition,
        None,
    );
    assert_eq!(
        read(h, &s, "/kept.txt")
            .await
            .expect("archived content stays readable"),
        b"kept"
    );
    let back = h
        .api
        .reactivate_session(&h.owner, &s.id)
        .await
        .expect("reactivate");
    assert_eq!(back.status, SessionStatus::Active);
    expect_err(
        h.api.reactivate_session(&h.owner, &s.id).await,
        Code::FailedPrecondition,
        None,
    );
    put(h, &s, "/new", b"ok").await;
}

pub async fn check_fork_is_isolated<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/shared.txt", b"base").await;
    put(h, &s, "/dir/inner.txt", b"inner").await;
    let f = h
        .api
        .fork_session(
            &h.owner,
            &s.id,
            ForkSessionRequest {
                initial_tags: BTreeMap::from([("fork".into(), "yes".into())]),
            },
        )
        .await
        .expect("fork");
    assert_ne!(f.id, s.id);
    assert_eq!(f.status, SessionStatus::Active);
    assert_eq!(
        f.generation,
        generation(h, &s).await,
        "a fork starts at its origin's generation"
    );
    assert_eq!(f.tags.get("fork").map(String::as_str), Some("yes"));
    assert_eq!(paths(h, &f).await, paths(h, &s).await);
    put(h, &f, "/shared.txt", b"fork").await;
    put(h, &s, "/origin-only.txt", b"o").await;
    h.api
        .rmdir(
            &h.owner,
            &f.id,
            RmdirRequest {
                path: "/dir".into(),
                recursive: true,
            },
        )
        .await
        .expect("rmdir in fork");
    assert_eq!(read(h, &s, "/shared.txt").await.expect("origin"), b"base");
    assert_eq!(read(h, &f, "/shared.txt").await.expect("fork"), b"fork");
    assert_eq!(
        read(h, &s, "/dir/inner.txt")
            .await
            .expect("origin keeps dir"),
        b"inner"
    );
    expect_err(read(h, &f, "/origin-only.txt").await, Code::NotFound, None);
    expect_err(read(h, &f, "/dir/inner.txt").await, Code::NotFound, None);
    let ff = h
        .api
        .fork_session(&h.owner, &f.id, ForkSessionRequest::default())
        .await
        .expect("fork of a fork");
    assert_eq!(paths(h, &ff).await, vec!["/", "/shared.txt"]);
}

pub async fn check_checkpoint_and_restore<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/a", b"one").await;
    put(h, &s, "/c", b"gone later").await;
    let ckpt = h
        .api
        .create_checkpoint(
            &h.owner,
            &s.id,
            CreateCheckpointRequest {
                name: Some("before".into()),
            },
        )
        .await
        .expect("checkpoint");
    assert!(ckpt.id.starts_with("ckpt_"));
    assert_eq!(ckpt.session_id, s.id);
    assert_eq!(ckpt.name.as_deref(), Some("before"));
    let gen_at_ckpt = generation(h, &s).await;
    assert_eq!(ckpt.generation, gen_at_ckpt);
    put(h, &s, "/a", b"two").await;
    put(h, &s, "/b", b"new").await;
    h.api
        .delete_file(
            &h.owner,
            &s.id,
            DeleteFileRequest {
                path: "/c".into(),
                expected_hash: None,
            },
        )
        .await
        .expect("delete");
    let restored = h
        .api
        .restore_checkpoint(
            &h.owner,
            &s.id,
            RestoreRequest {
                checkpoint_id: ckpt.id.clone(),
                paths: None,
            },
        )
        .await
        .expect("restore");
    assert!(
        restored.generation > gen_at_ckpt + 3,
        "a restore is a new generation"
    );
    assert_eq!(restored.generation, generation(h, &s).await);
    assert_eq!(read(h, &s, "/a").await.expect("a"), b"one");
    assert_eq!(read(h, &s, "/c").await.expect("c"), b"gone later");
    expect_err(read(h, &s, "/b").await, Code::NotFound, None);
    put(h, &s, "/after", b"x").await;
    let list = h
        .api
        .list_checkpoints(&h.owner, &s.id, PageRequest::default())
        .await
        .expect("list");
    assert_eq!(list.items, vec![ckpt.clone()]);
    expect_err(
        h.api
            .create_checkpoint(
                &h.owner,
                &s.id,
                CreateCheckpointRequest {
                    name: Some(String::new()),
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_partial_restore<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/keep/x", b"x1").await;
    put(h, &s, "/undo/y", b"y1").await;
    let ckpt = h
        .api
        .create_checkpoint(&h.owner, &s.id, CreateCheckpointRequest::default())
        .await
        .expect("ckpt");
    put(h, &s, "/keep/x", b"x2").await;
    put(h, &s, "/undo/y", b"y2").await;
    put(h, &s, "/undo/z", b"z2").await;
    h.api
        .restore_checkpoint(
            &h.owner,
            &s.id,
            RestoreRequest {
                checkpoint_id: ckpt.id,
                paths: Some(vec!["/undo".into()]),
            },
        )
        .await
        .expect("partial restore");
    assert_eq!(read(h, &s, "/keep/x").await.expect("x"), b"x2");
    assert_eq!(read(h, &s, "/undo/y").await.expect("y"), b"y1");
    expect_err(read(h, &s, "/undo/z").await, Code::NotFound, None);
}

pub async fn check_restore_unknown_checkpoint<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let other = new_session(h).await;
    let foreign = h
        .api
        .create_checkpoint(&h.owner, &other.id, CreateCheckpointRequest::default())
        .await
        .expect("ckpt");
    expect_err(
        h.api
            .restore_checkpoint(
                &h.owner,
                &s.id,
                RestoreRequest {
                    checkpoint_id: "ckpt_nope".into(),
                    paths: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .restore_checkpoint(
                &h.owner,
                &s.id,
                RestoreRequest {
                    checkpoint_id: foreign.id,
                    paths: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .restore_checkpoint(
                &h.owner,
                &s.id,
                RestoreRequest {
                    checkpoint_id: "bogus".into(),
                    paths: None,
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_read_only_scope<A: SessionApi>(h: &Harness<A>) {
    let Some(reader) = &h.reader else { return };
    let s = new_session(h).await;
    put(h, &s, "/r.txt", b"r").await;
    h.api
        .get_session(reader, &s.id)
        .await
        .expect("reader can read the session");
    let c = h
        .api
        .read_file(
            reader,
            &s.id,
            ReadFileRequest {
                path: "/r.txt".into(),
                range: None,
            },
        )
        .await
        .expect("reader reads files");
    assert_eq!(&c.data[..], b"r");
    let e = expect_err(
        h.api
            .write_file(
                reader,
                &s.id,
                WriteFileRequest {
                    path: "/w".into(),
                    data: "w".into(),
                    mode: None,
                    parents: false,
                    expected_hash: None,
                },
            )
            .await,
        Code::PermissionDenied,
        None,
    );
    assert!(e.message.contains("tenant.filesystem.write"), "{e}");
    expect_err(
        h.api.delete_session(reader, &s.id).await,
        Code::PermissionDenied,
        None,
    );
    expect_err(
        h.api
            .create_session(reader, CreateSessionRequest::default())
            .await,
        Code::PermissionDenied,
        None,
    );
}
