//! `aether session` review commands against a real server: request an approval, see the gate
//! refuse a commit, approve as another principal, commit.

use std::process::Command;

use crate::{Server, aether};

const REVIEWER: &str = "00000000-0000-4000-8000-000000000001:reviewer";

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "aether failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn approve_then_commit_from_the_cli() {
    let server = Server::start();
    let session = server.new_session();
    server.write(&session, "/notes.md", b"# plan\n");
    let asked = ok(&aether(
        &server.endpoint,
        &[
            "session",
            "request-approval",
            "--session-id",
            &session,
            "--reason",
            "COMMIT_TO_MAIN",
            "--details",
            r#"{"summary": "first plan"}"#,
            "--json",
        ],
    ));
    let approval: serde_json::Value = serde_json::from_str(&asked).expect("approval JSON");
    assert_eq!(approval["status"], "PENDING");
    let id = approval["id"].as_str().expect("id").to_owned();

    let refused = aether(
        &server.endpoint,
        &[
            "session",
            "commit",
            "--session-id",
            &session,
            "-m",
            "too early",
        ],
    );
    assert!(!refused.status.success(), "the gate refuses a commit");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("needs a granted approval"), "{err}");

    let own = aether(
        &server.endpoint,
        &[
            "session",
            "approve",
            "--session-id",
            &session,
            "--approval-id",
            &id,
        ],
    );
    assert!(
        !own.status.success(),
        "a requester cannot approve their own request"
    );
    assert!(
        String::from_utf8_lossy(&own.stderr).contains("another principal"),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );

    let granted = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args([
            "session",
            "approve",
            "--session-id",
            &session,
            "--approval-id",
            &id,
        ])
        .args(["--comment", "fine"])
        .env("AFS_AETHER_SERVER_ENDPOINT", &server.endpoint)
        .env("AFS_AUTH_TOKEN", REVIEWER)
        .env_remove("AFS_AETHER_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run aether");
    let line = ok(&granted);
    assert!(
        line.contains("GRANTED") && line.contains("decided by reviewer"),
        "{line}"
    );

    let committed = ok(&aether(
        &server.endpoint,
        &[
            "session",
            "commit",
            "--session-id",
            &session,
            "-m",
            "the plan",
            "--json",
        ],
    ));
    let commit: serde_json::Value = serde_json::from_str(&committed).expect("commit JSON");
    assert_eq!(commit["approvalId"].as_str(), Some(id.as_str()));
    assert_eq!(commit["committedBy"], "tester");
    let listed = ok(&aether(
        &server.endpoint,
        &["session", "approvals", "--session-id", &session],
    ));
    assert!(
        listed.contains(&id) && listed.contains("GRANTED"),
        "{listed}"
    );
}
