//! The mount's local cache on disk (adapter layer): content blobs by SHA-256 (or by a local
//! name until the server names them), staging files for dirty data, and the write journal in a SQLite index, laid out per SPEC 5.2 with every
//! directory 0700; plus the host-wide shared blob store that lets sessions on one host keep one
//! copy of identical content (hard links counted in `refcounts.db`). Content up to
//! [`INLINE_MAX_BYTES`] is staged in memory and kept in the index instead of as files.

mod inline;
mod journal;
mod layout;
mod shared;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aether_domain::Timestamp;
use aether_ports::local_cache::*;
use sha2::{Digest, Sha256};

pub use inline::INLINE_MAX_BYTES;
pub use journal::{FlushReason, JournalCounters, SyncPolicy};
pub use layout::{SessionLayout, ensure_private_dir};
pub use shared::SharedStore;

/// Open blob files kept for repeated reads (sequential reads come in 128 KiB–1 MiB pieces).
const OPEN_BLOB_LIMIT: usize = 256;

/// A blob opened for reading whose time is older than this gets the current time, so that
/// eviction (oldest first) spares what is being read; younger ones are left alone, which keeps
/// a write off every open.
const TOUCH_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Blob aliases remembered ([`DiskCache::aliases`]); past this many they are forgotten.
const ALIAS_LIMIT: usize = 8192;

/// A blob read from the start, sharing the cache's descriptor (positional reads).
struct BlobReader {
    file: Arc<File>,
    at: u64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A staging area: small content in memory until it outgrows [`INLINE_MAX_BYTES`].
enum Stage {
    Memory(Vec<u8>),
    File(Arc<File>),
}

/// The on-disk cache of one mounted session.
pub struct DiskCache {
    layout: SessionLayout,
    journal: journal::Journal,
    shared: Option<SharedStore>,
    stages: Mutex<HashMap<u64, Stage>>,
    /// Staging files that share their inode with a blob (committed, or opened over it, by
    /// hard link), and that blob's name: the next change must first give them an inode of
    /// their own (blobs never change), or take the blob's names away when nothing needs them
    /// any more ([`DiskCache::reclaim_in_place`]).
    linked: Mutex<HashMap<u64, String>>,
    /// The other name of a blob named twice by hard link (its local name and the server's
    /// digest, [`LocalCache::blob_name`]), both ways, so that taking a blob's names away takes
    /// both. Bounded: a forgotten alias costs a copy, never content.
    aliases: Mutex<HashMap<String, String>>,
    open_blobs: Mutex<HashMap<String, Arc<File>>>,
    /// Every descriptor of a blob handed out, by name, for as long as anyone holds it (the
    /// cache above forgets its own when full): a staging file is changed in place only when
    /// no descriptor of the content it held is alive ([`DiskCache::reclaim_in_place`]).
    lent: Mutex<HashMap<String, Vec<std::sync::Weak<File>>>>,
    /// Blob shard directories (`blobs/<aa>`) known to exist with mode 0700, by their first
    /// byte (and `blobs/local` last): checking on every commit cost two `stat`s per small file.
    shards_ready: [AtomicBool; 257],
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CacheError {
    if e.raw_os_error() == Some(28) || e.raw_os_error() == Some(122) {
        return CacheError::NoSpace(format!("{what} {}: {e}", path.display()));
    }
    CacheError::Backend(format!("{what} {}: {e}", path.display()))
}

/// Whether `hash` is a SHA-256 hex digest.
fn is_digest(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A blob name: a SHA-256 hex digest, or a local name the server has not named yet.
fn valid_hash(hash: &str) -> Result<(), CacheError> {
    if is_digest(hash) || LocalName::is(hash) {
        Ok(())
    } else {
        Err(CacheError::Backend(format!(
            "{hash:?} is neither a SHA-256 hex digest nor a local blob name"
        )))
    }
}

/// The shard directory of a valid blob name (`blobs/<aa>`, or `blobs/local` for local names)
/// and its slot in `shards_ready`.
fn shard_of(hash: &str) -> (&str, usize) {
    if LocalName::is(hash) {
        ("local", 256)
    } else {
        (
            &hash[..2],
            usize::from_str_radix(&hash[..2], 16).unwrap_or(0),
        )
    }
}

impl DiskCache {
    /// Opens (creating if needed) the cache of `session` under `cache_dir`.
    pub fn open(
        cache_dir: &Path,
        session: &str,
        policy: SyncPolicy,
        shared: Option<SharedStore>,
    ) -> Result<DiskCache, CacheError> {
        let layout = SessionLayout::create(cache_dir, session)?;
        let journal = journal::Journal::open(&layout.index.join("index.db"), policy)?;
        Ok(DiskCache {
            layout,
            journal,
            shared,
            stages: Mutex::new(HashMap::new()),
            linked: Mutex::new(HashMap::new()),
            aliases: Mutex::new(HashMap::new()),
            open_blobs: Mutex::new(HashMap::new()),
            lent: Mutex::new(HashMap::new()),
            shards_ready: [const { AtomicBool::new(false) }; 257],
        })
    }

    pub fn layout(&self) -> &SessionLayout {
        &self.layout
    }

    pub fn sync_policy(&self) -> SyncPolicy {
        self.journal.policy()
    }

    /// The `interval` policy's timer tick: a sync counted as such.
    pub fn journal_sync_on_timer(&self) -> CacheResult<()> {
        self.journal.sync(FlushReason::Interval)
    }

    /// Forced flushes and syncs so far, for metrics.
    pub fn journal_counters(&self) -> JournalCounters {
        self.journal.counters()
    }

    /// Under the `interval` policy, sync as soon as this many content bytes are unsynced.
    pub fn set_sync_backlog(&self, bytes: u64) {
        self.journal.set_backlog_limit(bytes);
    }

    /// Changes when the journal reaches stable storage, while mounted (SIGHUP).
    pub fn set_sync_policy(&self, policy: SyncPolicy) -> Result<(), CacheError> {
        self.journal.set_policy(policy)
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.layout.blobs.join(shard_of(hash).0).join(hash)
    }

    /// Makes sure the shard directory of `hash` (a valid digest) exists, at most once per mount
    /// unless [`Self::shard_lost`] reports it gone.
    fn ensure_shard(&self, hash: &str) -> Result<(), CacheError> {
        let (dir, at) = shard_of(hash);
        if self.shards_ready[at].load(Ordering::Acquire) {
            return Ok(());
        }
        ensure_private_dir(&self.layout.blobs.join(dir))?;
        self.shards_ready[at].store(true, Ordering::Release);
        Ok(())
    }

    /// Forgets that the shard of `hash` exists (something removed it under us).
    fn shard_lost(&self, hash: &str) {
        self.shards_ready[shard_of(hash).1].store(false, Ordering::Release);
    }

    fn partial_path(&self, hash: &str) -> PathBuf {
        self.layout.dirty.join(format!("partial-{hash}"))
    }

    fn stage_path(&self, stage: u64) -> PathBuf {
        self.layout.staging.join(stage.to_string())
    }

    fn blob_file(&self, hash: &str) -> Result<Arc<File>, CacheError> {
        valid_hash(hash)?;
        let mut open = self.open_blobs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = open.get(hash) {
            return Ok(f.clone());
        }
        let path = self.blob_path(hash);
        let f = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CacheError::Missing(format!("blob {hash}")));
            }
            Err(e) => return Err(io_err("open blob", &path, e)),
        };
        touch_if_stale(&f);
        if open.len() >= OPEN_BLOB_LIMIT {
            open.clear();
        }
        open.insert(hash.to_owned(), f.clone());
        let mut lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
        if lent.len() >= 4 * OPEN_BLOB_LIMIT {
            lent.retain(|_, held| {
                held.retain(|w| w.strong_count() > 0);
                !held.is_empty()
            });
        }
        lent.entry(hash.to_owned())
            .or_default()
            .push(Arc::downgrade(&f));
        Ok(f)
    }

    fn stages(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Stage>> {
        self.stages.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `op` on a staging area held in memory, or returns its file.
    fn with_stage<T>(
        &self,
        stage: u64,
        op: impl FnOnce(&mut Vec<u8>) -> T,
    ) -> Result<Result<T, Arc<File>>, CacheError> {
        match self.stages().get_mut(&stage) {
            Some(Stage::Memory(data)) => Ok(Ok(op(data))),
            Some(Stage::File(f)) => Ok(Err(f.clone())),
            None => Err(CacheError::Missing(format!("staging area {stage}"))),
        }
    }

    /// Applies a change reaching up to byte `end` to a staging area held in memory, if it
    /// still fits there; otherwise returns the file to apply it to (moved there first, or
    /// given an inode of its own if a blob shares it).
    fn change_stage(
        &self,
        stage: u64,
        end: u64,
        change: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Option<Arc<File>>, CacheError> {
        let fits = end <= INLINE_MAX_BYTES as u64;
        let in_memory = self.with_stage(stage, |buf| {
            if fits {
                change(buf);
            }
        })?;
        match in_memory {
            Ok(()) if fits => Ok(None),
            Ok(()) => self.spill(stage).map(Some),
            Err(_) => {
                self.unshare_stage(stage)?;
                self.stage_file(stage).map(Some)
            }
        }
    }

    /// The file of a staging area that has one (after [`Self::unshare_stage`], maybe a new one).
    fn stage_file(&self, stage: u64) -> Result<Arc<File>, CacheError> {
        match self.stages().get(&stage) {
            Some(Stage::File(f)) => Ok(f.clone()),
            Some(Stage::Memory(_)) => Err(CacheError::Backend(format!(
                "staging area {stage} is held in memory"
            ))),
            None => Err(CacheError::Missing(format!("staging area {stage}"))),
        }
    }

    /// Moves a staging area held in memory into a file of its own, for content that outgrew
    /// [`INLINE_MAX_BYTES`]; returns the file.
    fn spill(&self, stage: u64) -> Result<Arc<File>, CacheError> {
        let mut stages = self.stages();
        let data = match stages.get_mut(&stage) {
            Some(Stage::Memory(data)) => std::mem::take(data),
            Some(Stage::File(f)) => return Ok(f.clone()),
            None => return Err(CacheError::Missing(format!("staging area {stage}"))),
        };
        let path = self.stage_path(stage);
        let made = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|f| f.write_all_at(&data, 0).map(|()| f));
        match made {
            Ok(f) => {
                let f = Arc::new(f);
                stages.insert(stage, Stage::File(f.clone()));
                Ok(f)
            }
            Err(e) => {
                stages.insert(stage, Stage::Memory(data));
                Err(io_err("create staging file", &path, e))
            }
        }
    }

    /// Gives staging area `stage` an inode of its own if it shares one with a blob: the blob's
    /// names are taken away when nothing needs them, else the staged content is copied.
    fn unshare_stage(&self, stage: u64) -> Result<(), CacheError> {
        let name = self
            .linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stage);
        let Some(name) = name else {
            return Ok(());
        };
        let mut names = vec![name];
        names.extend(self.alias_of(&names[0]));
        if self.reclaim_in_place(stage, &names)? {
            return Ok(());
        }
        let path = self.stage_path(stage);
        let tmp = self.tmp_path("unshare");
        fs::copy(&path, &tmp).map_err(|e| io_err("copy staged content", &path, e))?;
        fs::rename(&tmp, &path).map_err(|e| io_err("replace staging file", &path, e))?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open staging file", &path, e))?;
        self.stages().insert(stage, Stage::File(Arc::new(f)));
        Ok(())
    }

    /// Takes the blob `names` of a committed staging file away so that the next write can
    /// change the file in place instead of copying it: true when done, and the staging file is
    /// then the only name of its inode. Only when that content is no longer needed here: no
    /// pending journal entry names it (its upload may still read it), no reader holds a
    /// descriptor of it, and no other name (the host-wide shared store, another session)
    /// links it. The server holds that content, so a later reader of it fetches it again.
    fn reclaim_in_place(&self, stage: u64, names: &[String]) -> Result<bool, CacheError> {
        if self.journal.mentions_any(names)? {
            return Ok(false);
        }
        // Names first: from now on no one can open or link the blob by name. The host-wide
        // store's reference goes before the name it was offered from (releasing waits for
        // pending offers), so its count stays true; it keeps its copy if others use it.
        for name in names {
            if let Some(shared) = self.shared.as_ref().filter(|_| is_digest(name)) {
                shared.release(name);
            }
            match fs::remove_file(self.blob_path(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove blob", &self.blob_path(name), e)),
            }
        }
        {
            let mut aliases = self.aliases.lock().unwrap_or_else(|p| p.into_inner());
            for name in names {
                aliases.remove(name);
            }
        }
        // Then descriptors opened before: one a reader still holds may be read after a write.
        {
            let mut open = self.open_blobs.lock().unwrap_or_else(|p| p.into_inner());
            for name in names {
                open.remove(name);
            }
            let mut lent = self.lent.lock().unwrap_or_else(|p| p.into_inner());
            for name in names {
                if let Some(held) = lent.get_mut(name) {
                    held.retain(|w| w.strong_count() > 0);
                    if !held.is_empty() {
                        return Ok(false);
                    }
                    lent.remove(name);
                }
            }
        }
        let f = self.stage_file(stage)?;
        let links = f
            .metadata()
            .map_err(|e| io_err("inspect staging file", &self.stage_path(stage), e))?
            .nlink();
        Ok(links == 1)
    }

    /// The blob's other name, if it was named twice by hard link.
    fn alias_of(&self, name: &str) -> Option<String> {
        self.aliases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Moves a finished temporary file into the blob store as `hash` (no-op if present).
    fn install_blob(&self, tmp: &Path, hash: &str) -> Result<(), CacheError> {
        let dest = self.blob_path(hash);
        if dest.exists() {
            let _ = fs::remove_file(tmp);
            return Ok(());
        }
        self.ensure_shard(hash)?;
        if let Err(e) = fs::rename(tmp, &dest) {
            if e.kind() != std::io::ErrorKind::NotFound || !tmp.exists() {
                return Err(io_err("install blob", &dest, e));
            }
            self.shard_lost(hash);
            self.ensure_shard(hash)?;
            fs::rename(tmp, &dest).map_err(|e| io_err("install blob", &dest, e))?;
        }
        self.offer_shared(hash, &dest);
        Ok(())
    }

    /// Makes `from` blob `hash` too, by hard link, and offers it to the shared store; false if
    /// `hash` was already there. `what` names the step in an error.
    fn link_blob(&self, from: &Path, hash: &str, what: &str) -> Result<bool, CacheError> {
        let dest = self.blob_path(hash);
        if dest.exists() {
            return Ok(false);
        }
        self.ensure_shard(hash)?;
        let mut linked = fs::hard_link(from, &dest);
        if matches!(&linked, Err(e) if e.kind() == std::io::ErrorKind::NotFound) && from.exists() {
            self.shard_lost(hash);
            self.ensure_shard(hash)?;
            linked = fs::hard_link(from, &dest);
        }
        match linked {
            Ok(()) => {
                self.offer_shared(hash, &dest);
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err(what, from, e)),
        }
    }

    /// Offers blob `hash` at `path` to the host-wide shared store: digests only, since another
    /// session may take the content by its name.
    fn offer_shared(&self, hash: &str, path: &Path) {
        if let Some(shared) = self.shared.as_ref().filter(|_| is_digest(hash)) {
            shared.adopt(hash, path);
        }
    }

    fn tmp_path(&self, tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.layout
            .dirty
            .join(format!(".tmp-{tag}-{}-{n}", std::process::id()))
    }
}

fn read_at(f: &File, offset: u64, len: usize, path: &Path) -> Result<Vec<u8>, CacheError> {
    // Read into the vector's spare capacity: zeroing a megabyte first costs as much as reading it.
    let mut buf: Vec<u8> = Vec::with_capacity(len.max(1));
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(f, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(io_err("read", path, e.into())),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Gives a blob being read the current time if its time is older than [`TOUCH_AFTER`]. A
/// failure only makes the blob look older to eviction.
fn touch_if_stale(f: &File) {
    let stale = f
        .metadata()
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > TOUCH_AFTER));
    if stale {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// A blob file that [`LocalCache::evict_clean`] may drop.
struct Evictable {
    stored: std::time::SystemTime,
    path: PathBuf,
    name: String,
    len: u64,
    inode: (u64, u64),
}

impl LocalCache for DiskCache {
    fn has_blob(&self, hash: &str) -> bool {
        if valid_hash(hash).is_err() {
            return false;
        }
        if self.blob_path(hash).exists() || self.journal.inline_has(hash) {
            return true;
        }
        // Another session on this host may hold it: link it in.
        match self.shared.as_ref().filter(|_| is_digest(hash)) {
            Some(shared) => shared.link_into(hash, &self.blob_path(hash)),
            None => false,
        }
    }

    fn read_blob(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        let f = match self.blob_file(hash) {
            Err(CacheError::Missing(why)) => {
                let data = self
                    .journal
                    .inline_get(hash)?
                    .ok_or(CacheError::Missing(why))?;
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(len).min(data.len());
                return Ok(data[start..end].to_vec());
            }
            other => other?,
        };
        let path = self.blob_path(hash);
        let size = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
        if offset == 0 && len as u64 >= size {
            // The whole blob (a write-back): read it without zeroing a buffer first (a fresh
            // descriptor: the cached one is shared, and reading would move its position).
            return fs::read(&path).map_err(|e| io_err("read", &path, e));
        }
        // Never allocate past the end of the blob.
        let len = len.min(size.saturating_sub(offset) as usize);
        read_at(&f, offset, len, &path)
    }

    fn open_blob(&self, hash: &str) -> CacheResult<Box<dyn std::io::Read + Send>> {
        // The shared descriptor, read at a position of the reader's own: while the reader
        // lives, the content it reads is not reclaimed for writing in place.
        match self.blob_file(hash) {
            Ok(file) => Ok(Box::new(BlobReader { file, at: 0 })),
            Err(CacheError::Missing(why)) => match self.journal.inline_get(hash)? {
                Some(data) => Ok(Box::new(std::io::Cursor::new(data))),
                None => Err(CacheError::Missing(why)),
            },
            Err(e) => Err(e),
        }
    }

    fn put_blob(&self, hash: &str, data: &[u8]) -> CacheResult<()> {
        valid_hash(hash)?;
        if data.len() <= INLINE_MAX_BYTES {
            return self.journal.inline_put(hash, data);
        }
        if self.blob_path(hash).exists() {
            return Ok(());
        }
        let tmp = self.tmp_path("put");
        let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(data).map_err(|e| io_err("write", &tmp, e))?;
        drop(f);
        self.install_blob(&tmp, hash)
    }

    fn partial_write(&self, hash: &str, offset: u64, data: &[u8]) -> CacheResult<()> {
        valid_hash(hash)?;
        let path = self.partial_path(hash);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("open partial blob", &path, e))?;
        f.write_all_at(data, offset)
            .map_err(|e| io_err("write partial blob", &path, e))
    }

    fn partial_read(&self, hash: &str, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        valid_hash(hash)?;
        let path = self.partial_path(hash);
        let f = File::open(&path).map_err(|e| io_err("open partial blob", &path, e))?;
        read_at(&f, offset, len, &path)
    }

    fn partial_promote(&self, hash: &str) -> CacheResult<bool> {
        valid_hash(hash)?;
        // The ranges came from the server under this content hash, as whole downloads do;
        // re-hashing a large file here would cost the reader another full pass over it.
        let path = self.partial_path(hash);
        self.install_blob(&path, hash)?;
        Ok(true)
    }

    fn partial_drop(&self, hash: &str) {
        if valid_hash(hash).is_ok() {
            let _ = fs::remove_file(self.partial_path(hash));
        }
    }

    fn stage_open(&self, stage: u64, from: Option<&str>) -> CacheResult<()> {
        let path = self.stage_path(stage);
        // Never open an old staging file for writing: it may share its inode with a blob.
        // (Staging files exist only while in `stages`: the directory is emptied at open.)
        let known = self.stages().contains_key(&stage);
        if known {
            self.stage_drop(stage);
        }
        let f = if let Some(h) = from {
            valid_hash(h)?;
            let src = self.blob_path(h);
            if !src.exists()
                && let Some(data) = self.journal.inline_get(h)?
            {
                self.stages().insert(stage, Stage::Memory(data));
                return Ok(());
            }
            // The staging file starts as another name of the blob; its first change takes the
            // blob's names away, or copies it if something still needs them (`unshare_stage`).
            // Copying here instead cost a whole copy of the file per `open` for writing.
            if fs::hard_link(&src, &path).is_ok() {
                self.linked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(stage, h.to_owned());
            } else {
                fs::copy(&src, &path).map_err(|e| io_err("copy into staging", &src, e))?;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("open staging file", &path, e))?
        } else {
            // New content starts in memory: most files written are small.
            self.stages().insert(stage, Stage::Memory(Vec::new()));
            return Ok(());
        };
        self.stages().insert(stage, Stage::File(Arc::new(f)));
        Ok(())
    }

    fn stage_write(&self, stage: u64, offset: u64, data: &[u8]) -> CacheResult<()> {
        let end = offset.saturating_add(data.len() as u64);
        let Some(f) = self.change_stage(stage, end, |buf| {
            let (start, end) = (offset as usize, end as usize);
            if buf.len() < end {
                buf.resize(end, 0);
            }
            buf[start..end].copy_from_slice(data);
        })?
        else {
            return Ok(());
        };
        f.write_all_at(data, offset)
            .map_err(|e| io_err("write", &self.stage_path(stage), e))
    }

    fn stage_read(&self, stage: u64, offset: u64, len: usize) -> CacheResult<Vec<u8>> {
        let in_memory = self.with_stage(stage, |buf| {
            let start = (offset as usize).min(buf.len());
            let end = start.saturating_add(len).min(buf.len());
            buf[start..end].to_vec()
        })?;
        match in_memory {
            Ok(data) => Ok(data),
            Err(f) => read_at(&f, offset, len, &self.stage_path(stage)),
        }
    }

    fn stage_truncate(&self, stage: u64, size: u64) -> CacheResult<()> {
        let Some(f) = self.change_stage(stage, size, |buf| buf.resize(size as usize, 0))? else {
            return Ok(());
        };
        f.set_len(size)
            .map_err(|e| io_err("truncate", &self.stage_path(stage), e))
    }

    fn stage_commit(&self, stage: u64) -> CacheResult<(String, u64)> {
        // Small content is copied out of the lock, hashed and stored in the index.
        if let Ok(data) = self.with_stage(stage, |buf| buf.clone())? {
            let hash = hex::encode(Sha256::digest(&data));
            self.journal.inline_put(&hash, &data)?;
            return Ok((hash, data.len() as u64));
        }
        let path = self.stage_path(stage);
        let mut f = File::open(&path).map_err(|e| io_err("open staging file", &path, e))?;
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut hasher = Sha256::new();
        // Small files are the common case: size the buffer to the file, not to the maximum.
        let mut buf = vec![0u8; (len as usize).clamp(1, 1 << 20)];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| io_err("read", &path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let hash = hex::encode(hasher.finalize());
        self.stage_commit_as(stage, &hash, size)?;
        Ok((hash, size))
    }

    fn stage_commit_as(&self, stage: u64, hash: &str, _size: u64) -> CacheResult<()> {
        valid_hash(hash)?;
        if let Ok(data) = self.with_stage(stage, |buf| buf.clone())? {
            return self.journal.inline_put(hash, &data);
        }
        // The blob shares the staging file's inode until the staging file changes again.
        if self.link_blob(&self.stage_path(stage), hash, "link staged content")? {
            self.linked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stage, hash.to_owned());
        }
        Ok(())
    }

    fn blob_name(&self, local: &str, hash: &str) -> CacheResult<()> {
        if !LocalName::is(local) || !is_digest(hash) {
            return Err(CacheError::Backend(format!(
                "cannot name blob {local:?} as {hash:?}: expected a local name and a SHA-256 digest"
            )));
        }
        if let Some(data) = self.journal.inline_get(local)? {
            return self.journal.inline_put(hash, &data);
        }
        if self.link_blob(&self.blob_path(local), hash, "name blob")? {
            let mut aliases = self.aliases.lock().unwrap_or_else(|p| p.into_inner());
            if aliases.len() >= ALIAS_LIMIT {
                aliases.clear();
            }
            aliases.insert(local.to_owned(), hash.to_owned());
            aliases.insert(hash.to_owned(), local.to_owned());
        }
        Ok(())
    }

    fn stage_drop(&self, stage: u64) {
        let dropped = self.stages().remove(&stage);
        self.linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&stage);
        if matches!(dropped, Some(Stage::File(_))) {
            let _ = fs::remove_file(self.stage_path(stage));
        }
    }

    fn journal_append(&self, op: &JournalOp, now: Timestamp) -> CacheResult<u64> {
        self.journal.append(op, now)
    }

    fn journal_pending(&self, limit: usize) -> CacheResult<Vec<JournalEntry>> {
        self.journal.pending(limit)
    }

    fn journal_ack(&self, seq: u64) -> CacheResult<()> {
        self.journal.ack(seq)
    }

    fn journal_unit(&self, first: u64, last: u64) -> CacheResult<(u64, u64)> {
        self.journal.unit(first, last)
    }

    fn journal_split_unit(&self, first: u64, last: u64) -> CacheResult<()> {
        self.journal.split_unit(first, last)
    }

    fn journal_ack_range(&self, first: u64, last: u64) -> CacheResult<()> {
        self.journal.ack_range(first, last)
    }

    fn journal_reject(&self, seq: u64, error: &str) -> CacheResult<()> {
        self.journal.reject(seq, error)
    }

    fn journal_rejected(&self) -> CacheResult<Vec<RejectedEntry>> {
        self.journal.rejected()
    }

    fn journal_stats(&self) -> JournalStats {
        self.journal.stats()
    }

    fn journal_sync(&self) -> CacheResult<()> {
        self.journal.sync(FlushReason::Requested)
    }

    fn stats(&self) -> CacheStats {
        let (file_count, file_bytes) = layout::walk_size(&self.layout.blobs);
        let (inline_count, inline_bytes) = self.journal.inline_stats();
        let (_, staged_files) = layout::walk_size(&self.layout.staging);
        let staged_in_memory: u64 = self
            .stages()
            .values()
            .map(|s| match s {
                Stage::Memory(data) => data.len() as u64,
                Stage::File(_) => 0,
            })
            .sum();
        CacheStats {
            blob_count: file_count + inline_count,
            blob_bytes: file_bytes + inline_bytes,
            staging_bytes: staged_files + staged_in_memory,
            shared_links: self.shared.as_ref().map(|s| s.link_count()).unwrap_or(0),
        }
    }

    fn index_save(&self, generation: u64, listings: &Listings) -> CacheResult<()> {
        self.journal.index_save(generation, listings)
    }

    fn index_take(&self) -> CacheResult<Option<(u64, Listings)>> {
        self.journal.index_take()
    }

    fn disk_space(&self) -> Option<(u64, u64)> {
        let st = rustix::fs::statvfs(&self.layout.root).ok()?;
        let unit = if st.f_frsize > 0 {
            st.f_frsize
        } else {
            st.f_bsize
        };
        Some((st.f_bavail * unit, st.f_blocks * unit))
    }

    fn evict_clean(&self, bytes: u64) -> CacheResult<u64> {
        let needed = self.journal.referenced_hashes()?;
        // The files of blobs not needed, oldest first (a blob's time is when it was stored or,
        // give or take ten minutes, last opened for reading: least recently used first).
        let mut candidates: Vec<Evictable> = Vec::new();
        for shard in fs::read_dir(&self.layout.blobs)
            .map_err(|e| io_err("list", &self.layout.blobs, e))?
            .flatten()
        {
            for blob in fs::read_dir(shard.path()).into_iter().flatten().flatten() {
                let name = blob.file_name().to_string_lossy().into_owned();
                if needed.contains(&name) {
                    continue;
                }
                let Ok(meta) = blob.metadata() else { continue };
                candidates.push(Evictable {
                    stored: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    path: blob.path(),
                    name,
                    len: meta.len(),
                    inode: (meta.dev(), meta.ino()),
                });
            }
        }
        candidates.sort_by_key(|c| c.stored);
        let mut freed = 0;
        let mut seen = std::collections::HashSet::new();
        let mut dropped = Vec::new();
        for c in candidates {
            if freed >= bytes {
                break;
            }
            if fs::remove_file(&c.path).is_ok() {
                // A blob under a local name and the server's is one file: counted once.
                freed += if seen.insert(c.inode) { c.len } else { 0 };
                if let Some(shared) = self.shared.as_ref().filter(|_| is_digest(&c.name)) {
                    shared.release(&c.name);
                }
                dropped.push(c.name);
            }
        }
        // An open handle would keep a dropped blob's blocks in use.
        let mut open = self.open_blobs.lock().unwrap_or_else(|p| p.into_inner());
        for name in &dropped {
            open.remove(name);
        }
        drop(open);
        if freed < bytes {
            // Small content lives in the index: its pages are reused, not returned.
            freed += self.journal.inline_sweep(&needed)?;
        }
        Ok(freed)
    }

    fn clear_clean(&self) -> CacheResult<u64> {
        self.evict_clean(u64::MAX)
    }
}
