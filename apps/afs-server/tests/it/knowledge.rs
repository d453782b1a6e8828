//! The knowledge cache over real HTTP and SQLite: expiry with the real clock, raw routes with
//! percent-encoded keys, and what survives a server restart.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{config, start};

const OWNER: &str = "11111111-1111-1111-1111-111111111111:owner";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_keys_expire_route_by_encoded_key_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let server = start(&cfg).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let sid = crate::support::create_session(&http, &base, OWNER).await;
    let cache = format!("{base}/v1/sessions/{sid}/cache");
    let put = |raw_key: &str, body: Value| {
        http.put(format!("{cache}/{raw_key}"))
            .bearer_auth(OWNER)
            .json(&body)
            .send()
    };
    // "aGk=" is base64 of "hi".
    let r = put("tests%2Funit", json!({"value": "aGk=", "ttlSeconds": 1}))
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let r = put("durable", json!({"value": "aGk="})).await.expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let got: Value = http
        .get(format!("{cache}/tests%2Funit"))
        .bearer_auth(OWNER)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["key"], "tests/unit", "the key is percent-decoded");
    assert_eq!(got["value"], "aGk=");
    assert_eq!(got["version"], 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = http
        .get(format!("{cache}/tests%2Funit"))
        .bearer_auth(OWNER)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "expired after its TTL");
    let err: Value = r.json().await.expect("error body");
    assert_eq!(err["error"]["status"], "NOT_FOUND");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tests/unit")
    );
    // Bad bodies are named.
    let r = put("x", json!({"value": "not base64!"}))
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = put("x", json!({"value": "aGk=", "colour": "red"}))
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: Value = r.json().await.expect("error body");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("colour")
    );
    server.stop(Duration::from_secs(5)).await;

    let server = start(&config(dir.path())).await;
    let base = format!("http://{}", server.addr);
    let got: Value = http
        .get(format!("{base}/v1/sessions/{sid}/cache/durable/metadata"))
        .bearer_auth(OWNER)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["version"], 1, "acknowledged keys survive a restart");
    assert_eq!(got["size"], 2);
    server.stop(Duration::from_secs(5)).await;
}
