//! The inode table: every object the mount has seen, its names, attributes, content state and
//! cached directory listing. Pure and synchronous; the engine holds it under one lock.
//!
//! Inode numbers are minted locally and never reused while the mount lives, so a path keeps its
//! number across refreshes; hard links (one server inode under several names) share one node.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aether_domain::{EntryKind, Timestamp};
use aether_ports::vfs::{Attr, FileKind, ROOT_INO};

use crate::content_id::ContentId;

/// A local staging area holding a file's content while it is being written.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stage {
    /// Written since the last journal commit.
    pub(crate) dirty: bool,
    /// The content the staging area started from (for partial patches).
    pub(crate) base_hash: Option<String>,
    /// Byte ranges written since the stage was opened, merged, as (start, end).
    pub(crate) ranges: Vec<(u64, u64)>,
    /// The file was truncated below its base size at some point.
    pub(crate) shrunk: bool,
    /// How far the content was written strictly in order from an empty file, and its hash so
    /// far while it is small enough to be hashed (`close` then needs no second pass over it).
    pub(crate) stream: Option<StreamHash>,
    /// An early upload of this content was started (it is not started twice).
    pub(crate) early_tried: bool,
    /// Some of this content was written past the kernel's page cache (a direct-I/O handle):
    /// the kernel's cache does not hold it.
    pub(crate) kernel_bypassed: bool,
}

/// A staging area's first `upto` bytes, written in order, and their SHA-256 while they are at
/// most [`crate::naming::HASHED_MAX`] bytes: larger content is named by the server instead.
/// (A stream only grows, so once past that size it stays unhashed.)
#[derive(Clone, Default)]
pub(crate) struct StreamHash {
    state: sha2::Sha256,
    pub(crate) upto: u64,
}

impl std::fmt::Debug for StreamHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamHash(upto {})", self.upto)
    }
}

impl StreamHash {
    /// Feeds a write at `offset`; a write anywhere else than the end ends the stream.
    pub(crate) fn feed(stream: &mut Option<StreamHash>, offset: u64, data: &[u8]) {
        use sha2::Digest;
        match stream {
            Some(h) if h.upto == offset => {
                h.upto += data.len() as u64;
                if h.upto <= crate::naming::HASHED_MAX {
                    h.state.update(data);
                }
            }
            _ => *stream = None,
        }
    }

    /// Whether the stream covers exactly `size` bytes: the content was written in order.
    pub(crate) fn covers(stream: &Option<StreamHash>, size: u64) -> bool {
        stream.as_ref().is_some_and(|h| h.upto == size)
    }

    /// The hex digest of the content, if the stream covers exactly `size` bytes and hashed them.
    pub(crate) fn digest(stream: &Option<StreamHash>, size: u64) -> Option<String> {
        use sha2::Digest;
        let h = stream
            .as_ref()
            .filter(|h| h.upto == size && size <= crate::naming::HASHED_MAX)?;
        Some(hex::encode(h.state.clone().finalize()))
    }
}

impl Stage {
    pub(crate) fn record(&mut self, start: u64, end: u64) {
        self.dirty = true;
        if start >= end {
            return;
        }
        self.ranges.push((start, end));
        self.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.ranges.len());
        for &(s, e) in &self.ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.ranges = merged;
    }

    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }
}

/// A directory's cached listing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) children: BTreeMap<Box<str>, u64>,
    /// The listing came from the server (or was created locally) and is complete.
    pub(crate) loaded: bool,
    /// Monotonic time after which the listing must be re-read.
    pub(crate) fresh_until: Duration,
    /// The kernel holds this exact listing in its directory cache.
    pub(crate) kernel_cached: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) attr: Attr,
    /// Every (parent, name) this node is reachable under; the first is its path. Nearly every
    /// node has one: the vector is sized exactly, not to a growing vector's first four.
    pub(crate) links: Vec<(u64, Box<str>)>,
    pub(crate) hash: Option<ContentId>,
    pub(crate) target: Option<Box<str>>,
    pub(crate) server_inode: u64,
    /// Boxed: files have none, and the table holds every node the mount has seen.
    pub(crate) listing: Option<Box<Listing>>,
    pub(crate) attr_fresh_until: Duration,
    /// Boxed too: most nodes have none.
    pub(crate) stage: Option<Box<Stage>>,
    pub(crate) writers: u32,
    /// Journal entries naming this node (or, for a directory, a child) not yet acknowledged.
    pub(crate) pending: u32,
    /// The server knows this object, or a journal entry creating it is pending.
    pub(crate) journaled: bool,
    /// The last journal sequence number that carried this node's content.
    pub(crate) last_seq: u64,
    /// Boxed: most nodes' extended attributes are never read, and a pointer takes a third of
    /// the room of an empty map in every node.
    #[allow(clippy::box_collection)]
    pub(crate) xattrs: Option<Box<BTreeMap<String, Vec<u8>>>>,
    /// Content hash the kernel's page cache was filled from (for `keep_cache`).
    pub(crate) kernel_hash: Option<ContentId>,
    /// References the kernel holds: entries handed to it, less those it forgot. A node with
    /// no name that the kernel has forgotten can be dropped ([`Nodes::remove`]).
    pub(crate) lookups: u64,
}

impl Node {
    /// A node with attributes `attr` and no names, content state or pending work yet;
    /// directories get an empty, unloaded listing.
    pub(crate) fn new(attr: Attr) -> Node {
        Node {
            listing: (attr.kind == FileKind::Dir).then(Box::default),
            attr,
            links: Vec::new(),
            hash: None,
            target: None,
            server_inode: 0,
            attr_fresh_until: Duration::ZERO,
            stage: None,
            writers: 0,
            pending: 0,
            journaled: true,
            last_seq: 0,
            xattrs: None,
            kernel_hash: None,
            lookups: 0,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.attr.kind == FileKind::Dir
    }
}

pub(crate) fn file_kind(kind: EntryKind) -> FileKind {
    match kind {
        EntryKind::File => FileKind::File,
        EntryKind::Directory => FileKind::Dir,
        EntryKind::Symlink => FileKind::Symlink,
        EntryKind::Fifo => FileKind::Fifo,
        EntryKind::Socket => FileKind::Socket,
        EntryKind::CharDevice => FileKind::CharDevice,
        EntryKind::BlockDevice => FileKind::BlockDevice,
    }
}

pub(crate) fn entry_kind(kind: FileKind) -> EntryKind {
    match kind {
        FileKind::File => EntryKind::File,
        FileKind::Dir => EntryKind::Directory,
        FileKind::Symlink => EntryKind::Symlink,
        FileKind::Fifo => EntryKind::Fifo,
        FileKind::Socket => EntryKind::Socket,
        FileKind::CharDevice => EntryKind::CharDevice,
        FileKind::BlockDevice => EntryKind::BlockDevice,
    }
}

/// Attributes for a brand-new local object.
pub(crate) fn fresh_attr(kind: FileKind, perm: u32, uid: u32, gid: u32, now: Timestamp) -> Attr {
    Attr {
        ino: 0,
        kind,
        perm: perm & 0o7777,
        uid,
        gid,
        size: 0,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        rdev: 0,
        atime: now,
        mtime: now,
        ctime: now,
    }
}

#[derive(Debug)]
pub(crate) struct Nodes {
    /// Boxed nodes: a table of inline nodes holds a node's worth of memory in every empty slot
    /// and, while it grows, two tables at once (52 MiB for 100,000 nodes).
    nodes: HashMap<u64, Box<Node>>,
    next_ino: u64,
    /// Server inode of a link group → local inode.
    by_server_inode: HashMap<u64, u64>,
}

impl Nodes {
    pub(crate) fn new(now: Timestamp) -> Self {
        let mut attr = fresh_attr(FileKind::Dir, 0o755, 0, 0, now);
        attr.ino = ROOT_INO;
        let mut root = Node::new(attr);
        root.server_inode = 1;
        Nodes {
            nodes: HashMap::from([(ROOT_INO, Box::new(root))]),
            next_ino: ROOT_INO + 1,
            by_server_inode: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino).map(|n| &**n)
    }

    pub(crate) fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino).map(|n| &mut **n)
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Adds a node with a fresh inode number and returns it.
    pub(crate) fn insert(&mut self, mut node: Node) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        node.attr.ino = ino;
        if node.attr.nlink > 1 && node.attr.kind != FileKind::Dir && node.server_inode != 0 {
            self.by_server_inode.insert(node.server_inode, ino);
        }
        self.nodes.insert(ino, Box::new(node));
        ino
    }

    /// Drops node `ino` from the table (its number is never given out again).
    pub(crate) fn remove(&mut self, ino: u64) {
        if let Some(n) = self.nodes.remove(&ino)
            && self.by_server_inode.get(&n.server_inode) == Some(&ino)
        {
            self.by_server_inode.remove(&n.server_inode);
        }
    }

    /// Records that server inode `server_inode` (a link group) is local inode `ino`.
    pub(crate) fn register_link_group(&mut self, server_inode: u64, ino: u64) {
        if server_inode != 0 {
            self.by_server_inode.insert(server_inode, ino);
        }
    }

    pub(crate) fn linked_node(&self, server_inode: u64) -> Option<u64> {
        self.by_server_inode
            .get(&server_inode)
            .copied()
            .filter(|ino| self.nodes.contains_key(ino))
    }

    /// Every known hard-link group: each is one local inode reachable under several names.
    pub(crate) fn link_groups(&self) -> Vec<u64> {
        self.by_server_inode
            .values()
            .copied()
            .filter(|ino| self.nodes.contains_key(ino))
            .collect()
    }

    /// Makes the next look at `ino` ask the server again: its attributes and every listing
    /// that names it.
    pub(crate) fn expire(&mut self, ino: u64) {
        let parents: Vec<u64> = match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.attr_fresh_until = Duration::ZERO;
                n.links.iter().map(|(p, _)| *p).collect()
            }
            None => return,
        };
        for p in parents {
            if let Some(l) = self.nodes.get_mut(&p).and_then(|n| n.listing.as_mut()) {
                l.fresh_until = Duration::ZERO;
            }
        }
    }

    pub(crate) fn child(&self, parent: u64, name: &str) -> Option<u64> {
        self.nodes
            .get(&parent)?
            .listing
            .as_ref()?
            .children
            .get(name)
            .copied()
    }

    /// The session path of `ino` through its first link; `None` once it has no name.
    pub(crate) fn path(&self, ino: u64) -> Option<String> {
        if ino == ROOT_INO {
            return Some("/".to_owned());
        }
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let (parent, name) = self.nodes.get(&cur)?.links.first()?;
            parts.push(&**name);
            cur = *parent;
            if parts.len() > 4096 {
                return None;
            }
        }
        let mut out = String::new();
        for p in parts.iter().rev() {
            out.push('/');
            out.push_str(p);
        }
        Some(out)
    }

    pub(crate) fn child_path(&self, parent: u64, name: &str) -> Option<String> {
        let p = self.path(parent)?;
        Some(if p == "/" {
            format!("/{name}")
        } else {
            format!("{p}/{name}")
        })
    }

    /// Resolves a session path through the loaded listings.
    pub(crate) fn resolve(&self, path: &str) -> Option<u64> {
        let mut cur = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = self.child(cur, part)?;
        }
        Some(cur)
    }

    /// Adds the name `name` in `parent` for `ino`.
    pub(crate) fn attach(&mut self, parent: u64, name: &str, ino: u64) {
        if let Some(listing) = self.nodes.get_mut(&parent).and_then(|p| p.listing.as_mut())
            && listing.children.insert(name.into(), ino) != Some(ino)
        {
            listing.kernel_cached = false;
        }
        if let Some(node) = self.nodes.get_mut(&ino)
            && !node.links.iter().any(|(p, n)| *p == parent && **n == *name)
        {
            node.links.reserve_exact(1);
            node.links.push((parent, name.into()));
        }
    }

    /// Removes the name `name` from `parent`; returns the inode it named.
    pub(crate) fn detach(&mut self, parent: u64, name: &str) -> Option<u64> {
        let listing = self.nodes.get_mut(&parent)?.listing.as_mut()?;
        let ino = listing.children.remove(name)?;
        listing.kernel_cached = false;
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.links.retain(|(p, n)| !(*p == parent && **n == *name));
        }
        Some(ino)
    }

    /// Marks every ancestor directory listing of `ino` (and `ino`) as holding local changes.
    pub(crate) fn add_pending(&mut self, inos: &[u64], delta: i64) {
        for &ino in inos {
            if let Some(n) = self.nodes.get_mut(&ino) {
                n.pending = (i64::from(n.pending) + delta).max(0) as u32;
            }
        }
    }

    /// Inodes whose cached state a change at `ino` touches: itself and its parents.
    pub(crate) fn touch_set(&self, ino: u64) -> Vec<u64> {
        let mut out = vec![ino];
        if let Some(n) = self.nodes.get(&ino) {
            out.extend(n.links.iter().map(|(p, _)| *p));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_ranges(writes: &[(u64, u64)], expected: &[(u64, u64)]) {
        let mut s = Stage::default();
        for &(a, b) in writes {
            s.record(a, b);
        }
        assert_eq!(s.ranges, expected, "writes {writes:?}");
    }

    #[test]
    fn stage_ranges_merge() {
        check_ranges(&[(0, 10), (10, 20)], &[(0, 20)]);
        check_ranges(&[(5, 10), (0, 3)], &[(0, 3), (5, 10)]);
        check_ranges(&[(0, 10), (2, 4)], &[(0, 10)]);
        check_ranges(&[(8, 12), (0, 9)], &[(0, 12)]);
        check_ranges(&[(4, 4)], &[]);
    }

    #[test]
    fn paths_follow_the_first_link() {
        let now = Timestamp::from_nanos(0);
        let mut nodes = Nodes::new(now);
        let mk = |kind| Node::new(fresh_attr(kind, 0o755, 0, 0, now));
        let a = nodes.insert(mk(FileKind::Dir));
        nodes.attach(ROOT_INO, "a", a);
        let f = nodes.insert(mk(FileKind::File));
        nodes.attach(a, "f", f);
        assert_eq!(nodes.path(f).as_deref(), Some("/a/f"));
        assert_eq!(nodes.resolve("/a/f"), Some(f));
        nodes.attach(ROOT_INO, "g", f);
        nodes.detach(a, "f");
        assert_eq!(nodes.path(f).as_deref(), Some("/g"));
        assert_eq!(nodes.resolve("/a/f"), None);
    }
}
