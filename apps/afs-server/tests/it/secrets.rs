//! Secrets at rest: the value is nowhere in the data directory's files, the key file is
//! private, and a server with another key cannot read what it did not seal.

use std::time::Duration;

use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;

use crate::support::*;

const PLAIN: &str = "correct-horse-battery-staple-4f1c";

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        if let Ok(data) = std::fs::read(&entry)
            && data.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_bound_to_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(dir.path());
    let server = start(&cfg).await;
    let api = HttpClient::new(ClientConfig::new(
        format!("http://{}", server.addr),
        TokenSource::FromPrincipal,
    ))
    .expect("client");
    let owner = ctx(TENANT_A, "owner");
    let s = api
        .create_session(&owner, CreateSessionRequest::default())
        .await
        .expect("session");
    api.put_secret(
        &owner,
        &s.id,
        "DEPLOY_KEY",
        SecretScope::default(),
        PutSecretRequest {
            value: PLAIN.as_bytes().to_vec(),
        },
    )
    .await
    .expect("put");
    let back = api
        .get_secret(&owner, &s.id, "DEPLOY_KEY", SecretScope::default())
        .await
        .expect("get");
    assert_eq!(back.value, PLAIN.as_bytes());
    server.stop(Duration::from_secs(5)).await;
    assert!(
        files_containing(dir.path(), PLAIN.as_bytes()).is_empty(),
        "the plain value is on disk"
    );
    let key = dir.path().join("secrets.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Another key: the server starts, and reading says why it cannot.
    std::fs::write(&key, "ab".repeat(32)).expect("replace the key");
    let server = start(&cfg).await;
    let api = HttpClient::new(ClientConfig::new(
        format!("http://{}", server.addr),
        TokenSource::FromPrincipal,
    ))
    .expect("client");
    let e = api
        .get_secret(&owner, &s.id, "DEPLOY_KEY", SecretScope::default())
        .await
        .expect_err("another key cannot open it");
    assert!(e.message.contains("wrong secrets key"), "{e}");
    assert!(!e.message.contains(PLAIN));
    server.stop(Duration::from_secs(5)).await;
    std::fs::write(&key, "not hex").expect("break the key");
    let broken = afs_server::start(&cfg).await;
    let e = broken.err().expect("a broken key stops the start");
    assert!(format!("{e:#}").contains("64 hex digits"), "{e:#}");
}
