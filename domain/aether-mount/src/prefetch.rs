//! Fetching a directory's small files ahead of a reader that reads them one after another
//! (`grep -r`, `tar c`, `cp -r` out of the mount, a build's first pass) on a cold cache.
//!
//! Two cold reads in a row in one directory, or in directories next to each other (parent and
//! child, or siblings) as a tree walk goes, are taken as such a scan: the directory's other
//! small files not in the cache, in listing order after the one read, are fetched in the
//! background, a few at a time, by the transfer loop. A reader opening one of them meanwhile
//! waits for that fetch rather than starting its own. One file read alone, as an editor does,
//! fetches nothing more.

use std::ops::Bound;

use aether_ports::SessionApi;
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::FileKind;
use futures::StreamExt;

use crate::Engine;
use crate::content_id::ContentId;

/// Files up to this size are fetched ahead; larger ones are read by range as they are read.
const FILE_MAX: u64 = 256 << 10;
/// At most this many files, and bytes, are fetched ahead per directory scan detected.
const COUNT_MAX: usize = 256;
const BYTES_MAX: u64 = 8 << 20;
/// How many fetches ahead travel at once.
const PARALLEL: usize = 4;

/// A file to fetch ahead: its path and the content hash it is expected to have.
pub(crate) struct Ahead {
    path: String,
    hash: String,
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// Notes a cold read of file `ino`: when the cold read before it was in the same
    /// directory, queues that directory's later small files not in the cache.
    pub(crate) fn note_cold_read(&self, ino: u64) {
        if !self.transfers.running() {
            return;
        }
        let mut st = self.lock();
        let Some((dir, name)) = st.nodes.get(ino).and_then(|n| n.links.first().cloned()) else {
            return;
        };
        let Some(before) = st.last_cold_dir.replace(dir) else {
            return;
        };
        let parent = |d: u64| st.nodes.get(d).and_then(|n| n.links.first()).map(|l| l.0);
        // A tree walk moves between a directory, its parent and its siblings.
        let walking = before == dir
            || parent(dir) == Some(before)
            || parent(before) == Some(dir)
            || parent(before).is_some() && parent(before) == parent(dir);
        if !walking {
            return;
        }
        let Some(children) = st.nodes.get(dir).and_then(|d| d.listing.as_ref()) else {
            return;
        };
        let later: Vec<u64> = children
            .children
            .range::<str, _>((Bound::Excluded(&*name), Bound::Unbounded))
            .map(|(_, &child)| child)
            .collect();
        let (mut files, mut bytes) = (Vec::new(), 0);
        for child in later {
            if files.len() >= COUNT_MAX || bytes >= BYTES_MAX {
                break;
            }
            let Some(n) = st.nodes.get(child) else {
                continue;
            };
            let small = n.attr.kind == FileKind::File && n.attr.size > 0 && n.attr.size <= FILE_MAX;
            if !small || n.stage.is_some() {
                continue;
            }
            let Some(hash) = n.hash.as_ref().map(ContentId::to_string) else {
                continue;
            };
            if st.prefetching.contains(&hash) {
                continue;
            }
            if self.cache.has_blob(&hash) {
                continue;
            }
            let Some(path) = st.nodes.path(child) else {
                continue;
            };
            bytes += n.attr.size;
            st.prefetching.insert(hash.clone());
            files.push(Ahead { path, hash });
        }
        if files.is_empty() {
            return;
        }
        let hashes: Vec<String> = files.iter().map(|f| f.hash.clone()).collect();
        if !self
            .transfers
            .queue(crate::early::Transfer::Prefetch(files))
        {
            for h in hashes {
                st.prefetching.remove(&h);
            }
        }
    }

    /// Fetches `files` into the cache, [`PARALLEL`] at a time.
    pub(crate) async fn prefetch(&self, files: Vec<Ahead>) {
        futures::stream::iter(files)
            .for_each_concurrent(PARALLEL, |f| async move {
                self.prefetch_one(&f).await;
                self.lock().prefetching.remove(&f.hash);
            })
            .await;
    }

    async fn prefetch_one(&self, f: &Ahead) {
        let gate = self.fetch_gate(&f.hash);
        let _one_fetch = gate.lock().await;
        if self.cache.has_blob(&f.hash) {
            return;
        }
        match self.read_whole(&f.path).await {
            // Kept only if it is still the content expected: anything else is the reader's
            // to fetch when it gets there.
            Ok(c) if c.entry.content_hash.as_deref() == Some(f.hash.as_str()) => {
                self.contact();
                if let Err(e) = self.cache.put_blob(&f.hash, &c.data) {
                    tracing::debug!(target: "aether_mount", path = %f.path, error = %e, "a file fetched ahead was not kept");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(target: "aether_mount", path = %f.path, error = %e.message, "fetching a file ahead failed");
            }
        }
        self.drop_fetch_gate(&f.hash);
    }
}
