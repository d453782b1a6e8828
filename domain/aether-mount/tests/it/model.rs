//! The engine against a naive in-memory file system: random operations (create, write at
//! offsets, truncate, rename, link, symlink, unlink, mkdir, rmdir, fsync, remount) must succeed
//! or fail alike, and every listing and every file's bytes must match after each step. At the
//! end, after write-back, the server's tree must match too.

use std::collections::BTreeMap;

use aether_ports::local_cache::LocalCache;
use aether_ports::vfs::*;
use aether_ports::*;
use proptest::prelude::*;

use aether_fakes::{Fault, FaultPlan, Faulty};
use aether_mount::Engine;

use crate::{ME, World, write_back};

/// Candidate paths: depth one and two over three names.
fn paths() -> Vec<String> {
    let names = ["a", "b", "c"];
    let mut out: Vec<String> = names.iter().map(|n| format!("/{n}")).collect();
    for p in names {
        for c in names {
            out.push(format!("/{p}/{c}"));
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(usize),
    Create(usize, Vec<u8>),
    WriteAt(usize, u16, Vec<u8>),
    Truncate(usize, u16),
    Rename(usize, usize),
    Link(usize, usize),
    Symlink(usize),
    Unlink(usize),
    Rmdir(usize),
    Fsync,
    Remount,
    /// Time passes beyond every TTL: the engine must re-read listings from the server.
    Expire,
    /// The kernel forgets every inode it holds (as under memory pressure): nodes without a
    /// name may be dropped, and nothing visible may change.
    Forget,
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..12usize;
    let bytes = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        p.clone().prop_map(Op::Mkdir),
        (p.clone(), bytes.clone()).prop_map(|(p, b)| Op::Create(p, b)),
        (p.clone(), 0..96u16, bytes.clone()).prop_map(|(p, o, b)| Op::WriteAt(p, o, b)),
        (p.clone(), 0..96u16).prop_map(|(p, n)| Op::Truncate(p, n)),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        p.clone().prop_map(Op::Symlink),
        p.clone().prop_map(Op::Unlink),
        p.prop_map(Op::Rmdir),
        Just(Op::Fsync),
        Just(Op::Remount),
        Just(Op::Forget),
        Just(Op::Expire),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File(u32),
    /// A symbolic link: an identity (hard links share it) and its target.
    Link(u32, String),
}

/// The reference: paths to nodes, files by id so hard links share content.
#[derive(Debug, Default, Clone)]
struct Model {
    tree: BTreeMap<String, Node>,
    files: BTreeMap<u32, Vec<u8>>,
    next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ok,
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    Invalid,
    NotPermitted,
}

fn parent(p: &str) -> &str {
    match p.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((d, _)) => d,
        None => "/",
    }
}

fn name(p: &str) -> &str {
    p.rsplit_once('/').map(|(_, n)| n).unwrap_or(p)
}

impl Model {
    /// Resolves `p` as path lookup does: a missing ancestor is `NotFound`, an ancestor that
    /// is not a directory `NotDir`; a missing last component is `Ok(None)`.
    fn lookup(&self, p: &str) -> Result<Option<&Node>, Want> {
        if p == "/" {
            return Ok(Some(&Node::Dir));
        }
        let dir = parent(p);
        if dir != "/" {
            match self.lookup(dir)? {
                Some(Node::Dir) => {}
                // Every link target in this model dangles.
                Some(Node::Link(..)) => return Err(Want::NotFound),
                Some(_) => return Err(Want::NotDir),
                None => return Err(Want::NotFound),
            }
        }
        Ok(self.tree.get(p))
    }

    fn kind(&self, p: &str) -> Option<&Node> {
        self.lookup(p).ok().flatten()
    }

    fn parent_ok(&self, p: &str) -> Result<(), Want> {
        match self.lookup(parent(p))? {
            Some(Node::Dir) => Ok(()),
            Some(Node::Link(..)) => Err(Want::NotFound),
            Some(_) => Err(Want::NotDir),
            None => Err(Want::NotFound),
        }
    }

    /// Like `kind`, but failing as lookup fails.
    fn existing(&self, p: &str) -> Result<Node, Want> {
        self.lookup(p)?.cloned().ok_or(Want::NotFound)
    }

    fn children(&self, p: &str) -> Vec<String> {
        let prefix = if p == "/" {
            "/".to_owned()
        } else {
            format!("{p}/")
        };
        self.tree
            .keys()
            .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .cloned()
            .collect()
    }

    fn apply(&mut self, op: &Op, ps: &[String]) -> Want {
        match self.try_apply(op, ps) {
            Ok(()) => Want::Ok,
            Err(w) => w,
        }
    }

    fn try_apply(&mut self, op: &Op, ps: &[String]) -> Result<(), Want> {
        match op {
            Op::Mkdir(i) | Op::Symlink(i) | Op::Create(i, _) => {
                let p = &ps[*i];
                self.parent_ok(p)?;
                if self.tree.contains_key(p) {
                    return Err(Want::Exists);
                }
                let node = match op {
                    Op::Mkdir(_) => Node::Dir,
                    Op::Symlink(_) => {
                        self.next += 1;
                        Node::Link(self.next, format!("target-of-{}", name(p)))
                    }
                    Op::Create(_, data) => {
                        self.next += 1;
                        self.files.insert(self.next, data.clone());
                        Node::File(self.next)
                    }
                    _ => unreachable!("matched above"),
                };
                self.tree.insert(p.clone(), node);
                Ok(())
            }
            Op::WriteAt(i, off, data) => {
                let id = self.file(&ps[*i])?;
                let f = self.files.get_mut(&id).expect("file exists");
                let end = *off as usize + data.len();
                if f.len() < end {
                    f.resize(end, 0);
                }
                f[*off as usize..end].copy_from_slice(data);
                Ok(())
            }
            Op::Truncate(i, n) => {
                let id = self.file(&ps[*i])?;
                self.files
                    .get_mut(&id)
                    .expect("file exists")
                    .resize(*n as usize, 0);
                Ok(())
            }
            Op::Unlink(i) => match self.existing(&ps[*i])? {
                Node::Dir => Err(Want::IsDir),
                _ => {
                    self.tree.remove(&ps[*i]);
                    Ok(())
                }
            },
            Op::Rmdir(i) => {
                let p = &ps[*i];
                match self.existing(p)? {
                    Node::Dir if !self.children(p).is_empty() => Err(Want::NotEmpty),
                    Node::Dir => {
                        self.tree.remove(p);
                        Ok(())
                    }
                    _ => Err(Want::NotDir),
                }
            }
            Op::Link(a, b) => {
                let (from, to) = (&ps[*a], &ps[*b]);
                self.parent_ok(from)?;
                self.parent_ok(to)?;
                let node = self.existing(from)?;
                if node == Node::Dir {
                    return Err(Want::NotPermitted);
                }
                self.parent_ok(to)?;
                if self.tree.contains_key(to) {
                    return Err(Want::Exists);
                }
                self.tree.insert(to.clone(), node);
                Ok(())
            }
            Op::Rename(a, b) => {
                let (from, to) = (ps[*a].clone(), ps[*b].clone());
                // As the kernel: both parents first, then the source.
                self.parent_ok(&from)?;
                self.parent_ok(&to)?;
                let node = self.existing(&from)?;
                if from == to {
                    return Ok(());
                }
                if node == Node::Dir && to.starts_with(&format!("{from}/")) {
                    return Err(Want::Invalid);
                }
                if let Some(dst) = self.kind(&to).cloned() {
                    if dst == node && node != Node::Dir {
                        // Two names of one file: rename(2) does nothing.
                        return Ok(());
                    }
                    match (node == Node::Dir, dst == Node::Dir) {
                        (true, false) => return Err(Want::NotDir),
                        (false, true) => return Err(Want::IsDir),
                        (true, true) if !self.children(&to).is_empty() => {
                            return Err(Want::NotEmpty);
                        }
                        _ => {}
                    }
                    self.tree.remove(&to);
                }
                let moved: Vec<(String, Node)> = self
                    .tree
                    .iter()
                    .filter(|(k, _)| **k == from || k.starts_with(&format!("{from}/")))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                for (k, v) in moved {
                    self.tree.remove(&k);
                    self.tree.insert(format!("{to}{}", &k[from.len()..]), v);
                }
                Ok(())
            }
            Op::Fsync | Op::Remount | Op::Expire | Op::Forget => Ok(()),
        }
    }

    fn file(&self, p: &str) -> Result<u32, Want> {
        match self.existing(p)? {
            Node::File(id) => Ok(id),
            Node::Dir => Err(Want::IsDir),
            Node::Link(..) => Err(Want::Invalid),
        }
    }
}

fn want_of(r: &Result<(), FsError>) -> Want {
    match r {
        Ok(()) => Want::Ok,
        Err(FsError::NotFound(_)) => Want::NotFound,
        Err(FsError::Exists(_)) => Want::Exists,
        Err(FsError::NotDir(_)) => Want::NotDir,
        Err(FsError::IsDir(_)) => Want::IsDir,
        Err(FsError::NotEmpty(_)) => Want::NotEmpty,
        Err(FsError::Invalid(_)) => Want::Invalid,
        Err(FsError::NotPermitted(_)) => Want::NotPermitted,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// These tests run the write-back only at `Fsync` and jump the clock by hours at `Expire`:
/// backpressure by backlog age would hold writers back (it has its own scenario test).
fn patient(mut config: aether_mount::MountConfig) -> aether_mount::MountConfig {
    config.backpressure.journal_max_age = std::time::Duration::from_secs(1 << 40);
    config.backpressure.journal_clear_age = std::time::Duration::from_secs(1 << 40);
    config
}

/// A remote failure injected for one engine operation: which API call, and how.
#[derive(Debug, Clone)]
struct Injected {
    call: &'static str,
    drop_reply: bool,
    times: u32,
}

const CALLS: [&str; 6] = [
    "manifest",
    "read_file",
    "batch",
    "write_file",
    "patch_segments",
    "*",
];

fn injected() -> impl Strategy<Value = Option<Injected>> {
    proptest::option::of(
        (0..CALLS.len(), any::<bool>(), 1..3u32).prop_map(|(c, d, t)| Injected {
            call: CALLS[c],
            drop_reply: d,
            times: t,
        }),
    )
}

fn arm(plan: &FaultPlan, f: &Option<Injected>) {
    plan.clear();
    if let Some(f) = f {
        plan.set(
            f.call,
            Fault {
                error: (!f.drop_reply)
                    .then(|| aether_domain::Error::unavailable("injected outage")),
                drop_reply: f.drop_reply,
                times: Some(f.times),
                ..Default::default()
            },
        );
    }
}

/// Resolves a path to an inode through lookups (no symlink following).
async fn resolve<V: Vfs>(e: &V, p: &str) -> Result<u64, FsError> {
    let mut ino = ROOT_INO;
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let entry = e.lookup(ino, part.as_bytes()).await?;
        // The kernel follows an intermediate link; every link target in this test dangles.
        if i + 1 < parts.len() && entry.attr.kind == FileKind::Symlink {
            return Err(FsError::NotFound(p.to_owned()));
        }
        ino = entry.attr.ino;
    }
    Ok(ino)
}

/// Resolves a directory path: its last component must be a directory too.
async fn resolve_dir<V: Vfs>(e: &V, p: &str) -> Result<u64, FsError> {
    let ino = resolve(e, p).await?;
    match e.getattr(ino).await?.0.kind {
        FileKind::Dir => Ok(ino),
        // The kernel would follow it; every link target in this test dangles.
        FileKind::Symlink => Err(FsError::NotFound(p.to_owned())),
        _ => Err(FsError::NotDir(p.to_owned())),
    }
}

async fn run_op<V: Vfs>(e: &V, op: &Op, ps: &[String]) -> Result<(), FsError> {
    let split = |p: &str| (parent(p).to_owned(), name(p).to_owned());
    match op {
        Op::Mkdir(i) => {
            let (d, n) = split(&ps[*i]);
            let dir = resolve_dir(e, &d).await?;
            e.mkdir(ME, dir, n.as_bytes(), 0o755).await.map(drop)
        }
        Op::Symlink(i) => {
            let (d, n) = split(&ps[*i]);
            let dir = resolve_dir(e, &d).await?;
            let target = format!("target-of-{n}");
            e.symlink(ME, dir, n.as_bytes(), target.as_bytes())
                .await
                .map(drop)
        }
        Op::Create(i, data) => {
            let (d, n) = split(&ps[*i]);
            let dir = resolve_dir(e, &d).await?;
            let how = OpenIn {
                write: true,
                read: true,
                exclusive: true,
                ..Default::default()
            };
            let (entry, open) = e.create(ME, dir, n.as_bytes(), 0o644, how).await?;
            let ino = entry.attr.ino;
            // As the kernel does, the handle is released whatever happened.
            let written = e.write(ino, open.fh, 0, data).await.map(drop);
            let flushed = e.flush(ino, open.fh).await;
            let released = e.release(ino, open.fh).await;
            written.and(flushed).and(released)
        }
        Op::WriteAt(i, off, data) => {
            let ino = resolve(e, &ps[*i]).await?;
            let attr = e.getattr(ino).await?.0;
            match attr.kind {
                FileKind::File => {}
                FileKind::Dir => return Err(FsError::IsDir(ps[*i].clone())),
                _ => return Err(FsError::Invalid(ps[*i].clone())),
            }
            let open = e
                .open(
                    ino,
                    OpenIn {
                        write: true,
                        read: true,
                        ..Default::default()
                    },
                )
                .await?;
            e.write(ino, open.fh, u64::from(*off), data).await?;
            e.flush(ino, open.fh).await?;
            e.release(ino, open.fh).await
        }
        Op::Truncate(i, n) => {
            let ino = resolve(e, &ps[*i]).await?;
            e.setattr(
                ino,
                None,
                SetAttrIn {
                    size: Some(u64::from(*n)),
                    ..Default::default()
                },
            )
            .await
            .map(drop)
        }
        Op::Unlink(i) => {
            let (d, n) = split(&ps[*i]);
            let dir = resolve_dir(e, &d).await?;
            e.unlink(dir, n.as_bytes()).await
        }
        Op::Rmdir(i) => {
            let (d, n) = split(&ps[*i]);
            let dir = resolve_dir(e, &d).await?;
            e.rmdir(dir, n.as_bytes()).await
        }
        Op::Link(a, b) => {
            resolve_dir(e, parent(&ps[*a])).await?;
            let (d, n) = split(&ps[*b]);
            let dir = resolve_dir(e, &d).await?;
            let ino = resolve(e, &ps[*a]).await?;
            e.link(ino, dir, n.as_bytes()).await.map(drop)
        }
        Op::Rename(a, b) => {
            let (d1, n1) = split(&ps[*a]);
            let (d2, n2) = split(&ps[*b]);
            let from = resolve_dir(e, &d1).await?;
            let to = resolve_dir(e, &d2).await?;
            e.rename(from, n1.as_bytes(), to, n2.as_bytes(), RenameMode::Replace)
                .await
        }
        Op::Fsync | Op::Remount | Op::Expire | Op::Forget => Ok(()),
    }
}

/// The engine's whole tree: path → kind and bytes (files) or target (links).
async fn snapshot<V: Vfs>(e: &V) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let open = e.opendir(dir).await.unwrap();
        let entries = e.readdir(dir, open.fh, 0).await.unwrap();
        e.releasedir(dir, open.fh);
        for d in entries.iter().filter(|d| d.name != "." && d.name != "..") {
            let path = format!("{prefix}/{}", d.name);
            let ino = d.entry.attr.ino;
            let desc = match d.entry.attr.kind {
                FileKind::Dir => {
                    stack.push((ino, path.clone()));
                    "dir".to_owned()
                }
                FileKind::Symlink => {
                    format!(
                        "link {}",
                        String::from_utf8(e.readlink(ino).await.unwrap()).unwrap()
                    )
                }
                _ => {
                    let data = crate::read_whole(e, ino, 1 << 16).await;
                    assert_eq!(d.entry.attr.size, data.len() as u64, "size of {path}");
                    format!("file {data:?}")
                }
            };
            out.insert(path, desc);
        }
    }
    out
}

fn model_snapshot(m: &Model) -> BTreeMap<String, String> {
    m.tree
        .iter()
        .map(|(p, n)| {
            let desc = match n {
                Node::Dir => "dir".to_owned(),
                Node::Link(_, t) => format!("link {t}"),
                Node::File(id) => format!("file {:?}", m.files[id]),
            };
            (p.clone(), desc)
        })
        .collect()
}

/// Every reference the kernel could hold, dropped (inode numbers are given out in order).
fn forget_all(e: &impl Vfs) {
    for ino in 2..2000 {
        e.forget(ino, u64::MAX);
    }
}

/// The server's whole tree in the same form.
async fn server_snapshot(w: &World) -> BTreeMap<String, String> {
    let all = w
        .api
        .manifest(&w.ctx, &w.session, ManifestRequest::default())
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for e in all.entries.items.into_iter().filter(|e| e.path != "/") {
        let desc = match e.kind {
            aether_domain::EntryKind::Directory => "dir".to_owned(),
            aether_domain::EntryKind::Symlink => {
                format!("link {}", e.target.clone().unwrap_or_default())
            }
            _ => format!("file {:?}", w.server_read(&e.path).await.unwrap()),
        };
        out.insert(e.path, desc);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_reference_file_system(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let ps = paths();
            let w = World::new().await;
            let config = patient(w.config());
            let mut e = w.mount_with(config.clone()).await;
            let mut model = Model::default();
            for (step, op) in ops.iter().enumerate() {
                let want = model.apply(op, &ps);
                match op {
                    Op::Fsync => write_back(&e).await,
                    Op::Forget => forget_all(&*e),
                    Op::Expire => w.clock.advance(std::time::Duration::from_secs(3600)),
                    Op::Remount => {
                        // A crash: staging areas go, the journal and blobs stay.
                        drop(e);
                        w.cache.crash();
                        e = w.mount_with(config.clone()).await;
                        write_back(&e).await;
                    }
                    _ => {
                        let got = want_of(&run_op(&*e, op, &ps).await);
                        assert_eq!(got, want, "step {step}: {op:?}");
                    }
                }
                if !matches!(op, Op::Expire) {
                    assert_eq!(snapshot(&*e).await, model_snapshot(&model), "after step {step}: {op:?}");
                }
            }
            write_back(&e).await;
            assert_eq!(e.cache().journal_rejected().unwrap(), vec![], "the server refused nothing");
            assert_eq!(server_snapshot(&w).await, model_snapshot(&model), "the server's tree");
        });
    }

    /// Outages and lost replies between the engine and the server: every operation either
    /// does what the reference does or fails with a clear error and changes nothing; the tree
    /// stays consistent and, once the server answers again, the server holds exactly it.
    #[test]
    fn engine_stays_consistent_under_remote_faults(
        steps in proptest::collection::vec((op(), injected()), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let ps = paths();
            let w = World::new().await;
            let plan = FaultPlan::default();
            let mount = || async {
                let e = Engine::new(Faulty::new(w.api.clone(), plan.clone()), w.cache.clone(), w.clock.clone(), patient(w.config()));
                e.start().await.unwrap();
                e
            };
            let mut e = mount().await;
            let mut model = Model::default();
            for (step, (op, fault)) in steps.iter().enumerate() {
                let before = model.clone();
                let want = model.apply(op, &ps);
                arm(&plan, fault);
                match op {
                    Op::Fsync => write_back(&e).await,
                    Op::Forget => forget_all(&e),
                    Op::Expire => w.clock.advance(std::time::Duration::from_secs(3600)),
                    Op::Remount => {
                        plan.clear();
                        drop(e);
                        w.cache.crash();
                        e = mount().await;
                        write_back(&e).await;
                    }
                    _ => match run_op(&e, op, &ps).await {
                        Err(FsError::TimedOut(_)) => model = before,
                        other => assert_eq!(want_of(&other), want, "step {step}: {op:?} with {fault:?}"),
                    },
                }
                plan.clear();
                // Expiry is checked by the next operation, which must re-read from the server.
                if !matches!(op, Op::Expire) {
                    assert_eq!(snapshot(&e).await, model_snapshot(&model), "after step {step}: {op:?} with {fault:?}");
                }
            }
            plan.clear();
            write_back(&e).await;
            assert_eq!(e.cache().journal_rejected().unwrap(), vec![], "the server refused nothing");
            assert_eq!(server_snapshot(&w).await, model_snapshot(&model), "the server's tree");
        });
    }
}
