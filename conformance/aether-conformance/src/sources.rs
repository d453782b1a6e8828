//! Source clauses: archive imports as jobs, revisions, sessions started from a revision,
//! refresh, promotion (approval-gated, conflicts named and marked), and bad input.

use std::time::Duration;

use aether_domain::SessionStatus;
use aether_ports::*;

use crate::harness::*;

/// A tar of `(path, content)` files (and `(path, "->target")` symlinks).
pub(crate) fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        if let Some(target) = content.strip_prefix("->") {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_cksum();
            b.append_link(&mut h, path, target).expect("append a link");
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(content.len() as u64);
            h.set_cksum();
            b.append_data(&mut h, path, content.as_bytes())
                .expect("append a file");
        }
    }
    b.into_inner().expect("finish the archive")
}

/// Polls a job until it ends (jobs may run in the background).
pub(crate) async fn finished<A: AetherApi>(h: &Harness<A>, job: Job) -> Job {
    let mut job = job;
    for _ in 0..500 {
        if job.state.ends_with("_SUCCEEDED") || job.state.ends_with("_FAILED") {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        job = h
            .api
            .get_job(&h.owner, &job.source_id, &job.id)
            .await
            .expect("get job");
    }
    panic!("job {} did not finish: {job:?}", job.id);
}

pub(crate) async fn archive_source<A: AetherApi>(h: &Harness<A>, files: &[(&str, &str)]) -> Source {
    let src = h
        .api
        .create_source(
            &h.owner,
            CreateSourceRequest {
                display_name: "fixture".into(),
                kind: "SOURCE_KIND_ARCHIVE".into(),
                origin: SourceOrigin::default(),
                labels: Default::default(),
            },
        )
        .await
        .expect("create source");
    let job = h
        .api
        .upload_archive(&h.owner, &src.id, tar_of(files).into())
        .await
        .expect("upload");
    let job = finished(h, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "{job:?}");
    h.api
        .get_source(&h.owner, &src.id)
        .await
        .expect("get source")
}

pub(crate) async fn session_from<A: AetherApi>(
    h: &Harness<A>,
    src: &Source,
    revision: Option<&str>,
    policy: Option<Vec<String>>,
) -> Session {
    h.api
        .create_session(
            &h.owner,
            CreateSessionRequest {
                source_ref: Some(SourceRef {
                    source_id: src.id.clone(),
                    revision_id: revision.map(str::to_owned),
                }),
                approval_policy: policy,
                ..Default::default()
            },
        )
        .await
        .expect("session from a source")
}

async fn approve<A: AetherApi>(h: &Harness<A>, s: &Session) {
    let a = h
        .api
        .request_approval(
            &h.owner,
            &s.id,
            RequestApprovalRequest {
                reason: "PROMOTE".into(),
                details: None,
            },
        )
        .await
        .expect("request approval");
    h.api
        .grant_approval(&h.reviewer, &s.id, &a.id, DecideApprovalRequest::default())
        .await
        .expect("grant");
}

pub async fn check_archive_imports_become_revisions<A: AetherApi>(h: &Harness<A>) {
    let created = h
        .api
        .create_source(
            &h.owner,
            CreateSourceRequest {
                display_name: "docs".into(),
                kind: "SOURCE_KIND_ARCHIVE".into(),
                origin: SourceOrigin::default(),
                labels: [("team".to_owned(), "core".to_owned())].into(),
            },
        )
        .await
        .expect("create");
    assert!(created.id.starts_with("src_"), "{}", created.id);
    assert_eq!(
        (created.status.as_str(), created.revision_count),
        ("UNDERLAY_SOURCE_STATUS_CREATING", 0)
    );
    let files = [
        ("README.md", "# hello\n"),
        ("src/lib.rs", "pub fn f() {}\n"),
        ("latest", "->src/lib.rs"),
    ];
    let job = h
        .api
        .upload_archive(&h.owner, &created.id, tar_of(&files).into())
        .await
        .expect("upload");
    assert!(job.id.starts_with("job_"), "{}", job.id);
    assert_eq!(
        job.requested_by, h.owner.principal.name,
        "a job names who started it"
    );
    let job = finished(h, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "{job:?}");
    assert_eq!(
        (job.files_processed, job.bytes_processed, job.kind.as_str()),
        (2, 22, "IMPORT")
    );
    let src = h.api.get_source(&h.owner, &created.id).await.expect("get");
    assert_eq!(src.status, "UNDERLAY_SOURCE_STATUS_READY");
    assert_eq!(src.latest_revision_id, job.revision_id);
    assert_eq!(src.revision_count, 1);
    let rev1 = src.latest_revision_id.clone().expect("a revision");

    let a = session_from(h, &src, None, None).await;
    assert_eq!(
        a.source_ref.as_ref().and_then(|r| r.revision_id.as_deref()),
        Some(rev1.as_str())
    );
    assert_eq!(
        read(h, &a, "/src/lib.rs").await.expect("read"),
        b"pub fn f() {}\n"
    );
    let link = h
        .api
        .read_symlink(&h.owner, &a.id, "/latest")
        .await
        .expect("symlink");
    assert_eq!(link.target, "src/lib.rs");
    let b = session_from(h, &src, Some(&rev1), None).await;
    put(h, &a, "/README.md", b"changed in a").await;
    assert_eq!(
        read(h, &b, "/README.md").await.expect("read"),
        b"# hello\n",
        "sessions are isolated"
    );

    // A second upload is a refresh: revision 2, and revision 1 is still there to start from.
    let job = h
        .api
        .upload_archive(&h.owner, &src.id, tar_of(&[("README.md", "# v2\n")]).into())
        .await
        .expect("upload again");
    let job = finished(h, job).await;
    assert_eq!(
        (job.state.as_str(), job.kind.as_str()),
        ("UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "REFRESH")
    );
    let src = h.api.get_source(&h.owner, &src.id).await.expect("get");
    assert_eq!(src.revision_count, 2);
    let c = session_from(h, &src, None, None).await;
    assert_eq!(read(h, &c, "/README.md").await.expect("read"), b"# v2\n");
    expect_err(read(h, &c, "/src/lib.rs").await, Code::NotFound, None);
    let old = session_from(h, &src, Some(&rev1), None).await;
    assert_eq!(
        read(h, &old, "/src/lib.rs").await.expect("read"),
        b"pub fn f() {}\n"
    );
    let listed = h
        .api
        .list_sessions(
            &h.owner,
            ListSessionsRequest {
                source_id: Some(src.id.clone()),
                page: PageRequest {
                    page_size: Some(1000),
                    page_token: None,
                },
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(listed.items.len(), 4, "the four sessions from this source");
    let all = h
        .api
        .list_sources(&h.owner, ListSourcesRequest::default())
        .await
        .expect("list sources");
    assert!(all.items.iter().any(|s| s.id == src.id));
    assert!(
        h.api
            .list_sources(&h.stranger, ListSourcesRequest::default())
            .await
            .expect("stranger lists")
            .items
            .iter()
            .all(|s| s.id != src.id),
        "another tenant never sees the source"
    );
}

pub async fn check_promotion_is_gated_and_detects_conflicts<A: AetherApi>(h: &Harness<A>) {
    let src = archive_source(h, &[("a.txt", "1"), ("b.txt", "1"), ("dir/x", "x")]).await;
    let rev1 = src.latest_revision_id.clone().expect("rev");
    let s1 = session_from(h, &src, None, None).await;
    put(h, &s1, "/a.txt", b"2").await;
    put(h, &s1, "/c.txt", b"new").await;
    h.api
        .unlink(
            &h.owner,
            &s1.id,
            PathRequest {
                path: "/b.txt".into(),
            },
        )
        .await
        .expect("unlink");
    h.api
        .rmdir(
            &h.owner,
            &s1.id,
            RmdirRequest {
                path: "/dir".into(),
                recursive: true,
            },
        )
        .await
        .expect("rmdir");
    let promote = |s: &Session| {
        let id = s.id.clone();
        let src_id = src.id.clone();
        async move {
            h.api
                .promote_session(&h.owner, &src_id, PromoteSessionRequest { session_id: id })
                .await
        }
    };
    expect_err(
        promote(&s1).await,
        Code::FailedPrecondition,
        Some(Reason::ApprovalRequired),
    );
    approve(h, &s1).await;
    let job = promote(&s1).await.expect("promote");
    assert_eq!(
        (job.state.as_str(), job.kind.as_str()),
        ("UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "PROMOTION")
    );
    let rev2 = job.revision_id.clone().expect("new revision");
    let src_now = h.api.get_source(&h.owner, &src.id).await.expect("get");
    assert_eq!(src_now.latest_revision_id.as_deref(), Some(rev2.as_str()));
    let fresh = session_from(h, &src_now, None, None).await;
    assert_eq!(read(h, &fresh, "/a.txt").await.expect("a"), b"2");
    assert_eq!(read(h, &fresh, "/c.txt").await.expect("c"), b"new");
    expect_err(read(h, &fresh, "/b.txt").await, Code::NotFound, None);
    expect_err(read(h, &fresh, "/dir/x").await, Code::NotFound, None);

    // A session from revision 1 that changed a.txt too: a conflict naming the path.
    let s2 = session_from(h, &src, Some(&rev1), Some(vec![])).await;
    put(h, &s2, "/a.txt", b"other").await;
    let e = expect_err(promote(&s2).await, Code::Aborted, None);
    assert!(
        e.message.contains("/a.txt") && e.message.contains(&rev2),
        "{e}"
    );
    let s2_now = h.api.get_session(&h.owner, &s2.id).await.expect("get");
    assert_eq!(s2_now.status, SessionStatus::Conflict);
    let src_after = h.api.get_source(&h.owner, &src.id).await.expect("get");
    assert_eq!(
        src_after.latest_revision_id.as_deref(),
        Some(rev2.as_str()),
        "nothing promoted"
    );

    // One that touched only other paths merges onto the latest revision.
    let s3 = session_from(h, &src, Some(&rev1), Some(vec![])).await;
    put(h, &s3, "/d.txt", b"d").await;
    let job = promote(&s3).await.expect("promote without overlap");
    let rev3 = job.revision_id.expect("revision");
    let merged = session_from(h, &src, Some(&rev3), None).await;
    assert_eq!(read(h, &merged, "/a.txt").await.expect("a"), b"2");
    assert_eq!(read(h, &merged, "/d.txt").await.expect("d"), b"d");
    expect_err(read(h, &merged, "/b.txt").await, Code::NotFound, None);
}

pub async fn check_sources_reject_bad_input<A: AetherApi>(h: &Harness<A>) {
    let create = |kind: &str, origin: SourceOrigin| {
        h.api.create_source(
            &h.owner,
            CreateSourceRequest {
                display_name: "bad".into(),
                kind: kind.into(),
                origin,
                labels: Default::default(),
            },
        )
    };
    let e = expect_err(
        create("SOURCE_KIND_FTP", SourceOrigin::default()).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("SOURCE_KIND_FTP"), "{e}");
    let e = expect_err(
        create("SOURCE_KIND_LOCAL_PATH", SourceOrigin::default()).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("origin.path"), "{e}");
    expect_err(
        create(
            "SOURCE_KIND_ARCHIVE",
            SourceOrigin {
                url: Some("https://example.com/x.git".into()),
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api
            .get_source(&h.owner, "src_0000000000000000000000000000")
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.get_source(&h.owner, "not a source").await,
        Code::InvalidArgument,
        None,
    );
    let src = create("SOURCE_KIND_ARCHIVE", SourceOrigin::default())
        .await
        .expect("create");
    expect_err(
        h.api.get_source(&h.stranger, &src.id).await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.start_import(&h.owner, &src.id).await,
        Code::FailedPrecondition,
        None,
    );
    let e = expect_err(
        h.api
            .create_session(
                &h.owner,
                CreateSessionRequest {
                    source_ref: Some(SourceRef {
                        source_id: src.id.clone(),
                        revision_id: None,
                    }),
                    ..Default::default()
                },
            )
            .await,
        Code::FailedPrecondition,
        None,
    );
    assert!(e.message.contains("no revision"), "{e}");
    let job = h
        .api
        .upload_archive(
            &h.owner,
            &src.id,
            b"this is not a tar archive at all".to_vec().into(),
        )
        .await
        .expect("the upload is accepted; the import fails");
    let job = finished(h, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_FAILED", "{job:?}");
    assert_eq!(
        job.error_code.as_deref(),
        Some("INVALID_ARGUMENT"),
        "{job:?}"
    );
    let failed = h.api.get_source(&h.owner, &src.id).await.expect("get");
    assert_eq!(failed.status, "UNDERLAY_SOURCE_STATUS_FAILED");
    expect_err(
        h.api.get_job(&h.owner, &src.id, "job_00000000").await,
        Code::NotFound,
        None,
    );
    let good = archive_source(h, &[("f", "1")]).await;
    expect_err(
        h.api
            .create_session(
                &h.owner,
                CreateSessionRequest {
                    source_ref: Some(SourceRef {
                        source_id: good.id.clone(),
                        revision_id: Some("rev_0000".into()),
                    }),
                    ..Default::default()
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    let dir_src = create(
        "SOURCE_KIND_LOCAL_PATH",
        SourceOrigin {
            path: Some("/".into()),
            ..Default::default()
        },
    )
    .await
    .expect("create a host source");
    expect_err(
        h.api
            .upload_archive(&h.owner, &dir_src.id, tar_of(&[("f", "1")]).into())
            .await,
        Code::FailedPrecondition,
        None,
    );
    let plain = new_session(h).await;
    let e = expect_err(
        h.api
            .promote_session(
                &h.owner,
                &good.id,
                PromoteSessionRequest {
                    session_id: plain.id.clone(),
                },
            )
            .await,
        Code::FailedPrecondition,
        None,
    );
    assert!(e.message.contains("was not created from source"), "{e}");
    if let Some(reader) = &h.reader {
        expect_err(
            h.api
                .create_source(
                    reader,
                    CreateSourceRequest {
                        display_name: "x".into(),
                        kind: "SOURCE_KIND_ARCHIVE".into(),
                        origin: SourceOrigin::default(),
                        labels: Default::default(),
                    },
                )
                .await,
            Code::PermissionDenied,
            None,
        );
    }
}
