//! Large uploads over HTTP stream into the blob store: chunked bodies round-trip, a body past
//! the limit gets 413 and leaves nothing behind, and neither leaves temporary files.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{config, pattern, start};

const OWNER: &str = "11111111-1111-1111-1111-111111111111:owner";
const LIMIT: usize = 4 << 20;

/// A chunked body (no Content-Length) of `data` in 64 KiB pieces.
fn chunked(data: &[u8]) -> reqwest::Body {
    let pieces: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    reqwest::Body::wrap_stream(futures::stream::iter(pieces))
}

fn temporary_files(data_dir: &std::path::Path) -> usize {
    std::fs::read_dir(data_dir.join("blobs").join("tmp"))
        .expect("the blob store's temporary directory")
        .count()
}

/// Waits (bounded) for the blob writer to finish discarding an aborted upload.
async fn no_temporary_files_left(data_dir: &std::path::Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if temporary_files(data_dir) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_stream_round_trip_and_respect_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = config(dir.path());
    cfg.max_file_bytes = LIMIT;
    let server = start(&cfg).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let sid = crate::support::create_session(&http, &base, OWNER).await;
    let files = format!("{base}/v1/sessions/{sid}/files");
    let put = |path: &str, body: reqwest::Body| {
        http.request(Method::PUT, format!("{files}?path={path}"))
            .bearer_auth(OWNER)
            .body(body)
            .send()
    };
    let get = |path: &str| {
        http.get(format!("{files}?path={path}"))
            .bearer_auth(OWNER)
            .send()
    };

    // Chunked, without a Content-Length, exactly at the limit.
    let data = pattern(LIMIT);
    let resp = put("/chunked", chunked(&data)).await.expect("put");
    assert_eq!(resp.status(), StatusCode::OK);
    let entry: Value = resp.json().await.expect("entry");
    let size = entry["size"]
        .as_u64()
        .or_else(|| entry["size"].as_str().and_then(|s| s.parse().ok()));
    assert_eq!(size, Some(LIMIT as u64), "{entry}");
    let back = get("/chunked")
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(
        back[..] == data[..],
        "the chunked upload reads back differently"
    );

    // With a Content-Length above the in-memory threshold.
    let sized = pattern(3 << 20);
    let resp = put("/sized", sized.clone().into()).await.expect("put");
    assert_eq!(resp.status(), StatusCode::OK);
    let back = get("/sized")
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(back[..] == sized[..]);

    // One byte past the limit, chunked: 413 naming the limit; nothing stored or left over.
    let resp = put("/chunked", chunked(&pattern(LIMIT + 1)))
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = resp.json().await.expect("error body");
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&LIMIT.to_string()), "{message}");
    let back = get("/chunked")
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(back[..] == data[..], "the refused upload changed the file");
    assert!(
        no_temporary_files_left(dir.path()).await,
        "the refused upload left a temporary file"
    );

    // A client that stops part-way (Content-Length promised more): nothing changes.
    let partial: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(pattern(2 << 20))),
        Err(std::io::Error::other("the client gave up")),
    ];
    let cut = http
        .request(Method::PUT, format!("{files}?path=/sized"))
        .bearer_auth(OWNER)
        .header(reqwest::header::CONTENT_LENGTH, 3 << 20)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(partial)))
        .send()
        .await;
    assert!(cut.is_err(), "the client saw its own upload fail");
    let back = get("/sized")
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(back[..] == sized[..], "a cut-off upload changed the file");
    assert!(
        no_temporary_files_left(dir.path()).await,
        "the cut-off upload left a temporary file"
    );
    server.stop(Duration::from_secs(5)).await;
}
