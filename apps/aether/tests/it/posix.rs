//! A POSIX conformance suite (pjdfstest, the Rust port) run inside a real mount: as root, with
//! the kernel's page cache alone and with its write-back cache, and as an ordinary user.
//!
//! The suite's binary is built once per target directory with `cargo install` (pinned version,
//! `--locked`), so the README's test command needs nothing installed by hand; set `PJDFSTEST`
//! to use a binary of your own.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
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

/// Who runs the suite.
enum Runner {
    Root,
    /// An ordinary user (the system's `daemon`), in a directory of the mount it owns: the tests
    /// that need root are skipped, the rest check the kernel's permission checks and ours.
    Ordinary,
}

/// The uid and gid of the ordinary user.
fn ordinary_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == "daemon")
        .expect("a `daemon` user in /etc/passwd");
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// Runs the whole suite in a new mount made with `extra` and returns its report.
fn run_suite(extra: &[&str], runner: Runner) -> String {
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

    let mut cmd = match runner {
        Runner::Root => {
            let mut cmd = Command::new(pjdfstest());
            cmd.current_dir(&m.dir).arg("-p").arg(&m.dir);
            cmd
        }
        Runner::Ordinary => {
            let (uid, gid) = ordinary_user();
            let home = m.dir.join("home");
            std::fs::create_dir(&home).unwrap();
            std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
            // A copy the user can run, wherever the target directory is.
            let bin = parent.join("pjdfstest");
            std::fs::copy(pjdfstest(), &bin).unwrap();
            let mut cmd = Command::new(&bin);
            // As root, std also drops the supplementary groups before switching.
            cmd.uid(uid)
                .gid(gid)
                .current_dir(&home)
                .arg("-p")
                .arg(&home);
            cmd
        }
    };
    let out = cmd
        .arg("-c")
        .arg(&config)
        .arg("-s")
        .arg(&other)
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
    if let Some(summary) = report.lines().find(|l| l.starts_with("Summary:")) {
        eprintln!("pjdfstest in a mount with {extra:?}: {summary}");
    }
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

/// The tests the report skips, each with the reasons it gives (indented lines below it).
fn skips(report: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut open = false;
    for line in report.lines() {
        if line.starts_with(char::is_whitespace) {
            if open && let Some((_, reasons)) = out.last_mut() {
                reasons.push(line.trim());
            }
        } else {
            open = line.ends_with("skipped");
            if open {
                out.push((line.split_whitespace().next().unwrap_or(""), Vec::new()));
            }
        }
    }
    out
}

/// Skipped tests other than those every mount skips for a reason outside it: remounting
/// read-only (the `erofs` tests; a read-only mount is tested with an archived session), and
/// `LINK_MAX`, which `pathconf` does not know for FUSE file systems.
fn skipped(report: &str) -> Vec<(&str, Vec<&str>)> {
    skips(report)
        .into_iter()
        .filter(|(name, _)| !name.contains("::erofs_") && *name != "link::link_count_max")
        .collect()
}

#[test]
fn pjdfstest_passes_in_a_mount() {
    let report = run_suite(&[], Runner::Root);
    assert!(passed(&report) >= 384, "{report}");
    assert_eq!(skipped(&report), vec![], "{report}");
}

#[test]
fn pjdfstest_passes_in_a_mount_with_the_kernels_write_back_cache() {
    let report = run_suite(&["--writeback-cache"], Runner::Root);
    assert!(passed(&report) >= 384, "{report}");
    assert_eq!(skipped(&report), vec![], "{report}");
}

#[test]
fn pjdfstest_passes_in_a_mount_for_an_ordinary_user() {
    let report = run_suite(&[], Runner::Ordinary);
    // ext4 on this machine, run the same way: 255 passed (`link::link_count_max` too), the rest skipped as needing root
    // (or `CAP_SYS_ADMIN`, to mount a file system of its own).
    assert!(passed(&report) >= 254, "{report}");
    let others: Vec<_> = skipped(&report)
        .into_iter()
        .filter(|(_, reasons)| {
            !reasons
                .iter()
                .any(|r| *r == "requires root privileges" || r.contains("CAP_SYS_ADMIN"))
        })
        .collect();
    assert_eq!(
        others,
        vec![],
        "only tests that need root are skipped: {report}"
    );
}
