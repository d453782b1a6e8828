//! The conformance suite against every implementation reachable from here.

use std::collections::HashMap;

use aether_conformance::{Harness, run_all};
use aether_http_client::{ClientConfig, HttpClient, TokenSource};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_service_passes_every_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = afs_server::build_service(&config(dir.path())).expect("service");
    let h = Harness {
        api: service,
        owner: ctx(TENANT_A, "owner"),
        reviewer: ctx(TENANT_A, "reviewer"),
        stranger: ctx(TENANT_B, "stranger"),
        reader: Some(reader_ctx()),
    };
    run_all(&h).await.assert_all_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_over_http_with_static_tokens_passes_every_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tokens, map) = tokens_file(dir.path());
    let mut cfg = config(dir.path());
    cfg.auth = "static".into();
    cfg.tokens_file = Some(tokens);
    let server = start(&cfg).await;
    let client = HttpClient::new(ClientConfig::new(
        format!("http://{}", server.addr),
        TokenSource::PerPrincipal(map),
    ))
    .expect("client");
    let h = Harness {
        api: client,
        owner: ctx(TENANT_A, "owner"),
        reviewer: ctx(TENANT_A, "reviewer"),
        stranger: ctx(TENANT_B, "stranger"),
        reader: Some(reader_ctx()),
    };
    run_all(&h).await.assert_all_passed();
    server.stop(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_over_http_with_dev_tokens_passes_every_check() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&config(dir.path())).await;
    let client = HttpClient::new(ClientConfig::new(
        format!("http://{}", server.addr),
        TokenSource::FromPrincipal,
    ))
    .expect("client");
    let h = Harness {
        api: client,
        owner: ctx(TENANT_A, "owner"),
        reviewer: ctx(TENANT_A, "reviewer"),
        stranger: ctx(TENANT_B, "stranger"),
        reader: None,
    };
    run_all(&h).await.assert_all_passed();
    server.stop(std::time::Duration::from_secs(5)).await;
}

/// Runs the suite against a live deployment when `AETHER_TEST_ENDPOINT` names one (dev tokens,
/// or per-principal tokens from `AETHER_TEST_TOKENS=owner=T1,stranger=T2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_endpoint_passes_every_check_when_configured() {
    let Ok(endpoint) = std::env::var("AETHER_TEST_ENDPOINT") else {
        return;
    };
    let tokens = match std::env::var("AETHER_TEST_TOKENS") {
        Ok(list) => TokenSource::PerPrincipal(
            list.split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<HashMap<_, _>>(),
        ),
        Err(_) => TokenSource::FromPrincipal,
    };
    let client = HttpClient::new(ClientConfig::new(endpoint, tokens)).expect("client");
    let h = Harness {
        api: client,
        owner: ctx(TENANT_A, "owner"),
        reviewer: ctx(TENANT_A, "reviewer"),
        stranger: ctx(TENANT_B, "stranger"),
        reader: None,
    };
    run_all(&h).await.assert_all_passed();
}
