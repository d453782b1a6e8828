//! The mount against a native directory: the same seeded random operations on both (open,
//! write, truncate, rename, link, chmod, xattrs, remounts …), every result compared (the value
//! or the errno), and the whole tree compared at checkpoints, after each remount, and through a
//! fresh cache at the end (what the server holds).

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
fn data(seed: usize, len: u64) -> Vec<u8> {
    let mut r = Rng(seed as u64 | 1);
    let pattern: Vec<u8> = (0..61).map(|_| r.below(256) as u8).collect();
    pattern.iter().copied().cycle().take(len as usize).collect()
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

/// The whole tree below `root`: each name's stat, its content or link target.
fn tree(root: &Path) -> BTreeMap<String, String> {
    names(root)
        .into_iter()
        .map(|n| {
            let p = root.join(&n);
            let s = stat(&p);
            let body = match s {
                Ok(('f', ..)) => format!("{:x?}", sha(&fs::read(&p).unwrap_or_default())),
                Ok(('l', ..)) => format!("{:?}", fs::read_link(&p).ok()),
                _ => String::new(),
            };
            (n, format!("{s:?} {body}"))
        })
        .collect()
}

/// A short digest, to compare content without printing it.
fn sha(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

struct Run<'a> {
    mount: &'a mut Mount,
    native: PathBuf,
    rng: Rng,
    /// Files open on both sides: (mount's, native's, description).
    open: Vec<(File, File, String)>,
    log: Vec<String>,
    seed: u64,
}

impl Run<'_> {
    fn fail(&self, what: &str) -> ! {
        let tail = &self.log[self.log.len().saturating_sub(40)..];
        panic!(
            "seed {}: {what}\nlast operations:\n  {}",
            self.seed,
            tail.join("\n  ")
        );
    }

    /// Runs `op` on both sides and compares what they gave.
    fn both(&mut self, desc: String, op: impl Fn(&Path) -> Outcome) {
        let (m, n) = (op(&self.mount.dir), op(&self.native));
        self.log.push(format!("{desc} -> {}", short(&n)));
        if m != n {
            self.fail(&format!(
                "{desc}: mount gave {}, native gave {}",
                short(&m),
                short(&n)
            ));
        }
    }

    /// Runs `op` on both open files of `slot` and compares.
    fn both_files(&mut self, slot: usize, what: String, op: impl Fn(&File) -> Outcome) {
        let (m, n) = {
            let (fm, fnat, _) = &self.open[slot];
            (op(fm), op(fnat))
        };
        let desc = format!("{what} on {}", self.open[slot].2);
        self.log.push(format!("{desc} -> {}", short(&n)));
        if m != n {
            self.fail(&format!(
                "{desc}: mount gave {}, native gave {}",
                short(&m),
                short(&n)
            ));
        }
    }

    fn compare_trees(&self, when: &str) {
        let (m, n) = (tree(&self.mount.dir), tree(&self.native));
        if m != n {
            let diff: Vec<String> = n
                .iter()
                .filter(|(k, v)| m.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: mount {:?}, native {v}", m.get(k)))
                .chain(
                    m.keys()
                        .filter(|k| !n.contains_key(*k))
                        .map(|k| format!("{k}: only in the mount")),
                )
                .take(5)
                .collect();
            self.fail(&format!("{when}: the trees differ: {diff:?}"));
        }
    }

    /// A name to act on: mostly one that exists (on the native side), else a new one.
    fn pick(&mut self, existing_percent: usize) -> String {
        let all = names(&self.native);
        if !all.is_empty() && self.rng.chance(existing_percent) {
            return all[self.rng.below(all.len())].clone();
        }
        let mut dirs = vec![String::new()];
        dirs.extend(
            all.into_iter()
                .filter(|n| fs::symlink_metadata(self.native.join(n)).is_ok_and(|m| m.is_dir())),
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

    fn close_all(&mut self) {
        while let Some((m, n, desc)) = self.open.pop() {
            drop((m, n));
            self.log.push(format!("close {desc}"));
        }
    }

    fn remount(&mut self) {
        self.close_all();
        self.compare_trees("before a remount");
        self.mount.stop();
        let out = self.mount.mount();
        assert!(out.status.success(), "remount failed");
        self.log.push("-- remount --".into());
        self.compare_trees("after a remount");
    }

    fn step(&mut self) {
        let rng = &mut self.rng;
        match rng.below(24) {
            0..=2 if self.open.len() < 6 => {
                let p = self.pick(50);
                let flags = self.rng.pick(&[
                    (true, false, false, false, false),
                    (false, true, true, true, false),
                    (true, true, true, false, false),
                    (true, true, true, false, true),
                    (false, true, false, false, false),
                ]);
                let (read, write, create, truncate, excl) = flags;
                let append = !read && write && !create;
                let opts = |root: &Path| {
                    let mut o = OpenOptions::new();
                    o.read(read)
                        .write(write && !append)
                        .append(append)
                        .create(create && !excl)
                        .create_new(excl)
                        .truncate(truncate)
                        .mode(0o644);
                    o.open(root.join(&p))
                };
                let desc = format!("open {p} {flags:?}");
                let (m, n) = (opts(&self.mount.dir), opts(&self.native));
                self.log
                    .push(format!("{desc} -> {:?}", n.as_ref().map(|_| ())));
                match (m, n) {
                    (Ok(m), Ok(n)) => self.open.push((m, n, p)),
                    (Err(a), Err(b)) if a.raw_os_error() == b.raw_os_error() => {}
                    (m, n) => self.fail(&format!(
                        "{desc}: mount gave {:?}, native gave {:?}",
                        m.map(|_| ()),
                        n.map(|_| ())
                    )),
                }
            }
            3..=6 if !self.open.is_empty() => {
                let slot = self.rng.below(self.open.len());
                let off = self.rng.pick(&[0u64, 1, 4096, 65536, 100_000, 1 << 20]);
                let len = self.rng.pick(&SIZES);
                let bytes = data(self.rng.below(1 << 30), len);
                self.both_files(slot, format!("write {len} at {off}"), |f| {
                    outcome(f.write_at(&bytes, off))
                });
            }
            7 if !self.open.is_empty() => {
                let slot = self.rng.below(self.open.len());
                let off = self.rng.pick(&[0u64, 4000, 65536, 131072, 299_999]);
                let len = self.rng.pick(&[1usize, 4096, 100_000, 1 << 21]);
                self.both_files(slot, format!("read {len} at {off}"), |f| {
                    let mut buf = vec![0u8; len];
                    outcome(f.read_at(&mut buf, off).map(|n| sha(&buf[..n])))
                });
            }
            8 if !self.open.is_empty() => {
                let slot = self.rng.below(self.open.len());
                let len = self.rng.pick(&SIZES);
                self.both_files(slot, format!("set_len {len}"), |f| outcome(f.set_len(len)));
            }
            9 if !self.open.is_empty() => {
                let slot = self.rng.below(self.open.len());
                self.both_files(slot, "fsync".into(), |f| outcome(f.sync_all()));
            }
            10 | 11 if !self.open.is_empty() => {
                let slot = self.rng.below(self.open.len());
                let (m, n, desc) = self.open.remove(slot);
                drop((m, n));
                self.log.push(format!("close {desc}"));
            }
            12 => {
                let p = self.pick(60);
                let bytes = data(self.rng.below(1 << 30), self.rng.pick(&SIZES));
                self.both(format!("write whole {p} ({} bytes)", bytes.len()), |r| {
                    outcome(fs::write(r.join(&p), &bytes))
                });
            }
            13 => {
                let p = self.pick(80);
                let len = self.rng.pick(&SIZES);
                self.both(format!("truncate {p} to {len}"), |r| {
                    outcome(
                        OpenOptions::new()
                            .write(true)
                            .open(r.join(&p))
                            .and_then(|f| f.set_len(len)),
                    )
                });
            }
            14 => {
                let (from, to) = (self.pick(80), self.pick(50));
                self.both(format!("rename {from} {to}"), |r| {
                    outcome(fs::rename(r.join(&from), r.join(&to)))
                });
            }
            15 => {
                let (from, to) = (self.pick(80), self.pick(20));
                self.both(format!("link {from} {to}"), |r| {
                    outcome(fs::hard_link(r.join(&from), r.join(&to)))
                });
            }
            16 => {
                let to = self.pick(20);
                // Targets inside the tree only: writes through a link must not leave it.
                let target = self.rng.pick(&["x", "a0", "b1", "c2/d0"]);
                self.both(format!("symlink {target} {to}"), |r| {
                    outcome(std::os::unix::fs::symlink(target, r.join(&to)))
                });
            }
            17 => {
                let p = self.pick(80);
                self.both(format!("unlink {p}"), |r| {
                    outcome(fs::remove_file(r.join(&p)))
                });
            }
            18 => {
                let p = self.pick(20);
                self.both(format!("mkdir {p}"), |r| {
                    outcome(fs::create_dir(r.join(&p)))
                });
            }
            19 => {
                let p = self.pick(80);
                self.both(format!("rmdir {p}"), |r| {
                    outcome(fs::remove_dir(r.join(&p)))
                });
            }
            20 => {
                let p = self.pick(80);
                let mode = self
                    .rng
                    .pick(&[0o644, 0o600, 0o755, 0o4755, 0o2755, 0o1777, 0o444]);
                if fs::symlink_metadata(self.native.join(&p))
                    .is_ok_and(|m| m.file_type().is_symlink())
                {
                    return;
                }
                self.both(format!("chmod {p} {mode:o}"), |r| {
                    outcome(fs::set_permissions(
                        r.join(&p),
                        fs::Permissions::from_mode(mode),
                    ))
                });
            }
            21 => {
                let p = self.pick(80);
                self.both(format!("stat {p}"), |r| outcome(stat(&r.join(&p))));
                self.both(format!("read {p}"), |r| {
                    outcome(fs::read(r.join(&p)).map(|b| sha(&b)))
                });
            }
            22 => {
                let p = self.pick(80);
                let value = data(self.rng.below(1 << 30), self.rng.pick(&[0, 5, 300]));
                if self.rng.chance(50) {
                    self.both(format!("setxattr {p}"), |r| {
                        outcome(set_xattr(&r.join(&p), &value))
                    });
                } else {
                    self.both(format!("getxattr {p}"), |r| outcome(get_xattr(&r.join(&p))));
                }
            }
            23 if self.rng.chance(25) => self.remount(),
            _ => {}
        }
    }
}

fn short(o: &Outcome) -> String {
    let s = format!("{o:?}");
    s.chars().take(120).collect()
}

/// Seeded runs of random operations on a mount and a native directory side by side; a failure
/// names its seed and the operations before it.
#[test]
fn random_operations_give_what_a_native_directory_gives() {
    let server = Server::start();
    for seed in [11u64, 12, 13, 14] {
        let session = server.new_session();
        let mut mount = Mount::new(&server, &session, &[]);
        let native = tempfile::tempdir().unwrap();
        let mut run = Run {
            mount: &mut mount,
            native: native.path().to_owned(),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            open: Vec::new(),
            log: Vec::new(),
            seed,
        };
        for i in 0..400 {
            run.step();
            if i % 50 == 49 && run.open.is_empty() {
                run.compare_trees(&format!("after {} operations", i + 1));
            }
        }
        run.close_all();
        run.compare_trees("at the end");
        // What the server holds: a mount with an empty cache shows the same tree.
        mount.stop();
        let fresh = Mount::new(&server, &session, &[]);
        let (m, n) = (tree(&fresh.dir), tree(native.path()));
        assert!(
            m == n,
            "seed {seed}: the server's tree differs from the native one"
        );
    }
}
