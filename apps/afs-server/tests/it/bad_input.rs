//! Every row of the bad-input table gets a 4xx with the SPEC error body; afterwards the server
//! is still up and nothing already acknowledged was lost.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

struct Row {
    name: &'static str,
    method: Method,
    path: String,
    token: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    error_status: &'static str,
    /// A fragment the message must contain, naming what was wrong.
    names: &'static str,
}

fn row(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    status: u16,
    error_status: &'static str,
    names: &'static str,
) -> Row {
    Row {
        name,
        method,
        path: path.into(),
        token: Some(OWNER),
        headers: vec![],
        body: vec![],
        status,
        error_status,
        names,
    }
}

impl Row {
    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }
    fn token(mut self, t: Option<&'static str>) -> Self {
        self.token = t;
        self
    }
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.headers.push((k, v.into()));
        self
    }
}

const OWNER: &str = "11111111-1111-1111-1111-111111111111:owner";
const STRANGER: &str = "22222222-2222-2222-2222-222222222222:stranger";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(dir.path());
    cfg.max_json_bytes = 64 * 1024;
    cfg.max_file_bytes = 1024 * 1024;
    cfg.max_cache_value_bytes = 1024;
    let server = start(&cfg).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let call = |method: Method, path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut rb = http.request(method, format!("{base}{path}")).body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb
    };
    let created: Value = call(Method::POST, "/v1/sessions", Some(OWNER), b"{}".to_vec())
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let sid = created["id"].as_str().expect("id").to_owned();
    let archived: Value = call(Method::POST, "/v1/sessions", Some(OWNER), b"{}".to_vec())
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let archived = archived["id"].as_str().expect("id").to_owned();
    call(
        Method::POST,
        &format!("/v1/sessions/{archived}:archive"),
        Some(OWNER),
        vec![],
    )
    .send()
    .await
    .expect("archive");
    let canary = call(
        Method::PUT,
        &format!("/v1/sessions/{sid}/files?path=/canary.txt"),
        Some(OWNER),
        b"precious".to_vec(),
    )
    .send()
    .await
    .expect("put");
    assert_eq!(canary.status(), StatusCode::OK);
    call(
        Method::PUT,
        &format!("/v1/sessions/{sid}/files?path=/dir/child&parents=true"),
        Some(OWNER),
        b"c".to_vec(),
    )
    .send()
    .await
    .expect("put");
    let source = {
        let created: Value = call(
            Method::POST,
            "/v1/sources",
            Some(OWNER),
            br#"{"displayName": "fixture", "kind": "SOURCE_KIND_ARCHIVE"}"#.to_vec(),
        )
        .send()
        .await
        .expect("create source")
        .json()
        .await
        .expect("json");
        created["id"].as_str().expect("id").to_owned()
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "f", &b"x"[..]).expect("tar");
    let job: Value = call(
        Method::PUT,
        &format!("/v1/sources/{source}/archive"),
        Some(OWNER),
        tar.into_inner().expect("tar"),
    )
    .send()
    .await
    .expect("upload")
    .json()
    .await
    .expect("json");
    assert_eq!(job["kind"], "IMPORT");
    let mut from_source = String::new();
    for _ in 0..200 {
        let r = call(
            Method::POST,
            "/v1/sessions",
            Some(OWNER),
            format!(r#"{{"sourceRef": {{"sourceId": "{source}"}}}}"#).into_bytes(),
        )
        .send()
        .await
        .expect("session from source");
        if r.status() == StatusCode::OK {
            let v: Value = r.json().await.expect("json");
            from_source = v["id"].as_str().expect("id").to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!from_source.is_empty(), "the import finished");
    let files = format!("/v1/sessions/{sid}/files");
    let cache = format!("/v1/sessions/{sid}/cache");
    let long_component = "n".repeat(256);
    let long_path = vec!["p"; 2100].join("/");
    let rows = vec![
        row(
            "dot-dot component",
            Method::GET,
            format!("{files}?path=/a/../canary.txt"),
            400,
            "INVALID_ARGUMENT",
            "\"..\"",
        ),
        row(
            "dot component",
            Method::GET,
            format!("{files}?path=/./canary.txt"),
            400,
            "INVALID_ARGUMENT",
            "\".\"",
        ),
        row(
            "double slash",
            Method::GET,
            format!("{files}?path=//canary.txt"),
            400,
            "INVALID_ARGUMENT",
            "empty component",
        ),
        row(
            "no leading slash",
            Method::GET,
            format!("{files}?path=canary.txt"),
            400,
            "INVALID_ARGUMENT",
            "must start with /",
        ),
        row(
            "NUL byte",
            Method::PUT,
            format!("{files}?path=/a%00b"),
            400,
            "INVALID_ARGUMENT",
            "NUL",
        ),
        row(
            "component over 255 bytes",
            Method::PUT,
            format!("{files}?path=/{long_component}"),
            400,
            "INVALID_ARGUMENT",
            "255",
        ),
        row(
            "path over 4096 bytes",
            Method::PUT,
            format!("{files}?path=/{long_path}"),
            400,
            "INVALID_ARGUMENT",
            "4096",
        ),
        row(
            "invalid UTF-8 in query",
            Method::GET,
            format!("{files}?path=/%FF%FE"),
            400,
            "INVALID_ARGUMENT",
            "query",
        ),
        row(
            "invalid UTF-8 in JSON",
            Method::POST,
            format!("/v1/sessions/{sid}/dirs"),
            400,
            "INVALID_ARGUMENT",
            "JSON",
        )
        .body(b"{\"path\": \"/\xff\xfe\"}".to_vec()),
        row(
            "malformed JSON",
            Method::POST,
            format!("/v1/sessions/{sid}/dirs"),
            400,
            "INVALID_ARGUMENT",
            "JSON",
        )
        .body("{\"path\": "),
        row(
            "unknown JSON field",
            Method::POST,
            format!("/v1/sessions/{sid}/dirs"),
            400,
            "INVALID_ARGUMENT",
            "pathh",
        )
        .body("{\"pathh\": \"/x\"}"),
        row(
            "JSON of the wrong type",
            Method::POST,
            format!("/v1/sessions/{sid}/dirs"),
            400,
            "INVALID_ARGUMENT",
            "JSON",
        )
        .body("[1, 2]"),
        row(
            "oversized JSON",
            Method::POST,
            format!("/v1/sessions/{sid}/batch"),
            413,
            "INVALID_ARGUMENT",
            "65536",
        )
        .body(format!(
            "{{\"operations\": [], \"pad\": \"{}\"}}",
            "x".repeat(70_000)
        )),
        row(
            "file body over the limit",
            Method::PUT,
            format!("{files}?path=/big"),
            413,
            "INVALID_ARGUMENT",
            "1048576",
        )
        .body(vec![0u8; 1024 * 1024 + 1]),
        row(
            "unknown query parameter",
            Method::GET,
            format!("{files}?path=/canary.txt&bogus=1"),
            400,
            "INVALID_ARGUMENT",
            "bogus",
        ),
        row(
            "unknown session id",
            Method::GET,
            "/v1/sessions/sess_nosuchsession",
            404,
            "NOT_FOUND",
            "sess_nosuchsession",
        ),
        row(
            "malformed session id",
            Method::GET,
            "/v1/sessions/..%2F..%2Fetc",
            400,
            "INVALID_ARGUMENT",
            "malformed",
        ),
        row(
            "another tenant's session",
            Method::GET,
            format!("/v1/sessions/{sid}"),
            404,
            "NOT_FOUND",
            "not found",
        )
        .token(Some(STRANGER)),
        row(
            "another tenant's file",
            Method::GET,
            format!("{files}?path=/canary.txt"),
            404,
            "NOT_FOUND",
            "not found",
        )
        .token(Some(STRANGER)),
        row(
            "missing token",
            Method::GET,
            "/v1/sessions",
            401,
            "UNAUTHENTICATED",
            "Authorization",
        )
        .token(None),
        row(
            "garbled token",
            Method::GET,
            "/v1/sessions",
            401,
            "UNAUTHENTICATED",
            "token",
        )
        .token(Some("not a token")),
        row(
            "token with a bad tenant",
            Method::GET,
            "/v1/sessions",
            401,
            "UNAUTHENTICATED",
            "UUID",
        )
        .token(Some("nope:alice")),
        row(
            "wrong method",
            Method::PATCH,
            "/v1/sessions",
            405,
            "INVALID_ARGUMENT",
            "PATCH",
        ),
        row(
            "unknown route",
            Method::GET,
            "/v1/nothing-here",
            404,
            "NOT_FOUND",
            "/v1/nothing-here",
        ),
        row(
            "unknown custom method",
            Method::POST,
            format!("/v1/sessions/{sid}:explode"),
            404,
            "NOT_FOUND",
            "explode",
        ),
        row(
            "range past the end",
            Method::GET,
            format!("{files}?path=/canary.txt"),
            416,
            "OUT_OF_RANGE",
            "8 bytes",
        )
        .header("range", "bytes=100-"),
        row(
            "rename a directory into itself",
            Method::POST,
            format!("/v1/sessions/{sid}/rename"),
            400,
            "INVALID_ARGUMENT",
            "own subdirectory",
        )
        .body("{\"from\": \"/dir\", \"to\": \"/dir/sub\"}"),
        row(
            "rmdir of a non-empty directory",
            Method::DELETE,
            format!("/v1/sessions/{sid}/dirs?path=/dir"),
            400,
            "FAILED_PRECONDITION",
            "not empty",
        ),
        row(
            "write to an archived session",
            Method::PUT,
            format!("/v1/sessions/{archived}/files?path=/x"),
            400,
            "FAILED_PRECONDITION",
            "ARCHIVED",
        )
        .body("x"),
        row(
            "stale If-Match",
            Method::PUT,
            format!("{files}?path=/canary.txt"),
            409,
            "ABORTED",
            "expected hash",
        )
        .header("if-match", format!("\"{}\"", "0".repeat(64)))
        .body("overwrite"),
        row(
            "page size over the maximum",
            Method::GET,
            "/v1/sessions?pageSize=5000",
            400,
            "INVALID_ARGUMENT",
            "1000",
        ),
        row(
            "garbled page token",
            Method::GET,
            "/v1/sessions?pageToken=%25%25",
            400,
            "INVALID_ARGUMENT",
            "pageToken",
        ),
        row(
            "bad status filter",
            Method::GET,
            "/v1/sessions?status=RUNNING",
            400,
            "INVALID_ARGUMENT",
            "RUNNING",
        ),
        row(
            "bad mode",
            Method::PUT,
            format!("{files}?path=/m&mode=rwx"),
            400,
            "INVALID_ARGUMENT",
            "mode",
        ),
        row(
            "bad Idempotency-Key",
            Method::PUT,
            format!("{files}?path=/k"),
            400,
            "INVALID_ARGUMENT",
            "Idempotency-Key",
        )
        .header("idempotency-key", "a b"),
        row(
            "cache key over 512 bytes",
            Method::PUT,
            format!("{cache}/{}", "k".repeat(513)),
            400,
            "INVALID_ARGUMENT",
            "512",
        )
        .body(r#"{"value": "eA=="}"#),
        row(
            "cache key with NUL",
            Method::GET,
            format!("{cache}/a%00b"),
            400,
            "INVALID_ARGUMENT",
            "NUL",
        ),
        row(
            "cache value over the limit",
            Method::PUT,
            format!("{cache}/big"),
            400,
            "INVALID_ARGUMENT",
            "1024",
        )
        .body(format!(r#"{{"value": "{}"}}"#, "A".repeat(1368))),
        row(
            "cache value not base64",
            Method::PUT,
            format!("{cache}/k"),
            400,
            "INVALID_ARGUMENT",
            "base64",
        )
        .body(r#"{"value": "%%%"}"#),
        row(
            "cache TTL of zero",
            Method::PUT,
            format!("{cache}/k"),
            400,
            "INVALID_ARGUMENT",
            "ttlSeconds",
        )
        .body(r#"{"value": "eA==", "ttlSeconds": 0}"#),
        row(
            "compare-and-set on a missing key",
            Method::POST,
            format!("{cache}/absent/compare-and-set"),
            404,
            "NOT_FOUND",
            "absent",
        )
        .body(r#"{"expectedVersion": 3, "value": "eA=="}"#),
        row(
            "empty cache batch",
            Method::POST,
            format!("{cache}/batch-get"),
            400,
            "INVALID_ARGUMENT",
            "batch",
        )
        .body(r#"{"keys": []}"#),
        row(
            "cache key prefix over 512 bytes",
            Method::GET,
            format!("{cache}/keys?prefix={}", "p".repeat(513)),
            400,
            "INVALID_ARGUMENT",
            "prefix",
        ),
        row(
            "cache of another tenant's session",
            Method::GET,
            format!("{cache}/k"),
            404,
            "NOT_FOUND",
            "not found",
        )
        .token(Some(STRANGER)),
        row(
            "cache write to an archived session",
            Method::PUT,
            format!("/v1/sessions/{archived}/cache/k"),
            400,
            "FAILED_PRECONDITION",
            "read-only",
        )
        .body(r#"{"value": "eA=="}"#),
        row(
            "approval reason not upper case",
            Method::POST,
            format!("/v1/sessions/{sid}/request-approval"),
            400,
            "INVALID_ARGUMENT",
            "reason",
        )
        .body(r#"{"reason": "please merge"}"#),
        row(
            "malformed approval id",
            Method::POST,
            format!("/v1/sessions/{sid}/approvals/nope/grant"),
            400,
            "INVALID_ARGUMENT",
            "approval id",
        )
        .body("{}"),
        row(
            "unknown approval",
            Method::POST,
            format!("/v1/sessions/{sid}/approvals/appr_0000000000000000000000000000/deny"),
            404,
            "NOT_FOUND",
            "appr_0000000000000000000000000000",
        )
        .body("{}"),
        row(
            "commit without an approval",
            Method::POST,
            format!("/v1/sessions/{sid}/commit"),
            400,
            "FAILED_PRECONDITION",
            "needs a granted approval",
        )
        .body(r#"{"message": "ship it"}"#),
        row(
            "commit with an unknown field",
            Method::POST,
            format!("/v1/sessions/{sid}/commit"),
            400,
            "INVALID_ARGUMENT",
            "msg",
        )
        .body(r#"{"msg": "ship it"}"#),
        row(
            "annotation against changed content",
            Method::POST,
            format!("/v1/sessions/{sid}/annotations"),
            409,
            "ABORTED",
            "canary.txt",
        )
        .body(format!(
            r#"{{"path": "/canary.txt", "comment": "typo", "expectedContentHash": "{}"}}"#,
            "0".repeat(64)
        )),
        row(
            "annotation status unknown",
            Method::PATCH,
            format!("/v1/sessions/{sid}/annotations/ann_0000000000000000000000000000"),
            400,
            "INVALID_ARGUMENT",
            "DONE",
        )
        .body(r#"{"status": "DONE"}"#),
        row(
            "unknown source kind",
            Method::POST,
            "/v1/sources",
            400,
            "INVALID_ARGUMENT",
            "SOURCE_KIND_SVN",
        )
        .body(r#"{"displayName": "x", "kind": "SOURCE_KIND_SVN"}"#),
        row(
            "host source without a path",
            Method::POST,
            "/v1/sources",
            400,
            "INVALID_ARGUMENT",
            "origin.path",
        )
        .body(r#"{"displayName": "x", "kind": "SOURCE_KIND_LOCAL_PATH"}"#),
        row(
            "malformed source id",
            Method::GET,
            "/v1/sources/not-a-source",
            400,
            "INVALID_ARGUMENT",
            "not-a-source",
        ),
        row(
            "unknown source",
            Method::GET,
            "/v1/sources/src_0000000000000000000000000000",
            404,
            "NOT_FOUND",
            "src_0000000000000000000000000000",
        ),
        row(
            "session from an unknown source",
            Method::POST,
            "/v1/sessions",
            404,
            "NOT_FOUND",
            "src_0000000000000000000000000000",
        )
        .body(r#"{"sourceRef": {"sourceId": "src_0000000000000000000000000000"}}"#),
        row(
            "promotion of an unknown session",
            Method::POST,
            format!("/v1/sources/{source}/promoteSession"),
            404,
            "NOT_FOUND",
            "sess_0000000000000000000000000000",
        )
        .body(r#"{"sessionId": "sess_0000000000000000000000000000"}"#),
        row(
            "promotion without approval",
            Method::POST,
            format!("/v1/sources/{source}/promoteSession"),
            400,
            "FAILED_PRECONDITION",
            "needs a granted approval",
        )
        .body(format!(r#"{{"sessionId": "{from_source}"}}"#)),
        row(
            "a source's hidden tree named as a session",
            Method::GET,
            "/v1/sessions/sess_src0000000000000000000000000000",
            404,
            "NOT_FOUND",
            "not found",
        ),
        row(
            "bus topic with a space",
            Method::POST,
            format!("/v1/sessions/{sid}/bus:publish"),
            400,
            "INVALID_ARGUMENT",
            "topic",
        )
        .body(r#"{"topic": "a b", "payload": ""}"#),
        row(
            "bus glob with brackets",
            Method::GET,
            format!("/v1/sessions/{sid}/bus?topics=tests[0-9]"),
            400,
            "INVALID_ARGUMENT",
            "glob",
        ),
        row(
            "bus scope unknown",
            Method::GET,
            format!("/v1/sessions/{sid}/bus?scope=TENANT"),
            400,
            "INVALID_ARGUMENT",
            "SESSION_ONLY",
        ),
        row(
            "secret name with a slash",
            Method::PUT,
            format!("/v1/sessions/{sid}/secrets/a%2Fb"),
            400,
            "INVALID_ARGUMENT",
            "secret name",
        )
        .body(r#"{"value": "eA=="}"#),
        row(
            "secret scope unknown",
            Method::GET,
            format!("/v1/sessions/{sid}/secrets/X?scope=global"),
            400,
            "INVALID_ARGUMENT",
            "global",
        ),
        row(
            "secret of another tenant's session",
            Method::GET,
            format!("/v1/sessions/{sid}/secrets"),
            404,
            "NOT_FOUND",
            "not found",
        )
        .token(Some(STRANGER)),
        row(
            "health status unknown",
            Method::POST,
            format!("/v1/sessions/{sid}/health/report"),
            400,
            "INVALID_ARGUMENT",
            "GREEN",
        )
        .body(r#"{"status": "GREEN"}"#),
        row(
            "test results with a negative count",
            Method::POST,
            format!("/v1/sessions/{sid}/health:testResults"),
            400,
            "INVALID_ARGUMENT",
            "JSON",
        )
        .body(r#"{"passed": -1, "failed": 0}"#),
        row(
            "usage window reversed",
            Method::GET,
            "/v1/usage?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            400,
            "INVALID_ARGUMENT",
            "since",
        ),
        row(
            "usage time not RFC 3339",
            Method::GET,
            "/v1/usage?since=yesterday",
            400,
            "INVALID_ARGUMENT",
            "since",
        ),
        row(
            "wrong method on a cache route",
            Method::PATCH,
            format!("{cache}/stats"),
            405,
            "INVALID_ARGUMENT",
            "PATCH",
        ),
    ];
    let mut failures = Vec::new();
    for r in rows {
        let mut rb = call(r.method.clone(), &r.path, r.token, r.body.clone());
        for (k, v) in &r.headers {
            rb = rb.header(*k, v);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: request failed: {e}", r.name));
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let err = &body["error"];
        let message = err["message"].as_str().unwrap_or_default();
        let ok = status == r.status
            && err["code"].as_u64() == Some(u64::from(r.status))
            && err["status"].as_str() == Some(r.error_status)
            && message.contains(r.names)
            && err["details"].is_array();
        if !ok {
            failures.push(format!(
                "{}: want {} {} naming {:?}, got {status} {body}",
                r.name, r.status, r.error_status, r.names
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "bad-input rows failed:\n{}",
        failures.join("\n")
    );
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK, "the server is still up");
    let canary = call(
        Method::GET,
        &format!("{files}?path=/canary.txt"),
        Some(OWNER),
        vec![],
    )
    .send()
    .await
    .expect("canary");
    assert_eq!(
        canary.bytes().await.expect("bytes").as_ref(),
        b"precious",
        "nothing acknowledged was lost"
    );
    server.stop(std::time::Duration::from_secs(5)).await;
}
