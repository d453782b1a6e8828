//! `aether doctor` (local preflight: FUSE device and module, mount privilege, kernel, mount
//! dir, cache dir, configuration) and `aether fuse check|cleanup` (dead aetherfs mounts and
//! stale control sockets).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// One check's verdict with a fix hint.
pub(crate) struct Check {
    pub name: &'static str,
    pub verdict: &'static str,
    pub detail: String,
    pub hint: Option<&'static str>,
}

fn pass(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict: "PASS",
        detail: detail.into(),
        hint: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, hint: &'static str) -> Check {
    Check {
        name,
        verdict: "WARN",
        detail: detail.into(),
        hint: Some(hint),
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: &'static str) -> Check {
    Check {
        name,
        verdict: "FAIL",
        detail: detail.into(),
        hint: Some(hint),
    }
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn device() -> Check {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
            {
                Ok(_) => pass("fuse device", "/dev/fuse is a character device and opens"),
                Err(e) => fail(
                    "fuse device",
                    format!("/dev/fuse cannot be opened: {e}"),
                    "run as root, or give your user access to /dev/fuse (group fuse), or pass the device into the container (--device /dev/fuse)",
                ),
            }
        }
        Ok(_) => fail(
            "fuse device",
            "/dev/fuse is not a character device",
            "recreate it: mknod /dev/fuse c 10 229",
        ),
        Err(e) => fail(
            "fuse device",
            format!("/dev/fuse is missing: {e}"),
            "load the module (modprobe fuse) or pass the device into the container",
        ),
    }
}

fn filesystem() -> Check {
    match std::fs::read_to_string("/proc/filesystems") {
        Ok(t)
            if t.lines()
                .any(|l| l.split_whitespace().last() == Some("fuse")) =>
        {
            pass("fuse filesystem", "fuse is listed in /proc/filesystems")
        }
        Ok(_) => fail(
            "fuse filesystem",
            "fuse is not in /proc/filesystems",
            "load the module: modprobe fuse",
        ),
        Err(e) => warn(
            "fuse filesystem",
            format!("cannot read /proc/filesystems: {e}"),
            "is /proc mounted?",
        ),
    }
}

fn privilege() -> Check {
    if rustix::process::geteuid().is_root() {
        pass("mount privilege", "running as root")
    } else if on_path("fusermount3") {
        pass("mount privilege", "fusermount3 is on PATH")
    } else {
        fail(
            "mount privilege",
            "not root and no fusermount3 on PATH",
            "install fuse3 (apt-get install fuse3) or run as root",
        )
    }
}

fn kernel() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(2)
        .filter_map(|s| s.parse().ok())
        .collect();
    match version.as_slice() {
        [major, minor] if (*major, *minor) >= (4, 20) => pass(
            "kernel",
            format!(
                "Linux {release}: large FUSE requests (max_pages), readdirplus, writeback cache"
            ),
        ),
        [_, _] => warn(
            "kernel",
            format!("Linux {release}: before 4.20, FUSE requests are capped at 128 KiB"),
            "a newer kernel makes large reads and writes faster",
        ),
        _ => warn(
            "kernel",
            format!("unknown kernel release {release:?}"),
            "check uname -r",
        ),
    }
}

fn mount_dir(dir: Option<&Path>) -> Option<Check> {
    let dir = dir?;
    // A live aetherfs mount already there is what the user asked about, not a crowded dir.
    let canonical = dir.canonicalize().ok();
    if aether_mounts()
        .iter()
        .any(|m| !m.dead && Some(&m.dir) == canonical.as_ref())
    {
        return Some(pass(
            "mount dir",
            format!("{} is a live aetherfs mount", dir.display()),
        ));
    }
    Some(match std::fs::metadata(dir) {
        Err(_) => warn(
            "mount dir",
            format!("{} does not exist", dir.display()),
            "aether mount creates it",
        ),
        Ok(m) if !m.is_dir() => fail(
            "mount dir",
            format!("{} is not a directory", dir.display()),
            "choose a directory for --mount-dir",
        ),
        Ok(_) => match std::fs::read_dir(dir).map(|mut e| e.next().is_some()) {
            Err(e) if e.raw_os_error() == Some(107) => fail(
                "mount dir",
                format!(
                    "{} is a dead mount (transport endpoint is not connected)",
                    dir.display()
                ),
                "run aether fuse cleanup",
            ),
            Err(e) => fail(
                "mount dir",
                format!("{} cannot be read: {e}", dir.display()),
                "check its permissions",
            ),
            Ok(true) => warn(
                "mount dir",
                format!(
                    "{} is not empty; the mount will hide its contents",
                    dir.display()
                ),
                "mount on an empty directory",
            ),
            Ok(false) => pass(
                "mount dir",
                format!("{} is an empty directory", dir.display()),
            ),
        },
    })
}

fn cache_dir(dir: &Path, low_free: u64) -> Check {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(
            "cache dir",
            format!("cannot create {}: {e}", dir.display()),
            "set cache_dir to a writable place",
        );
    }
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        return fail(
            "cache dir",
            format!("{} is not writable: {e}", dir.display()),
            "set cache_dir to a writable place",
        );
    }
    let _ = std::fs::remove_file(&probe);
    match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let free = s.f_bavail * s.f_frsize;
            let shown = format!("{} is writable, {} MiB free", dir.display(), free >> 20);
            if free < low_free {
                warn(
                    "cache dir",
                    shown,
                    "free space: writes are refused below cache_disk_low_free_bytes",
                )
            } else {
                pass("cache dir", shown)
            }
        }
        Err(e) => warn(
            "cache dir",
            format!("cannot measure free space: {e}"),
            "check the file system",
        ),
    }
}

/// Host settings that make small-file work through FUSE faster (docs/mount.md, "Host
/// tuning"): the kernel's `fuse.wake_here` switch (`None`: this kernel has none), and whether
/// idle vCPUs of a virtual machine halt at once. Never a FAIL: the mount works either way.
fn host_tuning(wake_here: Option<bool>, vcpus_halt_at_once: bool) -> Check {
    const NAME: &str = "host tuning";
    match (wake_here, vcpus_halt_at_once) {
        (Some(true), _) => pass(NAME, "fuse.wake_here is on"),
        (wake_here, true) => warn(
            NAME,
            format!(
                "idle vCPUs halt at once (haltpoll, guest_halt_poll_ns=0){}: small-file work \
                 through FUSE pays for waking them",
                if wake_here.is_some() {
                    " and fuse.wake_here is off"
                } else {
                    ""
                }
            ),
            "as root: echo 200000 > /sys/module/haltpoll/parameters/guest_halt_poll_ns \
             (or echo Y > /sys/module/fuse/parameters/wake_here where it exists)",
        ),
        (Some(false), false) => warn(
            NAME,
            "fuse.wake_here is off",
            "as root: echo Y > /sys/module/fuse/parameters/wake_here",
        ),
        (None, false) => pass(
            NAME,
            "nothing to tune: no wake_here switch, no halting vCPUs",
        ),
    }
}

/// Runs every check; `config` is the configuration's load result (an error fails it).
pub(crate) fn checks(
    config: Result<&crate::config::AetherConfig, String>,
    cache: &Path,
    mount: Option<&Path>,
) -> Vec<Check> {
    let mut out = vec![
        device(),
        filesystem(),
        privilege(),
        kernel(),
        host_tuning(
            aether_fuse::kernel_wake_here(),
            aether_fuse::vcpus_halt_at_once(),
        ),
    ];
    out.extend(mount_dir(mount));
    match config {
        Ok(c) => {
            out.push(cache_dir(cache, c.backpressure.cache_disk_low_free_bytes));
            out.push(pass("configuration", "every layer is valid"));
        }
        Err(e) => {
            out.push(cache_dir(cache, 0));
            out.push(fail(
                "configuration",
                e,
                "fix the value named, in the layer named",
            ));
        }
    }
    out
}

pub(crate) fn report(checks: &[Check], as_json: bool) {
    if as_json {
        let v: Vec<Value> = checks
            .iter()
            .map(|c| json!({"check": c.name, "verdict": c.verdict, "detail": c.detail, "hint": c.hint}))
            .collect();
        println!("{}", Value::Array(v));
        return;
    }
    for c in checks {
        println!("{:<5} {:<16} {}", c.verdict, c.name, c.detail);
        if let Some(h) = c.hint {
            println!("      {:<16} fix: {h}", "");
        }
    }
}

/// An aetherfs mount from `/proc/self/mountinfo`.
pub(crate) struct FuseMount {
    pub dir: PathBuf,
    pub dead: bool,
}

/// Mount points with source `aetherfs`, and whether each still answers.
pub(crate) fn aether_mounts() -> Vec<FuseMount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            let (fstype, source) = (r.next()?, r.next()?);
            if !fstype.starts_with("fuse") || source != "aetherfs" {
                return None;
            }
            // Mount points escape spaces and the like as octal (\\040).
            let raw = left.split_whitespace().nth(4)?;
            let dir = PathBuf::from(unescape(raw));
            let dead = matches!(std::fs::metadata(&dir), Err(e) if e.raw_os_error() == Some(107));
            Some(FuseMount { dir, dead })
        })
        .collect()
}

fn unescape(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..=i + 3]).unwrap_or("0"), 8)
                    .unwrap_or(b'?'),
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Control sockets under `cache` that no runtime answers on.
pub(crate) fn stale_sockets(cache: &Path) -> Vec<PathBuf> {
    let Ok(sessions) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    sessions
        .flatten()
        .map(|s| s.path().join("content/locks/control.sock"))
        .filter(|p| p.exists() && std::os::unix::net::UnixStream::connect(p).is_err())
        .collect()
}

/// What `detach` found: a dead mount is detached by us, or was gone before we got to it (its
/// own runtime's cleanup, or another `cleanup`, raced us).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Detached {
    ByUs,
    AlreadyGone,
}

/// Detaches a dead mount (lazy unmount).
pub(crate) fn detach(dir: &Path) -> Result<Detached, String> {
    let tool = if on_path("fusermount3") && !rustix::process::geteuid().is_root() {
        std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(dir)
            .output()
    } else {
        std::process::Command::new("umount")
            .arg("-l")
            .arg(dir)
            .output()
    };
    match tool {
        Ok(o) if o.status.success() => Ok(Detached::ByUs),
        _ if !crate::runtime::is_mount_point(dir) => Ok(Detached::AlreadyGone),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tuning_names_the_setting_to_change_and_never_fails() {
        let on = host_tuning(Some(true), true);
        assert_eq!(
            (on.verdict, on.detail.as_str()),
            ("PASS", "fuse.wake_here is on")
        );
        let halting = host_tuning(Some(false), true);
        assert_eq!(halting.verdict, "WARN");
        assert!(
            halting.detail.contains("halt at once") && halting.detail.contains("wake_here is off")
        );
        assert!(halting.hint.unwrap().contains("guest_halt_poll_ns"));
        let halting_only = host_tuning(None, true);
        assert!(
            !halting_only.detail.contains("wake_here"),
            "{}",
            halting_only.detail
        );
        let off = host_tuning(Some(false), false);
        assert_eq!(off.verdict, "WARN");
        assert!(off.hint.unwrap().contains("wake_here"));
        assert_eq!(host_tuning(None, false).verdict, "PASS");
    }

    #[test]
    fn a_mount_detached_by_someone_else_meanwhile_is_not_a_cleanup_failure() {
        // `cleanup` lists dead mounts, then detaches each; the mount's own runtime may detach
        // it in between, which leaves a plain directory that `umount` calls "not mounted".
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detach(dir.path()), Ok(Detached::AlreadyGone));
    }
}
