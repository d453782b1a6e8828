//! What a mount holds in memory once it has seen a large session: the inode table must stay a
//! few hundred bytes a path, since a mount keeps every path it has visited for its lifetime.

use std::path::Path;

use crate::{Mount, Server, aether, sh};

const DIRS: usize = 40;
const PER_DIR: usize = 500;

/// The runtime's anonymous memory (its heap: what the inode table costs), in bytes. File-backed
/// pages (the binary) are left out: a debug build's code would swamp the figure.
fn anon_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("RssAnon in /proc/PID/status");
    kib * 1024
}

/// Every entry under `dir`, stat'ed, as `ls -lR` would: the number of files seen.
fn walk(dir: &Path) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            files += walk(&entry.path());
        } else {
            files += 1;
        }
    }
    files
}

#[test]
fn walking_a_large_session_costs_a_few_hundred_bytes_a_path() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    for d in 0..DIRS {
        let dir = tree.join(format!("d{d:03}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_DIR {
            std::fs::write(dir.join(format!("file_{f:04}.rs")), "x".repeat(f % 300)).unwrap();
        }
    }
    sh(tmp.path(), "tar -C tree -cf tree.tar .");
    let tar = tmp.path().join("tree.tar");
    let out = aether(
        &server.endpoint,
        &[
            "source",
            "create",
            "--name",
            "large",
            "--archive",
            tar.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let source = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let out = aether(
        &server.endpoint,
        &["session", "create", "--source-id", &source, "--json"],
    );
    assert!(out.status.success(), "{out:?}");
    let session: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sid = session["id"].as_str().unwrap();

    let m = Mount::new(&server, sid, &[]);
    let pid = m.pid.expect("a running runtime");
    let inodes = || {
        let cache = m.cache.to_str().unwrap();
        let args = [
            "debug",
            "sessions",
            "--session-id",
            sid,
            "--cache-dir",
            cache,
            "--json",
        ];
        let out = aether(&server.endpoint, &args);
        assert!(out.status.success(), "{out:?}");
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        said["sessions"][0]["inodes"]
            .as_u64()
            .expect("an inode count")
    };
    // The first directory read also reads the first pages of the tree below it, and the first
    // walk warms up the runtime (its threads' arenas, the buffers a listing passes through): so
    // the cost per inode is measured over the second half of the tree, walked after the first.
    let half = |range: std::ops::Range<usize>| -> usize {
        range.map(|d| walk(&m.path(&format!("d{d:03}")))).sum()
    };
    assert_eq!(half(0..DIRS / 2), DIRS / 2 * PER_DIR);
    let (rest, nodes_at_rest) = (anon_rss(pid), inodes());
    assert_eq!(half(DIRS / 2..DIRS), DIRS / 2 * PER_DIR);
    let (after, nodes_after) = (anon_rss(pid), inodes());
    let added = nodes_after - nodes_at_rest;
    assert!(
        added >= (DIRS / 2 * PER_DIR) as u64,
        "the walk added only {added} inodes"
    );
    let per_inode = after.saturating_sub(rest) / added;
    eprintln!(
        "memory: {rest} → {after} bytes for {nodes_at_rest} → {nodes_after} inodes: {per_inode} an inode"
    );
    // Measured this way: 640–670 bytes an inode, debug or release build (the allocator's chunk
    // headers and the holes a listing's buffers leave included); the table of inline nodes and
    // hex-string names it replaced measured 940 (docs/benchmarks.md, "Memory of a mount").
    assert!(
        per_inode <= 800,
        "the mount grew by {per_inode} bytes an inode over a walk of {added} new inodes ({rest} → {after} bytes)"
    );
}
