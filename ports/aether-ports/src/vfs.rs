//! The mount's inbound port: the file-system operations a kernel bridge (FUSE) drives, in
//! inode terms, with errors named by their POSIX meaning. The engine implements it; the FUSE
//! adapter translates kernel requests into these calls and errors into errno.

use std::future::Future;
use std::time::Duration;

use aether_domain::Timestamp;

/// The root directory's inode number, fixed by the kernel protocol.
pub const ROOT_INO: u64 = 1;

/// A file-system failure, named by the POSIX error it stands for; the FUSE adapter holds the one
/// mapping to errno numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Exists(String),
    #[error("not a directory: {0}")]
    NotDir(String),
    #[error("is a directory: {0}")]
    IsDir(String),
    #[error("directory not empty: {0}")]
    NotEmpty(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("name too long: {0}")]
    NameTooLong(String),
    /// A name that is not valid UTF-8 (the session API stores UTF-8 paths only).
    #[error("illegal byte sequence in name: {0}")]
    IllegalName(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("operation not permitted: {0}")]
    NotPermitted(String),
    #[error("read-only file system: {0}")]
    ReadOnly(String),
    #[error("no space or quota left: {0}")]
    NoSpace(String),
    /// A file would grow past the largest size the server stores.
    #[error("file too large: {0}")]
    TooBig(String),
    #[error("no such attribute: {0}")]
    NoAttribute(String),
    #[error("value does not fit the buffer: {0}")]
    Range(String),
    #[error("bad file handle: {0}")]
    BadHandle(String),
    #[error("too many levels of symbolic links: {0}")]
    Loop(String),
    #[error("operation not supported: {0}")]
    Unsupported(String),
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("input/output error: {0}")]
    Io(String),
}

pub type FsResult<T> = std::result::Result<T, FsError>;

/// What kind of object an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Attributes of one inode, as `stat` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (no file-type bits).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    pub rdev: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

/// A lookup answer: the attributes and how long the kernel may keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOut {
    pub attr: Attr,
    pub entry_ttl: Duration,
    pub attr_ttl: Duration,
}

/// An open answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOut {
    pub fh: u64,
    /// The content has not changed since the kernel last cached it: keep its page cache.
    pub keep_cache: bool,
    /// Let the kernel cache this directory's listing between opens.
    pub cache_dir: bool,
    /// Closing this handle needs no word to the file system (nothing to commit): the kernel
    /// skips its `flush` round trip.
    pub no_flush: bool,
    /// Writes through this handle may bypass the kernel's page cache (`FOPEN_DIRECT_IO`): it
    /// is write-only and starts the content over, so a cached copy of what it writes would be a
    /// second copy in memory that it cannot read back (the bridge keeps the cache when the
    /// mount asked for the kernel's write-back cache).
    pub direct_io: bool,
}

/// How a file is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenIn {
    pub write: bool,
    pub read: bool,
    pub truncate: bool,
    pub append: bool,
    pub exclusive: bool,
}

/// Who is asking (for the owner of new objects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A time given to `setattr`: a value, or the moment the request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    At(Timestamp),
    Now,
}

/// The fields `setattr` changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttrIn {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    /// The caller lacks the privilege to keep set-user-ID and set-group-ID through a change
    /// of size: they are cleared with it (see [`Vfs::drop_setid`]).
    pub drop_setid: bool,
}

/// One directory entry, with attributes for `readdirplus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryOut {
    pub name: String,
    /// Position to resume after this entry.
    pub offset: u64,
    pub entry: EntryOut,
}

/// A directory's entries from one position on: a view into the listing its handle took, so
/// that reading a large directory page by page copies nothing per page.
#[derive(Debug, Clone)]
pub struct DirEntries {
    all: std::sync::Arc<[DirEntryOut]>,
    from: usize,
}

impl DirEntries {
    /// The entries of `all` from index `from` on (none past the end).
    pub fn new(all: std::sync::Arc<[DirEntryOut]>, from: usize) -> Self {
        let from = from.min(all.len());
        DirEntries { all, from }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, DirEntryOut> {
        self.all[self.from..].iter()
    }

    pub fn len(&self) -> usize {
        self.all.len() - self.from
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How `rename` treats an existing destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RenameMode {
    #[default]
    Replace,
    NoReplace,
    Exchange,
}

/// How `setxattr` treats an existing attribute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XattrMode {
    #[default]
    Upsert,
    CreateOnly,
    ReplaceOnly,
}

/// File-system totals for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatfsOut {
    pub blocks: u64,
    pub blocks_free: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_size: u32,
    pub name_max: u32,
}

/// The file system a kernel bridge serves. Names arrive as raw bytes (the kernel's view) and
/// are validated by the implementation.
pub trait Vfs: Send + Sync + 'static {
    fn lookup(&self, parent: u64, name: &[u8]) -> impl Future<Output = FsResult<EntryOut>> + Send;
    /// The kernel dropped `n` references to `ino`.
    fn forget(&self, ino: u64, n: u64);
    /// The kernel took one more reference to each of `inos`: the entries of a `readdirplus`
    /// reply it was sent (all but `.` and `..`). The replies of `lookup`, `mknod`, `mkdir`,
    /// `symlink`, `link` and `create` count their entry themselves. Told before the reply is
    /// sent, so that the matching `forget` cannot come first.
    fn remember(&self, inos: &[u64]);
    fn getattr(&self, ino: u64) -> impl Future<Output = FsResult<(Attr, Duration)>> + Send;
    fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        set: SetAttrIn,
    ) -> impl Future<Output = FsResult<(Attr, Duration)>> + Send;
    fn readlink(&self, ino: u64) -> impl Future<Output = FsResult<Vec<u8>>> + Send;
    fn mknod(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        rdev: u32,
    ) -> impl Future<Output = FsResult<EntryOut>> + Send;
    fn mkdir(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
    ) -> impl Future<Output = FsResult<EntryOut>> + Send;
    fn unlink(&self, parent: u64, name: &[u8]) -> impl Future<Output = FsResult<()>> + Send;
    fn rmdir(&self, parent: u64, name: &[u8]) -> impl Future<Output = FsResult<()>> + Send;
    fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> impl Future<Output = FsResult<EntryOut>> + Send;
    fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> impl Future<Output = FsResult<()>> + Send;
    fn link(
        &self,
        ino: u64,
        new_parent: u64,
        new_name: &[u8],
    ) -> impl Future<Output = FsResult<EntryOut>> + Send;
    fn open(&self, ino: u64, how: OpenIn) -> impl Future<Output = FsResult<OpenOut>> + Send;
    fn create(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
        how: OpenIn,
    ) -> impl Future<Output = FsResult<(EntryOut, OpenOut)>> + Send;
    fn read(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> impl Future<Output = FsResult<Vec<u8>>> + Send;
    fn write(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
    ) -> impl Future<Output = FsResult<u32>> + Send;
    /// Clears set-user-ID, and set-group-ID where group execute is set, as Linux does when a
    /// caller without `CAP_FSETID` writes to or truncates a file. A FUSE kernel that lets the
    /// file system do this (`FUSE_HANDLE_KILLPRIV_V2`) stops asking for `security.capability`
    /// before every write, one round trip per written file.
    fn drop_setid(&self, ino: u64) -> impl Future<Output = FsResult<()>> + Send;
    /// Called at every `close` of a descriptor: the data becomes durable in the local journal.
    fn flush(&self, ino: u64, fh: u64) -> impl Future<Output = FsResult<()>> + Send;
    fn release(&self, ino: u64, fh: u64) -> impl Future<Output = FsResult<()>> + Send;
    /// Returns once the server holds the file's data.
    fn fsync(&self, ino: u64, fh: Option<u64>) -> impl Future<Output = FsResult<()>> + Send;
    fn opendir(&self, ino: u64) -> impl Future<Output = FsResult<OpenOut>> + Send;
    /// Entries from position `offset` on (0 = the start, including `.` and `..`).
    fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> impl Future<Output = FsResult<DirEntries>> + Send;
    fn releasedir(&self, ino: u64, fh: u64);
    fn statfs(&self) -> impl Future<Output = FsResult<StatfsOut>> + Send;
    fn setxattr(
        &self,
        ino: u64,
        name: &[u8],
        value: &[u8],
        mode: XattrMode,
    ) -> impl Future<Output = FsResult<()>> + Send;
    fn getxattr(&self, ino: u64, name: &[u8]) -> impl Future<Output = FsResult<Vec<u8>>> + Send;
    fn listxattr(&self, ino: u64) -> impl Future<Output = FsResult<Vec<String>>> + Send;
    fn removexattr(&self, ino: u64, name: &[u8]) -> impl Future<Output = FsResult<()>> + Send;
    /// Reserve space (mode 0 only): the file grows to at least `offset + length`.
    fn fallocate(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> impl Future<Output = FsResult<()>> + Send;
}

/// Called once the kernel holds (or has refused) what [`KernelNotifier::store`] sent.
pub type Stored = Box<dyn FnOnce() + Send>;

/// The engine's way to tell the kernel what it cached is out of date, or to fill its cache.
///
/// Calls take effect in the order they were made.
pub trait KernelNotifier: Send + Sync + 'static {
    /// Forget the name `name` in directory `parent`.
    fn invalidate_entry(&self, parent: u64, name: &str);
    /// Forget the attributes and cached content of `ino`.
    fn invalidate_inode(&self, ino: u64);
    /// Put `content`, the whole content of file `ino`, into the kernel's page cache, then call
    /// `stored`. The kernel may decline (it no longer knows `ino`); `stored` is called anyway.
    fn store(&self, ino: u64, content: Vec<u8>, stored: Stored);
}

/// A notifier for engines not attached to a kernel (tests, before the mount is up).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoKernel;

impl KernelNotifier for NoKernel {
    fn invalidate_entry(&self, _parent: u64, _name: &str) {}
    fn invalidate_inode(&self, _ino: u64) {}
    fn store(&self, _ino: u64, _content: Vec<u8>, stored: Stored) {
        stored();
    }
}
