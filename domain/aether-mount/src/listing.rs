//! Directory listings: one manifest call per directory fills names and attributes for lookup,
//! getattr and readdirplus; a listing with unacknowledged local changes is never overwritten
//! by the server's older view.

use std::time::Duration;

use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::{Attr, EntryOut, FsError, FsResult, ROOT_INO};
use aether_ports::{Entry, ManifestRequest, PageRequest, SessionApi};

use crate::content_id::ContentId;
use crate::nodes::{Node, file_kind};
use crate::{Engine, State, fs_error};

pub(crate) fn attr_of(e: &Entry, ino: u64) -> Attr {
    let kind = file_kind(e.kind);
    Attr {
        ino,
        kind,
        perm: e.mode & 0o7777,
        uid: e.uid,
        gid: e.gid,
        size: e.size,
        nlink: e.nlink.max(1),
        rdev: e.rdev as u32,
        atime: e.atime,
        mtime: e.mtime,
        ctime: e.ctime,
    }
}

fn node_of(e: &Entry) -> Node {
    let mut n = Node::new(attr_of(e, 0));
    n.hash = ContentId::of(e.content_hash.as_deref());
    n.target = e.target.as_deref().map(Box::from);
    n.server_inode = e.inode;
    n
}

/// Manifest pages a directory read may take to prefetch the subtree below it.
const PREFETCH_PAGES: usize = 10;

/// Groups a recursive listing of `top` by directory: each directory's entry first (as a
/// manifest page shows it), then its children, directories in path order.
fn group_by_dir(top: &str, entries: Vec<Entry>) -> std::collections::BTreeMap<String, Vec<Entry>> {
    let mut out: std::collections::BTreeMap<String, Vec<Entry>> = std::collections::BTreeMap::new();
    for e in entries {
        if e.kind == aether_domain::EntryKind::Directory {
            out.entry(e.path.clone()).or_default().insert(0, e.clone());
        }
        if e.path == top {
            continue;
        }
        let parent = match e.path.rsplit_once('/') {
            Some(("", _)) => "/".to_owned(),
            Some((p, _)) => p.to_owned(),
            None => continue,
        };
        out.entry(parent).or_default().push(e);
    }
    out
}

/// Whether a listing in byte order of paths that stopped at `cutoff` covered all of `dir`'s
/// subtree. The paths below `dir` are exactly those starting with `dir/`, and they sort
/// together; so it did if `cutoff` sorts after that prefix without starting with it.
fn subtree_passed(dir: &str, cutoff: &str) -> bool {
    let below = if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    };
    cutoff > below.as_str() && !cutoff.starts_with(&below)
}

/// Whether the name listed as `e` now holds another object of the server than `n`, a file
/// of several names: it needs a node of its own, as the old one keeps its other names.
fn replaced_link(n: &Node, e: &Entry) -> bool {
    n.links.len() > 1 && n.server_inode != 0 && e.inode != 0 && n.server_inode != e.inode
}

/// Whether `ino` or a directory above it holds changes the server has not acknowledged: the
/// server's view of this directory is then older than ours (a pending rename of an ancestor
/// means the server does not even have this path yet), so it must not replace ours.
pub(crate) fn pinned(st: &State, mut ino: u64) -> bool {
    for _ in 0..4096 {
        let Some(n) = st.nodes.get(ino) else {
            return false;
        };
        if n.pending > 0 {
            return true;
        }
        match n.links.first() {
            Some((parent, _)) => ino = *parent,
            None => return false,
        }
    }
    false
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    pub(crate) fn entry_out(&self, attr: Attr) -> EntryOut {
        EntryOut {
            attr,
            entry_ttl: self.config.lookup_ttl,
            attr_ttl: self.config.lookup_ttl,
        }
    }

    /// Whether the listing of `ino` can answer without asking the server.
    pub(crate) fn listing_usable(&self, st: &State, ino: u64) -> FsResult<bool> {
        let node = st
            .nodes
            .get(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino}")))?;
        let listing = node
            .listing
            .as_ref()
            .ok_or_else(|| FsError::NotDir(st.nodes.path(ino).unwrap_or_default()))?;
        Ok(listing.loaded && (listing.fresh_until > self.clock.elapsed() || pinned(st, ino)))
    }

    /// Makes sure the listing of directory `ino` is loaded and fresh.
    pub(crate) async fn ensure_listing(&self, ino: u64) -> FsResult<()> {
        if self.listing_usable(&self.lock(), ino)? {
            self.counters
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        self.counters
            .cache_misses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.load_dir(ino).await
    }

    /// Reads the directory `ino` from the server and merges it into the inode table. The
    /// subtree below is read too, up to `PREFETCH_PAGES` pages: a tree walk (`ls -lR`,
    /// `git status`, `grep -r` on a cold cache) then costs a few requests instead of one per
    /// directory.
    pub(crate) async fn load_dir(&self, ino: u64) -> FsResult<()> {
        let path = self
            .lock()
            .nodes
            .path(ino)
            .ok_or_else(|| FsError::NotFound(format!("inode {ino} has no name any more")))?;
        let (tree, cutoff) = self
            .patiently(|| self.fetch_pages(&path, true, PREFETCH_PAGES))
            .await?;
        let own = if cutoff.is_some() {
            // The subtree is larger than the prefetch: read this directory on its own.
            self.patiently(|| self.fetch_pages(&path, false, usize::MAX))
                .await?
                .0
        } else {
            Vec::new()
        };
        self.contact();
        let mut st = self.lock();
        // Names we already know anchor their link groups before anything is merged, so that
        // another name of the same file, in any directory of this read, joins that inode.
        for e in tree.iter().chain(own.iter()) {
            if e.nlink > 1
                && e.kind != aether_domain::EntryKind::Directory
                && let Some(known) = st.nodes.resolve(&e.path)
                && st.nodes.get(known).map(|n| n.attr.kind) == Some(file_kind(e.kind))
            {
                st.nodes.register_link_group(e.inode, known);
            }
        }
        let mut by_dir = group_by_dir(&path, tree);
        let top = if cutoff.is_some() {
            own
        } else {
            by_dir.remove(&path).unwrap_or_default()
        };
        self.merge_listing(&mut st, ino, &path, top);
        // Then every subdirectory the pages covered completely, parents before children.
        for (dir_path, entries) in by_dir {
            if cutoff
                .as_deref()
                .is_some_and(|c| !subtree_passed(&dir_path, c))
            {
                continue;
            }
            if let Some(dir) = st.nodes.resolve(&dir_path) {
                self.merge_listing(&mut st, dir, &dir_path, entries);
            }
        }
        Ok(())
    }

    /// Up to `max_pages` manifest pages under `path`; the last path read if more remain.
    async fn fetch_pages(
        &self,
        path: &str,
        recursive: bool,
        max_pages: usize,
    ) -> FsResult<(Vec<Entry>, Option<String>)> {
        let mut entries = Vec::new();
        let mut token = None;
        for _ in 0..max_pages {
            let req = ManifestRequest {
                path_prefix: Some(path.to_owned()),
                recursive: Some(recursive),
                include_cas_extents: None,
                page: PageRequest {
                    page_size: Some(aether_ports::model::MAX_PAGE_SIZE),
                    page_token: token,
                },
            };
            let page = self
                .remote
                .manifest(&self.ctx(), &self.config.session_id, req)
                .await
                .map_err(|e| self.remote_failed(e, path))?;
            entries.extend(page.entries.items);
            token = page.entries.next_page_token;
            if token.is_none() {
                return Ok((entries, None));
            }
        }
        let last = entries.last().map(|e| e.path.clone()).unwrap_or_default();
        Ok((entries, Some(last)))
    }

    fn merge_listing(&self, st: &mut State, dir: u64, dir_path: &str, entries: Vec<Entry>) {
        let now = self.clock.elapsed();
        let Some(node) = st.nodes.get(dir) else {
            return;
        };
        // Not a directory here (the name now means something else locally): nothing to merge.
        if node.listing.is_none() {
            return;
        }
        // Local changes not yet acknowledged win over the server's (older) view.
        if pinned(st, dir) && node.listing.as_ref().is_some_and(|l| l.loaded) {
            return;
        }
        // Names we already know anchor their link groups first, so that another name of the
        // same file listed earlier joins the known inode instead of getting a new one.
        for e in &entries {
            if e.nlink > 1 && e.kind != aether_domain::EntryKind::Directory {
                let name = e.path.rsplit('/').next().unwrap_or_default();
                if let Some(c) = st.nodes.child(dir, name)
                    && st.nodes.get(c).map(|n| n.attr.kind) == Some(file_kind(e.kind))
                {
                    st.nodes.register_link_group(e.inode, c);
                }
            }
        }
        let mut children = std::collections::BTreeMap::new();
        for e in entries {
            if e.path == dir_path {
                if let Some(n) = st.nodes.get_mut(dir) {
                    n.attr = attr_of(&e, dir);
                    n.attr_fresh_until = now + self.config.lookup_ttl;
                }
                continue;
            }
            let Some(name) = e.path.rsplit('/').next().map(str::to_owned) else {
                continue;
            };
            let existing = st
                .nodes
                .child(dir, &name)
                .filter(|&c| {
                    st.nodes
                        .get(c)
                        .is_some_and(|n| n.attr.kind == file_kind(e.kind) && !replaced_link(n, &e))
                })
                .or_else(|| {
                    (e.nlink > 1)
                        .then(|| st.nodes.linked_node(e.inode))
                        .flatten()
                });
            let ino = match existing {
                Some(c) => {
                    let n = st.nodes.get_mut(c).expect("child exists");
                    if n.pending == 0 && n.stage.is_none() {
                        let hash = ContentId::of(e.content_hash.as_deref());
                        let changed = n.hash != hash;
                        n.attr = attr_of(&e, c);
                        n.hash = hash;
                        n.target = e.target.as_deref().map(Box::from);
                        n.server_inode = e.inode;
                        if changed {
                            n.xattrs = None;
                        }
                    }
                    n.attr_fresh_until = now + self.config.lookup_ttl;
                    c
                }
                None => {
                    let mut n = node_of(&e);
                    n.attr_fresh_until = now + self.config.lookup_ttl;
                    st.nodes.insert(n)
                }
            };
            if e.nlink > 1 && e.kind != aether_domain::EntryKind::Directory {
                st.nodes.register_link_group(e.inode, ino);
            }
            children.insert(name, ino);
        }
        // Names that vanished on the server lose their link here.
        let old: Vec<(Box<str>, u64)> = st
            .nodes
            .get(dir)
            .and_then(|n| n.listing.as_ref())
            .map(|l| l.children.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        let mut gone = Vec::new();
        for (name, ino) in old {
            if children.get(&*name) != Some(&ino) {
                st.nodes.detach(dir, &name);
                gone.push(ino);
            }
        }
        for (name, ino) in &children {
            st.nodes.attach(dir, name, *ino);
            st.negative.remove(&(dir, name.clone()));
        }
        // After the attaching: a node renamed within this listing keeps its name.
        self.reclaim_all_unreachable(st, &gone);
        if let Some(l) = st.nodes.get_mut(dir).and_then(|n| n.listing.as_mut()) {
            l.loaded = true;
            l.fresh_until = now + self.config.dir_ttl;
        }
    }

    /// The server's view of `ino` at `path`, rebuilt from what the mount knows.
    fn entry_of(st: &State, ino: u64, path: String) -> Option<Entry> {
        let n = st.nodes.get(ino)?;
        let a = &n.attr;
        Some(Entry {
            path,
            kind: crate::nodes::entry_kind(a.kind),
            mode: a.perm,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            content_hash: n.hash.as_ref().map(ContentId::to_string),
            target: n.target.as_deref().map(str::to_owned),
            rdev: u64::from(a.rdev),
            nlink: a.nlink,
            atime: a.atime,
            mtime: a.mtime,
            ctime: a.ctime,
            version: 0,
            inode: n.server_inode,
            cas_extents: None,
        })
    }

    /// Every loaded listing that is still valid and holds no local state (open files, pending
    /// changes), as manifest pages would show it.
    pub(crate) fn listings_snapshot(&self) -> Vec<(String, Vec<Entry>)> {
        let st = self.lock();
        let mut out = Vec::new();
        let mut stack = vec![ROOT_INO];
        while let Some(dir) = stack.pop() {
            let Some(node) = st.nodes.get(dir) else {
                continue;
            };
            let Some(listing) = node.listing.as_ref() else {
                continue;
            };
            if !listing.loaded || listing.fresh_until == Duration::ZERO || pinned(&st, dir) {
                continue;
            }
            let Some(path) = st.nodes.path(dir) else {
                continue;
            };
            // A hard link made here is known by its local inode only until the server's
            // listing names its link group: saved without it, the names would come back as
            // separate files, so such a directory is read afresh by the next mount.
            let clean = listing.children.values().all(|c| {
                st.nodes.get(*c).is_some_and(|n| {
                    n.stage.is_none()
                        && n.pending == 0
                        && (n.attr.nlink < 2 || n.is_dir() || n.server_inode != 0)
                })
            });
            if !clean {
                continue;
            }
            let mut entries = Vec::with_capacity(listing.children.len() + 1);
            entries.extend(Self::entry_of(&st, dir, path.clone()));
            for (name, child) in &listing.children {
                let child_path = if path == "/" {
                    format!("/{name}")
                } else {
                    format!("{path}/{name}")
                };
                entries.extend(Self::entry_of(&st, *child, child_path));
                if st.nodes.get(*child).is_some_and(|n| n.is_dir()) {
                    stack.push(*child);
                }
            }
            out.push((path, entries));
        }
        out
    }

    /// Installs listings saved by an earlier mount (parents before children).
    pub(crate) fn restore_listings(&self, mut listings: Vec<(String, Vec<Entry>)>) {
        listings.sort_by_key(|(p, _)| (p.matches('/').count(), p.clone()));
        let mut st = self.lock();
        for (path, entries) in listings {
            let Some(ino) = st.nodes.resolve(&path) else {
                continue;
            };
            self.merge_listing(&mut st, ino, &path, entries);
        }
    }

    /// Notes a remote failure and turns it into a file-system error.
    pub(crate) fn remote_failed(&self, e: aether_domain::Error, what: &str) -> FsError {
        self.counters
            .remote_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(target: "aether_mount", code = ?e.code, message = %e.message, "remote call failed");
        fs_error(e, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_passed(dir: &str, cutoff: &str, expected: bool) {
        assert_eq!(
            subtree_passed(dir, cutoff),
            expected,
            "{dir} cut at {cutoff}"
        );
    }

    #[test]
    fn a_cut_listing_covers_the_subtrees_it_passed() {
        check_passed("/a", "/b", true);
        check_passed("/a", "/a", false);
        check_passed("/a", "/a/z", false);
        check_passed("/a", "/a-b", false);
        check_passed("/a", "/a0", true);
        check_passed("/a/b", "/a/c/d", true);
        check_passed("/", "/z", false);
    }

    #[test]
    fn a_recursive_listing_groups_by_directory() {
        let e = |path: &str, dir: bool| Entry {
            path: path.to_owned(),
            kind: if dir {
                aether_domain::EntryKind::Directory
            } else {
                aether_domain::EntryKind::File
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            content_hash: None,
            target: None,
            rdev: 0,
            nlink: 1,
            atime: aether_domain::Timestamp::from_nanos(0),
            mtime: aether_domain::Timestamp::from_nanos(0),
            ctime: aether_domain::Timestamp::from_nanos(0),
            version: 0,
            inode: 0,
            cas_extents: None,
        };
        let grouped = group_by_dir(
            "/",
            vec![
                e("/", true),
                e("/a", true),
                e("/a/f", false),
                e("/a/g", true),
                e("/b", false),
            ],
        );
        let paths =
            |d: &str| -> Vec<String> { grouped[d].iter().map(|e| e.path.clone()).collect() };
        assert_eq!(paths("/"), ["/", "/a", "/b"]);
        assert_eq!(paths("/a"), ["/a", "/a/f", "/a/g"]);
        assert_eq!(paths("/a/g"), ["/a/g"]);
    }
}
