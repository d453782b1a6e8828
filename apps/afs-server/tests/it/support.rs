//! Shared set-up: a server on a loopback port over a temp data dir, principals and tokens.

use std::path::Path;

use aether_domain::{Principal, Scope, TenantId};
use aether_ports::Ctx;
use afs_server::{RunningServer, ServerConfig};

pub(crate) const TENANT_A: &str = "11111111-1111-1111-1111-111111111111";
pub(crate) const TENANT_B: &str = "22222222-2222-2222-2222-222222222222";

pub(crate) fn ctx(tenant: &str, name: &str) -> Ctx {
    Ctx::new(Principal::full_access(
        TenantId::parse(tenant).expect("valid tenant"),
        name,
    ))
}

pub(crate) fn reader_ctx() -> Ctx {
    let mut c = ctx(TENANT_A, "reader");
    c.principal.scopes = [
        Scope::SessionRead,
        Scope::FilesystemRead,
        Scope::FilesystemMetadata,
    ]
    .into_iter()
    .collect();
    c
}

pub(crate) fn config(dir: &Path) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        ..ServerConfig::default()
    }
}

pub(crate) fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A tokens file for owner, stranger and reader; returns (path, token by principal name).
pub(crate) fn tokens_file(
    dir: &Path,
) -> (
    std::path::PathBuf,
    std::collections::HashMap<String, String>,
) {
    let rows = [
        ("owner", TENANT_A, "tok-owner-secret", vec!["tenant.admin"]),
        (
            "reviewer",
            TENANT_A,
            "tok-reviewer-secret",
            vec!["tenant.admin"],
        ),
        (
            "stranger",
            TENANT_B,
            "tok-stranger-secret",
            vec!["tenant.admin"],
        ),
        (
            "reader",
            TENANT_A,
            "tok-reader-secret",
            vec![
                "tenant.session.read",
                "tenant.filesystem.read",
                "tenant.filesystem.metadata",
            ],
        ),
    ];
    let mut text = String::new();
    let mut map = std::collections::HashMap::new();
    for (name, tenant, token, scopes) in rows {
        let scopes = scopes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "[[tokens]]\nsha256 = \"{}\"\ntenant = \"{tenant}\"\nprincipal = \"{name}\"\nscopes = [{scopes}]\n\n",
            sha256_hex(token)
        ));
        map.insert(name.to_owned(), token.to_owned());
    }
    let path = dir.join("tokens.toml");
    std::fs::write(&path, text).expect("write tokens file");
    (path, map)
}

/// `len` bytes that neither repeat within a block nor compress: content for large-file tests.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// Creates an empty session over HTTP at `base` (`http://host:port`); its id.
pub(crate) async fn create_session(http: &reqwest::Client, base: &str, token: &str) -> String {
    let created: serde_json::Value = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(token)
        .body("{}")
        .send()
        .await
        .expect("create a session")
        .json()
        .await
        .expect("the created session as JSON");
    created["id"].as_str().expect("the session's id").to_owned()
}

pub(crate) async fn start(cfg: &ServerConfig) -> RunningServer {
    afs_server::start(cfg).await.expect("server starts")
}
