//! The mount against a native directory: the same seeded random operations on both (open,
//! write, truncate, rename, link, chmod, xattrs, remounts, crashes of the runtime …), every
//! result compared (the value or the errno), and the whole tree compared at checkpoints, after
//! each remount, and through a fresh cache at the end (what the server holds).
//!
//! A failure names its seed and the operations before it. `AETHER_DIFFERENTIAL_SEED=<seed>`
//! runs only that seed; with `AETHER_DIFFERENTIAL_MINIMIZE=1` as well (and `-- --nocapture`), a
//! failure is cut down to a minimal list of operations that still fails the same way, which
//! takes minutes: every try replays on a new mount.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{Mount, Server};

/// xorshift64*: deterministic from the seed, so a failure names a seed that repeats it.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Sizes around the mount's thresholds: pages, small content kept in the index (64 KiB),
/// content stored in the kernel's cache at close (128 KiB), patches, a few MiB.
const SIZES: [u64; 14] = [
    0,
    1,
    100,
    4095,
    4096,
    5000,
    65535,
    65536,
    65537,
    131072,
    140000,
    300000,
    1 << 20,
    3 << 20,
];

/// `len` bytes made from `seed`.
fn data(seed: u64, len: u64) -> Vec<u8> {
    let mut r = Rng(seed | 1);
    let pattern: Vec<u8> = (0..61).map(|_| r.below(256) as u8).collect();
    pattern.iter().copied().cycle().take(len as usize).collect()
}

/// How a file is opened: read, write, create, truncate, exclusive (write without read or
/// create is an append).
type Flags = (bool, bool, bool, bool, bool);

/// One operation, with everything it needs: replayed as recorded.
#[derive(Debug, Clone)]
enum Op {
    Open {
        id: usize,
        path: String,
        flags: Flags,
    },
    WriteAt {
        id: usize,
        off: u64,
        len: u64,
        seed: u64,
    },
    ReadAt {
        id: usize,
        off: u64,
        len: usize,
    },
    SetLen {
        id: usize,
        len: u64,
    },
    Fsync {
        id: usize,
    },
    Close {
        id: usize,
    },
    WriteWhole {
        path: String,
        len: u64,
        seed: u64,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Rename {
        from: String,
        to: String,
    },
    Link {
        from: String,
        to: String,
    },
    Symlink {
        target: &'static str,
        path: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    Stat {
        path: String,
    },
    SetXattr {
        path: String,
        len: u64,
        seed: u64,
    },
    GetXattr {
        path: String,
    },
    Remount {
        crash: bool,
    },
}

/// What an operation gave: a value to compare, or the errno.
type Outcome = Result<String, i32>;

fn outcome<T: std::fmt::Debug>(r: std::io::Result<T>) -> Outcome {
    r.map(|v| format!("{v:?}"))
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// A name's kind, size (not for directories), mode and link count.
fn stat(p: &Path) -> std::io::Result<(char, u64, u32, u64)> {
    let m = fs::symlink_metadata(p)?;
    let kind = if m.file_type().is_symlink() {
        'l'
    } else if m.is_dir() {
        'd'
    } else {
        'f'
    };
    let size = if kind == 'd' { 0 } else { m.len() };
    Ok((kind, size, m.mode(), m.nlink()))
}

fn set_xattr(p: &Path, value: &[u8]) -> std::io::Result<()> {
    rustix::fs::lsetxattr(p, "user.k", value, rustix::fs::XattrFlags::empty()).map_err(Into::into)
}

fn get_xattr(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(p, "user.k", &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// Every name below `root`, relative, in order.
fn names(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(dir) = fs::read_dir(root.join(&rel)) else {
            continue;
        };
        for e in dir.flatten() {
            let child = rel.join(e.file_name());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(child.clone());
            }
            out.push(child.to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// A short digest, to compare content without printing it.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The whole tree below `root`: each name's stat, its content or link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    names(root)
        .into_iter()
        .map(|n| {
            let p = root.join(&n);
            let s = stat(&p);
            let body = match s {
                Ok(('f', ..)) => format!("{:x}", digest(&fs::read(&p).unwrap_or_default())),
                Ok(('l', ..)) => format!("{:?}", fs::read_link(&p).ok()),
                _ => String::new(),
            };
            (n, format!("{s:?} {body}"))
        })
        .collect()
}

/// Where the two trees differ (at most five names); empty if they do not.
fn tree_diff(mount: &Path, native: &Path) -> Vec<String> {
    let (m, n) = (tree(mount), tree(native));
    n.iter()
        .filter(|(k, v)| m.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: mount {:?}, native {v}", m.get(k)))
        .chain(
            m.keys()
                .filter(|k| !n.contains_key(*k))
                .map(|k| format!("{k}: only in the mount")),
        )
        .take(5)
        .collect()
}

/// A mount and a native directory, and the files open on both.
struct Sides {
    mount: Mount,
    native: tempfile::TempDir,
    /// Files open on both sides, by the id of the `Open` that opened them.
    open: BTreeMap<usize, (File, File)>,
}

impl Sides {
    fn new(server: &Server) -> Sides {
        let session = server.new_session();
        Sides {
            mount: Mount::new(server, &session, &[]),
            native: tempfile::tempdir().unwrap(),
            open: BTreeMap::new(),
        }
    }

    fn compare_trees(&self, when: &str) -> Result<(), String> {
        let diff = tree_diff(&self.mount.dir, self.native.path());
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!("{when}: the trees differ: {diff:?}"))
        }
    }

    /// Runs `f` on both roots; the outcome, or why the two differ.
    fn both(&self, f: impl Fn(&Path) -> Outcome) -> Result<Outcome, String> {
        same(f(&self.mount.dir), f(self.native.path()))
    }

    /// Runs `f` on both files opened by `id` (nothing if `id` is not open).
    fn both_files(&self, id: usize, f: impl Fn(&File) -> Outcome) -> Result<Outcome, String> {
        let Some((m, n)) = self.open.get(&id) else {
            return Ok(Ok("not open".into()));
        };
        same(f(m), f(n))
    }

    /// Applies `op` to both sides; what it gave, or how the sides differ.
    fn apply(&mut self, op: &Op) -> Result<Outcome, String> {
        match op.clone() {
            Op::Open { id, path, flags } => {
                let (read, write, create, truncate, excl) = flags;
                let append = !read && write && !create;
                let open = |root: &Path| {
                    OpenOptions::new()
                        .read(read)
                        .write(write && !append)
                        .append(append)
                        .create(create && !excl)
                        .create_new(excl)
                        .truncate(truncate)
                        .mode(0o644)
                        .open(root.join(&path))
                };
                match (open(&self.mount.dir), open(self.native.path())) {
                    (Ok(m), Ok(n)) => {
                        self.open.insert(id, (m, n));
                        Ok(Ok("open".into()))
                    }
                    (Err(a), Err(b)) if a.raw_os_error() == b.raw_os_error() => {
                        Ok(Err(b.raw_os_error().unwrap_or(-1)))
                    }
                    (m, n) => Err(format!(
                        "mount gave {:?}, native gave {:?}",
                        m.map(|_| ()),
                        n.map(|_| ())
                    )),
                }
            }
            Op::WriteAt { id, off, len, seed } => {
                let bytes = data(seed, len);
                self.both_files(id, |f| outcome(f.write_at(&bytes, off)))
            }
            Op::ReadAt { id, off, len } => self.both_files(id, |f| {
                let mut buf = vec![0u8; len];
                outcome(f.read_at(&mut buf, off).map(|n| digest(&buf[..n])))
            }),
            Op::SetLen { id, len } => self.both_files(id, |f| outcome(f.set_len(len))),
            Op::Fsync { id } => self.both_files(id, |f| outcome(f.sync_all())),
            Op::Close { id } => {
                self.open.remove(&id);
                Ok(Ok("closed".into()))
            }
            Op::WriteWhole { path, len, seed } => {
                let bytes = data(seed, len);
                self.both(|r| outcome(fs::write(r.join(&path), &bytes)))
            }
            Op::Truncate { path, len } => self.both(|r| {
                outcome(
                    OpenOptions::new()
                        .write(true)
                        .open(r.join(&path))
                        .and_then(|f| f.set_len(len)),
                )
            }),
            Op::Rename { from, to } => {
                self.both(|r| outcome(fs::rename(r.join(&from), r.join(&to))))
            }
            Op::Link { from, to } => {
                self.both(|r| outcome(fs::hard_link(r.join(&from), r.join(&to))))
            }
            Op::Symlink { target, path } => {
                self.both(|r| outcome(std::os::unix::fs::symlink(target, r.join(&path))))
            }
            Op::Unlink { path } => self.both(|r| outcome(fs::remove_file(r.join(&path)))),
            Op::Mkdir { path } => self.both(|r| outcome(fs::create_dir(r.join(&path)))),
            Op::Rmdir { path } => self.both(|r| outcome(fs::remove_dir(r.join(&path)))),
            Op::Chmod { path, mode } => {
                let link = fs::symlink_metadata(self.native.path().join(&path))
                    .is_ok_and(|m| m.file_type().is_symlink());
                if link {
                    return Ok(Ok("a link: not changed".into()));
                }
                self.both(|r| {
                    outcome(fs::set_permissions(
                        r.join(&path),
                        fs::Permissions::from_mode(mode),
                    ))
                })
            }
            Op::Stat { path } => {
                let meta = self.both(|r| outcome(stat(&r.join(&path))))?;
                let content =
                    self.both(|r| outcome(fs::read(r.join(&path)).map(|b| digest(&b))))?;
                Ok(Ok(format!("{meta:?} {content:?}")))
            }
            Op::SetXattr { path, len, seed } => {
                let value = data(seed, len);
                self.both(|r| outcome(set_xattr(&r.join(&path), &value)))
            }
            Op::GetXattr { path } => self.both(|r| outcome(get_xattr(&r.join(&path)))),
            Op::Remount { crash } => {
                self.open.clear();
                self.compare_trees("before a remount")?;
                if crash {
                    self.mount.kill9();
                } else {
                    self.mount.stop();
                }
                let out = self.mount.mount();
                if !out.status.success() {
                    return Err(format!(
                        "the remount failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                self.compare_trees("after a remount")?;
                Ok(Ok("remounted".into()))
            }
        }
    }
}

/// Makes the next operation from the native side's state, as a user would pick it.
struct Generator {
    rng: Rng,
    next_id: usize,
}

impl Generator {
    /// A name to act on: mostly one that exists, else a new one in an existing directory.
    fn pick(&mut self, native: &Path, existing_percent: usize) -> String {
        let all = names(native);
        if !all.is_empty() && self.rng.chance(existing_percent) {
            return all[self.rng.below(all.len())].clone();
        }
        let mut dirs = vec![String::new()];
        dirs.extend(
            all.into_iter()
                .filter(|n| fs::symlink_metadata(native.join(n)).is_ok_and(|m| m.is_dir())),
        );
        let dir = dirs[self.rng.below(dirs.len())].clone();
        let name = format!(
            "{}{}",
            self.rng.pick(&["a", "b", "c", "d", "e"]),
            self.rng.below(3)
        );
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    }

    fn next(&mut self, native: &Path, open: &[usize]) -> Option<Op> {
        let r = &mut self.rng;
        let any_open = (!open.is_empty()).then(|| open[r.below(open.len())]);
        let op = match (r.below(24), any_open) {
            (0..=2, _) if open.len() < 6 => {
                let flags = self.rng.pick(&[
                    (true, false, false, false, false),
                    (false, true, true, true, false),
                    (true, true, true, false, false),
                    (true, true, true, false, true),
                    (false, true, false, false, false),
                ]);
                self.next_id += 1;
                Op::Open {
                    id: self.next_id,
                    path: self.pick(native, 50),
                    flags,
                }
            }
            (3..=6, Some(id)) => Op::WriteAt {
                id,
                off: r.pick(&[0, 1, 4096, 65536, 100_000, 1 << 20]),
                len: r.pick(&SIZES),
                seed: r.below(1 << 30) as u64,
            },
            (7, Some(id)) => Op::ReadAt {
                id,
                off: r.pick(&[0, 4000, 65536, 131072, 299_999]),
                len: r.pick(&[1, 4096, 100_000, 1 << 21]),
            },
            (8, Some(id)) => Op::SetLen {
                id,
                len: r.pick(&SIZES),
            },
            (9, Some(id)) => Op::Fsync { id },
            (10 | 11, Some(id)) => Op::Close { id },
            (12, _) => Op::WriteWhole {
                path: self.pick(native, 60),
                len: self.rng.pick(&SIZES),
                seed: self.rng.below(1 << 30) as u64,
            },
            (13, _) => Op::Truncate {
                path: self.pick(native, 80),
                len: self.rng.pick(&SIZES),
            },
            (14, _) => Op::Rename {
                from: self.pick(native, 80),
                to: self.pick(native, 50),
            },
            (15, _) => Op::Link {
                from: self.pick(native, 80),
                to: self.pick(native, 20),
            },
            // Targets inside the tree only: writes through a link must not leave it.
            (16, _) => Op::Symlink {
                target: self.rng.pick(&["x", "a0", "b1", "c2/d0"]),
                path: self.pick(native, 20),
            },
            (17, _) => Op::Unlink {
                path: self.pick(native, 80),
            },
            (18, _) => Op::Mkdir {
                path: self.pick(native, 20),
            },
            (19, _) => Op::Rmdir {
                path: self.pick(native, 80),
            },
            (20, _) => Op::Chmod {
                path: self.pick(native, 80),
                mode: self
                    .rng
                    .pick(&[0o644, 0o600, 0o755, 0o4755, 0o2755, 0o1777, 0o444]),
            },
            (21, _) => Op::Stat {
                path: self.pick(native, 80),
            },
            (22, _) if self.rng.chance(50) => Op::SetXattr {
                path: self.pick(native, 80),
                len: self.rng.pick(&[0, 5, 300]),
                seed: self.rng.below(1 << 30) as u64,
            },
            (22, _) => Op::GetXattr {
                path: self.pick(native, 80),
            },
            (23, _) if self.rng.chance(25) => Op::Remount {
                crash: self.rng.chance(50),
            },
            _ => return None,
        };
        Some(op)
    }
}

/// The native outcome if the mount's is the same; else how they differ.
fn same(mount: Outcome, native: Outcome) -> Result<Outcome, String> {
    if mount == native {
        Ok(native)
    } else {
        Err(format!(
            "mount gave {}, native gave {}",
            short(&mount),
            short(&native)
        ))
    }
}

fn short(o: &Outcome) -> String {
    format!("{o:?}").chars().take(120).collect()
}

/// Replays `ops` on new sides; the failure, if any.
fn replay(server: &Server, ops: &[Op]) -> Option<String> {
    let mut sides = Sides::new(server);
    for op in ops {
        if let Err(why) = sides.apply(op) {
            return Some(format!("{op:?}: {why}"));
        }
    }
    sides.open.clear();
    sides.compare_trees("at the end").err()
}

/// The fewest of `ops` that still fail as `failure` did (by the failing operation's kind),
/// removing chunks of halving size while the failure stays.
fn minimize(server: &Server, mut ops: Vec<Op>, failure: &str) -> Vec<Op> {
    let kind = |f: &str| {
        f.split([' ', '{', ':'])
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let want = kind(failure);
    let mut chunk = ops.len() / 2;
    while chunk >= 1 {
        let mut at = 0;
        while at < ops.len() {
            let mut fewer = ops.clone();
            fewer.drain(at..(at + chunk).min(ops.len()));
            match replay(server, &fewer) {
                Some(f) if kind(&f) == want => ops = fewer,
                _ => at += chunk,
            }
        }
        chunk /= 2;
    }
    ops
}

/// Runs `steps` generated operations of `seed`; the operations so far, and the failure.
fn run_seed(server: &Server, seed: u64, steps: usize) -> (Vec<Op>, Result<(), String>) {
    let mut sides = Sides::new(server);
    let mut generator = Generator {
        rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        next_id: 0,
    };
    let mut done = Vec::new();
    let mut log = Vec::new();
    let fail = |log: &[String], why: String| {
        let tail = log[log.len().saturating_sub(30)..].join("\n  ");
        Err(format!("seed {seed}: {why}\nlast operations:\n  {tail}"))
    };
    for i in 0..steps {
        let open: Vec<usize> = sides.open.keys().copied().collect();
        let Some(op) = generator.next(sides.native.path(), &open) else {
            continue;
        };
        done.push(op.clone());
        match sides.apply(&op) {
            Ok(got) => log.push(format!("{op:?} -> {}", short(&got))),
            Err(why) => {
                let f = fail(&log, format!("{op:?}: {why}"));
                return (done, f);
            }
        }
        if i % 50 == 49
            && sides.open.is_empty()
            && let Err(why) = sides.compare_trees(&format!("after {} operations", i + 1))
        {
            let f = fail(&log, why);
            return (done, f);
        }
    }
    sides.open.clear();
    // Larger than the mount fetches whole: the fresh mount below reads it by streamed ranges.
    let large = Op::WriteWhole {
        path: "/read-cold-by-ranges.bin".into(),
        len: (6 << 20) + 12_345,
        seed,
    };
    done.push(large.clone());
    if let Err(why) = sides.apply(&large) {
        let f = fail(&log, format!("{large:?}: {why}"));
        return (done, f);
    }
    if let Err(why) = sides.compare_trees("at the end") {
        let f = fail(&log, why);
        return (done, f);
    }
    // What the server holds: a mount with an empty cache shows the same tree.
    sides.mount.stop();
    let fresh = Mount::new(server, &sides.mount.session, &[]);
    let diff = tree_diff(&fresh.dir, sides.native.path());
    if !diff.is_empty() {
        let f = fail(&log, format!("the server's tree differs: {diff:?}"));
        return (done, f);
    }
    (done, Ok(()))
}

/// Seeded runs of random operations on a mount and a native directory side by side.
#[test]
fn random_operations_give_what_a_native_directory_gives() {
    let server = Server::start();
    let chosen: Option<u64> = std::env::var("AETHER_DIFFERENTIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let seeds = match chosen {
        Some(s) => vec![s],
        // Seeds 311, 334 and 422 each found a bug when they were first run: kept, so the
        // bugs stay fixed.
        None => vec![11, 12, 311, 334, 422],
    };
    for seed in seeds {
        let (ops, result) = run_seed(&server, seed, 400);
        if let Err(failure) = result {
            if chosen.is_some() && std::env::var_os("AETHER_DIFFERENTIAL_MINIMIZE").is_some() {
                let first = failure.split('\n').next().unwrap_or_default();
                let why = first.split_once(": ").map_or(first, |(_, w)| w);
                let few = minimize(&server, ops, why);
                eprintln!("minimal operations that fail as seed {seed} does:");
                for op in &few {
                    eprintln!("  {op:?}");
                }
                eprintln!("  -> {:?}", replay(&server, &few));
            }
            panic!("{failure}");
        }
    }
}
