//! The `Vfs` implementation: names, directories, attributes, links and extended attributes,
//! each applied to the inode table at once and journaled for write-back. Content operations
//! delegate to `content.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use aether_ports::local_cache::{JournalOp, LocalCache, MountClock};
use aether_ports::vfs::*;
use aether_ports::{PathRequest, SessionApi, XattrRequest};

use crate::nodes::{Node, entry_kind, fresh_attr};
use crate::{Engine, Handle, State, check_name, errors};

/// `perm` without set-user-ID, and without set-group-ID if group execute is set (without it,
/// set-group-ID means mandatory locking and stays, as on Linux).
fn without_setid(perm: u32) -> u32 {
    let mut out = perm & !0o4000;
    if perm & 0o010 != 0 {
        out &= !0o2000;
    }
    out
}

/// The group and mode of a new object in `parent`, as Linux gives them: in a set-group-ID
/// directory, the directory's group, and a new directory is set-group-ID too; a new file keeps
/// set-group-ID (with group execute) only if the caller belongs to that group. The caller's
/// supplementary groups are not known here: only its primary group counts, and root.
fn inherit_group(parent: &Node, caller: Caller, kind: FileKind, perm: u32) -> (u32, u32) {
    if parent.attr.perm & 0o2000 == 0 {
        return (caller.gid, perm);
    }
    let gid = parent.attr.gid;
    let perm = if kind == FileKind::Dir {
        perm | 0o2000
    } else if perm & 0o2010 == 0o2010 && caller.gid != gid && caller.uid != 0 {
        perm & !0o2000
    } else {
        perm
    };
    (gid, perm)
}

/// How long reading a file's extended attributes waits for its pending changes to reach the
/// server, which is asked for them by path.
const XATTR_WAIT: Duration = Duration::from_secs(10);

/// Extended-attribute namespaces the session never stores: answered locally, so `ls -l`'s
/// security and ACL probes cost no round trip (docs/semantics.md).
fn unstored_xattr(name: &str) -> bool {
    name.starts_with("security.") || name.starts_with("system.")
}

fn xattr_name(raw: &[u8]) -> FsResult<&str> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| FsError::IllegalName("extended attribute name is not UTF-8".into()))?;
    if name.is_empty() || name.len() > 255 {
        return Err(FsError::Range(format!(
            "extended attribute name of {} bytes",
            name.len()
        )));
    }
    Ok(name)
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// `ino`'s node, borrowed: cloning it would copy a directory's whole listing.
    fn node<'s>(&self, st: &'s State, ino: u64) -> FsResult<&'s Node> {
        st.nodes
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino} is not known to this mount")))
    }

    /// The attributes the kernel should see for `ino`, sizes of open staging areas included.
    pub(crate) fn attr_now(&self, st: &State, ino: u64) -> FsResult<Attr> {
        let n = st
            .nodes
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let mut a = n.attr.clone();
        a.ino = ino;
        Ok(a)
    }

    /// Creates a new object `name` in `parent` and journals its creation with `op`.
    fn create_object(
        &self,
        st: &mut State,
        caller: Caller,
        parent: u64,
        name: &str,
        kind: FileKind,
        perm: u32,
    ) -> FsResult<u64> {
        let parent_node = self.node(st, parent)?;
        if !parent_node.is_dir() {
            return Err(FsError::NotDir(st.nodes.path(parent).unwrap_or_default()));
        }
        if st.nodes.child(parent, name).is_some() {
            return Err(FsError::Exists(
                st.nodes.child_path(parent, name).unwrap_or_default(),
            ));
        }
        let now = self.clock.now();
        let (gid, perm) = inherit_group(parent_node, caller, kind, perm);
        let mut node = Node::new(fresh_attr(kind, perm, caller.uid, gid, now));
        if let Some(l) = node.listing.as_mut() {
            // A new directory is known to be empty.
            l.loaded = true;
            l.fresh_until = self.clock.elapsed() + self.config.dir_ttl;
        }
        node.attr_fresh_until = self.clock.elapsed() + self.config.lookup_ttl;
        node.journaled = false;
        node.xattrs = Some(Box::default());
        let ino = st.nodes.insert(node);
        st.nodes.attach(parent, name, ino);
        st.negative.remove(&(parent, name.to_owned()));
        if let Some(p) = st.nodes.get_mut(parent) {
            p.attr.mtime = now;
            p.attr.ctime = now;
            if kind == FileKind::Dir {
                p.attr.nlink += 1;
            }
        }
        Ok(ino)
    }

    /// Removes the name `name` (inode `ino`) from `parent`, journaling `op` first when the
    /// server knows the object (a never-journaled object vanishes without a trace).
    fn remove_name(
        &self,
        st: &mut State,
        parent: u64,
        name: &str,
        ino: u64,
        op: Option<JournalOp>,
    ) -> FsResult<()> {
        if let Some(op) = op {
            let mut inos = st.nodes.touch_set(ino);
            inos.push(parent);
            self.journal(st, op, inos)?;
        }
        st.nodes.detach(parent, name);
        self.reclaim_if_unreachable(st, ino);
        Ok(())
    }

    /// The common start of every creation: checks, backpressure, the parent's listing, then
    /// the new object in the table. Returns the table still locked, and the new inode.
    async fn new_object(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        perm: u32,
    ) -> FsResult<(std::sync::MutexGuard<'_, State>, u64)> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = check_name(name)?;
        self.ensure_listing(parent).await?;
        let mut st = self.lock();
        self.materialize(&mut st, parent)?;
        let ino = self.create_object(&mut st, caller, parent, name, kind, perm)?;
        Ok((st, ino))
    }

    /// Journals a new object's owner when it differs from the server's default (root).
    pub(crate) fn journal_owner(&self, st: &mut State, ino: u64) -> FsResult<()> {
        let Some((uid, gid)) = st.nodes.get(ino).map(|n| (n.attr.uid, n.attr.gid)) else {
            return Ok(());
        };
        if uid == 0 && gid == 0 {
            return Ok(());
        }
        let path = st.nodes.path(ino).unwrap_or_default();
        let inos = st.nodes.touch_set(ino);
        self.journal(
            st,
            JournalOp::SetAttributes {
                path,
                mode: None,
                uid: Some(uid),
                gid: Some(gid),
                atime: None,
                mtime: None,
            },
            inos,
        )?;
        Ok(())
    }

    /// Journals `op` about `ino` (and its parents).
    fn journal_about(&self, st: &mut State, ino: u64, op: JournalOp) -> FsResult<u64> {
        let inos = st.nodes.touch_set(ino);
        let seq = self.journal(st, op, inos)?;
        if let Some(n) = st.nodes.get_mut(ino) {
            n.journaled = true;
        }
        Ok(seq)
    }

    /// A node created locally whose creation is not journaled yet gets it journaled now, so
    /// that a mutation naming it finds it on the server.
    pub(crate) fn materialize(&self, st: &mut State, ino: u64) -> FsResult<()> {
        let journaled = st.nodes.get(ino).is_none_or(|n| n.journaled);
        if !journaled {
            self.commit_stage(st, ino, true)?;
        }
        Ok(())
    }

    async fn lookup_inner(&self, parent: u64, name: &str) -> FsResult<Attr> {
        {
            let mut st = self.lock();
            let now = self.clock.elapsed();
            if !self.listing_usable(&st, parent)?
                && st.negative.get(&(parent, name.to_owned()), now).is_some()
            {
                return Err(FsError::NotFound(name.to_owned()));
            }
        }
        self.ensure_listing(parent).await?;
        let mut st = self.lock();
        match st.nodes.child(parent, name) {
            Some(ino) => self.attr_now(&st, ino),
            None => {
                let now = self.clock.elapsed();
                st.negative.insert((parent, name.to_owned()), (), now);
                Err(FsError::NotFound(
                    st.nodes.child_path(parent, name).unwrap_or_default(),
                ))
            }
        }
    }

    async fn load_xattrs(&self, ino: u64) -> FsResult<()> {
        let (loaded, behind) = {
            let st = self.lock();
            let n = self.node(&st, ino)?;
            (
                n.xattrs.is_some(),
                n.journaled && crate::listing::pinned(&st, ino),
            )
        };
        if loaded {
            return Ok(());
        }
        if behind {
            // The server knows this object under another path (or not yet) until the
            // journaled changes to it, or to a directory above it, are written back.
            let upto = self.cache.journal_stats().last_seq;
            self.wait_written_back_within(upto, XATTR_WAIT).await?;
        }
        let (path, journaled) = {
            let st = self.lock();
            let n = self.node(&st, ino)?;
            (st.nodes.path(ino), n.journaled)
        };
        let values = match (path, journaled) {
            (Some(path), true) => self.patiently(|| self.fetch_xattrs(&path)).await?,
            _ => BTreeMap::new(),
        };
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(ino)
            && n.xattrs.is_none()
        {
            n.xattrs = Some(Box::new(values));
        }
        Ok(())
    }

    /// The extended attributes the server holds for `path`.
    async fn fetch_xattrs(&self, path: &str) -> FsResult<BTreeMap<String, Vec<u8>>> {
        let ctx = self.ctx();
        let sid = &self.config.session_id;
        let names = self
            .remote
            .list_xattrs(
                &ctx,
                sid,
                PathRequest {
                    path: path.to_owned(),
                },
            )
            .await
            .map_err(|e| self.remote_failed(e, path))?;
        let mut values = BTreeMap::new();
        for name in names.names {
            let v = self
                .remote
                .get_xattr(
                    &ctx,
                    sid,
                    XattrRequest {
                        path: path.to_owned(),
                        name: name.clone(),
                    },
                )
                .await
                .map_err(|e| self.remote_failed(e, path))?;
            values.insert(name, v.value);
        }
        self.contact();
        Ok(values)
    }

    fn dir_entries(&self, st: &State, ino: u64) -> FsResult<Vec<DirEntryOut>> {
        let node = self.node(st, ino)?;
        let listing = node
            .listing
            .as_ref()
            .ok_or_else(|| FsError::NotDir(st.nodes.path(ino).unwrap_or_default()))?;
        let parent = node.links.first().map(|(p, _)| *p).unwrap_or(ROOT_INO);
        let mut out = Vec::with_capacity(listing.children.len() + 2);
        let dot = [(".".to_owned(), ino), ("..".to_owned(), parent)];
        let children = listing.children.iter().map(|(n, i)| (n.to_string(), *i));
        for (i, (name, child)) in dot.into_iter().chain(children).enumerate() {
            let attr = self.attr_now(st, child)?;
            out.push(DirEntryOut {
                name,
                offset: i as u64 + 1,
                entry: self.entry_out(attr),
            });
        }
        Ok(out)
    }

    fn is_ancestor(st: &State, ancestor: u64, mut ino: u64) -> bool {
        for _ in 0..4096 {
            if ino == ancestor {
                return true;
            }
            match st.nodes.get(ino).and_then(|n| n.links.first()) {
                Some((p, _)) => ino = *p,
                None => return false,
            }
        }
        false
    }
}

impl<R, C, K> Vfs for Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    async fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<EntryOut> {
        self.op();
        let name = check_name(name)?;
        let attr = self.lookup_inner(parent, name).await?;
        self.remember_all(&[attr.ino]);
        Ok(self.entry_out(attr))
    }

    fn forget(&self, ino: u64, n: u64) {
        self.forget_some(ino, n);
    }

    fn remember(&self, inos: &[u64]) {
        self.remember_all(inos);
    }

    async fn getattr(&self, ino: u64) -> FsResult<(Attr, Duration)> {
        self.op();
        let parent = {
            let st = self.lock();
            let n = self.node(&st, ino)?;
            let fresh = n.attr_fresh_until > self.clock.elapsed()
                || n.pending > 0
                || n.stage.is_some()
                || ino == ROOT_INO;
            match n.links.first() {
                Some((p, _)) if !fresh => Some(*p),
                _ => None,
            }
        };
        if let Some(p) = parent {
            self.ensure_listing(p).await?;
        }
        let st = self.lock();
        Ok((self.attr_now(&st, ino)?, self.config.lookup_ttl))
    }

    async fn setattr(
        &self,
        ino: u64,
        fh: Option<u64>,
        mut set: SetAttrIn,
    ) -> FsResult<(Attr, Duration)> {
        self.op();
        self.writable()?;
        self.admit().await?;
        if let Some(size) = set.size {
            self.truncate(ino, fh, size).await?;
        }
        let mut st = self.lock();
        let (kind, perm_now) = {
            let n = self.node(&st, ino)?;
            (n.attr.kind, n.attr.perm)
        };
        // Linux clears set-ID bits on any change of owner, whoever makes it, and on a
        // truncation by an unprivileged caller; under FUSE_HANDLE_KILLPRIV_V2 that is ours.
        let owner_changes = set.uid.is_some() || set.gid.is_some();
        if kind != FileKind::Dir && (owner_changes || (set.size.is_some() && set.drop_setid)) {
            let perm = set.perm.unwrap_or(perm_now);
            if without_setid(perm) != perm {
                set.perm = Some(without_setid(perm));
            }
        }
        let now = self.clock.now();
        let resolve = |t: Option<TimeSet>| {
            t.map(|t| match t {
                TimeSet::At(ts) => ts,
                TimeSet::Now => now,
            })
        };
        let (atime, mtime) = (resolve(set.atime), resolve(set.mtime));
        let meta = set.perm.is_some() || set.uid.is_some() || set.gid.is_some();
        if meta || atime.is_some() || mtime.is_some() {
            self.materialize(&mut st, ino)?;
            let path = st
                .nodes
                .path(ino)
                .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name")))?;
            if kind != FileKind::Symlink {
                self.journal_about(
                    &mut st,
                    ino,
                    JournalOp::SetAttributes {
                        path,
                        mode: set.perm.map(|m| m & 0o7777),
                        uid: set.uid,
                        gid: set.gid,
                        atime,
                        mtime,
                    },
                )?;
            }
            let n = st.nodes.get_mut(ino).expect("checked above");
            if let Some(p) = set.perm {
                n.attr.perm = p & 0o7777;
            }
            if let Some(u) = set.uid {
                n.attr.uid = u;
            }
            if let Some(g) = set.gid {
                n.attr.gid = g;
            }
            if let Some(a) = atime {
                n.attr.atime = a;
            }
            if let Some(m) = mtime {
                n.attr.mtime = m;
            }
            n.attr.ctime = now;
        }
        Ok((self.attr_now(&st, ino)?, self.config.lookup_ttl))
    }

    async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.op();
        let st = self.lock();
        let n = self.node(&st, ino)?;
        match (n.attr.kind, &n.target) {
            (FileKind::Symlink, Some(t)) => Ok(t.as_bytes().to_vec()),
            _ => Err(FsError::Invalid(format!(
                "{} is not a symbolic link",
                st.nodes.path(ino).unwrap_or_default()
            ))),
        }
    }

    async fn mknod(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        kind: FileKind,
        perm: u32,
        rdev: u32,
    ) -> FsResult<EntryOut> {
        if kind == FileKind::Dir {
            return Err(FsError::Invalid("mknod cannot make a directory".into()));
        }
        let (mut st, ino) = self.new_object(caller, parent, name, kind, perm).await?;
        if kind == FileKind::File {
            self.cache
                .stage_open(ino, None)
                .map_err(errors::cache_error)?;
            st.nodes.get_mut(ino).expect("just made").stage = Some(Default::default());
            // Journals the owner too, as for every file's first content.
            self.commit_stage(&mut st, ino, true)?;
            self.release_stage_if_idle(&mut st, ino);
        } else {
            let n = st.nodes.get_mut(ino).expect("just made");
            n.attr.rdev = rdev;
            let mode = n.attr.perm;
            let path = st.nodes.path(ino).unwrap_or_default();
            self.journal_about(
                &mut st,
                ino,
                JournalOp::Mknod {
                    path,
                    kind: entry_kind(kind),
                    mode,
                    rdev: u64::from(rdev),
                },
            )?;
            self.journal_owner(&mut st, ino)?;
        }
        self.kernel_entry(&mut st, ino)
    }

    async fn mkdir(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
    ) -> FsResult<EntryOut> {
        let (mut st, ino) = self
            .new_object(caller, parent, name, FileKind::Dir, perm)
            .await?;
        let path = st.nodes.path(ino).unwrap_or_default();
        let mode = st.nodes.get(ino).expect("just made").attr.perm;
        self.journal_about(&mut st, ino, JournalOp::Mkdir { path, mode })?;
        self.journal_owner(&mut st, ino)?;
        self.kernel_entry(&mut st, ino)
    }

    async fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = check_name(name)?;
        self.ensure_listing(parent).await?;
        let mut st = self.lock();
        let path = st.nodes.child_path(parent, name).unwrap_or_default();
        let ino = st
            .nodes
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(path.clone()))?;
        let (is_dir, journaled) = {
            let n = self.node(&st, ino)?;
            (n.is_dir(), n.journaled)
        };
        if is_dir {
            return Err(FsError::IsDir(path));
        }
        self.remove_name(
            &mut st,
            parent,
            name,
            ino,
            journaled.then_some(JournalOp::DeleteFile { path }),
        )?;
        let now = self.clock.now();
        if let Some(n) = st.nodes.get_mut(ino) {
            n.attr.nlink = n.attr.nlink.saturating_sub(1);
            n.attr.ctime = now;
            if n.links.is_empty()
                && let Some(s) = n.stage.as_mut()
            {
                // Nothing will name this content on the server again.
                s.dirty = false;
            }
        }
        if let Some(p) = st.nodes.get_mut(parent) {
            p.attr.mtime = now;
            p.attr.ctime = now;
        }
        Ok(())
    }

    async fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = check_name(name)?;
        self.ensure_listing(parent).await?;
        let child = self.lock().nodes.child(parent, name);
        let Some(ino) = child else {
            return Err(FsError::NotFound(
                self.lock()
                    .nodes
                    .child_path(parent, name)
                    .unwrap_or_default(),
            ));
        };
        let is_dir = self.lock().nodes.get(ino).is_some_and(Node::is_dir);
        if !is_dir {
            return Err(FsError::NotDir(
                self.lock()
                    .nodes
                    .child_path(parent, name)
                    .unwrap_or_default(),
            ));
        }
        self.ensure_listing(ino).await?;
        let mut st = self.lock();
        let path = st.nodes.path(ino).unwrap_or_default();
        let (empty, journaled) = {
            let n = self.node(&st, ino)?;
            let empty = n.listing.as_ref().is_none_or(|l| l.children.is_empty());
            (empty, n.journaled)
        };
        if !empty {
            return Err(FsError::NotEmpty(path));
        }
        self.remove_name(
            &mut st,
            parent,
            name,
            ino,
            journaled.then_some(JournalOp::Rmdir { path }),
        )?;
        let now = self.clock.now();
        if let Some(n) = st.nodes.get_mut(ino) {
            n.attr.nlink = 0;
        }
        if let Some(p) = st.nodes.get_mut(parent) {
            p.attr.nlink = p.attr.nlink.saturating_sub(1).max(2);
            p.attr.mtime = now;
            p.attr.ctime = now;
        }
        Ok(())
    }

    async fn symlink(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        target: &[u8],
    ) -> FsResult<EntryOut> {
        let target = std::str::from_utf8(target)
            .map_err(|_| FsError::IllegalName("symbolic link target is not UTF-8".into()))?;
        if target.is_empty() || target.len() > 4096 || target.contains('\0') {
            return Err(FsError::NameTooLong(format!(
                "a symbolic link target must be 1 to 4096 bytes, not {}",
                target.len()
            )));
        }
        let (mut st, ino) = self
            .new_object(caller, parent, name, FileKind::Symlink, 0o777)
            .await?;
        let n = st.nodes.get_mut(ino).expect("just made");
        n.target = Some(target.into());
        n.attr.size = target.len() as u64;
        let path = st.nodes.path(ino).unwrap_or_default();
        self.journal_about(
            &mut st,
            ino,
            JournalOp::Symlink {
                path,
                target: target.to_owned(),
            },
        )?;
        self.journal_owner(&mut st, ino)?;
        self.kernel_entry(&mut st, ino)
    }

    async fn rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        mode: RenameMode,
    ) -> FsResult<()> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = check_name(name)?;
        let new_name = check_name(new_name)?;
        self.ensure_listing(parent).await?;
        self.ensure_listing(new_parent).await?;
        let dst_dir = {
            let st = self.lock();
            st.nodes
                .child(new_parent, new_name)
                .filter(|&d| st.nodes.get(d).is_some_and(Node::is_dir))
        };
        if let Some(d) = dst_dir {
            self.ensure_listing(d).await?;
        }
        let mut st = self.lock();
        let from = st.nodes.child_path(parent, name).unwrap_or_default();
        let to = st
            .nodes
            .child_path(new_parent, new_name)
            .unwrap_or_default();
        let src = st
            .nodes
            .child(parent, name)
            .ok_or_else(|| FsError::NotFound(from.clone()))?;
        let dst = st.nodes.child(new_parent, new_name);
        if !self.node(&st, new_parent)?.is_dir() {
            return Err(FsError::NotDir(
                st.nodes.path(new_parent).unwrap_or_default(),
            ));
        }
        let src_is_dir = self.node(&st, src)?.is_dir();
        if dst == Some(src) {
            return Ok(());
        }
        if src_is_dir && Self::is_ancestor(&st, src, new_parent) {
            return Err(FsError::Invalid(format!(
                "cannot move {from} into itself ({to})"
            )));
        }
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists(to)),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound(to)),
            (RenameMode::Replace, Some(d)) => {
                let dn = self.node(&st, d)?;
                match (src_is_dir, dn.is_dir()) {
                    (true, false) => return Err(FsError::NotDir(to)),
                    (false, true) => return Err(FsError::IsDir(to)),
                    (true, true) if dn.listing.as_ref().is_some_and(|l| !l.children.is_empty()) => {
                        return Err(FsError::NotEmpty(to));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.materialize(&mut st, src)?;
        if mode == RenameMode::Exchange
            && let Some(d) = dst
        {
            self.materialize(&mut st, d)?;
        }
        let mut inos = vec![src, parent, new_parent];
        inos.extend(dst);
        self.journal(
            &mut st,
            JournalOp::Rename {
                from,
                to,
                no_replace: mode == RenameMode::NoReplace,
                exchange: mode == RenameMode::Exchange,
            },
            inos,
        )?;
        let now = self.clock.now();
        st.nodes.detach(parent, name);
        if let Some(d) = dst {
            st.nodes.detach(new_parent, new_name);
            if mode == RenameMode::Exchange {
                st.nodes.attach(parent, name, d);
            } else if let Some(n) = st.nodes.get_mut(d) {
                n.attr.nlink = n.attr.nlink.saturating_sub(1);
                if n.is_dir() {
                    n.attr.nlink = 0;
                }
                n.attr.ctime = now;
            }
        }
        st.nodes.attach(new_parent, new_name, src);
        st.negative.remove(&(new_parent, new_name.to_owned()));
        // A directory's link count is 2 + its subdirectories: count those each parent lost
        // and gained (the moved one, the one it replaced, the one it was exchanged with).
        let dst_is_dir = dst.is_some_and(|d| st.nodes.get(d).is_some_and(Node::is_dir));
        let (mut from_parent, mut to_parent) = (-i64::from(src_is_dir), i64::from(src_is_dir));
        if mode == RenameMode::Exchange {
            from_parent += i64::from(dst_is_dir);
            to_parent -= i64::from(dst_is_dir);
        } else {
            to_parent -= i64::from(dst_is_dir);
        }
        for (ino, delta) in [(parent, from_parent), (new_parent, to_parent)] {
            if let Some(p) = st.nodes.get_mut(ino) {
                p.attr.nlink = (i64::from(p.attr.nlink) + delta).max(2) as u32;
            }
        }
        for ino in [parent, new_parent] {
            if let Some(p) = st.nodes.get_mut(ino) {
                p.attr.mtime = now;
                p.attr.ctime = now;
            }
        }
        if let Some(n) = st.nodes.get_mut(src) {
            n.attr.ctime = now;
        }
        Ok(())
    }

    async fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> FsResult<EntryOut> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let new_name = check_name(new_name)?;
        self.ensure_listing(new_parent).await?;
        let mut st = self.lock();
        let node = self.node(&st, ino)?;
        let existing = st
            .nodes
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name")))?;
        if node.is_dir() {
            return Err(FsError::NotPermitted(format!("{existing} is a directory")));
        }
        let new = st
            .nodes
            .child_path(new_parent, new_name)
            .unwrap_or_default();
        if st.nodes.child(new_parent, new_name).is_some() {
            return Err(FsError::Exists(new));
        }
        self.materialize(&mut st, ino)?;
        self.journal(
            &mut st,
            JournalOp::Link { existing, new },
            vec![ino, new_parent],
        )?;
        st.nodes.attach(new_parent, new_name, ino);
        st.negative.remove(&(new_parent, new_name.to_owned()));
        let now = self.clock.now();
        let n = st.nodes.get_mut(ino).expect("checked above");
        n.attr.nlink += 1;
        n.attr.ctime = now;
        if let Some(p) = st.nodes.get_mut(new_parent) {
            p.attr.mtime = now;
            p.attr.ctime = now;
        }
        self.kernel_entry(&mut st, ino)
    }

    async fn open(&self, ino: u64, how: OpenIn) -> FsResult<OpenOut> {
        self.op();
        self.open_file(ino, how).await
    }

    async fn create(
        &self,
        caller: Caller,
        parent: u64,
        name: &[u8],
        perm: u32,
        how: OpenIn,
    ) -> FsResult<(EntryOut, OpenOut)> {
        let (mut st, ino) = self
            .new_object(caller, parent, name, FileKind::File, perm)
            .await?;
        self.cache
            .stage_open(ino, None)
            .map_err(errors::cache_error)?;
        let n = st.nodes.get_mut(ino).expect("just made");
        n.stage = Some(Box::new(crate::nodes::Stage {
            dirty: true,
            stream: Some(crate::nodes::StreamHash::default()),
            ..Default::default()
        }));
        n.writers += 1;
        let fh = st.next_fh;
        st.next_fh += 1;
        let direct = crate::starts_over_write_only(&how, true);
        st.handles.insert(
            fh,
            Handle::File {
                ino,
                write: true,
                append: how.append,
                direct,
                next_read: 0,
                window: 0,
            },
        );
        let entry = self.kernel_entry(&mut st, ino)?;
        Ok((
            entry,
            OpenOut {
                fh,
                keep_cache: false,
                cache_dir: false,
                no_flush: false,
                direct_io: direct,
            },
        ))
    }

    async fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        self.op();
        let data = self.read_file(ino, fh, offset, size).await?;
        self.counters()
            .bytes_read
            .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(data)
    }

    async fn drop_setid(&self, ino: u64) -> FsResult<()> {
        let perm = {
            let st = self.lock();
            match st.nodes.get(ino) {
                Some(n) if n.attr.kind != FileKind::Dir => n.attr.perm,
                _ => return Ok(()),
            }
        };
        if without_setid(perm) == perm {
            return Ok(());
        }
        let set = SetAttrIn {
            perm: Some(without_setid(perm)),
            ..SetAttrIn::default()
        };
        self.setattr(ino, None, set).await.map(drop)
    }

    async fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.op();
        let n = self.write_file(ino, fh, offset, data).await?;
        self.counters()
            .bytes_written
            .fetch_add(u64::from(n), std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    async fn flush(&self, ino: u64, _fh: u64) -> FsResult<()> {
        self.op();
        let mut st = self.lock();
        self.commit_stage(&mut st, ino, false)
    }

    async fn release(&self, ino: u64, fh: u64) -> FsResult<()> {
        self.op();
        let mut st = self.lock();
        let handle = st.handles.remove(&fh);
        if let Some(Handle::File { write: true, .. }) = handle
            && let Some(n) = st.nodes.get_mut(ino)
        {
            n.writers = n.writers.saturating_sub(1);
        }
        self.commit_stage(&mut st, ino, false)?;
        let store = self.store_in_kernel(&mut st, ino);
        self.release_stage_if_idle(&mut st, ino);
        // The kernel may have forgotten a deleted file before this last release came.
        self.reclaim_if_unreachable(&mut st, ino);
        drop(st);
        if let Some(store) = store {
            self.send_to_kernel(store);
        }
        Ok(())
    }

    async fn fsync(&self, ino: u64, _fh: Option<u64>) -> FsResult<()> {
        self.op();
        let (upto, mine) = {
            let mut st = self.lock();
            self.commit_stage(&mut st, ino, false)?;
            let mine = st.nodes.get(ino).map(|n| n.last_seq).unwrap_or(0);
            (self.cache.journal_stats().last_seq, mine)
        };
        self.wait_written_back(upto, mine).await
    }

    async fn opendir(&self, ino: u64) -> FsResult<OpenOut> {
        self.op();
        self.ensure_listing(ino).await?;
        let mut st = self.lock();
        if self.node(&st, ino)?.listing.is_none() {
            return Err(FsError::NotDir(st.nodes.path(ino).unwrap_or_default()));
        }
        let fh = st.next_fh;
        st.next_fh += 1;
        st.handles.insert(fh, Handle::Dir { entries: None });
        // The kernel may keep serving this listing from its own cache until it changes.
        let listing = st.nodes.get_mut(ino).and_then(|n| n.listing.as_mut());
        let keep_cache = listing.is_some_and(|l| std::mem::replace(&mut l.kernel_cached, true));
        Ok(OpenOut {
            fh,
            keep_cache,
            cache_dir: true,
            no_flush: true,
            direct_io: false,
        })
    }

    async fn readdir(&self, ino: u64, fh: u64, offset: u64) -> FsResult<DirEntries> {
        self.op();
        let mut st = self.lock();
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Some(Handle::Dir { entries: Some(all) }) = st.handles.get(&fh) {
            return Ok(DirEntries::new(all.clone(), from));
        }
        let all: std::sync::Arc<[DirEntryOut]> = self.dir_entries(&st, ino)?.into();
        if let Some(Handle::Dir { entries }) = st.handles.get_mut(&fh) {
            *entries = Some(all.clone());
        }
        Ok(DirEntries::new(all, from))
    }

    fn releasedir(&self, _ino: u64, fh: u64) {
        self.lock().handles.remove(&fh);
    }

    async fn statfs(&self) -> FsResult<StatfsOut> {
        self.op();
        // The session has no fixed capacity; report a large, stable figure so tools that
        // check free space before writing proceed.
        Ok(StatfsOut {
            blocks: 1 << 32,
            blocks_free: 1 << 31,
            files: 1 << 32,
            files_free: 1 << 31,
            block_size: 4096,
            name_max: 255,
        })
    }

    async fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], mode: XattrMode) -> FsResult<()> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = xattr_name(name)?;
        if unstored_xattr(name) {
            return Err(FsError::Unsupported(format!(
                "extended attributes in {name:?}'s namespace are not stored by sessions"
            )));
        }
        if value.len() > 64 * 1024 {
            return Err(FsError::Range(format!(
                "a value of {} bytes exceeds 64 KiB",
                value.len()
            )));
        }
        self.load_xattrs(ino).await?;
        let mut st = self.lock();
        let exists = st
            .nodes
            .get(ino)
            .and_then(|n| n.xattrs.as_ref())
            .is_some_and(|x| x.contains_key(name));
        match (mode, exists) {
            (XattrMode::CreateOnly, true) => return Err(FsError::Exists(name.to_owned())),
            (XattrMode::ReplaceOnly, false) => return Err(FsError::NoAttribute(name.to_owned())),
            _ => {}
        }
        self.materialize(&mut st, ino)?;
        let path = st
            .nodes
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name")))?;
        self.journal_about(
            &mut st,
            ino,
            JournalOp::SetXattr {
                path,
                name: name.to_owned(),
                value: value.to_vec(),
            },
        )?;
        let now = self.clock.now();
        let n = st.nodes.get_mut(ino).expect("checked above");
        n.xattrs
            .get_or_insert_with(Box::default)
            .insert(name.to_owned(), value.to_vec());
        n.attr.ctime = now;
        Ok(())
    }

    async fn getxattr(&self, ino: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        self.op();
        let name = xattr_name(name)?;
        if name.starts_with("security.") {
            // "Not supported" rather than "no such attribute": `ls -l` (through libselinux)
            // then stops asking for the rest of the file system, where ENODATA would cost a
            // kernel round trip per file, since the kernel caches neither answer.
            return Err(FsError::Unsupported(format!(
                "{name}: security labels are not stored by sessions"
            )));
        }
        if unstored_xattr(name) {
            return Err(FsError::NoAttribute(name.to_owned()));
        }
        self.load_xattrs(ino).await?;
        let st = self.lock();
        st.nodes
            .get(ino)
            .and_then(|n| n.xattrs.as_ref())
            .and_then(|x| x.get(name).cloned())
            .ok_or_else(|| FsError::NoAttribute(name.to_owned()))
    }

    async fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        self.op();
        self.load_xattrs(ino).await?;
        let st = self.lock();
        Ok(st
            .nodes
            .get(ino)
            .and_then(|n| n.xattrs.as_ref())
            .map(|x| x.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.op();
        self.writable()?;
        self.admit().await?;
        let name = xattr_name(name)?;
        if unstored_xattr(name) {
            return Err(FsError::NoAttribute(name.to_owned()));
        }
        self.load_xattrs(ino).await?;
        let mut st = self.lock();
        let exists = st
            .nodes
            .get(ino)
            .and_then(|n| n.xattrs.as_ref())
            .is_some_and(|x| x.contains_key(name));
        if !exists {
            return Err(FsError::NoAttribute(name.to_owned()));
        }
        let path = st.nodes.path(ino).unwrap_or_default();
        self.journal_about(
            &mut st,
            ino,
            JournalOp::RemoveXattr {
                path,
                name: name.to_owned(),
            },
        )?;
        let now = self.clock.now();
        let n = st.nodes.get_mut(ino).expect("checked above");
        if let Some(x) = n.xattrs.as_mut() {
            x.remove(name);
        }
        n.attr.ctime = now;
        Ok(())
    }

    async fn fallocate(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> FsResult<()> {
        // The modes of fallocate(2), as Linux numbers them.
        const KEEP_SIZE: i32 = 0x01;
        const PUNCH_HOLE: i32 = 0x02;
        const ZERO_RANGE: i32 = 0x10;
        self.op();
        self.writable()?;
        self.admit().await?;
        let supported = [
            0,
            KEEP_SIZE,
            PUNCH_HOLE | KEEP_SIZE,
            ZERO_RANGE,
            ZERO_RANGE | KEEP_SIZE,
        ];
        if !supported.contains(&mode) {
            return Err(FsError::Unsupported(format!(
                "fallocate mode {mode:#x} (supported: space reservation, with or without \
                 FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE and FALLOC_FL_ZERO_RANGE)"
            )));
        }
        let (_, direct) = self.writing_handle(fh)?;
        let end = offset
            .checked_add(length)
            .ok_or_else(|| FsError::Invalid("offset + length overflows".into()))?;
        if mode & (PUNCH_HOLE | ZERO_RANGE) != 0 {
            self.zero_range(ino, direct, offset, end).await?;
        }
        // Space is never reserved ahead (the server stores whole contents), so `KEEP_SIZE` has
        // nothing left to do; without it the file grows to `end`, zero-filled.
        let size = self.lock().nodes.get(ino).map(|n| n.attr.size).unwrap_or(0);
        if mode & KEEP_SIZE == 0 && end > size {
            self.truncate(ino, Some(fh), end).await?;
        }
        Ok(())
    }
}
