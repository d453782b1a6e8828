//! Health, analytics, usage and CAS clauses: reports kept and evented, counters that follow
//! writes and reads, a tenant's footprint, blob statistics, and bad input.

use aether_ports::*;

use crate::harness::*;

pub async fn check_health_reports_and_test_results<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let fresh = h.api.get_health(&h.owner, &s.id).await.expect("health");
    assert_eq!(
        (fresh.status.as_str(), fresh.reported_at),
        ("STATUS_UNKNOWN", None)
    );
    let r = h
        .api
        .report_health(
            &h.owner,
            &s.id,
            ReportHealthRequest {
                status: "STATUS_PASSING".into(),
                message: Some("builds".into()),
                checks: vec![HealthCheck {
                    name: "compile".into(),
                    status: "STATUS_PASSING".into(),
                    message: None,
                }],
            },
        )
        .await
        .expect("report");
    assert_eq!(
        r.reported_by.as_deref(),
        Some(h.owner.principal.name.as_str())
    );
    let t = h
        .api
        .report_test_results(
            &h.owner,
            &s.id,
            TestResultsRequest {
                suite: Some("unit".into()),
                passed: 40,
                failed: 2,
                skipped: 1,
                duration_ms: Some(1200),
            },
        )
        .await
        .expect("test results");
    assert_eq!(
        t.status, "STATUS_FAILING",
        "a failed test fails the session"
    );
    assert_eq!(t.checks.len(), 1, "earlier checks are kept");
    let now = h.api.get_health(&h.owner, &s.id).await.expect("health");
    assert_eq!(
        now.test_results.map(|r| (r.passed, r.failed)),
        Some((40, 2))
    );
    let e = expect_err(
        h.api
            .report_health(
                &h.owner,
                &s.id,
                ReportHealthRequest {
                    status: "GREEN".into(),
                    message: None,
                    checks: vec![],
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("GREEN"), "{e}");
    let events = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["HEALTH_REPORTED".into(), "TEST_RESULTS_REPORTED".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 2);
}

pub async fn check_analytics_count_writes_reads_and_checkpoints<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let before = h.api.analytics(&h.owner, &s.id).await.expect("analytics");
    assert_eq!(
        (before.writes, before.bytes_written, before.first_write_at),
        (0, 0, None)
    );
    put(h, &s, "/a", b"12345").await;
    put(h, &s, "/b", b"123").await;
    read(h, &s, "/a").await.expect("read");
    read(h, &s, "/a").await.expect("read");
    let ck = h
        .api
        .create_checkpoint(&h.owner, &s.id, CreateCheckpointRequest::default())
        .await
        .expect("checkpoint");
    h.api
        .restore_checkpoint(
            &h.owner,
            &s.id,
            RestoreRequest {
                checkpoint_id: ck.id,
                paths: None,
            },
        )
        .await
        .expect("restore");
    let a = h.api.analytics(&h.owner, &s.id).await.expect("analytics");
    assert_eq!(a.bytes_written, 8);
    assert_eq!(a.bytes_read, 10);
    assert_eq!((a.checkpoints, a.restores), (1, 1));
    assert!(a.writes >= 2, "{a:?}");
    assert!(a.first_write_at.is_some() && a.time_to_first_write_ms.is_some());
}

pub async fn check_usage_and_cas_metrics<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/usage-probe", &[7u8; 1000]).await;
    read(h, &s, "/usage-probe").await.expect("read");
    let u = h
        .api
        .usage(&h.owner, UsageRequest::default())
        .await
        .expect("usage");
    assert_eq!(u.tenant_id, h.owner.principal.tenant.as_str());
    assert!(u.sessions >= 1 && u.session_hours >= 0.0, "{u:?}");
    assert!(u.stored_bytes >= 1000, "{u:?}");
    assert!(u.egress_bytes >= 1000, "{u:?}");
    let other = h
        .api
        .usage(&h.stranger, UsageRequest::default())
        .await
        .expect("usage of another tenant");
    assert!(
        other.stored_bytes < u.stored_bytes || other.sessions < u.sessions,
        "{other:?}"
    );
    let e = expect_err(
        h.api
            .usage(
                &h.owner,
                UsageRequest {
                    since: Some(aether_domain::Timestamp::from_nanos(
                        2_000_000_000_000_000_000,
                    )),
                    until: Some(aether_domain::Timestamp::from_nanos(
                        1_000_000_000_000_000_000,
                    )),
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("since"), "{e}");
    let cas = h.api.cas_metrics(&h.owner).await.expect("cas");
    assert!(
        cas.blob_count >= 1 && cas.blob_bytes >= 1000 && cas.referenced_blobs >= 1,
        "{cas:?}"
    );
    let refs = h.api.cas_refcounts(&h.owner).await.expect("refcounts");
    assert!(!refs.buckets.is_empty());
    assert!(
        refs.buckets.windows(2).all(|w| w[0].refs < w[1].refs),
        "ascending"
    );
    if let Some(reader) = &h.reader {
        expect_err(
            h.api.usage(reader, UsageRequest::default()).await,
            Code::PermissionDenied,
            None,
        );
    }
}
