//! Logging settings of a real mount: a text log file at the configured path, rotated by size,
//! every line naming the session; bad logging values named in the error.

use std::fs;

use crate::{Mount, Server, aether};

#[test]
fn a_mount_logs_to_its_configured_file_and_names_its_session() {
    let server = Server::start();
    let session = server.new_session();
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("logs/mount.log");
    let config = tmp.path().join("aether.toml");
    fs::write(
        &config,
        format!(
            "[logging]\nformat = \"text\"\ndestination = \"file\"\npath = \"{}\"\nrotation = \"size\"\n",
            log.display()
        ),
    )
    .unwrap();
    let mut m = Mount::new(&server, &session, &["--config", config.to_str().unwrap()]);
    fs::write(m.path("note.txt"), b"hello").unwrap();
    m.stop();
    let text = fs::read_to_string(&log).expect("the configured log file");
    assert!(!text.is_empty());
    assert!(
        text.lines()
            .all(|l| l.contains(&format!("session_id={session}"))),
        "every line names the session:\n{text}"
    );
    assert!(!text.trim_start().starts_with('{'), "text format, not JSON");
}

#[test]
fn bad_logging_values_are_named() {
    let server = Server::start();
    let session = server.new_session();
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["mount", "--session-id", &session, "--mount-dir"])
        .arg(tmp.path().join("mnt"))
        .arg("--cache-dir")
        .arg(tmp.path().join("cache"))
        .env("AFS_AETHER_SERVER_ENDPOINT", &server.endpoint)
        .env("AFS_AUTH_TOKEN", crate::TOKEN)
        .env("AFS_AETHER_LOG_ROTATION_MAX_BYTES", "0")
        .env_remove("AFS_AETHER_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AFS_AETHER_LOG_ROTATION_MAX_BYTES") && err.contains("greater than zero"),
        "{err}"
    );
    let out = aether(&server.endpoint, &["config"]);
    assert!(out.status.success());
}
