//! A POSIX conformance suite (pjdfstest, the Rust port) run inside a real mount, as root, with
//! the kernel's page cache alone and with its write-back cache.
//!
//! The suite's binary is built once per target directory with `cargo install` (pinned version,
//! `--locked`), so the README's test command needs nothing installed by hand; set `PJDFSTEST`
//! to use a binary of your own.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Mount, Server};

const VERSION: &str = "0.2.2";

/// The suite's configuration: the optional features ext4 has, and two unprivileged users with
/// their groups (present on every Debian-like system) for the tests that switch users.
const CONFIG: &str = r#"
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// The suite's binary, built on first use.
fn pjdfstest() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("PJDFSTEST") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pjdfstest-{VERSION}"));
        let bin = root.join("bin/pjdfstest");
        if !bin.exists() {
            let out = Command::new(env!("CARGO"))
                .args(["install", "pjdfstest", "--locked", "--quiet", "--version"])
                .arg(VERSION)
                .arg("--root")
                .arg(&root)
                .output()
                .expect("run cargo install");
            assert!(
                out.status.success(),
                "could not build pjdfstest {VERSION} (it needs Cargo's package registry, or set PJDFSTEST to a \
                 binary): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        bin
    })
}

/// Runs the whole suite in a new mount made with `extra` and returns its report.
fn run_suite(extra: &[&str]) -> String {
    // `open::interact_2gb` writes at 2 GiB: the server must store files that large.
    let server = Server::start_with(|cfg| cfg.max_file_bytes = 3 << 30);
    let session = server.new_session();
    let mut args = vec!["--allow-other"];
    args.extend_from_slice(extra);
    let mut m = Mount::new(&server, &session, &args);
    // The tests that switch users must reach the mount, and the suite works in its root.
    let parent = m.dir.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&m.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The cross-device tests need a second file system: the host's, outside the mount.
    let other = parent.join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = parent.join("pjdfstest.toml");
    std::fs::write(&config, CONFIG).unwrap();

    let out = Command::new(pjdfstest())
        .arg("-c")
        .arg(&config)
        .arg("-p")
        .arg(&m.dir)
        .arg("-s")
        .arg(&other)
        .current_dir(&m.dir)
        .output()
        .expect("run pjdfstest");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = report.lines().filter(|l| l.ends_with("FAILED")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "pjdfstest failed in a mount with {extra:?}: {failed:#?}\n{report}"
    );
    m.stop();
    report
}

/// How many tests the report counts as passed.
fn passed(report: &str) -> usize {
    let summary = report
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary in the report:\n{report}"));
    summary
        .split(", ")
        .find_map(|part| part.strip_suffix(" passed"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pass count in {summary:?}"))
}

/// Tests the suite skips in every mount, each for a reason outside the mount: remounting
/// read-only (the `erofs` tests; a read-only mount is tested with an archived session), and
/// `LINK_MAX`, which `pathconf` does not know for FUSE file systems.
fn skipped(report: &str) -> Vec<&str> {
    report
        .lines()
        .filter(|l| l.ends_with("skipped"))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| !name.contains("::erofs_") && *name != "link::link_count_max")
        .collect()
}

#[test]
fn pjdfstest_passes_in_a_mount() {
    let report = run_suite(&[]);
    assert!(passed(&report) >= 384, "{report}");
    assert_eq!(skipped(&report), Vec::<&str>::new(), "{report}");
}

#[test]
fn pjdfstest_passes_in_a_mount_with_the_kernels_write_back_cache() {
    let report = run_suite(&["--writeback-cache"]);
    assert!(passed(&report) >= 384, "{report}");
    assert_eq!(skipped(&report), Vec::<&str>::new(), "{report}");
}
