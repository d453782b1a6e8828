//! Router tests without a socket (`tower::ServiceExt::oneshot`) over the in-memory fake.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use aether_fakes::FakeApi;
use aether_http_server::{
    AuthMode, Draining, HttpConfig, HttpLimits, documented_operations, router,
};

const TOKEN: &str = "Bearer 11111111-1111-1111-1111-111111111111:alice";

fn app() -> axum::Router {
    router(
        aether_fakes::fake_api(),
        HttpConfig {
            auth: AuthMode::Dev,
            limits: HttpLimits::default(),
            draining: Draining::default(),
        },
    )
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", TOKEN)
        .body(Body::from(body.to_owned()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn every_documented_verb_is_dispatched() {
    let app = app();
    let (_, s) = call(&app, "POST", "/v1/sessions", "{}").await;
    let id = s["id"].as_str().expect("id");
    let verbs: Vec<_> = documented_operations::<FakeApi>()
        .into_iter()
        .filter(|(_, _, _, verb)| *verb)
        .collect();
    assert!(verbs.len() >= 10, "{verbs:?}");
    for (method, path, op, _) in verbs {
        let verb = path.rsplit(':').next().expect("verb");
        let (status, body) = call(&app, &method, &format!("/v1/sessions/{id}:{verb}"), "{}").await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("unknown session method"),
            "{op} is documented but not dispatched: {status} {body}"
        );
    }
    let (status, body) = call(&app, "POST", &format!("/v1/sessions/{id}:explode"), "{}").await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn openapi_document_lists_every_operation_with_schemas() {
    let app = app();
    let req = Request::builder()
        .uri("/v1/openapi.json")
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_eq!(doc["openapi"], "3.0.3");
    for (method, path, op, _) in documented_operations::<FakeApi>() {
        let entry = &doc["paths"][path][method.to_ascii_lowercase()];
        assert_eq!(entry["operationId"], op, "{method} {path}");
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Session",
        "Entry",
        "Checkpoint",
        "Event",
        "BatchRequest",
        "Error",
    ] {
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    let text = serde_json::to_string(&doc).expect("text");
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().expect("name");
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
    assert_eq!(
        doc["components"]["schemas"]["Session"]["properties"]["tenantId"]["type"], "string",
        "camelCase field names"
    );
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = app();
    for uri in ["/healthz", "/readyz"] {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri(uri)
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
            .expect("resp");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    }
}

fn limited(
    per_sec: u32,
    burst: u32,
    timeout: std::time::Duration,
    api: impl aether_ports::AetherApi + aether_ports::Readiness + Clone + 'static,
) -> axum::Router {
    let limits = HttpLimits {
        tenant_requests_per_sec: per_sec,
        tenant_burst: burst,
        request_timeout: timeout,
        ..HttpLimits::default()
    };
    router(
        api,
        HttpConfig {
            auth: AuthMode::Dev,
            limits,
            draining: Draining::default(),
        },
    )
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_and_others_do_not() {
    let app = limited(
        2,
        3,
        std::time::Duration::from_secs(30),
        aether_fakes::fake_api(),
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(call(&app, "GET", "/v1/sessions", "").await.0);
    }
    assert_eq!(
        &statuses[..3],
        &[StatusCode::OK; 3],
        "the burst is admitted"
    );
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS);
    let req = Request::builder()
        .uri("/v1/sessions")
        .header("authorization", TOKEN)
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        resp.headers().get("retry-after").is_some(),
        "429 says when to retry"
    );
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("11111111-1111-1111-1111-111111111111")
    );
    let other = Request::builder()
        .uri("/v1/sessions")
        .header(
            "authorization",
            "Bearer 22222222-2222-2222-2222-222222222222:bob",
        )
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        app.clone().oneshot(other).await.expect("response").status(),
        StatusCode::OK,
        "another tenant is not throttled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_times_out_with_503() {
    let plan = aether_fakes::FaultPlan::default();
    plan.set(
        "list_sessions",
        aether_fakes::Fault {
            latency: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        },
    );
    let app = limited(
        0,
        0,
        std::time::Duration::from_secs(5),
        aether_fakes::Faulty::new(aether_fakes::fake_api(), plan),
    );
    let (status, body) = call(&app, "GET", "/v1/sessions", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("took longer than 5 s"),
        "{body}"
    );
}

#[tokio::test]
async fn draining_ends_changefeed_and_bus_streams() {
    let draining = Draining::default();
    let app = router(
        aether_fakes::fake_api(),
        HttpConfig {
            auth: AuthMode::Dev,
            limits: HttpLimits::default(),
            draining: draining.clone(),
        },
    );
    let (status, session) = call(&app, "POST", "/v1/sessions", "{}").await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let id = session["id"].as_str().expect("id");
    let mut bodies = Vec::new();
    for uri in [
        format!("/v1/sessions/{id}/events?follow=true"),
        format!("/v1/sessions/{id}/bus?topics=t"),
    ] {
        let req = Request::builder()
            .uri(&uri)
            .header("authorization", TOKEN)
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        bodies.push((uri, resp.into_body()));
    }
    draining.start();
    for (uri, body) in bodies {
        // A follower that never ends would hang here; the timeout names the stream instead.
        let collected = tokio::time::timeout(std::time::Duration::from_secs(30), body.collect())
            .await
            .unwrap_or_else(|_| panic!("{uri} still streams after draining started"));
        collected.expect("the stream ends cleanly");
    }
}
