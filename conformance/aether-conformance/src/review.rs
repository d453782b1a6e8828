//! Review clauses: approvals bound to a generation (stale after a write), the approval gate on
//! commits, commits as restorable checkpoints, annotations anchored to content hashes, review
//! requests, and the bad input of each.

use aether_domain::SessionStatus;
use aether_ports::*;

use crate::harness::*;

fn ask(reason: &str) -> RequestApprovalRequest {
    RequestApprovalRequest {
        reason: reason.into(),
        details: Some(serde_json::json!({"summary": "fix the parser", "tests": 12})),
    }
}

async fn status_of<A: AetherApi>(h: &Harness<A>, s: &Session) -> SessionStatus {
    h.api
        .get_session(&h.owner, &s.id)
        .await
        .expect("get session")
        .status
}

async fn approvals<A: AetherApi>(h: &Harness<A>, s: &Session) -> Vec<(String, String)> {
    h.api
        .list_approvals(&h.owner, &s.id, PageRequest::default())
        .await
        .expect("list approvals")
        .items
        .into_iter()
        .map(|a| (a.id, a.status))
        .collect()
}

fn commit_req(message: &str) -> CommitRequest {
    CommitRequest {
        message: message.into(),
        author: None,
    }
}

pub async fn check_approval_goes_stale_and_is_decided_once<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/main.rs", b"fn main() {}").await;
    let g = generation(h, &s).await;
    let first = h
        .api
        .request_approval(&h.owner, &s.id, ask("COMMIT_TO_MAIN"))
        .await
        .expect("request");
    assert!(first.id.starts_with("appr_"), "{}", first.id);
    assert_eq!(
        (
            first.status.as_str(),
            first.generation,
            first.requested_by.as_str()
        ),
        ("PENDING", g, h.owner.principal.name.as_str())
    );
    assert_eq!(first.details["tests"], 12);
    assert_eq!(status_of(h, &s).await, SessionStatus::PendingApproval);
    expect_err(
        h.api
            .grant_approval(&h.owner, &s.id, &first.id, DecideApprovalRequest::default())
            .await,
        Code::PermissionDenied,
        None,
    );
    // A write after the request: the reviewer would approve something they never saw.
    put(h, &s, "/main.rs", b"fn main() { evil() }").await;
    assert_eq!(approvals(h, &s).await, [(first.id.clone(), "STALE".into())]);
    let e = expect_err(
        h.api
            .grant_approval(
                &h.reviewer,
                &s.id,
                &first.id,
                DecideApprovalRequest::default(),
            )
            .await,
        Code::FailedPrecondition,
        None,
    );
    assert!(e.message.contains("STALE"), "{e}");
    let second = h
        .api
        .request_approval(&h.owner, &s.id, ask("COMMIT_TO_MAIN"))
        .await
        .expect("re-request");
    assert_eq!(second.generation, g + 1);
    let granted = h
        .api
        .grant_approval(
            &h.reviewer,
            &s.id,
            &second.id,
            DecideApprovalRequest {
                comment: Some("looks right".into()),
            },
        )
        .await
        .expect("grant");
    assert_eq!(granted.status, "GRANTED");
    assert_eq!(
        granted.decided_by.as_deref(),
        Some(h.reviewer.principal.name.as_str())
    );
    assert_eq!(granted.comment.as_deref(), Some("looks right"));
    assert!(granted.decided_at.is_some());
    assert_eq!(status_of(h, &s).await, SessionStatus::Active);
    for decide in [true, false] {
        let r = if decide {
            h.api
                .grant_approval(
                    &h.reviewer,
                    &s.id,
                    &second.id,
                    DecideApprovalRequest::default(),
                )
                .await
        } else {
            h.api
                .deny_approval(
                    &h.reviewer,
                    &s.id,
                    &second.id,
                    DecideApprovalRequest::default(),
                )
                .await
        };
        let e = expect_err(r, Code::FailedPrecondition, None);
        assert!(e.message.contains("already decided: GRANTED"), "{e}");
    }
    assert_eq!(
        approvals(h, &s).await,
        [(first.id, "STALE".into()), (second.id, "GRANTED".into())]
    );
}

pub async fn check_commit_is_gated_by_a_current_approval<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/lib.rs", b"pub fn f() {}").await;
    let e = expect_err(
        h.api.commit(&h.owner, &s.id, commit_req("first")).await,
        Code::FailedPrecondition,
        Some(Reason::ApprovalRequired),
    );
    assert!(e.message.contains("COMMIT"), "{e}");
    let a = h
        .api
        .request_approval(&h.owner, &s.id, ask("COMMIT_TO_MAIN"))
        .await
        .expect("request");
    h.api
        .grant_approval(&h.reviewer, &s.id, &a.id, DecideApprovalRequest::default())
        .await
        .expect("grant");
    let c = h
        .api
        .commit(
            &h.owner,
            &s.id,
            CommitRequest {
                message: "add f".into(),
                author: Some("Ada <ada@example.com>".into()),
            },
        )
        .await
        .expect("commit with a granted approval");
    assert!(c.id.starts_with("cmt_"), "{}", c.id);
    assert_eq!(c.approval_id.as_deref(), Some(a.id.as_str()));
    assert_eq!(
        (c.author.as_str(), c.committed_by.as_str()),
        ("Ada <ada@example.com>", h.owner.principal.name.as_str())
    );
    assert_eq!(c.generation, a.generation);
    let listed = h
        .api
        .list_commits(&h.owner, &s.id, PageRequest::default())
        .await
        .expect("commits");
    assert_eq!(listed.items, std::slice::from_ref(&c));
    // The committed tree is a checkpoint: restorable after later edits.
    put(h, &s, "/lib.rs", b"changed later").await;
    h.api
        .restore_checkpoint(
            &h.owner,
            &s.id,
            RestoreRequest {
                checkpoint_id: c.checkpoint_id.clone(),
                paths: None,
            },
        )
        .await
        .expect("restore the commit");
    assert_eq!(
        read(h, &s, "/lib.rs").await.expect("read"),
        b"pub fn f() {}"
    );
    // Writing (the restore was one) made the approval stale: the gate closes again.
    let e = expect_err(
        h.api.commit(&h.owner, &s.id, commit_req("second")).await,
        Code::FailedPrecondition,
        Some(Reason::ApprovalRequired),
    );
    assert!(e.message.contains("stale"), "{e}");
    // A session whose policy gates nothing commits freely.
    let free = h
        .api
        .create_session(
            &h.owner,
            CreateSessionRequest {
                empty: Some(Empty {}),
                approval_policy: Some(vec![]),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let c = h
        .api
        .commit(&h.owner, &free.id, commit_req("free"))
        .await
        .expect("ungated");
    assert_eq!(c.approval_id, None);
    let events = h
        .api
        .list_events(
            &h.owner,
            &free.id,
            ListEventsRequest {
                types: vec!["COMMITTED".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].related_id.as_deref(), Some(c.id.as_str()));
}

pub async fn check_denied_approval_opens_nothing<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let a = h
        .api
        .request_approval(&h.owner, &s.id, ask("RELEASE"))
        .await
        .expect("request");
    let d = h
        .api
        .deny_approval(
            &h.reviewer,
            &s.id,
            &a.id,
            DecideApprovalRequest {
                comment: Some("missing tests".into()),
            },
        )
        .await
        .expect("deny");
    assert_eq!(d.status, "DENIED");
    assert_eq!(status_of(h, &s).await, SessionStatus::Active);
    put(h, &s, "/x", b"x").await;
    assert_eq!(
        approvals(h, &s).await,
        [(a.id, "DENIED".into())],
        "a denial stays a denial"
    );
    expect_err(
        h.api.commit(&h.owner, &s.id, commit_req("sneak")).await,
        Code::FailedPrecondition,
        Some(Reason::ApprovalRequired),
    );
}

pub async fn check_annotations_anchor_to_content<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let file = put(h, &s, "/src/a.rs", b"line one\nline two\n").await;
    let note = |path: Option<&str>, line: Option<u64>, expected: Option<String>| {
        h.api.create_annotation(
            &h.owner,
            &s.id,
            CreateAnnotationRequest {
                path: path.map(str::to_owned),
                line,
                comment: "off by one?".into(),
                labels: vec!["bug".into()],
                expected_content_hash: expected,
            },
        )
    };
    let a = note(Some("/src/a.rs"), Some(2), file.content_hash.clone())
        .await
        .expect("anchored");
    assert!(a.id.starts_with("ann_"), "{}", a.id);
    assert_eq!(
        (
            a.status.as_str(),
            a.line,
            a.content_hash.clone(),
            a.labels.clone()
        ),
        (
            "OPEN",
            Some(2),
            file.content_hash.clone(),
            vec!["bug".to_owned()]
        )
    );
    put(h, &s, "/src/a.rs", b"rewritten\n").await;
    let e = expect_err(
        note(Some("/src/a.rs"), Some(2), file.content_hash.clone()).await,
        Code::Aborted,
        Some(Reason::HashMismatch),
    );
    assert_eq!(e.current_hash, Some(sha256_hex(b"rewritten\n")));
    expect_err(
        note(Some("/src/nope.rs"), None, None).await,
        Code::NotFound,
        None,
    );
    let general = note(None, None, None).await.expect("session-level note");
    assert_eq!((general.path, general.content_hash), (None, None));
    let resolved = h
        .api
        .update_annotation(
            &h.owner,
            &s.id,
            &a.id,
            UpdateAnnotationRequest {
                status: "RESOLVED".into(),
            },
        )
        .await
        .expect("resolve");
    assert_eq!(resolved.status, "RESOLVED");
    assert!(resolved.updated_at >= a.updated_at);
    let list = |status: Option<&str>| {
        h.api.list_annotations(
            &h.owner,
            &s.id,
            ListAnnotationsRequest {
                status: status.map(str::to_owned),
                page: PageRequest::default(),
            },
        )
    };
    let open: Vec<String> = list(Some("OPEN"))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(open, std::slice::from_ref(&general.id));
    assert_eq!(list(None).await.expect("list").items.len(), 2);
    let reopened = h
        .api
        .update_annotation(
            &h.owner,
            &s.id,
            &a.id,
            UpdateAnnotationRequest {
                status: "OPEN".into(),
            },
        )
        .await
        .expect("reopen");
    assert_eq!(reopened.status, "OPEN");
    let events = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec![
                    "ANNOTATION_CREATED".into(),
                    "ANNOTATION_RESOLVED".into(),
                    "ANNOTATION_REOPENED".into(),
                ],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    let kinds: Vec<&str> = events.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "ANNOTATION_CREATED",
            "ANNOTATION_CREATED",
            "ANNOTATION_RESOLVED",
            "ANNOTATION_REOPENED"
        ]
    );
    expect_err(list(Some("DONE")).await, Code::InvalidArgument, None);
    expect_err(
        h.api
            .update_annotation(
                &h.owner,
                &s.id,
                "ann_0000000000000000000000000000",
                UpdateAnnotationRequest {
                    status: "RESOLVED".into(),
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        note(Some("/src/a.rs"), Some(0), None).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(note(None, Some(3), None).await, Code::InvalidArgument, None);
}

pub async fn check_review_requests_move_the_session<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let r = h
        .api
        .request_review(&h.owner, &s.id, RequestReviewRequest::default())
        .await
        .expect("request review");
    assert_eq!(r.status, SessionStatus::PendingReview);
    expect_err(
        h.api
            .request_review(&h.owner, &s.id, RequestReviewRequest::default())
            .await,
        Code::FailedPrecondition,
        Some(Reason::InvalidState),
    );
    put(h, &s, "/under-review", b"still writable").await;
    let a = h
        .api
        .request_approval(&h.owner, &s.id, ask("MERGE"))
        .await
        .expect("request approval during review");
    assert_eq!(status_of(h, &s).await, SessionStatus::PendingApproval);
    h.api
        .grant_approval(&h.reviewer, &s.id, &a.id, DecideApprovalRequest::default())
        .await
        .expect("grant");
    assert_eq!(status_of(h, &s).await, SessionStatus::Active);
}

pub async fn check_review_rejects_bad_input<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let e = expect_err(
        h.api
            .request_approval(&h.owner, &s.id, ask("commit to main"))
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("reason"), "{e}");
    let e = expect_err(
        h.api
            .request_approval(
                &h.owner,
                &s.id,
                RequestApprovalRequest {
                    reason: "OK".into(),
                    details: Some(serde_json::json!([1, 2])),
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("details"), "{e}");
    let e = expect_err(
        h.api.commit(&h.owner, &s.id, commit_req("   ")).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("message"), "{e}");
    expect_err(
        h.api
            .grant_approval(
                &h.reviewer,
                &s.id,
                "appr_0000000000000000000000000000",
                DecideApprovalRequest::default(),
            )
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .grant_approval(
                &h.reviewer,
                &s.id,
                "not-an-id",
                DecideApprovalRequest::default(),
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api
            .request_approval(&h.stranger, &s.id, ask("COMMIT"))
            .await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .list_commits(&h.stranger, &s.id, PageRequest::default())
            .await,
        Code::NotFound,
        None,
    );
    if let Some(reader) = &h.reader {
        h.api
            .list_approvals(reader, &s.id, PageRequest::default())
            .await
            .expect("a reader lists approvals");
        expect_err(
            h.api.request_approval(reader, &s.id, ask("COMMIT")).await,
            Code::PermissionDenied,
            None,
        );
    }
    h.api
        .archive_session(&h.owner, &s.id)
        .await
        .expect("archive");
    expect_err(
        h.api.request_approval(&h.owner, &s.id, ask("COMMIT")).await,
        Code::FailedPrecondition,
        Some(Reason::InvalidState),
    );
    assert!(
        approvals(h, &s).await.is_empty(),
        "nothing refused was recorded"
    );
}
