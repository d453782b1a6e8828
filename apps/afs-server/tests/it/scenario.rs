//! SPEC pattern 4 end to end over HTTP (human in the loop): a session from an imported source,
//! written through the API, annotated, approved only for what the reviewer saw, committed,
//! promoted, and a new session starting from the promoted revision. Also host imports.

use std::time::Duration;

use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;

use crate::support::*;

async fn finished(api: &HttpClient, c: &Ctx, job: Job) -> Job {
    let mut job = job;
    for _ in 0..500 {
        if job.state.ends_with("_SUCCEEDED") || job.state.ends_with("_FAILED") {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        job = api.get_job(c, &job.source_id, &job.id).await.expect("job");
    }
    panic!("job did not finish: {job:?}");
}

fn write(path: &str, data: &'static str) -> WriteFileRequest {
    WriteFileRequest {
        path: path.into(),
        data: data.into(),
        mode: None,
        parents: true,
        expected_hash: None,
    }
}

async fn read(api: &HttpClient, c: &Ctx, s: &str, path: &str) -> Vec<u8> {
    api.read_file(
        c,
        s,
        ReadFileRequest {
            path: path.into(),
            range: None,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("read {path}: {e}"))
    .data
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_in_the_loop_from_source_to_promoted_revision() {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).expect("mkdir");
    std::fs::write(project.join("src/parser.rs"), "fn parse() {}\n").expect("write");
    std::fs::write(project.join("README.md"), "# parser\n").expect("write");
    let mut cfg = config(dir.path());
    cfg.import_roots = vec![project.clone()];
    let server = start(&cfg).await;
    let api = HttpClient::new(ClientConfig::new(
        format!("http://{}", server.addr),
        TokenSource::FromPrincipal,
    ))
    .expect("client");
    let agent = ctx(TENANT_A, "agent");
    let reviewer = ctx(TENANT_A, "reviewer");

    // A source imported from a directory on the server's host.
    let src = api
        .create_source(
            &agent,
            CreateSourceRequest {
                display_name: "parser".into(),
                kind: "SOURCE_KIND_LOCAL_PATH".into(),
                origin: SourceOrigin {
                    path: Some(project.display().to_string()),
                    ..Default::default()
                },
                labels: Default::default(),
            },
        )
        .await
        .expect("create source");
    let job = api.start_import(&agent, &src.id).await.expect("import");
    let job = finished(&api, &agent, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "{job:?}");
    assert_eq!(job.files_processed, 2);
    let rev1 = job.revision_id.clone().expect("revision");

    // The tool proposes a change in its own session.
    let s = api
        .create_session(
            &agent,
            CreateSessionRequest {
                source_ref: Some(SourceRef {
                    source_id: src.id.clone(),
                    revision_id: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("session from the source");
    assert_eq!(
        read(&api, &agent, &s.id, "/src/parser.rs").await,
        b"fn parse() {}\n"
    );
    let edited = api
        .write_file(
            &agent,
            &s.id,
            write("/src/parser.rs", "fn parse() { todo() }\n"),
        )
        .await
        .expect("write");

    // The reviewer annotates what they see, against its content hash.
    let note = api
        .create_annotation(
            &reviewer,
            &s.id,
            CreateAnnotationRequest {
                path: Some("/src/parser.rs".into()),
                line: Some(1),
                comment: "todo() will panic".into(),
                labels: vec!["blocking".into()],
                expected_content_hash: edited.content_hash.clone(),
            },
        )
        .await
        .expect("annotate");
    let first = api
        .request_approval(
            &agent,
            &s.id,
            RequestApprovalRequest {
                reason: "COMMIT_TO_MAIN".into(),
                details: Some(serde_json::json!({"summary": "parser stub"})),
            },
        )
        .await
        .expect("request approval");
    // The tool fixes the issue: the pending approval no longer covers what is there.
    api.write_file(
        &agent,
        &s.id,
        write("/src/parser.rs", "fn parse() -> Ast { Ast }\n"),
    )
    .await
    .expect("fix");
    api.update_annotation(
        &reviewer,
        &s.id,
        &note.id,
        UpdateAnnotationRequest {
            status: "RESOLVED".into(),
        },
    )
    .await
    .expect("resolve");
    let e = api
        .grant_approval(
            &reviewer,
            &s.id,
            &first.id,
            DecideApprovalRequest::default(),
        )
        .await
        .expect_err("a stale approval cannot be granted");
    assert!(e.message.contains("STALE"), "{e}");
    let second = api
        .request_approval(
            &agent,
            &s.id,
            RequestApprovalRequest {
                reason: "COMMIT_TO_MAIN".into(),
                details: None,
            },
        )
        .await
        .expect("re-request");
    api.grant_approval(
        &reviewer,
        &s.id,
        &second.id,
        DecideApprovalRequest {
            comment: Some("ship it".into()),
        },
    )
    .await
    .expect("grant");
    let commit = api
        .commit(
            &agent,
            &s.id,
            CommitRequest {
                message: "parse into an Ast".into(),
                author: None,
            },
        )
        .await
        .expect("commit");
    assert_eq!(commit.approval_id.as_deref(), Some(second.id.as_str()));
    let job = api
        .promote_session(
            &agent,
            &src.id,
            PromoteSessionRequest {
                session_id: s.id.clone(),
            },
        )
        .await
        .expect("promote");
    let rev2 = job.revision_id.clone().expect("promoted revision");
    assert_ne!(rev2, rev1);

    // The next unit of work starts from the promoted revision.
    let next = api
        .create_session(
            &agent,
            CreateSessionRequest {
                source_ref: Some(SourceRef {
                    source_id: src.id.clone(),
                    revision_id: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("next session");
    assert_eq!(
        next.source_ref.and_then(|r| r.revision_id).as_deref(),
        Some(rev2.as_str())
    );
    assert_eq!(
        read(&api, &agent, &next.id, "/src/parser.rs").await,
        b"fn parse() -> Ast { Ast }\n"
    );
    assert_eq!(
        read(&api, &agent, &next.id, "/README.md").await,
        b"# parser\n"
    );

    // Every step is in the session's log, with who did it.
    let events = api
        .list_events(
            &agent,
            &s.id,
            ListEventsRequest {
                page: PageRequest {
                    page_size: Some(1000),
                    page_token: None,
                },
                ..Default::default()
            },
        )
        .await
        .expect("events");
    let steps: Vec<(String, String)> = events
        .items
        .iter()
        .filter(|e| e.kind != "FILE_WRITTEN" && e.kind != "DIRECTORY_CREATED")
        .map(|e| (e.kind.clone(), e.principal.clone()))
        .collect();
    let want = [
        ("SESSION_CREATED", "agent"),
        ("ANNOTATION_CREATED", "reviewer"),
        ("APPROVAL_REQUESTED", "agent"),
        ("ANNOTATION_RESOLVED", "reviewer"),
        ("APPROVAL_REQUESTED", "agent"),
        ("APPROVAL_GRANTED", "reviewer"),
        ("CHECKPOINT_CREATED", "agent"),
        ("COMMITTED", "agent"),
        ("SESSION_PROMOTED", "agent"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, p)| (k.to_string(), p.to_string()))
        .collect();
    assert_eq!(steps, want);

    // Refresh re-reads the host directory as a new revision.
    std::fs::write(project.join("NEW.md"), "added on the host\n").expect("write");
    let job = api.refresh_source(&agent, &src.id).await.expect("refresh");
    let job = finished(&api, &agent, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "{job:?}");
    let src_now = api.get_source(&agent, &src.id).await.expect("source");
    assert_eq!(src_now.revision_count, 3);

    // A host path outside the import roots is refused, and the job says why.
    let outside = api
        .create_source(
            &agent,
            CreateSourceRequest {
                display_name: "etc".into(),
                kind: "SOURCE_KIND_LOCAL_PATH".into(),
                origin: SourceOrigin {
                    path: Some("/etc".into()),
                    ..Default::default()
                },
                labels: Default::default(),
            },
        )
        .await
        .expect("create");
    let job = api.start_import(&agent, &outside.id).await.expect("start");
    let job = finished(&api, &agent, job).await;
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_FAILED");
    assert_eq!(job.error_code.as_deref(), Some("PERMISSION_DENIED"));
    assert!(
        job.error_message
            .as_deref()
            .unwrap_or_default()
            .contains("import_roots"),
        "{job:?}"
    );
    server.stop(Duration::from_secs(5)).await;
}
