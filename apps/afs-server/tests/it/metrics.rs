//! `/metrics`: Prometheus text with request counts and latencies by route template, method and
//! status, unauthenticated, and free of ids.

use std::time::Duration;

use crate::support::{config, start};

const OWNER: &str = "11111111-1111-1111-1111-111111111111:owner";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&config(dir.path())).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let sid = crate::support::create_session(&http, &base, OWNER).await;
    for _ in 0..3 {
        http.get(format!("{base}/v1/sessions/{sid}"))
            .bearer_auth(OWNER)
            .send()
            .await
            .expect("get");
    }
    http.get(format!(
        "{base}/v1/sessions/sess_0000000000000000000000000000"
    ))
    .bearer_auth(OWNER)
    .send()
    .await
    .expect("missing");
    let resp = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200, "no token needed");
    let text = resp.text().await.expect("text");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle) && !l.starts_with('#'))
            .map(str::to_owned)
    };
    let gets = line(
        "afs_server_requests_total{method=\"GET\",route=\"/v1/sessions/{id}\",status=\"200\"}",
    )
    .unwrap_or_else(|| panic!("no GET line in:\n{text}"));
    assert!(gets.ends_with(" 3"), "{gets}");
    assert!(line("status=\"404\"").is_some(), "{text}");
    assert!(
        line("afs_server_request_duration_seconds_bucket").is_some(),
        "{text}"
    );
    assert!(!text.contains(&sid), "ids never become labels");
    // Gauges are refreshed at start and then every few seconds: the session made above may
    // or may not be counted yet, but the gauges are there.
    assert!(line("afs_server_cas_blobs").is_some(), "{text}");
    assert!(line("afs_server_cas_bytes").is_some(), "{text}");
    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_count_sessions_by_status_and_the_content_store() {
    use aether_ports::*;
    let dir = tempfile::tempdir().expect("temp dir");
    let service = afs_server::build_service(&config(dir.path())).expect("service");
    let ctx = Ctx::new(aether_domain::Principal::full_access(
        aether_domain::TenantId::parse("11111111-1111-1111-1111-111111111111").expect("tenant"),
        "owner",
    ));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let s = service
            .create_session(&ctx, CreateSessionRequest::default())
            .await
            .expect("create");
        ids.push(s.id);
    }
    service
        .archive_session(&ctx, &ids[0])
        .await
        .expect("archive");
    service
        .write_file(
            &ctx,
            &ids[1],
            WriteFileRequest {
                path: "/f".into(),
                data: b"eleven byte".to_vec().into(),
                mode: None,
                parents: false,
                expected_hash: None,
            },
        )
        .await
        .expect("write");
    let g = service.gauges().await.expect("gauges");
    let count = |status: aether_domain::SessionStatus| {
        g.sessions
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count(aether_domain::SessionStatus::Active), 2, "{g:?}");
    assert_eq!(count(aether_domain::SessionStatus::Archived), 1, "{g:?}");
    assert_eq!((g.blob_count, g.blob_bytes), (1, 11), "{g:?}");
}
