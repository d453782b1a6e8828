//! Self-test of the conformance suite against the in-memory fake.

mod patch_lock;

use aether_conformance::{Harness, run_all};
use aether_domain::{Principal, Scope, TenantId};
use aether_ports::Ctx;

fn ctx(tenant: &str, name: &str) -> Ctx {
    Ctx::new(Principal::full_access(
        TenantId::parse(tenant).expect("valid tenant"),
        name,
    ))
}

#[tokio::test]
async fn fake_passes_every_check() {
    let mut reader = ctx("11111111-1111-1111-1111-111111111111", "reader");
    reader.principal.scopes = [
        Scope::SessionRead,
        Scope::FilesystemRead,
        Scope::FilesystemMetadata,
    ]
    .into_iter()
    .collect();
    let h = Harness {
        api: aether_fakes::fake_api(),
        owner: ctx("11111111-1111-1111-1111-111111111111", "owner"),
        reviewer: ctx("11111111-1111-1111-1111-111111111111", "reviewer"),
        stranger: ctx("22222222-2222-2222-2222-222222222222", "stranger"),
        reader: Some(reader),
    };
    let report = run_all(&h).await;
    report.assert_all_passed();
    assert!(
        report.passed.len() >= 38,
        "ran {} checks",
        report.passed.len()
    );
}
