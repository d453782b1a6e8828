//! `fuser::Filesystem` over a `Vfs`: every request becomes a task on the runtime that calls the
//! `Vfs` and replies, so slow remote calls never hold a FUSE worker thread.

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use aether_ports::vfs::*;
use fuser::*;

use crate::MountSpec;
use crate::errno::errno_of;

pub(crate) struct Bridge<V> {
    vfs: Arc<V>,
    rt: tokio::runtime::Handle,
    spec: MountSpec,
}

/// Replies that can carry an error.
trait Fail: Send + 'static {
    fn fail(self, e: Errno);
}

macro_rules! fail {
    ($($t:ty),*) => {$(impl Fail for $t { fn fail(self, e: Errno) { self.error(e) } })*};
}
fail!(
    ReplyEntry,
    ReplyAttr,
    ReplyData,
    ReplyEmpty,
    ReplyOpen,
    ReplyWrite,
    ReplyCreate,
    ReplyDirectory,
    ReplyDirectoryPlus,
    ReplyStatfs,
    ReplyXattr
);

fn kind_of(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime.to_system_time(),
        mtime: a.mtime.to_system_time(),
        ctime: a.ctime.to_system_time(),
        crtime: a.ctime.to_system_time(),
        kind: kind_of(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn time_set(t: TimeOrNow) -> TimeSet {
    match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(st) => {
            let nanos = match st.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => d.as_nanos() as i64,
                Err(e) => -(e.duration().as_nanos() as i64),
            };
            TimeSet::At(aether_domain::Timestamp::from_nanos(nanos))
        }
    }
}

fn open_in(flags: i32) -> OpenIn {
    let acc = flags & libc::O_ACCMODE;
    OpenIn {
        read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
        write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
        truncate: flags & libc::O_TRUNC != 0,
        append: flags & libc::O_APPEND != 0,
        exclusive: flags & libc::O_EXCL != 0,
    }
}

/// The open flags for the kernel; `writeback_cache`: the mount asked the kernel to cache
/// writes, so no handle bypasses its page cache.
fn fopen(o: &OpenOut, writeback_cache: bool) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.direct_io && !writeback_cache {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.cache_dir {
        f |= FopenFlags::FOPEN_CACHE_DIR;
    }
    if o.no_flush {
        f |= FopenFlags::FOPEN_NOFLUSH;
    }
    f
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn node_kind(mode: u32) -> Option<FileKind> {
    Some(match mode & libc::S_IFMT {
        libc::S_IFREG | 0 => FileKind::File,
        libc::S_IFIFO => FileKind::Fifo,
        libc::S_IFSOCK => FileKind::Socket,
        libc::S_IFCHR => FileKind::CharDevice,
        libc::S_IFBLK => FileKind::BlockDevice,
        libc::S_IFDIR => FileKind::Dir,
        _ => return None,
    })
}

impl<V: Vfs> Bridge<V> {
    pub(crate) fn new(vfs: Arc<V>, rt: tokio::runtime::Handle, spec: MountSpec) -> Self {
        Bridge { vfs, rt, spec }
    }

    /// Runs `op`; replies with `ok` on success, the errno on failure. The future is polled
    /// once on the FUSE thread: answers that need no I/O (most, with a warm cache) go back
    /// without a hop to the runtime; the rest continue there.
    fn run<T, R, Fut>(
        &self,
        name: &'static str,
        reply: R,
        op: impl FnOnce(Arc<V>) -> Fut,
        ok: impl FnOnce(R, T) + Send + 'static,
    ) where
        T: Send + 'static,
        R: Fail,
        Fut: Future<Output = FsResult<T>> + Send + 'static,
    {
        let _in_runtime = self.rt.enter();
        // One span per kernel request: remote calls it makes join its trace.
        let span = tracing::info_span!("fuse", otel.name = name);
        let _entered = span.enter();
        let mut fut = Box::pin(op(self.vfs.clone()));
        let mut cx = Context::from_waker(Waker::noop());
        let observed = self
            .spec
            .observe
            .clone()
            .map(|o| (o, std::time::Instant::now()));
        let finish = move |result: FsResult<T>| {
            if let Some((o, start)) = observed {
                (o.0)(name, start.elapsed(), result.is_ok());
            }
            match result {
                Ok(v) => ok(reply, v),
                Err(e) => {
                    tracing::debug!(target: "aether_fuse", error = %e, "operation failed");
                    reply.fail(errno_of(&e));
                }
            }
        };
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(result) => finish(result),
            Poll::Pending => {
                use tracing::Instrument;
                self.rt
                    .spawn(async move { finish(fut.await) }.instrument(span.clone()));
            }
        }
    }
}

/// The attributes of a remembered absence (inode 0).
fn negative_attr() -> FileAttr {
    let epoch = SystemTime::UNIX_EPOCH;
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        crtime: epoch,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn entry(reply: ReplyEntry, e: EntryOut) {
    reply.entry_with_ttls(
        &e.entry_ttl,
        &e.attr_ttl,
        &file_attr(&e.attr),
        Generation(0),
    );
}

impl<V: Vfs> Filesystem for Bridge<V> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        let mut wanted = vec![
            InitFlags::FUSE_ASYNC_READ,
            InitFlags::FUSE_BIG_WRITES,
            InitFlags::FUSE_MAX_PAGES,
            // Every listing carries attributes (no `FUSE_READDIRPLUS_AUTO`): the kernel's
            // heuristic sends plain pages after the first whenever a program reads the whole
            // listing before it stats the entries, as `ls -l` does, and each entry of those
            // pages then costs a `LOOKUP` (100,000 of them for one directory of 100,000 files).
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_CACHE_SYMLINKS,
            // The kernel then caches each inode's (absent) ACL instead of asking us on every
            // `ls -l`; sessions store no ACLs, so setting one fails with EOPNOTSUPP.
            InitFlags::FUSE_POSIX_ACL,
            // Clearing set-ID bits on write, truncate and chown becomes ours (the engine's
            // `drop_setid`); in return the kernel asks for `security.capability` once per
            // file instead of before every write.
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ];
        if self.spec.writeback_cache {
            wanted.push(InitFlags::FUSE_WRITEBACK_CACHE);
        }
        for flag in wanted {
            if config.add_capabilities(flag).is_err() {
                tracing::info!(target: "aether_fuse", ?flag, "the kernel does not offer this FUSE feature");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes().to_vec();
        let negative_ttl = self.spec.negative_ttl;
        self.run(
            "lookup",
            reply,
            |v| async move {
                match v.lookup(parent.0, &name).await {
                    Ok(e) => Ok(Some(e)),
                    Err(FsError::NotFound(_)) if !negative_ttl.is_zero() => Ok(None),
                    Err(e) => Err(e),
                }
            },
            move |r, found| match found {
                Some(e) => entry(r, e),
                // A zero inode with a TTL lets the kernel remember the absence.
                None => r.entry_with_ttls(
                    &negative_ttl,
                    &Duration::ZERO,
                    &negative_attr(),
                    Generation(0),
                ),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.run(
            "getattr",
            reply,
            |v| async move { v.getattr(ino.0).await },
            |r, (a, ttl)| r.attr(&ttl, &file_attr(&a)),
        );
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttrIn {
            perm: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: atime.map(time_set),
            mtime: mtime.map(time_set),
            // fuser does not pass on the kernel's FATTR_KILL_SUIDGID; root stands for the
            // holder of CAP_FSETID.
            drop_setid: req.uid() != 0,
        };
        self.run(
            "setattr",
            reply,
            |v| async move { v.setattr(ino.0, fh.map(|f| f.0), set).await },
            |r, (a, ttl)| r.attr(&ttl, &file_attr(&a)),
        );
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.run(
            "readlink",
            reply,
            |v| async move { v.readlink(ino.0).await },
            |r, t| r.data(&t),
        );
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let Some(kind) = node_kind(mode) else {
            reply.error(Errno::EINVAL);
            return;
        };
        let (name, who) = (name.as_bytes().to_vec(), caller(req));
        let perm = mode & 0o7777 & !umask;
        self.run(
            "mknod",
            reply,
            |v| async move { v.mknod(who, parent.0, &name, kind, perm, rdev).await },
            entry,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, who) = (name.as_bytes().to_vec(), caller(req));
        let perm = mode & 0o7777 & !umask;
        self.run(
            "mkdir",
            reply,
            |v| async move { v.mkdir(who, parent.0, &name, perm).await },
            entry,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.run(
            "unlink",
            reply,
            |v| async move { v.unlink(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.run(
            "rmdir",
            reply,
            |v| async move { v.rmdir(parent.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (name, who) = (link_name.as_bytes().to_vec(), caller(req));
        let target = target.as_os_str().as_bytes().to_vec();
        self.run(
            "symlink",
            reply,
            |v| async move { v.symlink(who, parent.0, &name, &target).await },
            entry,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mode = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            RenameMode::Exchange
        } else if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            RenameMode::NoReplace
        } else if flags.is_empty() {
            RenameMode::Replace
        } else {
            // RENAME_WHITEOUT is for overlay file systems.
            reply.error(Errno::EINVAL);
            return;
        };
        let (name, newname) = (name.as_bytes().to_vec(), newname.as_bytes().to_vec());
        self.run(
            "rename",
            reply,
            |v| async move { v.rename(parent.0, &name, newparent.0, &newname, mode).await },
            |r, ()| r.ok(),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.as_bytes().to_vec();
        self.run(
            "link",
            reply,
            |v| async move { v.link(ino.0, newparent.0, &newname).await },
            entry,
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let how = open_in(flags.0);
        // An `O_TRUNC` open truncates here (FUSE_ATOMIC_O_TRUNC); as with `setattr`, root
        // stands for the holder of CAP_FSETID.
        let drop_setid = how.truncate && req.uid() != 0;
        let writeback_cache = self.spec.writeback_cache;
        self.run(
            "open",
            reply,
            |v| async move {
                let opened = v.open(ino.0, how).await?;
                if drop_setid {
                    v.drop_setid(ino.0).await?;
                }
                Ok(opened)
            },
            move |r, o| r.opened(FileHandle(o.fh), fopen(&o, writeback_cache)),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.run(
            "read",
            reply,
            |v| async move { v.read(ino.0, fh.0, offset, size).await },
            |r, data| r.data(&data),
        );
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = data.to_vec();
        let drop_setid = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        self.run(
            "write",
            reply,
            |v| async move {
                if drop_setid {
                    v.drop_setid(ino.0).await?;
                }
                v.write(ino.0, fh.0, offset, &data).await
            },
            |r, n| r.written(n),
        );
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.run(
            "flush",
            reply,
            |v| async move { v.flush(ino.0, fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.run(
            "release",
            reply,
            |v| async move { v.release(ino.0, fh.0).await },
            |r, ()| r.ok(),
        );
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(
            "fsync",
            reply,
            |v| async move { v.fsync(ino.0, Some(fh.0)).await },
            |r, ()| r.ok(),
        );
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.run(
            "opendir",
            reply,
            |v| async move { v.opendir(ino.0).await },
            |r, o| r.opened(FileHandle(o.fh), fopen(&o, false)),
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.run(
            "readdir",
            reply,
            |v| async move { v.readdir(ino.0, fh.0, offset).await },
            |mut r, entries| {
                for e in entries.iter() {
                    let kind = kind_of(e.entry.attr.kind);
                    if r.add(INodeNo(e.entry.attr.ino), e.offset, kind, &e.name) {
                        break;
                    }
                }
                r.ok();
            },
        );
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let vfs = self.vfs.clone();
        self.run(
            "readdirplus",
            reply,
            |v| async move { v.readdir(ino.0, fh.0, offset).await },
            move |mut r, entries| {
                // The kernel takes a reference to every entry it is sent but `.` and `..`.
                let mut sent = Vec::new();
                for e in entries.iter() {
                    let attr = file_attr(&e.entry.attr);
                    let full = r.add(
                        INodeNo(e.entry.attr.ino),
                        e.offset,
                        &e.name,
                        &e.entry.entry_ttl,
                        &attr,
                        Generation(0),
                    );
                    if full {
                        break;
                    }
                    if e.name != "." && e.name != ".." {
                        sent.push(e.entry.attr.ino);
                    }
                }
                vfs.remember(&sent);
                r.ok();
            },
        );
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.vfs.releasedir(ino.0, fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.run(
            "fsyncdir",
            reply,
            |v| async move { v.fsync(ino.0, None).await },
            |r, ()| r.ok(),
        );
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.run(
            "statfs",
            reply,
            |v| async move { v.statfs().await },
            |r, s| {
                r.statfs(
                    s.blocks,
                    s.blocks_free,
                    s.blocks_free,
                    s.files,
                    s.files_free,
                    s.block_size,
                    s.name_max,
                    s.block_size,
                )
            },
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mode = if flags & libc::XATTR_CREATE != 0 {
            XattrMode::CreateOnly
        } else if flags & libc::XATTR_REPLACE != 0 {
            XattrMode::ReplaceOnly
        } else {
            XattrMode::Upsert
        };
        let (name, value) = (name.as_bytes().to_vec(), value.to_vec());
        self.run(
            "setxattr",
            reply,
            |v| async move { v.setxattr(ino.0, &name, &value, mode).await },
            |r, ()| r.ok(),
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.as_bytes().to_vec();
        self.run(
            "getxattr",
            reply,
            |v| async move { v.getxattr(ino.0, &name).await },
            move |r, value| sized(r, size, &value),
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.run(
            "listxattr",
            reply,
            |v| async move { v.listxattr(ino.0).await },
            move |r, names| {
                let mut buf = Vec::new();
                for n in names {
                    buf.extend_from_slice(n.as_bytes());
                    buf.push(0);
                }
                sized(r, size, &buf);
            },
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.as_bytes().to_vec();
        self.run(
            "removexattr",
            reply,
            |v| async move { v.removexattr(ino.0, &name).await },
            |r, ()| r.ok(),
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Permission checks are the kernel's (default_permissions); this only confirms existence.
        self.run(
            "access",
            reply,
            |v| async move { v.getattr(ino.0).await },
            |r, _| r.ok(),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (name, who) = (name.as_bytes().to_vec(), caller(req));
        let perm = mode & 0o7777 & !umask;
        let how = open_in(flags);
        let writeback_cache = self.spec.writeback_cache;
        self.run(
            "create",
            reply,
            |v| async move { v.create(who, parent.0, &name, perm, how).await },
            move |r, (e, o)| {
                r.created(
                    &e.entry_ttl,
                    &file_attr(&e.attr),
                    Generation(0),
                    FileHandle(o.fh),
                    fopen(&o, writeback_cache),
                )
            },
        );
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No device controls on session files; tools probe (terminal checks) and expect ENOTTY.
        reply.error(Errno::ENOTTY);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        // ENOSYS tells the kernel, once per mount, to copy through read and write itself
        // (`cp` tries this first on every file); fuser's default also logs a warning.
        reply.error(Errno::ENOSYS);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        // Only SEEK_DATA and SEEK_HOLE reach us; ENOSYS makes the kernel answer them itself
        // from then on (the whole file is data), as for a file system without holes.
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.run(
            "fallocate",
            reply,
            |v| async move { v.fallocate(ino.0, fh.0, offset, length, mode).await },
            |r, ()| r.ok(),
        );
    }
}

/// Answers an xattr request: the size when asked for it, `ERANGE` when the buffer is short.
fn sized(r: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        r.size(data.len() as u32);
    } else if data.len() > size as usize {
        r.error(Errno::ERANGE);
    } else {
        r.data(data);
    }
}
