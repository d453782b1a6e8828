//! `aether source` against a real server: an archive import followed to its end, a session
//! over the new revision, and a promotion the approval gate refuses.

use crate::{Server, aether, sh};

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
fn import_an_archive_then_work_from_its_revision() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    sh(
        tmp.path(),
        "mkdir -p t/src && printf 'hello' > t/src/a.txt && tar -C t -cf fixture.tar .",
    );
    let tar = tmp.path().join("fixture.tar");
    let out = aether(
        &server.endpoint,
        &[
            "source",
            "create",
            "--name",
            "fixture",
            "--archive",
            tar.to_str().unwrap(),
        ],
    );
    let stdout = ok(&out);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED")
            && progress.contains("1 files, 5 bytes"),
        "plain progress lines when not on a terminal: {progress}"
    );
    let source = stdout.split_whitespace().next().unwrap().to_owned();
    assert!(source.starts_with("src_"), "{stdout}");
    let shown: serde_json::Value = serde_json::from_str(&ok(&aether(
        &server.endpoint,
        &["source", "show", "--source-id", &source, "--json"],
    )))
    .unwrap();
    assert_eq!(shown["status"], "UNDERLAY_SOURCE_STATUS_READY");
    let created = ok(&aether(
        &server.endpoint,
        &["session", "create", "--source-id", &source, "--json"],
    ));
    let session: serde_json::Value = serde_json::from_str(&created).unwrap();
    let sid = session["id"].as_str().unwrap().to_owned();
    assert_eq!(
        session["sourceRef"]["revisionId"],
        shown["latestRevisionId"]
    );
    assert_eq!(
        server.read(&sid, "/src/a.txt").as_deref(),
        Some(&b"hello"[..])
    );
    server.write(&sid, "/src/a.txt", b"changed");
    let refused = aether(
        &server.endpoint,
        &[
            "source",
            "promote",
            "--source-id",
            &source,
            "--session-id",
            &sid,
        ],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("PROMOTE") && err.contains("needs a granted approval"),
        "{err}"
    );
    let listed = ok(&aether(&server.endpoint, &["source", "list"]));
    assert!(
        listed.contains(&source) && listed.contains("revisions 1"),
        "{listed}"
    );
    let bad = aether(
        &server.endpoint,
        &["source", "import", "--source-id", &source],
    );
    assert!(
        !bad.status.success(),
        "an archive source has nothing to import from"
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("archive"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
