//! A partial write of a large file (`patchSegments`) on the real binary: the server rebuilds
//! the content as a stream, so its memory does not grow with the file, and every byte is right.

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::signals::spawn_with;
use crate::support::pattern;

const TOKEN: &str = "11111111-1111-1111-1111-111111111111:patch";
const FILE: usize = 96 << 20;

/// The process's peak resident memory so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_a_large_file_streams_it_instead_of_holding_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = spawn_with(dir.path(), &[], &[("AFS_SERVER_LOG_LEVEL", "warn")]);
    let http = reqwest::Client::new();
    let sid = crate::support::create_session(&http, &format!("http://{addr}"), TOKEN).await;
    let base = format!("http://{addr}/v1/sessions");

    let mut expected = pattern(FILE);
    let pieces: Vec<Result<Bytes, std::io::Error>> = expected
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let put = http
        .put(format!("{base}/{sid}/files?path=/big.bin"))
        .bearer_auth(TOKEN)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    let before = peak_rss(child.id());

    // An edit at the start, one in the middle, and one past the end (a zero-filled gap).
    let edits: [(usize, &[u8]); 3] = [
        (0, b"HEAD"),
        (FILE / 2 + 3, b"MIDDLE"),
        (FILE + 4096, b"TAIL"),
    ];
    let segments: Vec<Value> = edits
        .iter()
        .map(|(at, data)| {
            json!({"offset": at, "data": base64::engine::general_purpose::STANDARD.encode(data)})
        })
        .collect();
    for _ in 0..2 {
        let patched = http
            .post(format!("{base}/{sid}/patchSegments"))
            .bearer_auth(TOKEN)
            .json(&json!({"path": "/big.bin", "segments": segments}))
            .send()
            .await
            .expect("patch");
        assert!(
            patched.status().is_success(),
            "{}",
            patched.text().await.unwrap()
        );
    }
    let grown = peak_rss(child.id()).saturating_sub(before);

    expected.resize(FILE + 4096, 0);
    for (at, data) in edits {
        if expected.len() < at + data.len() {
            expected.resize(at + data.len(), 0);
        }
        expected[at..at + data.len()].copy_from_slice(data);
    }
    let got = http
        .get(format!("{base}/{sid}/files?path=/big.bin"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(got.len(), expected.len());
    assert!(got[..] == expected[..], "the patched content differs");
    // Less than one copy of the file: the streams' buffers and the blocking threads that read
    // and write them took 27–40 MiB here, more on a busy machine; rebuilding the file in
    // memory took 352 MiB.
    assert!(
        grown < FILE as u64,
        "patching a {} MiB file raised the server's peak memory by {} MiB",
        FILE >> 20,
        grown >> 20
    );
}
