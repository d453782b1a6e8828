//! Entries and the tree-mutation rules: a [`Txn`] stages changes over any [`TreeRead`] view and
//! enforces POSIX-like semantics (parents exist, rmdir only when empty, no rename into itself …).
//! The service and the fake both plan mutations through it, so their behaviour cannot drift.

use std::collections::BTreeMap;
use std::future::Future;

use crate::error::{Error, Reason, Result};
use crate::path::SessionPath;
use crate::time::Timestamp;

pub const DEFAULT_FILE_MODE: u32 = 0o644;
pub const DEFAULT_DIR_MODE: u32 = 0o755;
pub const MODE_BITS: u32 = 0o7777;
pub const ROOT_INODE: u64 = 1;
pub const MAX_XATTR_NAME_BYTES: usize = 255;
pub const MAX_XATTR_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_SYMLINK_TARGET_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl EntryKind {
    pub const ALL: [EntryKind; 7] = [
        EntryKind::File,
        EntryKind::Directory,
        EntryKind::Symlink,
        EntryKind::Fifo,
        EntryKind::Socket,
        EntryKind::CharDevice,
        EntryKind::BlockDevice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "FILE",
            EntryKind::Directory => "DIRECTORY",
            EntryKind::Symlink => "SYMLINK",
            EntryKind::Fifo => "FIFO",
            EntryKind::Socket => "SOCKET",
            EntryKind::CharDevice => "CHAR_DEVICE",
            EntryKind::BlockDevice => "BLOCK_DEVICE",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| Error::invalid(format!("unknown entry kind {raw:?}")))
    }
}

/// One path of a session tree with its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: SessionPath,
    pub kind: EntryKind,
    /// All 12 permission bits (incl. setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// SHA-256 (hex) of a file's content; `None` for every other kind.
    pub content_hash: Option<String>,
    /// Target of a symlink.
    pub target: Option<String>,
    pub rdev: u64,
    pub nlink: u32,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// The session generation that last changed this entry.
    pub version: u64,
    /// The file this path names; hard links share it. Unique within a session's lineage.
    pub inode: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    pub fn new(
        path: SessionPath,
        kind: EntryKind,
        mode: u32,
        now: Timestamp,
        version: u64,
    ) -> Self {
        Entry {
            path,
            kind,
            mode: mode & MODE_BITS,
            uid: 0,
            gid: 0,
            size: 0,
            content_hash: None,
            target: None,
            rdev: 0,
            nlink: if kind == EntryKind::Directory { 2 } else { 1 },
            atime: now,
            mtime: now,
            ctime: now,
            version,
            inode: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// The root directory every session starts with.
    pub fn root(now: Timestamp) -> Self {
        let mut root = Entry::new(
            SessionPath::root(),
            EntryKind::Directory,
            DEFAULT_DIR_MODE,
            now,
            0,
        );
        root.inode = ROOT_INODE;
        root
    }

    /// The same file under another name (hard links share every attribute but the path).
    fn copy_for(&self, path: &SessionPath) -> Entry {
        Entry {
            path: path.clone(),
            ..self.clone()
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }
}

/// SHA-256 of `bytes`, lowercase hex: the content hash, ETag and CAS key.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// One staged modification: `None` removes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: SessionPath,
    pub entry: Option<Entry>,
}

/// What a mutation did, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happened {
    pub kind: &'static str,
    pub path: SessionPath,
    pub to_path: Option<SessionPath>,
}

/// Read access to a committed session tree.
pub trait TreeRead: Sync {
    fn entry(&self, path: &SessionPath) -> impl Future<Output = Result<Option<Entry>>> + Send;
    /// Direct children of `dir`, sorted by path.
    fn children(&self, dir: &SessionPath) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// Every entry strictly below `dir`, sorted by path.
    fn descendants(&self, dir: &SessionPath) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// Every path whose entry is the file `inode` (its hard links), sorted by path.
    fn by_inode(&self, inode: u64) -> impl Future<Output = Result<Vec<Entry>>> + Send;
}

/// How `set_xattr` treats an existing attribute (XATTR_CREATE / XATTR_REPLACE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrMode {
    #[default]
    Either,
    Create,
    Replace,
}

/// Attribute changes of a setattr call; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
}

/// A staged transaction over a committed tree. Reads see staged changes; nothing is visible to
/// others until the caller commits [`Txn::into_changes`] at `generation`.
pub struct Txn<'r, R> {
    reader: &'r R,
    staged: BTreeMap<SessionPath, Option<Entry>>,
    happened: Vec<Happened>,
    now: Timestamp,
    generation: u64,
    /// Inodes minted at this generation so far.
    minted: u64,
    /// What each `stage` replaced since the current section began, for [`Txn::abandon`].
    undo: Vec<(SessionPath, Option<Option<Entry>>)>,
}

impl<'r, R: TreeRead> Txn<'r, R> {
    /// `generation` is the generation the commit will create (current + 1).
    pub fn new(reader: &'r R, now: Timestamp, generation: u64) -> Self {
        Txn {
            reader,
            staged: BTreeMap::new(),
            happened: Vec::new(),
            now,
            generation,
            minted: 0,
            undo: Vec::new(),
        }
    }

    /// Starts another caller's mutation in this transaction (a combined commit): what follows
    /// is stamped with `generation`, and [`Txn::abandon`] takes it back without touching the
    /// sections before it.
    pub fn begin(&mut self, generation: u64) {
        self.generation = generation;
        self.minted = 0;
        self.undo.clear();
    }

    /// Whether the current section staged anything.
    pub fn section_changed(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Keeps the current section's changes and returns what it did, for its events.
    pub fn settle(&mut self) -> Vec<Happened> {
        self.undo.clear();
        std::mem::take(&mut self.happened)
    }

    /// Takes back every change of the current section (the caller's mutation failed).
    pub fn abandon(&mut self) {
        while let Some((path, before)) = self.undo.pop() {
            match before {
                Some(entry) => self.staged.insert(path, entry),
                None => self.staged.remove(&path),
            };
        }
        self.happened.clear();
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    pub fn into_changes(self) -> (Vec<Change>, Vec<Happened>) {
        let changes = self
            .staged
            .into_iter()
            .map(|(path, entry)| Change { path, entry })
            .collect();
        (changes, self.happened)
    }

    pub async fn get(&self, path: &SessionPath) -> Result<Option<Entry>> {
        if let Some(staged) = self.staged.get(path) {
            return Ok(staged.clone());
        }
        self.reader.entry(path).await
    }

    pub async fn require(&self, path: &SessionPath) -> Result<Entry> {
        self.get(path)
            .await?
            .ok_or_else(|| Error::no_such_path(path.as_str()))
    }

    pub async fn children(&self, dir: &SessionPath) -> Result<Vec<Entry>> {
        let committed = self.reader.children(dir).await?;
        let staged = self
            .staged
            .range(dir.clone()..)
            .filter(|(p, _)| !p.is_root() && p.parent() == *dir);
        Ok(overlay(committed, staged))
    }

    pub async fn descendants(&self, dir: &SessionPath) -> Result<Vec<Entry>> {
        let committed = self.reader.descendants(dir).await?;
        let staged = self
            .staged
            .range(dir.clone()..)
            .filter(|(p, _)| dir.is_ancestor_of(p));
        Ok(overlay(committed, staged))
    }

    fn stage(&mut self, entry: Entry) {
        let path = entry.path.clone();
        let before = self.staged.insert(path.clone(), Some(entry));
        self.undo.push((path, before));
    }

    fn stage_removal(&mut self, path: &SessionPath) {
        let before = self.staged.insert(path.clone(), None);
        self.undo.push((path.clone(), before));
    }

    fn record(&mut self, kind: &'static str, path: &SessionPath, to_path: Option<&SessionPath>) {
        self.happened.push(Happened {
            kind,
            path: path.clone(),
            to_path: to_path.cloned(),
        });
    }

    /// Checks that the parent of `path` is an existing directory, creating missing ancestors
    /// when `parents` is set.
    async fn ensure_parent(&mut self, path: &SessionPath, parents: bool) -> Result<()> {
        let parent = path.parent();
        match self.get(&parent).await? {
            Some(e) if e.is_dir() => Ok(()),
            Some(_) => Err(Error::not_a_directory(parent.as_str())),
            None if parents => {
                for ancestor in path.ancestors() {
                    match self.get(&ancestor).await? {
                        Some(e) if e.is_dir() => {}
                        Some(_) => return Err(Error::not_a_directory(ancestor.as_str())),
                        None => {
                            let dir = self.fresh(&ancestor, EntryKind::Directory, DEFAULT_DIR_MODE);
                            self.add_child(dir).await?
                        }
                    }
                }
                Ok(())
            }
            None => Err(Error::not_found(format!(
                "parent directory {} of {path} does not exist",
                parent.as_str()
            ))),
        }
    }

    /// Stages a new entry under its (existing) parent and updates the parent's times and link count.
    async fn add_child(&mut self, entry: Entry) -> Result<()> {
        let is_dir = entry.is_dir();
        let parent_path = entry.path.parent();
        self.stage(entry);
        self.touch_parent(&parent_path, if is_dir { 1 } else { 0 })
            .await
    }

    async fn remove_child(&mut self, path: &SessionPath, was_dir: bool) -> Result<()> {
        self.stage_removal(path);
        self.touch_parent(&path.parent(), if was_dir { -1 } else { 0 })
            .await
    }

    async fn touch_parent(&mut self, parent: &SessionPath, nlink_delta: i64) -> Result<()> {
        let mut p = match self.get(parent).await? {
            Some(p) => p,
            None if parent.is_root() => Entry::root(self.now),
            None => return Err(Error::no_such_path(parent.as_str())),
        };
        p.mtime = self.now;
        p.ctime = self.now;
        p.version = self.generation;
        p.nlink = (i64::from(p.nlink) + nlink_delta).max(2) as u32;
        self.stage(p);
        Ok(())
    }

    /// A new entry with a new inode: generation in the high bits, a per-transaction counter in
    /// the low 24, so inodes never repeat within a session's lineage (generations only grow).
    fn fresh(&mut self, path: &SessionPath, kind: EntryKind, mode: u32) -> Entry {
        self.minted += 1;
        let mut e = Entry::new(path.clone(), kind, mode, self.now, self.generation);
        e.inode = (self.generation << 24) | self.minted;
        e
    }

    /// The other live names of `e`'s file, as staged.
    async fn siblings(&self, e: &Entry) -> Result<Vec<Entry>> {
        let committed = self.reader.by_inode(e.inode).await?;
        let mut out: BTreeMap<SessionPath, Entry> = BTreeMap::new();
        for c in committed {
            match self.staged.get(&c.path) {
                Some(Some(staged)) if staged.inode == e.inode => {
                    out.insert(c.path.clone(), staged.clone());
                }
                Some(_) => {}
                None => {
                    out.insert(c.path.clone(), c);
                }
            }
        }
        for (path, staged) in &self.staged {
            if let Some(staged) = staged.as_ref().filter(|s| s.inode == e.inode) {
                out.insert(path.clone(), staged.clone());
            }
        }
        out.remove(&e.path);
        Ok(out.into_values().collect())
    }

    /// Stages `e` and, for a hard-linked file, the same attributes under every other name.
    async fn stage_inode(&mut self, e: Entry) -> Result<()> {
        if e.nlink > 1 && !e.is_dir() {
            for sibling in self.siblings(&e).await? {
                self.stage(e.copy_for(&sibling.path));
            }
        }
        self.stage(e);
        Ok(())
    }

    /// A name of `gone`'s file disappeared: its other names lose one link.
    async fn drop_name(&mut self, gone: &Entry) -> Result<()> {
        if gone.nlink <= 1 || gone.is_dir() {
            return Ok(());
        }
        for sibling in self.siblings(gone).await? {
            let mut s = sibling;
            s.nlink = s.nlink.saturating_sub(1).max(1);
            s.ctime = self.now;
            s.version = self.generation;
            self.stage(s);
        }
        Ok(())
    }

    pub async fn mkdir(
        &mut self,
        path: &SessionPath,
        mode: Option<u32>,
        parents: bool,
    ) -> Result<Entry> {
        if let Some(existing) = self.get(path).await? {
            if parents && existing.is_dir() {
                return Ok(existing);
            }
            return Err(Error::exists(format!("{path} already exists")));
        }
        if path.is_root() {
            return Err(Error::exists("/ already exists"));
        }
        self.ensure_parent(path, parents).await?;
        let entry = self.fresh(path, EntryKind::Directory, mode.unwrap_or(DEFAULT_DIR_MODE));
        self.add_child(entry.clone()).await?;
        self.record("DIRECTORY_CREATED", path, None);
        Ok(entry)
    }

    /// Creates a FIFO, socket or device node (metadata only).
    pub async fn mknod(
        &mut self,
        path: &SessionPath,
        kind: EntryKind,
        mode: u32,
        rdev: u64,
    ) -> Result<Entry> {
        if matches!(
            kind,
            EntryKind::File | EntryKind::Directory | EntryKind::Symlink
        ) {
            return Err(Error::invalid(format!(
                "mknod cannot create a {}; use the file, dirs or symlinks routes",
                kind.as_str()
            )));
        }
        if self.get(path).await?.is_some() {
            return Err(Error::exists(format!("{path} already exists")));
        }
        self.ensure_parent(path, false).await?;
        let mut entry = self.fresh(path, kind, mode);
        entry.rdev = rdev;
        self.add_child(entry.clone()).await?;
        self.record("NODE_CREATED", path, None);
        Ok(entry)
    }

    fn check_expected(
        current: Option<&Entry>,
        path: &SessionPath,
        expected: Option<&str>,
    ) -> Result<()> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let current_hash = current.and_then(|e| e.content_hash.clone());
        if current_hash.as_deref() == Some(expected) {
            Ok(())
        } else {
            Err(Error::hash_conflict(path.as_str(), current_hash))
        }
    }

    /// Replaces (or creates) a regular file's content with an already stored blob.
    #[allow(clippy::too_many_arguments)]
    pub async fn write_file(
        &mut self,
        path: &SessionPath,
        hash: String,
        size: u64,
        mode: Option<u32>,
        parents: bool,
        expected_hash: Option<&str>,
    ) -> Result<Entry> {
        if path.is_root() {
            return Err(Error::is_a_directory("/"));
        }
        let current = self.get(path).await?;
        Self::check_expected(current.as_ref(), path, expected_hash)?;
        let entry = match current {
            Some(e) if e.is_dir() => return Err(Error::is_a_directory(path.as_str())),
            Some(e) if e.kind != EntryKind::File => {
                return Err(Error::precondition(format!(
                    "{path} is a {}, not a regular file",
                    e.kind.as_str()
                )));
            }
            Some(mut e) => {
                if let Some(m) = mode {
                    e.mode = m & MODE_BITS;
                }
                e.content_hash = Some(hash);
                e.size = size;
                e.mtime = self.now;
                e.ctime = self.now;
                e.version = self.generation;
                self.stage_inode(e.clone()).await?;
                e
            }
            None => {
                self.ensure_parent(path, parents).await?;
                let mut e = self.fresh(path, EntryKind::File, mode.unwrap_or(DEFAULT_FILE_MODE));
                e.content_hash = Some(hash);
                e.size = size;
                self.add_child(e.clone()).await?;
                e
            }
        };
        self.record("FILE_WRITTEN", path, None);
        Ok(entry)
    }

    /// Removes a non-directory entry (`unlink`, `DELETE files`).
    pub async fn unlink(&mut self, path: &SessionPath, expected_hash: Option<&str>) -> Result<()> {
        if path.is_root() {
            return Err(Error::is_a_directory("/"));
        }
        let current = self.require(path).await?;
        if current.is_dir() {
            return Err(Error::is_a_directory(path.as_str()));
        }
        Self::check_expected(Some(&current), path, expected_hash)?;
        self.remove_child(path, false).await?;
        self.drop_name(&current).await?;
        self.record("FILE_DELETED", path, None);
        Ok(())
    }

    pub async fn rmdir(&mut self, path: &SessionPath, recursive: bool) -> Result<()> {
        if path.is_root() {
            return Err(Error::precondition("the root directory cannot be removed"));
        }
        let current = self.require(path).await?;
        if !current.is_dir() {
            return Err(Error::not_a_directory(path.as_str()));
        }
        let below = self.descendants(path).await?;
        if !below.is_empty() && !recursive {
            return Err(Error::not_empty(path.as_str()));
        }
        for e in &below {
            self.stage_removal(&e.path);
        }
        for e in &below {
            self.drop_name(e).await?;
        }
        self.remove_child(path, true).await?;
        self.record("DIRECTORY_DELETED", path, None);
        Ok(())
    }

    pub async fn symlink(&mut self, path: &SessionPath, target: &str) -> Result<Entry> {
        validate_symlink_target(target)?;
        if self.get(path).await?.is_some() || path.is_root() {
            return Err(Error::exists(format!("{path} already exists")));
        }
        self.ensure_parent(path, false).await?;
        let mut e = self.fresh(path, EntryKind::Symlink, 0o777);
        e.size = target.len() as u64;
        e.target = Some(target.to_owned());
        self.add_child(e.clone()).await?;
        self.record("SYMLINK_CREATED", path, None);
        Ok(e)
    }

    /// Hard link: a new name for the same file (inode); later changes through either name are
    /// seen through both.
    pub async fn link(&mut self, existing: &SessionPath, new: &SessionPath) -> Result<Entry> {
        let mut source = self.require(existing).await?;
        if source.is_dir() {
            return Err(Error::denied(format!(
                "{existing} is a directory; directories cannot be hard-linked"
            ))
            .with_reason(Reason::IsADirectory));
        }
        if self.get(new).await?.is_some() || new.is_root() {
            return Err(Error::exists(format!("{new} already exists")));
        }
        self.ensure_parent(new, false).await?;
        source.nlink += 1;
        source.ctime = self.now;
        source.version = self.generation;
        self.stage_inode(source.clone()).await?;
        let linked = source.copy_for(new);
        self.add_child(linked.clone()).await?;
        self.record("LINKED", existing, Some(new));
        Ok(linked)
    }

    pub async fn rename(
        &mut self,
        from: &SessionPath,
        to: &SessionPath,
        no_replace: bool,
        exchange: bool,
    ) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(Error::invalid(
                "the root directory cannot be renamed or replaced",
            ));
        }
        if no_replace && exchange {
            return Err(Error::invalid("noReplace and exchange cannot both be set"));
        }
        let source = self.require(from).await?;
        if from == to {
            return Ok(());
        }
        if from.is_ancestor_of(to) {
            return Err(Error::invalid(format!(
                "cannot move {from} into its own subdirectory {to}"
            ))
            .with_reason(Reason::IntoItself));
        }
        self.ensure_parent(to, false).await?;
        let target = self.get(to).await?;
        if exchange {
            let Some(target) = target else {
                return Err(Error::no_such_path(to.as_str()));
            };
            if to.is_ancestor_of(from) {
                return Err(Error::invalid(format!(
                    "cannot exchange {from} with its ancestor {to}"
                ))
                .with_reason(Reason::IntoItself));
            }
            let from_tree = self.take_subtree(&source).await?;
            let to_tree = self.take_subtree(&target).await?;
            self.place_subtree(from, to, from_tree);
            self.place_subtree(to, from, to_tree);
            // A directory exchanged with a file moves a subdirectory between the parents.
            let dirs = i64::from(target.is_dir()) - i64::from(source.is_dir());
            self.touch_parent(&from.parent(), dirs).await?;
            self.touch_parent(&to.parent(), -dirs).await?;
            self.record("EXCHANGED", from, Some(to));
            return Ok(());
        }
        // Two names of one file: rename(2) does nothing and succeeds.
        if let Some(t) = &target
            && !t.is_dir()
            && t.inode == source.inode
        {
            return Ok(());
        }
        if let Some(target) = &target {
            if no_replace {
                return Err(Error::exists(format!(
                    "{to} already exists and noReplace is set"
                )));
            }
            match (source.is_dir(), target.is_dir()) {
                (true, false) => return Err(Error::not_a_directory(to.as_str())),
                (false, true) => return Err(Error::is_a_directory(to.as_str())),
                (true, true) if !self.children(to).await?.is_empty() => {
                    return Err(Error::not_empty(to.as_str()));
                }
                _ => {}
            }
            self.remove_child(to, target.is_dir()).await?;
            self.drop_name(target).await?;
        }
        let tree = self.take_subtree(&source).await?;
        self.remove_child(from, source.is_dir()).await?;
        self.place_subtree(from, to, tree);
        // The moved file's ctime changed; its other names must show the same.
        if let Some(moved) = self.get(to).await? {
            self.stage_inode(moved).await?;
        }
        let dir_delta = if source.is_dir() { 1 } else { 0 };
        self.touch_parent(&to.parent(), dir_delta).await?;
        self.record("RENAMED", from, Some(to));
        Ok(())
    }

    /// Removes `root` and everything below it from the staged tree, returning them.
    async fn take_subtree(&mut self, root: &Entry) -> Result<Vec<Entry>> {
        let mut tree = vec![root.clone()];
        if root.is_dir() {
            tree.extend(self.descendants(&root.path).await?);
        }
        for e in &tree {
            self.stage_removal(&e.path);
        }
        Ok(tree)
    }

    fn place_subtree(&mut self, from: &SessionPath, to: &SessionPath, tree: Vec<Entry>) {
        for mut e in tree {
            let Ok(new_path) = from.rebase(&e.path, to) else {
                continue;
            };
            if e.path == *from {
                e.ctime = self.now;
            }
            e.path = new_path;
            e.version = self.generation;
            self.stage(e);
        }
    }

    pub async fn set_attributes(
        &mut self,
        path: &SessionPath,
        change: &AttrChange,
    ) -> Result<Entry> {
        let mut e = self.require(path).await?;
        if let Some(mode) = change.mode {
            e.mode = mode & MODE_BITS;
        }
        if let Some(uid) = change.uid {
            e.uid = uid;
        }
        if let Some(gid) = change.gid {
            e.gid = gid;
        }
        if let Some(t) = change.atime {
            e.atime = t;
        }
        if let Some(t) = change.mtime {
            e.mtime = t;
        }
        e.ctime = self.now;
        e.version = self.generation;
        self.stage_inode(e.clone()).await?;
        self.record("ATTRIBUTES_CHANGED", path, None);
        Ok(e)
    }

    pub async fn set_xattr(
        &mut self,
        path: &SessionPath,
        name: &str,
        value: Vec<u8>,
        mode: XattrMode,
    ) -> Result<()> {
        validate_xattr_name(name)?;
        if value.len() > MAX_XATTR_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "extended attribute value of {} bytes exceeds the limit of {MAX_XATTR_VALUE_BYTES} bytes",
                value.len()
            )));
        }
        let mut e = self.require(path).await?;
        let exists = e.xattrs.contains_key(name);
        match mode {
            XattrMode::Create if exists => {
                return Err(Error::exists(format!(
                    "extended attribute {name} already exists on {path}"
                )));
            }
            XattrMode::Replace if !exists => return Err(no_such_xattr(path, name)),
            _ => {}
        }
        e.xattrs.insert(name.to_owned(), value);
        e.ctime = self.now;
        e.version = self.generation;
        self.stage_inode(e).await?;
        self.record("XATTR_SET", path, None);
        Ok(())
    }

    pub async fn remove_xattr(&mut self, path: &SessionPath, name: &str) -> Result<()> {
        validate_xattr_name(name)?;
        let mut e = self.require(path).await?;
        if e.xattrs.remove(name).is_none() {
            return Err(no_such_xattr(path, name));
        }
        e.ctime = self.now;
        e.version = self.generation;
        self.stage_inode(e).await?;
        self.record("XATTR_REMOVED", path, None);
        Ok(())
    }
}

fn overlay<'a>(
    committed: Vec<Entry>,
    staged: impl Iterator<Item = (&'a SessionPath, &'a Option<Entry>)>,
) -> Vec<Entry> {
    let mut merged: BTreeMap<SessionPath, Entry> =
        committed.into_iter().map(|e| (e.path.clone(), e)).collect();
    for (path, entry) in staged {
        match entry {
            Some(e) => merged.insert(path.clone(), e.clone()),
            None => merged.remove(path),
        };
    }
    merged.into_values().collect()
}

pub fn no_such_xattr(path: &SessionPath, name: &str) -> Error {
    Error::not_found(format!("{path} has no extended attribute {name}"))
        .with_reason(Reason::NoSuchAttribute)
}

pub fn validate_xattr_name(name: &str) -> Result<()> {
    const NAMESPACES: [&str; 4] = ["user.", "trusted.", "security.", "system."];
    if name.len() > MAX_XATTR_NAME_BYTES {
        return Err(Error::invalid(format!(
            "extended attribute name is {} bytes; the limit is {MAX_XATTR_NAME_BYTES}",
            name.len()
        ))
        .with_reason(Reason::NameTooLong));
    }
    if name.contains('\0')
        || !NAMESPACES
            .iter()
            .any(|ns| name.len() > ns.len() && name.starts_with(ns))
    {
        return Err(Error::invalid(format!(
            "extended attribute name {name:?} must be non-empty after one of the namespaces user., trusted., security., system. and contain no NUL"
        )));
    }
    Ok(())
}

pub fn validate_symlink_target(target: &str) -> Result<()> {
    if target.is_empty() || target.len() > MAX_SYMLINK_TARGET_BYTES || target.contains('\0') {
        return Err(Error::invalid(format!(
            "symlink target must be 1 to {MAX_SYMLINK_TARGET_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

/// A partial write: bytes at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Applies `segments` in order, then truncates or zero-extends to `truncate_to`; gaps left by a
/// segment beyond the end read as zeros, as a sparse write on a local file would. (In memory:
/// large files are rebuilt as a stream from [`crate::splice::splice`].)
pub fn apply_segments(
    content: Vec<u8>,
    segments: &[Segment],
    truncate_to: Option<u64>,
    max_size: u64,
) -> Result<Vec<u8>> {
    let layout = crate::splice::splice(content.len() as u64, segments, truncate_to, max_size)?;
    Ok(layout.assemble(&content, segments))
}

/// One tree mutation, validated and ready to apply. Content arrives as an already stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Mkdir {
        path: SessionPath,
        mode: Option<u32>,
        parents: bool,
    },
    Rmdir {
        path: SessionPath,
        recursive: bool,
    },
    Unlink {
        path: SessionPath,
        expected_hash: Option<String>,
    },
    Rename {
        from: SessionPath,
        to: SessionPath,
        no_replace: bool,
        exchange: bool,
    },
    Link {
        existing: SessionPath,
        new: SessionPath,
    },
    Symlink {
        path: SessionPath,
        target: String,
    },
    SetXattr {
        path: SessionPath,
        name: String,
        value: Vec<u8>,
        mode: XattrMode,
    },
    RemoveXattr {
        path: SessionPath,
        name: String,
    },
    SetAttributes {
        path: SessionPath,
        change: AttrChange,
    },
    Mknod {
        path: SessionPath,
        kind: EntryKind,
        mode: u32,
        rdev: u64,
    },
    WriteBlob {
        path: SessionPath,
        hash: String,
        size: u64,
        mode: Option<u32>,
        parents: bool,
        expected_hash: Option<String>,
    },
    /// Replaces the subtree at `path` with `entries` (a partial restore).
    ReplaceSubtree {
        path: SessionPath,
        entries: Vec<Entry>,
    },
}

impl<R: TreeRead> Txn<'_, R> {
    /// Applies one operation; returns the entry it created or changed, if any.
    pub async fn apply(&mut self, op: &Op) -> Result<Option<Entry>> {
        Ok(match op {
            Op::Mkdir {
                path,
                mode,
                parents,
            } => Some(self.mkdir(path, *mode, *parents).await?),
            Op::Rmdir { path, recursive } => {
                self.rmdir(path, *recursive).await?;
                None
            }
            Op::Unlink {
                path,
                expected_hash,
            } => {
                self.unlink(path, expected_hash.as_deref()).await?;
                None
            }
            Op::Rename {
                from,
                to,
                no_replace,
                exchange,
            } => {
                self.rename(from, to, *no_replace, *exchange).await?;
                None
            }
            Op::Link { existing, new } => Some(self.link(existing, new).await?),
            Op::Symlink { path, target } => Some(self.symlink(path, target).await?),
            Op::SetXattr {
                path,
                name,
                value,
                mode,
            } => {
                self.set_xattr(path, name, value.clone(), *mode).await?;
                None
            }
            Op::RemoveXattr { path, name } => {
                self.remove_xattr(path, name).await?;
                None
            }
            Op::SetAttributes { path, change } => Some(self.set_attributes(path, change).await?),
            Op::Mknod {
                path,
                kind,
                mode,
                rdev,
            } => Some(self.mknod(path, *kind, *mode, *rdev).await?),
            Op::WriteBlob {
                path,
                hash,
                size,
                mode,
                parents,
                expected_hash,
            } => Some(
                self.write_file(
                    path,
                    hash.clone(),
                    *size,
                    *mode,
                    *parents,
                    expected_hash.as_deref(),
                )
                .await?,
            ),
            Op::ReplaceSubtree { path, entries } => {
                self.replace_subtree(path, entries).await?;
                None
            }
        })
    }

    pub async fn replace_subtree(&mut self, path: &SessionPath, entries: &[Entry]) -> Result<()> {
        if let Some(current) = self.get(path).await? {
            if path.is_root() {
                for e in self.descendants(path).await? {
                    self.stage_removal(&e.path);
                }
            } else {
                self.take_subtree(&current).await?;
                self.touch_parent(&path.parent(), if current.is_dir() { -1 } else { 0 })
                    .await?;
            }
        }
        if let Some(top) = entries.iter().find(|e| e.path == *path && !path.is_root()) {
            self.ensure_parent(path, true).await?;
            self.touch_parent(&path.parent(), if top.is_dir() { 1 } else { 0 })
                .await?;
        }
        for e in entries {
            let mut e = e.clone();
            e.version = self.generation;
            self.stage(e);
        }
        self.record("RESTORED", path, None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed tree holding only its root.
    struct Bare;

    impl TreeRead for Bare {
        async fn entry(&self, path: &SessionPath) -> Result<Option<Entry>> {
            Ok(path.is_root().then(|| Entry::root(Timestamp(0))))
        }
        async fn children(&self, _: &SessionPath) -> Result<Vec<Entry>> {
            Ok(Vec::new())
        }
        async fn descendants(&self, _: &SessionPath) -> Result<Vec<Entry>> {
            Ok(Vec::new())
        }
        async fn by_inode(&self, _: u64) -> Result<Vec<Entry>> {
            Ok(Vec::new())
        }
    }

    fn path(raw: &str) -> SessionPath {
        SessionPath::parse(raw).expect("path")
    }

    #[test]
    fn an_abandoned_section_leaves_the_sections_before_and_after_it_intact() {
        futures::executor::block_on(async {
            let mut txn = Txn::new(&Bare, Timestamp(1), 2);
            txn.begin(2);
            txn.write_file(&path("/a"), "h".repeat(64), 1, None, false, None)
                .await
                .expect("first caller writes /a");
            assert_eq!(txn.settle().len(), 1, "the first caller's event");

            txn.begin(3);
            txn.mkdir(&path("/b"), None, false)
                .await
                .expect("the second caller makes /b");
            let under_a_file = txn.mkdir(&path("/a/x"), None, false).await;
            assert!(under_a_file.is_err(), "/a is a file");
            txn.abandon();

            txn.begin(3);
            txn.mkdir(&path("/c"), None, false)
                .await
                .expect("the third caller makes /c");
            assert_eq!(txn.settle().len(), 1);

            let (changes, happened) = txn.into_changes();
            assert!(happened.is_empty(), "every section's events were taken");
            let by_path: BTreeMap<_, _> = changes
                .into_iter()
                .map(|c| (c.path.as_str().to_owned(), c.entry.expect("staged")))
                .collect();
            assert_eq!(
                by_path.keys().map(String::as_str).collect::<Vec<_>>(),
                ["/", "/a", "/c"],
                "nothing of the abandoned /b is left"
            );
            assert_eq!(by_path["/a"].version, 2);
            assert_eq!(
                by_path["/c"].version, 3,
                "the third caller reuses generation 3"
            );
            assert_eq!(by_path["/c"].inode, (3 << 24) | 1);
            assert_eq!(
                by_path["/"].version, 3,
                "the root as the last section left it"
            );
            assert_eq!(
                by_path["/"].nlink, 3,
                "root counts /c but not the abandoned /b"
            );
        });
    }
}
