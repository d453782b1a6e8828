//! Public file-system test suites run inside real mounts: pjdfstest (the POSIX conformance
//! suite, Rust port) as root, with the kernel's page cache alone and with its write-back cache,
//! and as an ordinary user; and fsx (the file-system exerciser), which checks every byte read
//! after random writes, mmap writes, truncations, copies and reopens.
//!
//! Each suite's binary is built once per target directory with `cargo install` (pinned version,
//! `--locked`), so the README's test command needs nothing installed by hand; set `PJDFSTEST`
//! or `FSX` to use a binary of your own.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{Mount, Server};

/// The binary `krate` installs, from `$env` or built on first use.
fn installed(krate: &str, version: &str, env: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{krate}-{version}"));
    let bin = root.join("bin").join(krate);
    if !bin.exists() {
        let out = Command::new(env!("CARGO"))
            .args([
                "install",
                krate,
                "--locked",
                "--quiet",
                "--version",
                version,
            ])
            .arg("--root")
            .arg(&root)
            .output()
            .expect("run cargo install");
        assert!(
            out.status.success(),
            "could not build {krate} {version} (it needs Cargo's package registry, or set {env} \
             to a binary): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

fn pjdfstest() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| installed("pjdfstest", "0.2.2", "PJDFSTEST"))
}

fn fsx() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| installed("fsx", "0.3.2", "FSX"))
}

/// pjdfstest's configuration: the optional features ext4 has, and two unprivileged users with
/// their primary groups (`nobody` and `daemon`, whose group names differ between systems) for
/// the tests that switch users.
fn pjdfstest_config() -> String {
    let entry = |user: &str| {
        let (_, gid) = account(user);
        format!("[\"{user}\", \"{}\"]", group_name(gid))
    };
    format!(
        r#"
[features]
posix_fallocate = {{}}
rename_ctime = {{}}
utime_now = {{}}
utimensat = {{}}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [{}, {}]
"#,
        entry("nobody"),
        entry("daemon")
    )
}

/// The fields of the first line of `file` (/etc/passwd, /etc/group) whose field `column` is
/// `value`.
fn system_entry(file: &str, column: usize, value: &str) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[column] == value)
        .unwrap_or_else(|| panic!("pjdfstest needs an entry {value:?} in {file}"))
}

/// The uid and primary gid of `user`.
fn account(user: &str) -> (u32, u32) {
    let f = system_entry("/etc/passwd", 0, user);
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// The name of group `gid`.
fn group_name(gid: u32) -> String {
    system_entry("/etc/group", 2, &gid.to_string()).swap_remove(0)
}

/// Who runs the suite.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Runner {
    Root,
    /// An ordinary user (the system's `daemon`), in a directory of the mount it owns: the tests
    /// that need root are skipped, the rest check the kernel's permission checks and ours.
    Ordinary,
}

/// Runs the whole suite in a new mount made with `extra`; returns its report.
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
    std::fs::write(&config, pjdfstest_config()).unwrap();

    let mut cmd = match runner {
        Runner::Root => {
            let mut cmd = Command::new(pjdfstest());
            cmd.current_dir(&m.dir).arg("-p").arg(&m.dir);
            cmd
        }
        Runner::Ordinary => {
            let (uid, gid) = account("daemon");
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
    let failed: Vec<&str> = report
        .lines()
        .filter(|l| l.ends_with("FAILED"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "pjdfstest failed in a mount with {extra:?}: {failed:#?}\n{report}"
    );
    m.stop();
    eprintln!("pjdfstest in a mount with {extra:?}: {}", summary(&report));
    report
}

/// The report's closing `Summary:` line.
fn summary(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("Summary:"))
        .unwrap_or_else(|| panic!("no summary in the report:\n{report}"))
}

/// How many tests the report counts as passed.
fn passed(report: &str) -> usize {
    let summary = summary(report);
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
    // ext4 on this machine, run the same way: 255 passed (`link::link_count_max` too), the
    // rest skipped as needing root (or `CAP_SYS_ADMIN`, to mount a file system of its own).
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

/// fsx's configuration: every operation it knows, on a file of at most `flen` bytes, with operations of up to 64 KiB.
fn fsx_config(flen: u64) -> String {
    format!(
        r#"
flen = {flen}
[opsize]
max = 65536
[weights]
close_open = 2
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 3
fsync = 1
fdatasync = 1
posix_fallocate = 1
punch_hole = 1
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
"#
    )
}

/// Runs `ops` fsx operations from `seed` on one file in a new mount made with `extra`, then
/// checks that the server holds exactly what fsx last read back.
fn exercise(extra: &[&str], flen: u64, ops: u32, seed: u32) {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, extra);
    let work = m.dir.parent().unwrap().join("fsx");
    std::fs::create_dir(&work).unwrap();
    let config = work.join("fsx.toml");
    std::fs::write(&config, fsx_config(flen)).unwrap();
    let out = Command::new(fsx())
        .arg("-f")
        .arg(&config)
        .args(["-N", &ops.to_string(), "-S", &seed.to_string()])
        .arg("-P")
        .arg(&work)
        .arg(m.path("exercised"))
        .current_dir(&work)
        .output()
        .expect("run fsx");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.contains("All operations completed A-OK!"),
        "fsx (seed {seed}, mount {extra:?}) found a difference:\n{report}"
    );
    let last = std::fs::read(m.path("exercised")).unwrap();
    m.stop();
    assert!(
        server.read(&session, "/exercised").as_deref() == Some(&last[..]),
        "the server's copy differs from what fsx last read back (seed {seed})"
    );
}

#[test]
fn fsx_reads_back_every_byte_in_a_mount() {
    exercise(&[], 256 << 10, 10_000, 11);
}

#[test]
fn fsx_reads_back_every_byte_in_a_mount_with_the_kernels_write_back_cache() {
    exercise(&["--writeback-cache"], 256 << 10, 10_000, 12);
}

/// Past 1 MiB, partial changes travel as patches of the changed ranges.
#[test]
fn fsx_reads_back_every_byte_of_a_file_large_enough_for_patches() {
    exercise(&[], 3 << 20, 1_500, 13);
}
